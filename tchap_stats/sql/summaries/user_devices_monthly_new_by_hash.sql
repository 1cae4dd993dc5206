-- For user_devices_monthly_add.sql: the tuples of the days in %(days)s that their month
-- does not hold, each with what the month held of its device, from the month's tuples read
-- once and grouped by device (a night whose month holds not many more than the days bring:
-- no lookup at all, nothing read at all from a month that holds nothing yet, as on its
-- 1st). A day tuple is held when its device's group holds its (instance, domain, device
-- type, platform). An EXCEPT against the month's tuples before the grouping read them a
-- second time: the add 1.40-1.44 s -> 1.26-1.30 s on a `stable` 2nd (benchmarks/README.md,
-- "The second night of a month").
-- {distinct} and the days' rows: as in user_devices_monthly_new_by_lookup.sql.
SELECT t.*, h.device_id IS NOT NULL AS device_known,
       coalesce(t.instance = ANY(h.instances), false) AS device_instance,
       coalesce(t.domain = ANY(h.domains), false) AS device_domain,
       coalesce(t.platform = ANY(h.platforms), false) AS device_platform
FROM (
    SELECT {distinct} date_trunc('month', visit_date)::date AS month, user_id, device_id,
           instance, domain, device_type, platform
    FROM {day_rows} AS day_rows
) AS t
LEFT JOIN (
    SELECT month, user_id, device_id, array_agg(instance) AS instances,
           array_agg(domain) AS domains, array_agg(platform) AS platforms,
           array_agg(ROW(instance, domain, device_type, platform)) AS tuples
    FROM tchap_stats.user_devices_monthly
    WHERE month = ANY(%(months)s::date[])
    GROUP BY month, user_id, device_id
) AS h USING (month, user_id, device_id)
WHERE h.device_id IS NULL
   OR NOT ROW(t.instance, t.domain, t.device_type, t.platform) = ANY(h.tuples)
