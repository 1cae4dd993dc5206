-- Adds to tchap_stats.active_daily what loads added to the grown days %(days)s: a device
-- for each new key (a row is a user's device of the day), a user for each value it gained
-- (late_gained.sql).
INSERT INTO tchap_stats.active_daily AS a (day, dimension, value, users, devices)
SELECT day, dimension, value, sum(users), sum(devices)
FROM (
    SELECT day, dimension, value, count(*) AS users, 0 AS devices
    FROM late_gained
    WHERE day = ANY(%(days)s::date[])
    GROUP BY 1, 2, 3
    UNION ALL
    SELECT l.visit_date, d.dimension, d.value, 0, count(*)
    FROM tchap_stats.late_rows AS l
    CROSS JOIN LATERAL (VALUES ('overall', ''), ('instance', l.instance),
                               ('domain', l.domain), ('platform', l.platform))
               AS d(dimension, value)
    WHERE l.summary_group = 'daily' AND l.new_key AND l.visit_date = ANY(%(days)s::date[])
    GROUP BY 1, 2, 3
) AS added
GROUP BY 1, 2, 3
ON CONFLICT (day, dimension, value) DO UPDATE
SET users = a.users + excluded.users, devices = a.devices + excluded.devices;
