-- tchap-stats core schema: the ledger (schema tchap_stats) and the partitioned raw table.

CREATE SCHEMA IF NOT EXISTS tchap_stats;

-- One row per file processed. status: running → loaded | failed; a run killed mid-way
-- leaves 'running', which the next run turns into 'interrupted' (its backend is gone).
-- The data of a file and its 'loaded' status are committed in the same transaction.
CREATE TABLE tchap_stats.loads (
    load_id         bigserial PRIMARY KEY,
    export          text        NOT NULL,
    file_key        text        NOT NULL,
    etag            text,
    size_bytes      bigint,
    extraction_date date,
    mode            text        NOT NULL CHECK (mode IN ('merge', 'replace')),
    status          text        NOT NULL CHECK (status IN ('running', 'loaded', 'failed', 'interrupted')),
    rows_read       bigint,
    rows_loaded     bigint,
    rows_duplicate  bigint,
    rows_rejected   bigint,
    days_changed    integer,
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    backend_pid     integer     NOT NULL DEFAULT pg_backend_pid(),
    error           text
);
CREATE INDEX loads_file_idx ON tchap_stats.loads (export, file_key, etag) WHERE status = 'loaded';
CREATE INDEX loads_running_idx ON tchap_stats.loads (load_id) WHERE status = 'running';

-- Lines that could not be loaded, with where they were and why.
-- line: the record's line in the file (header = line 1), as the CSV reader counts records.
CREATE TABLE tchap_stats.rejects (
    load_id     bigint NOT NULL REFERENCES tchap_stats.loads ON DELETE CASCADE,
    file_key    text   NOT NULL,
    line        bigint,
    column_name text,
    reason      text   NOT NULL,
    raw_line    text
);
CREATE INDEX rejects_load_idx ON tchap_stats.rejects (load_id);

-- What each load did to each day it touched.
CREATE TABLE tchap_stats.load_days (
    load_id        bigint  NOT NULL REFERENCES tchap_stats.loads ON DELETE CASCADE,
    day            date    NOT NULL,
    rows_in_file   bigint  NOT NULL,  -- after in-file deduplication
    rows_inserted  bigint  NOT NULL,  -- keys new to the day
    rows_replaced  bigint  NOT NULL,  -- keys whose row this file's row won over
    rows_removed   bigint  NOT NULL,  -- rows deleted by --replace
    PRIMARY KEY (load_id, day)
);

-- Days whose content changed and whose summaries have not been recomputed yet.
-- Loads add to it in the transaction that changes the day; the summary refresh removes
-- the days it consumed in the transaction that rewrites their summary rows.
CREATE TABLE tchap_stats.changed_days (
    export        text        NOT NULL,
    day           date        NOT NULL,
    last_load_id  bigint      NOT NULL,
    changed_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (export, day)
);

-- Raw visits, one row per (visit_date, user_id, device_id), partitioned by month of
-- visit_date (partitions created on demand by the loader). The loader enforces the key;
-- `tchap-stats check` verifies it. The BRIN index finds a day inside its month cheaply.
CREATE TABLE public.user_daily_visits (
    user_id     varchar     NOT NULL,
    device_id   varchar     NOT NULL,
    visit_ts    timestamptz NOT NULL,
    visit_date  date        NOT NULL,
    user_agent  varchar     NOT NULL,
    instance    varchar     NOT NULL,
    domain      varchar     NOT NULL,
    platform    varchar     NOT NULL,
    device_type varchar     NOT NULL
) PARTITION BY RANGE (visit_date);
CREATE INDEX user_daily_visits_visit_date_brin
    ON public.user_daily_visits USING brin (visit_date) WITH (pages_per_range = 32, autosummarize = on);
