-- The lake (tchap_stats/lake.py): closed months of the raw partitioned tables moved to
-- Parquet files, their catalog (DuckLake's) in schema tchap_stats_lake of this database.
--
-- A month is in the lake exactly when it has a row here. `archive` inserts the row and
-- drops the month's partition in one transaction, after writing the month to the lake and
-- verifying it there; `restore` copies the month back into its partition, verifies it and
-- deletes the row in one transaction, then removes the lake's copy. Lake rows of a month
-- without a row here are the leftovers of an interrupted archive or restore: nothing reads
-- them, and the next archive or restore removes them.
CREATE SCHEMA IF NOT EXISTS tchap_stats_lake;

CREATE TABLE tchap_stats.archived_months (
    export          text        NOT NULL,
    month           date        NOT NULL CHECK (extract(day FROM month) = 1),
    rows            bigint      NOT NULL,
    -- The sum of an md5-derived 60-bit number per row (tchap_stats/lake.py, row_checksum):
    -- computed alike by PostgreSQL and DuckDB, whatever the order of the rows.
    checksum        numeric     NOT NULL,
    partition_bytes bigint      NOT NULL,  -- the partition with its indexes, when dropped
    lake_bytes      bigint      NOT NULL,  -- its Parquet files
    seconds         real        NOT NULL,
    archived_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (export, month)
);
