-- tchap_stats.user_months for the months in %(months)s: per user and month, the instance
-- and domain of the earliest visit (device type other than 'Autre'), ties broken by
-- instance then domain, byte-wise: late data can correct a month, load order cannot.
INSERT INTO {target} (user_id, month, instance, domain, first_visit_ts)
SELECT DISTINCT ON (user_id, date_trunc('month', visit_date))
       user_id, date_trunc('month', visit_date)::date, instance, domain, visit_ts
FROM public.user_daily_visits
WHERE visit_date >= %(first)s AND visit_date < %(end)s  -- bounds, for partition pruning
  AND date_trunc('month', visit_date)::date = ANY(%(months)s::date[])
  AND device_type <> 'Autre'
ORDER BY user_id, date_trunc('month', visit_date), visit_ts,
         instance COLLATE "C", domain COLLATE "C";
