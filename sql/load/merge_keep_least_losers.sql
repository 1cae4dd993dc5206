-- KeepLeast merge, step 1: delete the stored rows that an incoming row with the same key
-- beats (its merge-order columns sort first; text compared byte-wise, as DuckDB does).
DELETE FROM {partition} AS t
USING {incoming} AS i
WHERE t.{day_column} = %(day)s
  AND {key_match}
  AND ({incoming_order}) < ({stored_order});
