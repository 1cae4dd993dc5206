-- Every line of the file, typed and checked, in file order: DuckDB preserves insertion
-- order, so rowid + 1 is a line's ordinal among the records the CSV reader accepted.
-- Materialised once (DuckDB offloads it to its spill directory beyond its memory cap).
CREATE TABLE {checked} AS
{typed_rows};
