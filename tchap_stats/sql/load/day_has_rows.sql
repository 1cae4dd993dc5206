-- Does the day already hold rows? (An index on the partition column makes this cheap.)
SELECT EXISTS (SELECT 1 FROM {target} AS t WHERE {in_day});
