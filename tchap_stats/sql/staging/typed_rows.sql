-- Every line of one export file, typed, with its derived columns and, when the line
-- cannot be loaded, the first column at fault and why. DuckDB reads the file where it
-- is (local path or s3:// URL). Lines the CSV reader itself cannot split (wrong column
-- count, unbalanced quote, bad encoding) go to {reader_rejects} instead. The parameters
-- earliest, latest and window_* bound the instants a line may hold.
SELECT *{derived_columns}
FROM (
    SELECT
        {output_columns},
        {reject_column} AS reject_column,
        {reject_reason} AS reject_reason,
        CASE WHEN problem IS NOT NULL THEN {raw_line} END AS raw_line,
        {file_line} AS file_line,  -- the record's line, when the file was read line by line
        {spans_lines} AS spans_lines  -- a value runs over several lines
    FROM (
        SELECT *, {problem} AS problem  -- the number of the first check the line fails
        FROM (
            SELECT {parsed_columns}, {raw_columns}
            FROM read_csv(
                $url,
                header = true, auto_detect = false, delim = ',', quote = '"', escape = '"',
                strict_mode = true, columns = {reader_columns},
                buffer_size = 16777216,  -- 16 MiB: flat memory, and few ranged GETs on S3
                store_rejects = true, rejects_table = {reader_rejects},
                rejects_scan = {reader_scans}
            )
        )
    )
)
