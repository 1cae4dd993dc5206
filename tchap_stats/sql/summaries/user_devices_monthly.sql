-- tchap_stats.user_devices_monthly for the months in %(months)s (first days), from the raw
-- table: distinct (user, device, instance, domain, device type, platform) per month.
-- {target}: the summary table, or a temporary copy (check). Inserted in the order of the
-- (month, user hash, device hash) index, so that the rows and the index lie on disk in the
-- order user_devices_monthly_new_by_lookup.sql probes them: a month a bulk build wrote and
-- no night has read since is then read in order, not a page at a time.
INSERT INTO {target} (month, user_id, device_id, instance, domain, device_type, platform)
SELECT date_trunc('month', visit_date)::date, user_id, device_id, instance, domain,
       device_type, platform
FROM public.user_daily_visits
WHERE visit_date >= %(first)s AND visit_date < %(end)s  -- bounds, for partition pruning
  AND date_trunc('month', visit_date)::date = ANY(%(months)s::date[])
GROUP BY date_trunc('month', visit_date), user_id, device_id, instance, domain, device_type,
         platform  -- distinct tuples; grouped rather than DISTINCT, to be sorted as follows
ORDER BY date_trunc('month', visit_date), hashtextextended(user_id, 0),
         hashtextextended(device_id, 0);
