-- Merge, step 1: delete the stored rows of the day that an incoming row with the same key
-- beats. {beats} is the export's merge rule: its order columns sort first (KeepLeast) or
-- last (KeepGreatest, LatestExtraction), text compared byte-wise as DuckDB does; for a
-- snapshot, any difference in the other columns. Returns how many it deleted, and how many
-- of those differ from their replacement in a column the summaries read ({changes}).
WITH beaten AS (
    DELETE FROM {target} AS t
    USING {incoming} AS i
    WHERE {in_day}
      AND {key_match}
      AND {beats}
    RETURNING {changes} AS changes
)
SELECT count(*), count(*) FILTER (WHERE changes) FROM beaten;
