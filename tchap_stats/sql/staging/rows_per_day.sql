-- Loadable rows per day (after deduplication).
SELECT {day_column} AS day, count(*) AS loadable
FROM {checked} AS t
ANTI JOIN {losers} AS l ON t.rowid = l.row_id
WHERE reject_reason IS NULL
GROUP BY ALL
ORDER BY 1;
