-- tchap_stats.user_months for the months in %(months)s: per user and month, the instance
-- and domain of the earliest visit (device type other than 'Autre'), ties broken by
-- instance then domain, byte-wise: late data can correct a month, load order cannot.
-- Written in the order of its (month, user_id) index: a month's rows lie together, which
-- the night that adds to the month reads in order (not every month's pages, as when
-- several months recomputed at once were written user by user).
INSERT INTO {target} (user_id, month, instance, domain, first_visit_ts)
SELECT DISTINCT ON (date_trunc('month', visit_date), user_id)
       user_id, date_trunc('month', visit_date)::date, instance, domain, visit_ts
FROM public.user_daily_visits
WHERE visit_date >= %(first)s AND visit_date < %(end)s  -- bounds, for partition pruning
  AND date_trunc('month', visit_date)::date = ANY(%(months)s::date[])
  AND device_type <> 'Autre'
ORDER BY date_trunc('month', visit_date), user_id, visit_ts,
         instance COLLATE "C", domain COLLATE "C";
