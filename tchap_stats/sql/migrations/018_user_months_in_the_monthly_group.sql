-- user_months is refreshed with the monthly group again (summaries.USER_MONTHS), as in
-- migration 009: a night that adds nothing to its month, 29 nights in 31 of a stable month,
-- spent 0.2 s more in the daily group's half than in the monthly one's with it there
-- (benchmarks/README.md, "Every night of the month"). What the daily group had not
-- consumed yet may hold what user_months still lacks: its days are queued for the monthly
-- group too, and its late rows the monthly group's copy lacks copied to it. The monthly
-- group's other summaries add only what their month lacks (a rewritten day's month is
-- recomputed): adding such a day or row to them a second time changes nothing.
INSERT INTO tchap_stats.late_rows
    (summary_group, visit_date, new_key, user_id, device_id, visit_ts, instance, domain,
     platform, device_type)
SELECT 'monthly', visit_date, new_key, user_id, device_id, visit_ts, instance, domain,
       platform, device_type
FROM tchap_stats.late_rows WHERE summary_group = 'daily'
EXCEPT ALL
SELECT 'monthly', visit_date, new_key, user_id, device_id, visit_ts, instance, domain,
       platform, device_type
FROM tchap_stats.late_rows WHERE summary_group = 'monthly';

INSERT INTO tchap_stats.summary_queue AS q
    (summary_group, day, last_load_id, fresh, rewritten, queued_at)
SELECT 'monthly', day, last_load_id, fresh, rewritten, queued_at
FROM tchap_stats.summary_queue WHERE summary_group = 'daily'
ON CONFLICT (summary_group, day) DO UPDATE
SET rewritten = q.rewritten OR excluded.rewritten,
    last_load_id = greatest(q.last_load_id, excluded.last_load_id);
