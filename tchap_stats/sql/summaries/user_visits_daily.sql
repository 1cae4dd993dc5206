-- tchap_stats.user_visits_daily for the days in %(days)s, from the raw table.
-- {target} is the summary table (incremental refresh) or a temporary copy (check).
INSERT INTO {target} (day, user_id, instance, domain, visits_count, web_visits_count,
                      mobile_visits_count, other_visits_count)
SELECT visit_date, user_id, instance, domain,
       count(*),
       count(*) FILTER (WHERE platform = 'Web'),
       count(*) FILTER (WHERE platform = 'Mobile'),
       count(*) FILTER (WHERE platform = 'Autre')
FROM public.user_daily_visits
WHERE visit_date = ANY(%(days)s::date[])
GROUP BY visit_date, user_id, instance, domain;
