-- KeepLeast merge, step 2: insert the incoming rows whose key the day does not hold
-- (new keys, and the keys whose stored row step 1 deleted).
INSERT INTO {partition} ({columns})
SELECT {incoming_columns}
FROM {incoming} AS i
WHERE NOT EXISTS (
    SELECT 1 FROM {partition} AS t
    WHERE t.{day_column} = %(day)s AND {key_match}
);
