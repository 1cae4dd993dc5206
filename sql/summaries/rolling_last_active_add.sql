-- After active_rolling_30d_add.sql: the appended days become the users' latest active
-- days, and users with no activity in the 30 days ending on the new last day leave.
INSERT INTO tchap_stats.rolling_last_active AS l (dimension, value, user_id, last_day)
SELECT dimension, value, user_id, max(day)
FROM tchap_stats.daily_activity
WHERE day = ANY(%(days)s::date[])
GROUP BY 1, 2, 3
ON CONFLICT (dimension, value, user_id)
DO UPDATE SET last_day = greatest(l.last_day, excluded.last_day);
DELETE FROM tchap_stats.rolling_last_active WHERE last_day <= %(last_day)s::date - 30;
UPDATE tchap_stats.rolling_state SET through_day = %(last_day)s;
