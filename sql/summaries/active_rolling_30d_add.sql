-- Appends one fresh day %(day)s, later than every day the summaries held, to
-- tchap_stats.active_rolling_30d without re-reading the window. A user active that day
-- under a dimension value, whose latest earlier active day under it is P (from
-- rolling_last_active), is newly counted on days max(day, P + 30) .. day + 29: the days no
-- earlier visit of theirs covered. Those spans all end on day + 29, so each is one step up
-- on its first day; the steps are summed day by day and added to the rows there (the
-- provisional rows of the days after the last one included).
WITH today AS (
    SELECT DISTINCT user_id, dimension, value
    FROM tchap_stats.daily_activity
    WHERE day = %(day)s
), earlier AS (
    SELECT l.user_id, d.dimension, d.value, max(d.last_day) AS last_day
    FROM tchap_stats.rolling_last_active AS l
    CROSS JOIN LATERAL (VALUES
        ('overall', '', l.last_day), ('instance', l.instance, l.last_day),
        ('domain', l.domain, l.last_day), ('platform', 'Web', l.last_web),
        ('platform', 'Mobile', l.last_mobile), ('platform', 'Autre', l.last_other)
    ) AS d(dimension, value, last_day)
    WHERE d.last_day IS NOT NULL AND l.user_id IN (SELECT user_id FROM today)
    GROUP BY 1, 2, 3
), steps AS (
    SELECT t.dimension, t.value, greatest(%(day)s::date, e.last_day + 30) AS day,
           count(*) AS step
    FROM today AS t
    LEFT JOIN earlier AS e USING (user_id, dimension, value)
    GROUP BY 1, 2, 3
), counted AS (
    SELECT days.day, dv.dimension, dv.value,
           sum(coalesce(s.step, 0)) OVER (PARTITION BY dv.dimension, dv.value
                                          ORDER BY days.day) AS users
    FROM generate_series(%(day)s::date, %(day)s::date + 29, '1 day') AS days(day)
    CROSS JOIN (SELECT DISTINCT dimension, value FROM steps) AS dv
    LEFT JOIN steps AS s
      ON s.day = days.day AND s.dimension = dv.dimension AND s.value = dv.value
)
INSERT INTO tchap_stats.active_rolling_30d AS r (day, dimension, value, users)
SELECT day, dimension, value, users FROM counted WHERE users > 0
ON CONFLICT (day, dimension, value) DO UPDATE SET users = r.users + excluded.users;
