-- --replace: the day is emptied, then receives exactly the file's rows.
DELETE FROM {target} AS t WHERE {in_day};
