-- The months a table holds in the lake, with their rows and Parquet bytes, from DuckLake's
-- catalog (its live data files, by their partition values: year, month), without reading
-- a file: what `status` shows, and how `archive` and `restore` find leftovers.
SELECT make_date(y.partition_value::int, m.partition_value::int, 1) AS month,
       sum(f.record_count - coalesce(d.deleted, 0))::bigint AS rows,
       sum(f.file_size_bytes)::bigint AS bytes
FROM tchap_stats_lake.ducklake_table AS t
JOIN tchap_stats_lake.ducklake_data_file AS f
  ON f.table_id = t.table_id AND f.end_snapshot IS NULL
JOIN tchap_stats_lake.ducklake_file_partition_value AS y
  ON y.data_file_id = f.data_file_id AND y.partition_key_index = 0
JOIN tchap_stats_lake.ducklake_file_partition_value AS m
  ON m.data_file_id = f.data_file_id AND m.partition_key_index = 1
LEFT JOIN (SELECT data_file_id, sum(delete_count) AS deleted
           FROM tchap_stats_lake.ducklake_delete_file WHERE end_snapshot IS NULL
           GROUP BY data_file_id) AS d ON d.data_file_id = f.data_file_id
WHERE t.table_name = %(table)s AND t.end_snapshot IS NULL
GROUP BY 1
HAVING sum(f.record_count - coalesce(d.deleted, 0)) > 0
ORDER BY 1
