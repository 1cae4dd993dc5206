-- Rebuilds tchap_stats.rolling_last_active from user_visits_daily: each (dimension, value,
-- user)'s latest active day within the 30 days ending on the latest day summarised.
TRUNCATE tchap_stats.rolling_last_active;
INSERT INTO tchap_stats.rolling_last_active (dimension, value, user_id, last_day)
SELECT dimension, value, user_id, max(day)
FROM tchap_stats.daily_activity
WHERE day > (SELECT max(day) FROM tchap_stats.user_visits_daily) - 30
GROUP BY 1, 2, 3;
UPDATE tchap_stats.rolling_state
SET through_day = (SELECT max(day) FROM tchap_stats.user_visits_daily);
