-- DuckDB twin of sql/summaries/user_visits_daily.sql: the user_visits_daily rows of one day,
-- computed from the staged, deduplicated rows of that day (the rows that
-- sql/staging/loadable_rows.sql selects, with visit_date, user_id, instance, domain and the
-- derived platform). Columns in the order of the COPY target list.
SELECT visit_date AS day, user_id, instance, domain,
       count(*) AS visits_count,
       count(*) FILTER (WHERE platform = 'Web') AS web_visits_count,
       count(*) FILTER (WHERE platform = 'Mobile') AS mobile_visits_count,
       count(*) FILTER (WHERE platform = 'Autre') AS other_visits_count
FROM ({loadable_rows}) AS v
GROUP BY visit_date, user_id, instance, domain
