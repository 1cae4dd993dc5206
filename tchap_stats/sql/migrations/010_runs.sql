-- The run log: one row per sync, backfill or refresh, written at its start and its end on
-- the connection that holds the run lock (its backend_pid). A row left 'running' whose
-- backend is gone was killed: tchap_stats.runs_seen shows it so.
CREATE TABLE tchap_stats.runs (
    run_id          bigserial   PRIMARY KEY,
    command         text        NOT NULL,
    arguments       text        NOT NULL,  -- as typed, secrets masked
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    outcome         text        NOT NULL DEFAULT 'running'
                    CHECK (outcome IN ('running', 'ok', 'failed', 'missing', 'budget')),
    exit_code       integer,
    files_loaded    integer,
    files_skipped   integer,
    files_failed    integer,
    files_missing   integer,
    files_left      text[],  -- not attempted: the time budget ran out, or the database did
    rows_loaded     bigint,
    days_refreshed  integer,
    error           text,
    backend_pid     integer     NOT NULL DEFAULT pg_backend_pid()
);
CREATE INDEX runs_started_idx ON tchap_stats.runs (started_at DESC);

-- The runs, a killed one as 'killed' (its backend is gone, or another started since under
-- its pid), with its duration.
CREATE VIEW tchap_stats.runs_seen AS
SELECT r.run_id, r.command, r.arguments, r.started_at, r.finished_at,
       CASE WHEN r.outcome = 'running' AND NOT EXISTS (
                SELECT FROM pg_stat_activity AS a
                WHERE a.pid = r.backend_pid
                  AND (a.backend_start IS NULL OR a.backend_start <= r.started_at))
            THEN 'killed' ELSE r.outcome END AS outcome,
       r.exit_code, r.files_loaded, r.files_skipped, r.files_failed, r.files_missing,
       r.files_left, r.rows_loaded, r.days_refreshed, r.error,
       extract(epoch FROM coalesce(r.finished_at, now()) - r.started_at) AS seconds
FROM tchap_stats.runs AS r;

-- A freshness card per export, for Metabase: the last extraction day loaded, the days of
-- the last 7 (to yesterday) without a loaded file, and the last run's outcome and duration.
CREATE VIEW tchap_stats.freshness AS
WITH exports AS (
    SELECT export, max(extraction_date) AS last_day_loaded
    FROM tchap_stats.loads WHERE status = 'loaded' GROUP BY export
), last_run AS (
    SELECT outcome, started_at, seconds FROM tchap_stats.runs_seen
    WHERE command IN ('sync', 'backfill') ORDER BY started_at DESC LIMIT 1
)
SELECT e.export, e.last_day_loaded,
       tchap_stats.today() - e.last_day_loaded AS days_behind,
       (SELECT count(*) FROM generate_series(tchap_stats.today() - 7,
                                             tchap_stats.today() - 1, '1 day') AS d(day)
        WHERE NOT EXISTS (SELECT FROM tchap_stats.loads AS l
                          WHERE l.export = e.export AND l.status = 'loaded'
                            AND l.extraction_date = d.day::date))::integer
           AS days_missing_last_7,
       r.outcome AS last_run_outcome, r.started_at AS last_run_started_at,
       round(r.seconds::numeric, 1) AS last_run_seconds
FROM exports AS e LEFT JOIN last_run AS r ON true;
