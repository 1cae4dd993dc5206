-- The month partitions of a raw table in PostgreSQL: name, size with indexes, and rows as
-- the statistics estimate them (`status`; `archive --dry-run` counts them exactly).
SELECT c.relname AS partition,
       pg_total_relation_size(c.oid) AS bytes,
       greatest(c.reltuples, 0)::bigint AS estimated_rows
FROM pg_inherits AS i
JOIN pg_class AS c ON c.oid = i.inhrelid
WHERE i.inhparent = %(table)s::regclass
ORDER BY c.relname
