-- The grown days %(days)s (rows added to days the summaries held, none gone): each (day,
-- user, dimension value) the rows loads added (tchap_stats.late_rows, new keys) bring to a
-- user with no visit under that value that day before, read from daily_activity before
-- user_visits_daily is added to. For the rest of the transaction, as late_gained.
CREATE TEMP TABLE late_gained ON COMMIT DROP AS
SELECT DISTINCT l.visit_date AS day, l.user_id, d.dimension, d.value
FROM tchap_stats.late_rows AS l
CROSS JOIN LATERAL (VALUES ('overall', ''), ('instance', l.instance), ('domain', l.domain),
                           ('platform', l.platform)) AS d(dimension, value)
WHERE l.summary_group = 'daily' AND l.new_key AND l.visit_date = ANY(%(days)s::date[])
  AND NOT EXISTS (
      SELECT FROM tchap_stats.daily_activity AS a
      WHERE a.day = l.visit_date
        AND hashtextextended(a.user_id, 0) = hashtextextended(l.user_id, 0)
        AND a.user_id = l.user_id
        AND a.dimension = d.dimension AND a.value = d.value);
