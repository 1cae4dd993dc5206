-- tchap_stats.active_daily rows computed by DuckDB while it staged a load, for the days that
-- load found empty: then the file's rows of the day are the whole day, and the day's counts
-- are known before any of it reaches PostgreSQL. They are written in the load's transaction;
-- the next refresh moves them into active_daily when the day's latest change
-- (changed_days.last_load_id) is still that load, and recomputes the day from the raw table
-- otherwise. Either way the refresh that consumes the day deletes them.
CREATE TABLE tchap_stats.active_daily_staged (
    load_id   bigint  NOT NULL REFERENCES tchap_stats.loads ON DELETE CASCADE,
    day       date    NOT NULL,
    dimension text    NOT NULL,
    value     varchar NOT NULL,
    users     bigint  NOT NULL,
    devices   bigint  NOT NULL,
    PRIMARY KEY (day, load_id, dimension, value)
);
