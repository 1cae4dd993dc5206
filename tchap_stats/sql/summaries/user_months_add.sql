-- Folds the days in %(days)s into tchap_stats.user_months: a user's month takes a day's
-- earliest visit when it comes before the month's (same order as user_months.sql), and a
-- user new to the month is added. Exact when no row the summaries saw is gone since.
-- The days' rows are sorted on a 64-bit hash of the user id first (integer comparisons;
-- the id itself follows, so a collision changes nothing), and user_months is reached by
-- (month, user_id): no plan here reads more of it than the users of the days' months.
-- Those are read once: the rows to change are kept with their location (ctid), and the
-- update reaches just them (a TID scan), so nights that change nothing read the month once
-- (0.35 s instead of 0.55 to 0.85 s with an update and an insert that each joined it).
WITH candidate AS (
    SELECT DISTINCT ON (hashtextextended(user_id, 0), user_id,
                        date_trunc('month', visit_date))
           user_id, date_trunc('month', visit_date)::date AS month, instance, domain,
           visit_ts
    FROM {day_rows} AS day_rows
    WHERE device_type <> 'Autre'
    ORDER BY hashtextextended(user_id, 0), user_id, date_trunc('month', visit_date),
             visit_ts, instance COLLATE "C", domain COLLATE "C"
), changes AS MATERIALIZED (
    SELECT c.*, u.ctid AS held
    FROM candidate AS c
    LEFT JOIN {target} AS u
      ON u.month = c.month AND u.user_id = c.user_id AND u.month = ANY(%(months)s::date[])
    WHERE u.user_id IS NULL
       OR (c.visit_ts, c.instance COLLATE "C", c.domain COLLATE "C")
          < (u.first_visit_ts, u.instance COLLATE "C", u.domain COLLATE "C")
), earlier AS (
    UPDATE {target} AS u
    SET instance = c.instance, domain = c.domain, first_visit_ts = c.visit_ts
    FROM changes AS c
    WHERE u.ctid = ANY(ARRAY(SELECT held FROM changes WHERE held IS NOT NULL))
      AND u.ctid = c.held
)
INSERT INTO {target} (user_id, month, instance, domain, first_visit_ts)
SELECT user_id, month, instance, domain, visit_ts FROM changes WHERE held IS NULL;
