-- The file's loadable rows, one per key, in one pass over the file. Rows sharing a key
-- merge into the one whose merge-order columns sort first (the export's KeepLeast rule),
-- so the survivor does not depend on the order of lines in the file. rows_merged counts
-- the lines behind each row. Rejected lines all fall into one row whose key is NULL:
-- its rows_merged is the number of lines rejected by the checks of typed_rows.sql.
CREATE TABLE {staged} AS
SELECT {table_columns}, rows_merged
FROM (
    SELECT {keys_unless_rejected}, min(struct_pack({struct_fields})) AS best,
           count(*) AS rows_merged
    FROM ({typed_rows})
    GROUP BY ALL
);
