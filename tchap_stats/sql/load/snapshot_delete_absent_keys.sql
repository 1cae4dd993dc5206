-- Snapshot merge, step 2: the file is the whole snapshot of its day, so the stored rows
-- of the day whose key it does not hold go.
DELETE FROM {target} AS t
WHERE {in_day}
  AND NOT EXISTS (SELECT 1 FROM {incoming} AS i WHERE {key_match});
