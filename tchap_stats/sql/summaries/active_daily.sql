-- tchap_stats.active_daily for the days in %(days)s: distinct users and devices per day,
-- overall and by instance, domain and platform. {target}: the table, or check's copy.
-- Each row is unpivoted into its four (dimension, value) pairs, then hashed twice: per
-- user (rows are one per user, device and day, so a user's rows are its devices), then
-- per value. Faster than count(DISTINCT) over grouping sets, which sorts.
INSERT INTO {target} (day, dimension, value, users, devices)
SELECT day, dimension, value, count(*), sum(devices)
FROM (
    SELECT v.visit_date AS day, d.dimension, d.value, v.user_id, count(*) AS devices
    FROM public.user_daily_visits AS v
    CROSS JOIN LATERAL (VALUES ('overall', ''), ('instance', v.instance),
                               ('domain', v.domain), ('platform', v.platform))
               AS d(dimension, value)
    WHERE v.visit_date = ANY(%(days)s::date[])
    GROUP BY 1, 2, 3, 4
) AS per_user
GROUP BY 1, 2, 3;
