-- Second pass, only for a file with lines rejected by the checks of typed_rows.sql: the
-- table keeps the file's order (DuckDB preserves insertion order), so rowid + 1 is a
-- line's ordinal among the records the CSV reader accepted.
CREATE TABLE {checked} AS
SELECT reject_column, reject_reason, raw_line
FROM ({typed_rows});
