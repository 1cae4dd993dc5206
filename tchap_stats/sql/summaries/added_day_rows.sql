(  -- The rows the monthly group adds to their months (%(days)s): read from the raw table,
   -- except for the grown days %(grown_days)s, whose rows loads added are read instead.
    SELECT visit_date, user_id, device_id, visit_ts, instance, domain, platform, device_type
    FROM public.user_daily_visits
    WHERE visit_date = ANY(%(days)s::date[]) AND visit_date <> ALL(%(grown_days)s::date[])
    UNION ALL
    SELECT visit_date, user_id, device_id, visit_ts, instance, domain, platform, device_type
    FROM tchap_stats.late_rows
    WHERE summary_group = 'monthly' AND visit_date = ANY(%(grown_days)s::date[])
)
