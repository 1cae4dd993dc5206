-- The rows of one day to load: checked lines that are neither rejected nor beaten by a
-- duplicate, in the table's column order.
SELECT {table_columns}
FROM {checked}
WHERE reject_reason IS NULL
  AND {day_column} = $day
  AND rowid NOT IN (SELECT row_id FROM {losers})
{order}
