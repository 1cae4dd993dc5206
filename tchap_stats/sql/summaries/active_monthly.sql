-- tchap_stats.active_monthly for the months in %(months)s: distinct users and devices per
-- month, overall and by instance, domain and platform, counted from the month's distinct
-- device tuples ({user_devices_monthly}: the summary, or check's recompute of it) rather
-- than from its raw rows. Unpivoted into (dimension, value) pairs, then hashed per device,
-- per user, per value (faster than count(DISTINCT) over grouping sets, which sorts).
INSERT INTO {target} (month, dimension, value, users, devices)
SELECT month, dimension, value, count(*), sum(devices)
FROM (
    SELECT month, dimension, value, user_id, count(*) AS devices
    FROM (
        SELECT m.month, d.dimension, d.value, m.user_id, m.device_id
        FROM {user_devices_monthly} AS m
        CROSS JOIN LATERAL (VALUES ('overall', ''), ('instance', m.instance),
                                   ('domain', m.domain), ('platform', m.platform))
                   AS d(dimension, value)
        WHERE m.month = ANY(%(months)s::date[])
        GROUP BY 1, 2, 3, 4, 5
    ) AS per_device
    GROUP BY 1, 2, 3, 4
) AS per_user
GROUP BY 1, 2, 3;
