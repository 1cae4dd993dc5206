-- user_months is refreshed by a group of its own (summaries.MONTHS), which follows whichever
-- of the daily and the monthly groups ends first (summaries.refresh_changed). In the daily
-- group (014 to 017) it made that group's half the longer on the nights that add nothing
-- to their month, 29 in 31 of a stable month; in the monthly one (018) it ran after
-- user_devices_monthly_add, on the nights whose add is long: a month's 1st, the first night
-- after a bulk build, 5.98 s against 3.40 s before 018 (benchmarks/README.md, "Every night
-- of the month"). Since 018 the monthly group's queue and late rows are what user_months
-- has not consumed: the new group starts with a copy of them.
ALTER TABLE tchap_stats.summary_queue DROP CONSTRAINT summary_queue_summary_group_check;
ALTER TABLE tchap_stats.summary_queue ADD CONSTRAINT summary_queue_summary_group_check
    CHECK (summary_group IN ('daily', 'monthly', 'user_months'));
ALTER TABLE tchap_stats.late_rows DROP CONSTRAINT late_rows_summary_group_check;
ALTER TABLE tchap_stats.late_rows ADD CONSTRAINT late_rows_summary_group_check
    CHECK (summary_group IN ('daily', 'monthly', 'user_months'));

INSERT INTO tchap_stats.summary_queue
    (summary_group, day, last_load_id, fresh, rewritten, queued_at)
SELECT 'user_months', day, last_load_id, fresh, rewritten, queued_at
FROM tchap_stats.summary_queue WHERE summary_group = 'monthly';

INSERT INTO tchap_stats.late_rows
    (summary_group, visit_date, new_key, user_id, device_id, visit_ts, instance, domain,
     platform, device_type)
SELECT 'user_months', visit_date, new_key, user_id, device_id, visit_ts, instance, domain,
       platform, device_type
FROM tchap_stats.late_rows WHERE summary_group = 'monthly';
