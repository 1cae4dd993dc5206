-- tchap_stats.user_devices_monthly for the months in %(months)s (first days), from the raw
-- table: distinct (user, device, instance, domain, device type, platform) per month.
-- {target}: the summary table, or a temporary copy (check).
INSERT INTO {target} (month, user_id, device_id, instance, domain, device_type, platform)
SELECT DISTINCT date_trunc('month', visit_date)::date, user_id, device_id, instance, domain,
       device_type, platform
FROM public.user_daily_visits
WHERE visit_date >= %(first)s AND visit_date < %(end)s  -- bounds, for partition pruning
  AND date_trunc('month', visit_date)::date = ANY(%(months)s::date[]);
