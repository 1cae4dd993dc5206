-- Rows of the file for a day that already holds rows, before they are merged.
CREATE TEMP TABLE IF NOT EXISTS {incoming} (LIKE {table}) ON COMMIT DROP;
