-- Hands the days loads changed (tchap_stats.changed_days, export user_daily_visits) out to
-- every summary group's queue (%(groups)s), merged with what a group has not consumed yet:
-- its `fresh` stays as the group first found the day, `rewritten` accumulates, and the
-- latest load is remembered. The rows loads wrote into days that held rows already
-- (tchap_stats.late_rows) are handed out too, a copy per group, in the same statement: a
-- load that commits meanwhile leaves both its day and its rows for the next refresh.
-- Returns the days handed out.
WITH handed AS (
    DELETE FROM tchap_stats.changed_days
    WHERE export = 'user_daily_visits'
    RETURNING day, last_load_id, fresh, rewritten
), late AS (
    DELETE FROM tchap_stats.late_rows
    WHERE summary_group IS NULL
    RETURNING *
), late_handed AS (
    INSERT INTO tchap_stats.late_rows
        (summary_group, visit_date, new_key, user_id, device_id, visit_ts, instance, domain,
         platform, device_type)
    SELECT g.summary_group, l.visit_date, l.new_key, l.user_id, l.device_id, l.visit_ts,
           l.instance, l.domain, l.platform, l.device_type
    FROM late AS l
    CROSS JOIN unnest(%(groups)s::text[]) AS g(summary_group)
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
