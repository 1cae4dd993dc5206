-- Adds to tchap_stats.user_devices_monthly the tuples of the days in %(days)s that their
-- month does not hold yet. Exact when the summaries never saw rows of those days that are
-- gone since (fresh or only-grown days): a month's tuples are the union of its days'.
INSERT INTO {target} (month, user_id, device_id, instance, domain, device_type, platform)
SELECT date_trunc('month', visit_date)::date, user_id, device_id, instance, domain,
       device_type, platform
FROM public.user_daily_visits
WHERE visit_date = ANY(%(days)s::date[])
EXCEPT
SELECT month, user_id, device_id, instance, domain, device_type, platform
FROM {target}
WHERE month = ANY(%(months)s::date[]);
