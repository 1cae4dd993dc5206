-- Merge, last step: insert the incoming rows whose key the day does not hold (new keys,
-- and the keys whose stored row an earlier step deleted).
INSERT INTO {target} ({columns})
SELECT {incoming_columns}
FROM {incoming} AS i
WHERE NOT EXISTS (
    SELECT 1 FROM {target} AS t
    WHERE {in_day} AND {key_match}
);
