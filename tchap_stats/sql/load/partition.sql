-- One month of an export's table, created the first time a file holds a row for it.
CREATE TABLE IF NOT EXISTS {partition} PARTITION OF {table}
    FOR VALUES FROM ({lower}) TO ({upper});
