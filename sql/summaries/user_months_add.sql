-- Folds the days in %(days)s into tchap_stats.user_months: a user's month takes a day's
-- earliest visit when it comes before the month's (same order as user_months.sql), and a
-- user new to the month is added. Exact when no row the summaries saw is gone since.
WITH candidate AS (
    SELECT DISTINCT ON (user_id, date_trunc('month', visit_date))
           user_id, date_trunc('month', visit_date)::date AS month, instance, domain,
           visit_ts
    FROM public.user_daily_visits
    WHERE visit_date = ANY(%(days)s::date[]) AND device_type <> 'Autre'
    ORDER BY user_id, date_trunc('month', visit_date), visit_ts,
             instance COLLATE "C", domain COLLATE "C"
), earlier AS (
    UPDATE {target} AS u
    SET instance = c.instance, domain = c.domain, first_visit_ts = c.visit_ts
    FROM candidate AS c
    WHERE u.user_id = c.user_id AND u.month = c.month
      AND (c.visit_ts, c.instance COLLATE "C", c.domain COLLATE "C")
          < (u.first_visit_ts, u.instance COLLATE "C", u.domain COLLATE "C")
)
INSERT INTO {target} (user_id, month, instance, domain, first_visit_ts)
SELECT c.user_id, c.month, c.instance, c.domain, c.visit_ts
FROM candidate AS c
WHERE NOT EXISTS (SELECT 1 FROM {target} AS u
                  WHERE u.user_id = c.user_id AND u.month = c.month);
