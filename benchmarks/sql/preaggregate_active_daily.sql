-- DuckDB twin of sql/summaries/active_daily.sql: distinct users and devices of one day,
-- overall and by instance, domain and platform, from the staged rows of that day
-- (the loadable rows, as in preaggregate_user_visits_daily.sql). Same method as the
-- PostgreSQL file: each row unpivoted into its four (dimension, value) pairs, grouped per
-- user (a user's rows are its devices: the key is day, user, device), then per value.
-- The unpivot is two lists unnested side by side (DuckDB zips unnests of one SELECT):
-- a LATERAL VALUES that references the row becomes a join in DuckDB.
SELECT day, dimension, value, count(*) AS users, sum(devices) AS devices
FROM (
    SELECT day, dimension, value, user_id, count(*) AS devices
    FROM (
        SELECT v.visit_date AS day, v.user_id,
               unnest(['overall', 'instance', 'domain', 'platform']) AS dimension,
               unnest(['', v.instance, v.domain, v.platform]) AS value
        FROM ({loadable_rows}) AS v
    ) AS pairs
    GROUP BY day, dimension, value, user_id
) AS per_user
GROUP BY day, dimension, value
