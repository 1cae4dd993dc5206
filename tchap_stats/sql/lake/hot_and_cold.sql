-- What the summaries read while months of the range are in the lake (`check`,
-- `refresh --from/--to`): the partitions PostgreSQL holds and the lake's rows of the
-- archived months, copied into a temporary table of this session. Named like the raw
-- table, in schema pg_temp, the summaries' SQL reads it through summaries.raw_schema().
CREATE TEMP VIEW {view} AS
SELECT * FROM {table}
UNION ALL
SELECT * FROM {lake_rows}
