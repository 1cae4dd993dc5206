-- Lines beaten by another line with the same key: of the lines sharing a key, the one
-- whose merge-order columns sort first stays (the export's KeepLeast rule), whatever the
-- order of lines in the file. Only duplicated keys (a few percent) reach the window.
CREATE TABLE {losers} AS
SELECT row_id
FROM (
    SELECT t.rowid AS row_id,
           row_number() OVER (PARTITION BY {key_columns} ORDER BY {merge_order}) AS rank
    FROM {checked} AS t
    SEMI JOIN (
        SELECT {key_columns}
        FROM {checked}
        WHERE reject_reason IS NULL
        GROUP BY ALL
        HAVING count(*) > 1
    ) AS duplicated USING ({key_columns})
    WHERE t.reject_reason IS NULL
)
WHERE rank > 1;
