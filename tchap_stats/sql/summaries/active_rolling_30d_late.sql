-- Adds to tchap_stats.active_rolling_30d what the grown days' new visits change (run after
-- late_gained.sql, before user_visits_daily is added to). A user counts on day X under a
-- value when active under it in X - 29 .. X. A gained day g of a (user, value) is its latest
-- activity from g to the day before its next one (held, or gained later), within g .. g + 29;
-- it adds one there, except on the days an earlier held activity already covers (through
-- the latest before g, plus 29). The activity of the users who gained is read once per
-- user, over the grown days and 29 days either side, by (day, user hash): one descent of
-- the index per day of that range (migration 017).
-- Days after the latest summarised one stay provisional, as appending counts them.
WITH gained AS (
    SELECT g.*, lead(g.day) OVER (PARTITION BY g.user_id, g.dimension, g.value
                                  ORDER BY g.day) AS next_gained
    FROM late_gained AS g
), held AS (  -- a lookup per user (OFFSET 0 keeps it so): joined instead, the planner
    -- read the whole range of days by day (2.5 million rows for 1,138 users: 1.1 s)
    SELECT u.user_id, a.dimension, a.value, a.day
    FROM (SELECT DISTINCT user_id FROM late_gained) AS u
    CROSS JOIN LATERAL (
        SELECT a.dimension, a.value, a.day
        FROM tchap_stats.daily_activity AS a
        WHERE a.day = ANY(ARRAY(
                  SELECT generate_series(min(day) - 29, max(day) + 29, '1 day')::date
                  FROM late_gained))
          AND hashtextextended(a.user_id, 0) = hashtextextended(u.user_id, 0)
          AND a.user_id = u.user_id
        OFFSET 0
    ) AS a
), around AS (
    SELECT g.user_id, g.dimension, g.value, g.day, g.next_gained,
           max(h.day) FILTER (WHERE h.day BETWEEN g.day - 29 AND g.day - 1) AS before,
           min(h.day) FILTER (WHERE h.day BETWEEN g.day + 1 AND g.day + 29) AS after
    FROM gained AS g
    LEFT JOIN held AS h USING (user_id, dimension, value)
    GROUP BY 1, 2, 3, 4, 5
), spans AS (
    SELECT dimension, value, greatest(day, before + 30) AS first_day,
           least(day + 29, least(next_gained, after) - 1) AS last_day
    FROM around
)
INSERT INTO tchap_stats.active_rolling_30d AS r (day, dimension, value, users)
SELECT x.day::date, s.dimension, s.value, count(*)
FROM spans AS s
CROSS JOIN LATERAL generate_series(s.first_day, s.last_day, '1 day') AS x(day)
GROUP BY 1, 2, 3
ON CONFLICT (day, dimension, value) DO UPDATE SET users = r.users + excluded.users;
