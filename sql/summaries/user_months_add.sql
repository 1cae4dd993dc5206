-- Folds the days in %(days)s into tchap_stats.user_months: a user's month takes a day's
-- earliest visit when it comes before the month's (same order as user_months.sql), and a
-- user new to the month is added. Exact when no row the summaries saw is gone since.
-- Each user's earliest time of the days is found by hashing; only the users whose month
-- it may change (new to it, or at or before its time) have their tie-break sorted out.
-- The month conditions on {target} let it read those months' rows, not every month's.
WITH earliest AS (
    SELECT user_id, date_trunc('month', visit_date)::date AS month, min(visit_ts) AS visit_ts
    FROM public.user_daily_visits
    WHERE visit_date = ANY(%(days)s::date[]) AND device_type <> 'Autre'
    GROUP BY 1, 2
), held AS (
    SELECT user_id, month, first_visit_ts FROM {target}
    WHERE month = ANY(%(months)s::date[])
), contending AS (
    SELECT e.user_id, e.month, e.visit_ts
    FROM earliest AS e
    LEFT JOIN held AS h ON h.user_id = e.user_id AND h.month = e.month
    WHERE h.user_id IS NULL OR e.visit_ts <= h.first_visit_ts
), candidate AS (
    SELECT DISTINCT ON (c.user_id, c.month)
           c.user_id, c.month, v.instance, v.domain, v.visit_ts
    FROM contending AS c
    JOIN public.user_daily_visits AS v
      ON v.user_id = c.user_id AND v.visit_ts = c.visit_ts
     AND date_trunc('month', v.visit_date)::date = c.month
    WHERE v.visit_date = ANY(%(days)s::date[]) AND v.device_type <> 'Autre'
    ORDER BY c.user_id, c.month, v.instance COLLATE "C", v.domain COLLATE "C"
), earlier AS (
    UPDATE {target} AS u
    SET instance = c.instance, domain = c.domain, first_visit_ts = c.visit_ts
    FROM candidate AS c
    WHERE u.user_id = c.user_id AND u.month = c.month
      AND u.month = ANY(%(months)s::date[])
      AND (c.visit_ts, c.instance COLLATE "C", c.domain COLLATE "C")
          < (u.first_visit_ts, u.instance COLLATE "C", u.domain COLLATE "C")
)
INSERT INTO {target} (user_id, month, instance, domain, first_visit_ts)
SELECT c.user_id, c.month, c.instance, c.domain, c.visit_ts
FROM candidate AS c
WHERE NOT EXISTS (SELECT 1 FROM held AS h
                  WHERE h.user_id = c.user_id AND h.month = c.month);
