-- tchap_stats.active_monthly for the months in %(months)s: distinct users and devices per
-- month, overall and by instance, domain and platform. {target}: the table, or check's copy.
INSERT INTO {target} (month, dimension, value, users, devices)
SELECT month,
       CASE WHEN GROUPING(instance) = 0 THEN 'instance'
            WHEN GROUPING(domain) = 0 THEN 'domain'
            WHEN GROUPING(platform) = 0 THEN 'platform'
            ELSE 'overall' END,
       coalesce(instance, domain, platform, ''),
       count(DISTINCT user_id),
       count(DISTINCT (user_id, device_id))
FROM (
    SELECT date_trunc('month', visit_date)::date AS month, user_id, device_id, instance,
           domain, platform
    FROM public.user_daily_visits
    WHERE visit_date >= %(first)s AND visit_date < %(end)s  -- bounds, for partition pruning
      AND date_trunc('month', visit_date)::date = ANY(%(months)s::date[])
) AS visits
GROUP BY GROUPING SETS ((month), (month, instance), (month, domain), (month, platform));
