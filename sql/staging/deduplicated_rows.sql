-- The file's loadable rows, one per key: rows sharing a key merge into the one whose
-- merge-order columns sort first (the export's KeepLeast rule), so the survivor does not
-- depend on the order of lines in the file.
CREATE TABLE {staged} AS
SELECT {table_columns}
FROM (
    SELECT {key_columns}, min(struct_pack({struct_fields})) AS best
    FROM {typed}
    WHERE reject_reason IS NULL
    GROUP BY ALL
);
