-- The rows of one fresh day %(day)s that the rolling append reads (active_rolling_30d_add.sql,
-- then rolling_last_active_add.sql): a small temporary table with its own statistics (the
-- refresh ANALYZEs it from a small sample), so both statements join it to
-- rolling_last_active by hashing instead of probing.
CREATE TEMP TABLE rolling_today ON COMMIT DROP AS
SELECT user_id, instance, domain, web_visits_count > 0 AS web,
       mobile_visits_count > 0 AS mobile, other_visits_count > 0 AS other
FROM tchap_stats.user_visits_daily
WHERE day = %(day)s;
