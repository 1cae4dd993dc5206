-- Rebuilds tchap_stats.rolling_last_active from user_visits_daily: each (user, instance,
-- domain)'s latest active day, overall and per platform, within the 30 days ending on the
-- latest day summarised.
TRUNCATE tchap_stats.rolling_last_active;
INSERT INTO tchap_stats.rolling_last_active
    (user_id, instance, domain, last_day, last_web, last_mobile, last_other)
SELECT user_id, instance, domain, max(day),
       max(day) FILTER (WHERE web_visits_count > 0),
       max(day) FILTER (WHERE mobile_visits_count > 0),
       max(day) FILTER (WHERE other_visits_count > 0)
FROM tchap_stats.user_visits_daily
WHERE day > (SELECT max(day) FROM tchap_stats.user_visits_daily) - 30
GROUP BY 1, 2, 3;
UPDATE tchap_stats.rolling_state
SET through_day = (SELECT max(day) FROM tchap_stats.user_visits_daily);
