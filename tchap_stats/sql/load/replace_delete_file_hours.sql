-- --replace on an hourly table: the file is the truth for the hours it holds, so the day's
-- stored rows of those hours go (its other hours stay), then the file's rows are inserted.
DELETE FROM {target} AS t
WHERE {in_day}
  AND t.{column} IN (SELECT i.{column} FROM {incoming} AS i);
