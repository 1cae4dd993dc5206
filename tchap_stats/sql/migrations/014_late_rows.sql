-- The rows a load writes into a day that held rows already (late rows, and rows that
-- replace stored ones with an earlier visit), so that each summary group folds just those
-- into its summaries rather than re-reading the whole day (a night whose file holds late
-- rows for the 7 days before it: docs/design.md, "Late rows"). The load writes them with no
-- group, in its transaction; the refresh hands them out with the days, one copy per group
-- (summaries/summary_queue.sql), and each group deletes its copy of the days it consumes.
-- `new_key`: the day did not hold the key; otherwise the row replaced one that the
-- summaries counted the same way (a replacement that changes a summarised column makes
-- the day rewritten: re-read whole).
CREATE TABLE tchap_stats.late_rows (
    summary_group text        CHECK (summary_group IN ('daily', 'monthly')),
    visit_date    date        NOT NULL,
    new_key       boolean     NOT NULL,
    user_id       varchar     NOT NULL,
    device_id     varchar     NOT NULL,
    visit_ts      timestamptz NOT NULL,
    instance      varchar     NOT NULL,
    domain        varchar     NOT NULL,
    platform      varchar     NOT NULL,
    device_type   varchar     NOT NULL
);
CREATE INDEX late_rows_group_day_idx ON tchap_stats.late_rows (summary_group, visit_date);

-- A grown day's users are looked up by user in the days around it (whether a late visit
-- changes who was active in the 30 days ending on each of the days after it): by a 64-bit
-- hash of the user id, then the day (ids compared after the hash: a collision changes
-- nothing).
CREATE INDEX user_visits_daily_user_hash_day_idx ON tchap_stats.user_visits_daily
    (hashtextextended(user_id, 0), day);

-- Days queued before this migration have no late rows: re-read them whole.
UPDATE tchap_stats.changed_days SET rewritten = true WHERE NOT fresh AND NOT rewritten;
UPDATE tchap_stats.summary_queue SET rewritten = true WHERE NOT fresh AND NOT rewritten;
