(  -- The rows of the days %(days)s added to their months (user_devices_monthly_add.sql,
   -- user_months_add.sql): from the raw table (%(raw_days)s), except for the grown days
   -- %(grown_days)s, whose rows loads added are read instead (the group's copy).
    SELECT visit_date, user_id, device_id, visit_ts, instance, domain, platform, device_type
    FROM public.user_daily_visits
    WHERE visit_date = ANY(%(raw_days)s::date[])  -- not the grown days' blocks too
    UNION ALL
    SELECT visit_date, user_id, device_id, visit_ts, instance, domain, platform, device_type
    FROM tchap_stats.late_rows
    WHERE summary_group = {group} AND visit_date = ANY(%(grown_days)s::date[])
)
