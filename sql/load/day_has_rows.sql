-- Does the day already hold rows? (BRIN on the partition column makes this cheap.)
SELECT EXISTS (SELECT 1 FROM {partition} WHERE {day_column} = %(day)s);
