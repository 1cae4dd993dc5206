-- For user_devices_monthly_add.sql: the tuples of the days in %(days)s that their month
-- does not hold, found by hashing the month's tuples (a night whose month holds not many
-- more than the days bring), each with what the month held of its device (a lookup).
SELECT t.*, h.device_known, coalesce(h.device_instance, false) AS device_instance,
       coalesce(h.device_domain, false) AS device_domain,
       coalesce(h.device_platform, false) AS device_platform
FROM (
    SELECT date_trunc('month', visit_date)::date AS month, user_id, device_id, instance,
           domain, device_type, platform
    FROM public.user_daily_visits
    WHERE visit_date = ANY(%(days)s::date[])
    EXCEPT
    SELECT month, user_id, device_id, instance, domain, device_type, platform
    FROM tchap_stats.user_devices_monthly
    WHERE month = ANY(%(months)s::date[])
) AS t
CROSS JOIN LATERAL (
    SELECT count(*) > 0 AS device_known,
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
