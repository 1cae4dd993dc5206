-- Appends the fresh days %(days)s, all later than every day the summaries held, to
-- tchap_stats.active_rolling_30d without re-reading the window: a user active on day D
-- whose previous active day P (among the new days, else from rolling_last_active) is
-- known is newly counted on days max(D, P + 30) .. D + 29, the days no earlier visit of
-- theirs covered. Those spans become +1/-1 steps summed day by day, and are added to the
-- rows already there (provisional rows of days after the last one, included).
WITH active AS (
    SELECT DISTINCT day, user_id, dimension, value
    FROM tchap_stats.daily_activity
    WHERE day = ANY(%(days)s::date[])
), spans AS (
    SELECT a.dimension, a.value,
           greatest(a.day, coalesce(lag(a.day) OVER w, l.last_day) + 30) AS first_day,
           a.day + 29 AS last_day
    FROM active AS a
    LEFT JOIN tchap_stats.rolling_last_active AS l USING (dimension, value, user_id)
    WINDOW w AS (PARTITION BY a.dimension, a.value, a.user_id ORDER BY a.day)
), steps AS (
    SELECT dimension, value, day, sum(step) AS step
    FROM (SELECT dimension, value, first_day AS day, 1 AS step FROM spans
          WHERE first_day <= last_day
          UNION ALL
          SELECT dimension, value, last_day + 1, -1 FROM spans
          WHERE first_day <= last_day) AS both_ends
    GROUP BY 1, 2, 3
), counted AS (
    SELECT days.day, dv.dimension, dv.value,
           sum(coalesce(s.step, 0)) OVER (PARTITION BY dv.dimension, dv.value
                                          ORDER BY days.day) AS users
    FROM generate_series(%(first_day)s::date, %(last_day)s::date + 29, '1 day') AS days(day)
    CROSS JOIN (SELECT DISTINCT dimension, value FROM steps) AS dv
    LEFT JOIN steps AS s
      ON s.day = days.day AND s.dimension = dv.dimension AND s.value = dv.value
)
INSERT INTO tchap_stats.active_rolling_30d AS r (day, dimension, value, users)
SELECT day, dimension, value, users FROM counted WHERE users > 0
ON CONFLICT (day, dimension, value) DO UPDATE SET users = r.users + excluded.users;
