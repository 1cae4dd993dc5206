-- tchap_stats.active_daily for the days in %(days)s: distinct users and devices per day,
-- overall and by instance, domain and platform. {target}: the table, or check's copy.
INSERT INTO {target} (day, dimension, value, users, devices)
SELECT visit_date,
       CASE WHEN GROUPING(instance) = 0 THEN 'instance'
            WHEN GROUPING(domain) = 0 THEN 'domain'
            WHEN GROUPING(platform) = 0 THEN 'platform'
            ELSE 'overall' END,
       coalesce(instance, domain, platform, ''),
       count(DISTINCT user_id),
       count(DISTINCT (user_id, device_id))
FROM public.user_daily_visits
WHERE visit_date = ANY(%(days)s::date[])
GROUP BY GROUPING SETS ((visit_date), (visit_date, instance), (visit_date, domain),
                        (visit_date, platform));
