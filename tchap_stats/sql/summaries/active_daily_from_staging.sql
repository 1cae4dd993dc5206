-- tchap_stats.active_daily for the days in %(days)s from the rows DuckDB pre-aggregated
-- while staging the load that found each day empty (active_daily_staged, migration 007),
-- when that load is still the day's latest change (as the daily group's queue knows it).
-- Returns the days it filled; the others are recomputed by active_daily.sql. `check`
-- always recomputes, and so compares the two paths.
INSERT INTO tchap_stats.active_daily (day, dimension, value, users, devices)
SELECT s.day, s.dimension, s.value, s.users, s.devices
FROM tchap_stats.active_daily_staged AS s
JOIN tchap_stats.summary_queue AS q
  ON q.summary_group = 'daily' AND q.day = s.day AND q.last_load_id = s.load_id
WHERE s.day = ANY(%(days)s::date[])
RETURNING day;
