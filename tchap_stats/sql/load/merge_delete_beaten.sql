-- Merge, step 1: delete the stored rows of the day that an incoming row with the same key
-- beats. {beats} is the export's merge rule: its order columns sort first (KeepLeast) or
-- last (KeepGreatest, LatestExtraction), text compared byte-wise as DuckDB does; for a
-- snapshot, any difference in the other columns.
DELETE FROM {target} AS t
USING {incoming} AS i
WHERE {in_day}
  AND {key_match}
  AND {beats};
