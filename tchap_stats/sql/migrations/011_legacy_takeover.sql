-- The takeover of a database of the old system (`tchap-stats migrate-legacy`,
-- tchap_stats/legacy.py). Until its switch, the new layout is built in schema legacy_new
-- (every migration applied there, public's objects included) while the old tables keep
-- their names in public and keep answering; the switch then moves the old relations to
-- schema legacy_old and the new ones to public in one transaction. On a database that never
-- held the old system, these tables stay empty.

-- The takeover itself: its zone (the new visit_date and the months follow it), the
-- migrations applied to the staging schema (recorded in schema_version by the switch),
-- when the units were planned, when it switched, when --finish dropped the old tables.
CREATE TABLE tchap_stats.legacy_takeover (
    singleton       boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    timezone        text        NOT NULL,
    staged_versions integer[]   NOT NULL,
    started_at      timestamptz NOT NULL DEFAULT now(),
    planned_at      timestamptz,
    switched_at     timestamptz,
    finished_at     timestamptz
);

-- The units of work: a month of the old user_daily_visits (month of visit_ts in the zone),
-- or a whole old export table (month NULL). rows_planned is the count the plan found; the
-- other figures are written in the transaction that moves the unit, once its count and
-- checksum matched on both sides (moved_at NULL: not moved yet), with the month's days in
-- changed_days for the summaries, which a refresh beside the moves then consumes. Old rows
-- read = rows_new + duplicates_merged + rows_skipped.
CREATE TABLE tchap_stats.legacy_units (
    relation          text        NOT NULL,
    month             date,
    rows_planned      bigint,
    rows_old          bigint,            -- old rows read
    rows_new          bigint,            -- rows written (one per key)
    duplicates_merged bigint,            -- old rows merged into another row of their key
    rows_skipped      bigint,            -- NULL where the new table requires a value: left
                                         -- in the old table (legacy_old)
    days_corrected    bigint,            -- visits whose old visit_date was another day
    days_filled       bigint,            -- visits that had no visit_date yet
    classified        bigint,            -- visits that had no platform or device type yet
    checksum          numeric,           -- sum of hashtextextended over key and winner
    seconds           double precision,  -- moving and checking it
    moved_at          timestamptz
);
CREATE UNIQUE INDEX legacy_units_unit_idx
    ON tchap_stats.legacy_units (relation, coalesce(month, '-infinity'::date));

-- The summary refreshes beside the moves: the rows of the months each one summarised and
-- its seconds (the budget's summary rate). Apart from legacy_units, which the moves rewrite
-- under REPEATABLE READ, so that a refresh never makes a move fail to serialize.
CREATE TABLE tchap_stats.legacy_refreshes (
    refreshed_at timestamptz      NOT NULL DEFAULT now(),
    months       date[]           NOT NULL,
    rows_old     bigint           NOT NULL,
    seconds      double precision NOT NULL
);

-- Writes to the old tables after the takeover started (the old system may still run):
-- triggers on the old tables note the month (user_daily_visits) or the table they changed,
-- and a unit with a change noted after it was moved is moved again. No key: writers
-- only ever append, so the old system never waits on the takeover.
CREATE TABLE tchap_stats.legacy_changes (
    relation text        NOT NULL,
    month    date,
    noted_at timestamptz NOT NULL DEFAULT now()
);

-- The triggers' function: statement-level, reading the transition table `changed` (and
-- `changed_before` for updates).
CREATE FUNCTION tchap_stats.legacy_note_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        INSERT INTO tchap_stats.legacy_changes (relation, month)
        SELECT relation, month FROM tchap_stats.legacy_units WHERE relation = TG_TABLE_NAME;
    ELSIF TG_TABLE_NAME <> 'user_daily_visits' THEN
        IF EXISTS (SELECT FROM changed) THEN
            INSERT INTO tchap_stats.legacy_changes (relation, month)
            VALUES (TG_TABLE_NAME, NULL);
        END IF;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO tchap_stats.legacy_changes (relation, month)
        SELECT TG_TABLE_NAME, month FROM (
            SELECT date_trunc('month', visit_ts AT TIME ZONE {timezone})::date FROM changed
            UNION
            SELECT date_trunc('month', visit_ts AT TIME ZONE {timezone})::date
            FROM changed_before) AS m(month);
    ELSE
        INSERT INTO tchap_stats.legacy_changes (relation, month)
        SELECT DISTINCT TG_TABLE_NAME,
               date_trunc('month', visit_ts AT TIME ZONE {timezone})::date
        FROM changed;
    END IF;
    RETURN NULL;
END
$$;
