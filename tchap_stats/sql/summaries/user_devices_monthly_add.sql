-- Adds to tchap_stats.user_devices_monthly the tuples of the days in %(days)s that their
-- month does not hold yet, and counts them into tchap_stats.active_monthly. new_tuples
-- finds them, with what the month held of each one's device (device_known and per value):
-- user_devices_monthly_new_by_hash.sql or _by_lookup.sql (summaries._new_tuples_by chooses).
-- A device is new to a month's dimension value when none of its tuples the month held had
-- that value; a user when none of the user's had it: one tuple of the user's, found by
-- (month, user) on migration 012's index, tells for most; the others are searched for.
-- Every part of the statement reads the month as it was before it (its snapshot, not the
-- insert). Exact when the summaries never saw rows of those days that are gone since
-- (fresh or only-grown days): a month's tuples are the union of its days'. The lookups are
-- SubPlans (OFFSET 0 keeps them so), each reading a few index entries: the cost follows
-- the tuples added, not the month.
WITH new_tuples AS MATERIALIZED (
    {new_tuples}
), added AS (
    INSERT INTO tchap_stats.user_devices_monthly
        (month, user_id, device_id, instance, domain, device_type, platform)
    SELECT month, user_id, device_id, instance, domain, device_type, platform
    FROM new_tuples
), new_devices AS (
    SELECT DISTINCT t.month, d.dimension, d.value, t.user_id, t.device_id
    FROM new_tuples AS t
    CROSS JOIN LATERAL (VALUES ('overall', '', t.device_known),
                               ('instance', t.instance, t.device_instance),
                               ('domain', t.domain, t.device_domain),
                               ('platform', t.platform, t.device_platform))
               AS d(dimension, value, known)
    WHERE NOT d.known
), candidates AS (  -- users whose new device is new to a value: maybe new to it too
    SELECT DISTINCT month, dimension, value, user_id FROM new_devices
), users_held AS MATERIALIZED (  -- one tuple the month held of each, if any
    SELECT u.month, u.user_id, f.instance, f.domain, f.platform
    FROM (SELECT DISTINCT month, user_id FROM candidates) AS u
    LEFT JOIN LATERAL (
        SELECT h.instance, h.domain, h.platform
        FROM tchap_stats.user_devices_monthly AS h
        WHERE h.month = u.month
          AND hashtextextended(h.user_id, 0) = hashtextextended(u.user_id, 0)
          AND h.user_id = u.user_id
        LIMIT 1) AS f ON true
), new_users AS (
    SELECT c.month, c.dimension, c.value, c.user_id
    FROM candidates AS c JOIN users_held AS u USING (month, user_id)
    WHERE CASE  -- instance is never NULL in a tuple: NULL here means none held
        WHEN u.instance IS NULL THEN true
        WHEN c.dimension = 'overall' THEN false
        WHEN c.dimension = 'instance' AND u.instance = c.value THEN false
        WHEN c.dimension = 'domain' AND u.domain = c.value THEN false
        WHEN c.dimension = 'platform' AND u.platform = c.value THEN false
        ELSE NOT EXISTS (
            SELECT FROM tchap_stats.user_devices_monthly AS h
            WHERE h.month = c.month
              AND hashtextextended(h.user_id, 0) = hashtextextended(c.user_id, 0)
              AND h.user_id = c.user_id
              AND CASE c.dimension WHEN 'instance' THEN h.instance = c.value
                                   WHEN 'domain' THEN h.domain = c.value
                                   ELSE h.platform = c.value END)
        END
), counts AS (
    SELECT month, dimension, value, sum(users) AS users, sum(devices) AS devices
    FROM (SELECT month, dimension, value, 1 AS users, 0 AS devices FROM new_users
          UNION ALL
          SELECT month, dimension, value, 0, 1 FROM new_devices) AS both_kinds
    GROUP BY 1, 2, 3
)
INSERT INTO tchap_stats.active_monthly AS a (month, dimension, value, users, devices)
SELECT month, dimension, value, users, devices FROM counts
ON CONFLICT (month, dimension, value) DO UPDATE
SET users = a.users + excluded.users, devices = a.devices + excluded.devices;
