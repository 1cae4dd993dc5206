-- For user_devices_monthly_add.sql: the tuples of the days in %(days)s that their month
-- does not hold, each with what the month held of its device, found by hashing the month's
-- tuples (a night whose month holds not many more than the days bring: no lookup at all,
-- nothing read at all from a month that holds nothing yet, as on its 1st). The
-- days' rows: added_day_rows.sql.
SELECT t.*, h.device_id IS NOT NULL AS device_known,
       coalesce(t.instance = ANY(h.instances), false) AS device_instance,
       coalesce(t.domain = ANY(h.domains), false) AS device_domain,
       coalesce(t.platform = ANY(h.platforms), false) AS device_platform
FROM (
    SELECT date_trunc('month', visit_date)::date AS month, user_id, device_id, instance,
           domain, device_type, platform
    FROM {day_rows} AS day_rows
    EXCEPT
    SELECT month, user_id, device_id, instance, domain, device_type, platform
    FROM tchap_stats.user_devices_monthly
    WHERE month = ANY(%(months)s::date[])
) AS t
LEFT JOIN (
    SELECT month, user_id, device_id, array_agg(instance) AS instances,
           array_agg(domain) AS domains, array_agg(platform) AS platforms
    FROM tchap_stats.user_devices_monthly
    WHERE month = ANY(%(months)s::date[])
    GROUP BY month, user_id, device_id
) AS h USING (month, user_id, device_id)
