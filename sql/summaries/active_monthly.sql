-- tchap_stats.active_monthly for the months in %(months)s: distinct users and devices per
-- month, overall and by instance, domain and platform. {target}: the table, or check's copy.
-- Unpivoted into (dimension, value) pairs, then hashed per device, per user, per value.
INSERT INTO {target} (month, dimension, value, users, devices)
SELECT month, dimension, value, count(*), sum(devices)
FROM (
    SELECT month, dimension, value, user_id, count(*) AS devices
    FROM (
        SELECT date_trunc('month', v.visit_date)::date AS month, d.dimension, d.value,
               v.user_id, v.device_id
        FROM public.user_daily_visits AS v
        CROSS JOIN LATERAL (VALUES ('overall', ''), ('instance', v.instance),
                                   ('domain', v.domain), ('platform', v.platform))
                   AS d(dimension, value)
        WHERE v.visit_date >= %(first)s AND v.visit_date < %(end)s  -- partition pruning
          AND date_trunc('month', v.visit_date)::date = ANY(%(months)s::date[])
        GROUP BY 1, 2, 3, 4, 5
    ) AS per_device
    GROUP BY 1, 2, 3, 4
) AS per_user
GROUP BY 1, 2, 3;
