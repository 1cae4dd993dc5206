-- Hands the days loads changed (tchap_stats.changed_days, export user_daily_visits) out to
-- every summary group's queue (%(groups)s), merged with what a group has not consumed yet:
-- its `fresh` stays as the group first found the day, `rewritten` accumulates, and the
-- latest load is remembered. Returns the days handed out.
WITH handed AS (
    DELETE FROM tchap_stats.changed_days
    WHERE export = 'user_daily_visits'
    RETURNING day, last_load_id, fresh, rewritten
)
INSERT INTO tchap_stats.summary_queue AS q
    (summary_group, day, last_load_id, fresh, rewritten)
SELECT g.summary_group, h.day, h.last_load_id, h.fresh, h.rewritten
FROM handed AS h
CROSS JOIN unnest(%(groups)s::text[]) AS g(summary_group)
ON CONFLICT (summary_group, day) DO UPDATE
SET last_load_id = excluded.last_load_id, queued_at = now(),
    rewritten = q.rewritten OR excluded.rewritten
RETURNING day;
