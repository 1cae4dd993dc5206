-- Appends one fresh day %(day)s, later than every day the summaries held, to
-- tchap_stats.active_rolling_30d without re-reading the window. A user active that day
-- under a dimension value, whose latest earlier active day under it is P (from
-- rolling_last_active), is newly counted on days max(day, P + 30) .. day + 29: the days no
-- earlier visit of theirs covered. Those spans all end on day + 29, so each is one step up
-- on its first day; the steps are summed day by day and added to the rows there (the
-- provisional rows of the days after the last one included). A user with one instance and
-- domain, today and before (nearly all), has each dimension's previous day read off that
-- pair of rows; the others go the general way, per dimension value. The day's rows are
-- in rolling_today (rolling_today.sql).
WITH earlier AS (
    SELECT l.* FROM tchap_stats.rolling_last_active AS l
    WHERE EXISTS (SELECT FROM rolling_today AS t WHERE t.user_id = l.user_id)
), several AS (
    SELECT user_id FROM rolling_today GROUP BY user_id HAVING count(*) > 1
    UNION
    SELECT user_id FROM earlier GROUP BY user_id HAVING count(*) > 1
), single AS (
    SELECT d.dimension, d.value, d.previous
    FROM rolling_today AS t
    LEFT JOIN earlier AS e ON e.user_id = t.user_id
    CROSS JOIN LATERAL (VALUES
        ('overall', '', e.last_day, true),
        ('instance', t.instance, CASE WHEN e.instance = t.instance THEN e.last_day END, true),
        ('domain', t.domain, CASE WHEN e.domain = t.domain THEN e.last_day END, true),
        ('platform', 'Web', e.last_web, t.web),
        ('platform', 'Mobile', e.last_mobile, t.mobile),
        ('platform', 'Autre', e.last_other, t.other)
    ) AS d(dimension, value, previous, active)
    WHERE d.active AND t.user_id NOT IN (SELECT user_id FROM several)
), general_today AS (
    SELECT DISTINCT user_id, dimension, value
    FROM tchap_stats.daily_activity
    WHERE day = %(day)s AND user_id IN (SELECT user_id FROM several)
), general_earlier AS (
    SELECT e.user_id, d.dimension, d.value, max(d.last_day) AS last_day
    FROM earlier AS e
    CROSS JOIN LATERAL (VALUES
        ('overall', '', e.last_day), ('instance', e.instance, e.last_day),
        ('domain', e.domain, e.last_day), ('platform', 'Web', e.last_web),
        ('platform', 'Mobile', e.last_mobile), ('platform', 'Autre', e.last_other)
    ) AS d(dimension, value, last_day)
    WHERE d.last_day IS NOT NULL AND e.user_id IN (SELECT user_id FROM several)
    GROUP BY 1, 2, 3
), starts AS (
    SELECT dimension, value, previous FROM single
    UNION ALL
    SELECT t.dimension, t.value, e.last_day
    FROM general_today AS t
    LEFT JOIN general_earlier AS e USING (user_id, dimension, value)
), steps AS (
    SELECT dimension, value, greatest(%(day)s::date, previous + 30) AS day, count(*) AS step
    FROM starts
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
