-- Folds the days in %(days)s into tchap_stats.user_months: a user's month takes a day's
-- earliest visit when it comes before the month's (same order as user_months.sql), and a
-- user new to the month is added. Exact when no row the summaries saw is gone since.
-- The days' rows are sorted on a 64-bit hash of the user id first (integer comparisons;
-- the id itself follows, so a collision changes nothing), and user_months is reached by
-- (month, user_id): no plan here reads more of it than the users of the days' months.
WITH candidate AS (
    SELECT DISTINCT ON (hashtextextended(user_id, 0), user_id,
                        date_trunc('month', visit_date))
           user_id, date_trunc('month', visit_date)::date AS month, instance, domain,
           visit_ts
    FROM public.user_daily_visits
    WHERE visit_date = ANY(%(days)s::date[]) AND device_type <> 'Autre'
    ORDER BY hashtextextended(user_id, 0), user_id, date_trunc('month', visit_date),
             visit_ts, instance COLLATE "C", domain COLLATE "C"
), earlier AS (
    UPDATE {target} AS u
    SET instance = c.instance, domain = c.domain, first_visit_ts = c.visit_ts
    FROM candidate AS c
    WHERE u.month = c.month AND u.user_id = c.user_id
      AND u.month = ANY(%(months)s::date[])
      AND (c.visit_ts, c.instance COLLATE "C", c.domain COLLATE "C")
          < (u.first_visit_ts, u.instance COLLATE "C", u.domain COLLATE "C")
)
INSERT INTO {target} (user_id, month, instance, domain, first_visit_ts)
SELECT c.user_id, c.month, c.instance, c.domain, c.visit_ts
FROM candidate AS c
WHERE NOT EXISTS (SELECT FROM {target} AS u
                  WHERE u.month = c.month AND u.user_id = c.user_id
                    AND u.month = ANY(%(months)s::date[]));
