-- The record number and (for a file read line by line) the line of the day's loadable row
-- at $offset, in file order: the row PostgreSQL refused at that line of an ordered COPY.
SELECT rowid + 1, file_line
FROM {checked}
WHERE reject_reason IS NULL
  AND {day_column} = $day
  AND rowid NOT IN (SELECT row_id FROM {losers})
ORDER BY rowid
LIMIT 1 OFFSET $offset;
