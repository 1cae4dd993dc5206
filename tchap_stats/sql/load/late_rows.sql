-- Merge, step 0, for the export the summaries read (user_daily_visits): the incoming rows
-- the merge is about to write into a day that holds rows already, kept for the summaries
-- (tchap_stats.late_rows, migration 014), unassigned to a summary group until the refresh
-- hands them out: keys the day does not hold (new_key) and rows beating the stored one of
-- their key ({beats}, as in merge_delete_beaten.sql).
INSERT INTO tchap_stats.late_rows (visit_date, new_key, user_id, device_id, visit_ts,
                                   instance, domain, platform, device_type)
SELECT i.visit_date, t.user_id IS NULL, i.user_id, i.device_id, i.visit_ts, i.instance,
       i.domain, i.platform, i.device_type
FROM {incoming} AS i
LEFT JOIN {target} AS t ON {in_day} AND {key_match}
WHERE t.user_id IS NULL OR {beats};
