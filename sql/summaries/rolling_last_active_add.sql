-- After active_rolling_30d_add.sql: %(day)s becomes its users' latest active day, and the
-- users with no activity in the 30 days ending on it leave the table.
INSERT INTO tchap_stats.rolling_last_active AS l
    (user_id, instance, domain, last_day, last_web, last_mobile, last_other)
SELECT user_id, instance, domain, day,
       CASE WHEN web_visits_count > 0 THEN day END,
       CASE WHEN mobile_visits_count > 0 THEN day END,
       CASE WHEN other_visits_count > 0 THEN day END
FROM tchap_stats.user_visits_daily
WHERE day = %(day)s
ON CONFLICT (user_id, instance, domain) DO UPDATE SET
    last_day = excluded.last_day,
    last_web = coalesce(excluded.last_web, l.last_web),
    last_mobile = coalesce(excluded.last_mobile, l.last_mobile),
    last_other = coalesce(excluded.last_other, l.last_other);
DELETE FROM tchap_stats.rolling_last_active WHERE last_day <= %(day)s::date - 30;
UPDATE tchap_stats.rolling_state SET through_day = %(day)s;
