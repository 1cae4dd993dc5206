-- tchap_stats.user_values_monthly for the months in %(months)s: each user's dimension
-- values, from the month's device tuples ({user_devices_monthly}: the summary, or check's
-- recompute of it). {target}: the summary table, or a temporary copy (check).
INSERT INTO {target} (month, user_id, dimension, value)
SELECT DISTINCT m.month, m.user_id, d.dimension, d.value
FROM {user_devices_monthly} AS m
CROSS JOIN LATERAL (VALUES ('overall', ''), ('instance', m.instance), ('domain', m.domain),
                           ('platform', m.platform)) AS d(dimension, value)
WHERE m.month = ANY(%(months)s::date[]);
