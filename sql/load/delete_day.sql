-- --replace: the day is emptied, then receives exactly the file's rows.
DELETE FROM {partition} WHERE {day_column} = %(day)s;
