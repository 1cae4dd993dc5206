-- The months a table holds in the lake, with their rows and Parquet bytes, from DuckLake's
-- catalog (its live data files, by the min and max of their day column: an archive writes
-- one month, so a file holds one month), without reading a file: what `status` shows, and
-- how `archive` and `restore` find leftovers. spans_months: a file whose rows are not all
-- of one month (none should be).
SELECT date_trunc('month', s.min_value::date)::date AS month,
       sum(f.record_count - coalesce(d.deleted, 0))::bigint AS rows,
       sum(f.file_size_bytes)::bigint AS bytes,
       bool_or(date_trunc('month', s.min_value::date)
               <> date_trunc('month', s.max_value::date)) AS spans_months
FROM tchap_stats_lake.ducklake_table AS t
JOIN tchap_stats_lake.ducklake_column AS c
  ON c.table_id = t.table_id AND c.column_name = %(day_column)s AND c.end_snapshot IS NULL
JOIN tchap_stats_lake.ducklake_data_file AS f
  ON f.table_id = t.table_id AND f.end_snapshot IS NULL
JOIN tchap_stats_lake.ducklake_file_column_stats AS s
  ON s.data_file_id = f.data_file_id AND s.column_id = c.column_id
LEFT JOIN (SELECT data_file_id, sum(delete_count) AS deleted
           FROM tchap_stats_lake.ducklake_delete_file WHERE end_snapshot IS NULL
           GROUP BY data_file_id) AS d ON d.data_file_id = f.data_file_id
WHERE t.table_name = %(table)s AND t.end_snapshot IS NULL
GROUP BY 1
HAVING sum(f.record_count - coalesce(d.deleted, 0)) > 0
ORDER BY 1
