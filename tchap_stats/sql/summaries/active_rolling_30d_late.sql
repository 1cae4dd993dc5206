-- Adds to tchap_stats.active_rolling_30d what the grown days' new visits change (run after
-- late_gained.sql, before user_visits_daily is added to). A user counts on day X under a
-- value when active under it in X - 29 .. X. A gained day g of a (user, value) is its latest
-- activity from g to the day before its next one (old, or gained later), within g .. g + 29;
-- it adds one there, except on the days an earlier old activity already covers (through the
-- latest before g, plus 29). Each user's activity around g is read by (user hash, day).
-- Days after the latest summarised one stay provisional, as appending counts them.
WITH gained AS (
    SELECT g.*, lead(g.day) OVER (PARTITION BY g.user_id, g.dimension, g.value
                                  ORDER BY g.day) AS next_gained
    FROM late_gained AS g
), spans AS (
    SELECT g.dimension, g.value,
           greatest(g.day, before.day + 30) AS first_day,
           least(g.day + 29, least(g.next_gained, after.day) - 1) AS last_day
    FROM gained AS g
    CROSS JOIN LATERAL (
        SELECT max(a.day) AS day FROM tchap_stats.daily_activity AS a
        WHERE hashtextextended(a.user_id, 0) = hashtextextended(g.user_id, 0)
          AND a.user_id = g.user_id AND a.dimension = g.dimension AND a.value = g.value
          AND a.day BETWEEN g.day - 29 AND g.day - 1) AS before
    CROSS JOIN LATERAL (
        SELECT min(a.day) AS day FROM tchap_stats.daily_activity AS a
        WHERE hashtextextended(a.user_id, 0) = hashtextextended(g.user_id, 0)
          AND a.user_id = g.user_id AND a.dimension = g.dimension AND a.value = g.value
          AND a.day BETWEEN g.day + 1 AND g.day + 29) AS after
)
INSERT INTO tchap_stats.active_rolling_30d AS r (day, dimension, value, users)
SELECT x.day::date, s.dimension, s.value, count(*)
FROM spans AS s
CROSS JOIN LATERAL generate_series(s.first_day, s.last_day, '1 day') AS x(day)
GROUP BY 1, 2, 3
ON CONFLICT (day, dimension, value) DO UPDATE SET users = r.users + excluded.users;
