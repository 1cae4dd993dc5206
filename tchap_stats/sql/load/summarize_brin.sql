-- Summarize the BRIN page ranges of one table (a month partition) that no summary covers
-- yet: the pages a load just appended. Until then every query for a day of the month reads
-- them all (an unsummarized range always matches), and autosummarize only queues requests
-- that autovacuum may take minutes to serve, or drop when its queue is full.
SELECT brin_summarize_new_values(i.indexrelid)
FROM pg_index AS i
JOIN pg_class AS c ON c.oid = i.indexrelid
JOIN pg_am AS a ON a.oid = c.relam
WHERE i.indrelid = %(table)s::regclass
  AND a.amname = 'brin';
