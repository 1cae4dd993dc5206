-- For user_devices_monthly_add.sql: the tuples of the days in %(days)s that their month
-- does not hold, each day tuple looked up by (month, user, device) (a night whose month
-- holds many more tuples than the days bring), with what the month held of its device.
-- {distinct}: DISTINCT when two of the days share a month, or a grown day's late rows are
-- read (a day's raw rows are one per user and device: one day's tuples are distinct).
-- The days' rows: added_day_rows.sql.
SELECT month, user_id, device_id, instance, domain, device_type, platform, device_known,
       device_instance, device_domain, device_platform,
       -- what the month held of its user: asked of user_values_monthly instead
       -- (user_new_to_value_by_lookup.sql)
       false AS user_overall, false AS user_instance, false AS user_domain,
       false AS user_platform
FROM (
    SELECT t.*, coalesce(h.held, false) AS held, h.device_known,
           coalesce(h.device_instance, false) AS device_instance,
           coalesce(h.device_domain, false) AS device_domain,
           coalesce(h.device_platform, false) AS device_platform
    FROM (
        SELECT * FROM (
            SELECT {distinct} date_trunc('month', visit_date)::date AS month, user_id,
                   device_id, instance, domain, device_type, platform
            FROM {day_rows} AS day_rows
        ) AS day_tuples
        -- in the index's order (outside the DISTINCT, whose ORDER BY may name only its
        -- columns): its pages, and the rows user_devices_monthly.sql laid out in the same
        -- order, are read once each, in order, when the month is not in memory
        ORDER BY month, hashtextextended(user_id, 0), hashtextextended(device_id, 0)
    ) AS t
    CROSS JOIN LATERAL (
        SELECT bool_or(m.instance = t.instance AND m.domain = t.domain
                       AND m.device_type = t.device_type AND m.platform = t.platform) AS held,
               count(*) > 0 AS device_known,
               bool_or(m.instance = t.instance) AS device_instance,
               bool_or(m.domain = t.domain) AS device_domain,
               bool_or(m.platform = t.platform) AS device_platform
        FROM tchap_stats.user_devices_monthly AS m
        WHERE m.month = t.month
          AND hashtextextended(m.user_id, 0) = hashtextextended(t.user_id, 0)
          AND hashtextextended(m.device_id, 0) = hashtextextended(t.device_id, 0)
          AND m.user_id = t.user_id AND m.device_id = t.device_id
        OFFSET 0
    ) AS h
) AS judged
WHERE NOT held
