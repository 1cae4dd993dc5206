-- Adds to tchap_stats.user_devices_monthly the tuples of the days in %(days)s that their
-- month does not hold yet, and counts them into tchap_stats.active_monthly. new_tuples
-- finds them, with what the month held of each one's device (device_known and per value)
-- and, on the hash path, of its user (user_overall and per value):
-- user_devices_monthly_new_by_hash.sql or _by_lookup.sql (summaries._new_tuples_by chooses).
-- A device is new to a month's dimension value when none of its tuples the month held had
-- that value; a user when none of its tuples had it (user_new_to_value_by_*.sql: the hash path
-- knows from its user's group; the lookup path asks tchap_stats.user_values_monthly, a
-- month's users hashed, migration 013), and user_values_monthly gains it.
-- Every part of the statement reads the month as it was before it (its snapshot, not the
-- insert). Exact when the summaries never saw rows of those days that are gone since
-- (fresh or only-grown days): a month's tuples are the union of its days'. The lookups are
-- SubPlans (OFFSET 0 keeps them so), each reading a few index entries: the cost follows
-- the tuples added and the month's users, not the month's tuples.
WITH new_tuples AS MATERIALIZED (
    {new_tuples}
), added AS (
    INSERT INTO tchap_stats.user_devices_monthly
        (month, user_id, device_id, instance, domain, device_type, platform)
    SELECT month, user_id, device_id, instance, domain, device_type, platform
    FROM new_tuples
), new_devices AS (  -- DISTINCT only for several days of a month: a day's tuples are
    -- one per user and device already
    SELECT {distinct} t.month, d.dimension, d.value, t.user_id, t.device_id, d.user_known
    FROM new_tuples AS t
    CROSS JOIN LATERAL (VALUES ('overall', '', t.device_known, t.user_overall),
                               ('instance', t.instance, t.device_instance, t.user_instance),
                               ('domain', t.domain, t.device_domain, t.user_domain),
                               ('platform', t.platform, t.device_platform, t.user_platform))
               AS d(dimension, value, known, user_known)
    WHERE NOT d.known
), new_users AS (  -- of the users whose device is new to a value, those new to it
    SELECT DISTINCT n.month, n.dimension, n.value, n.user_id
    FROM new_devices AS n
    WHERE {user_new_to_value}
), users_added AS (
    INSERT INTO tchap_stats.user_values_monthly (month, user_id, dimension, value)
    SELECT month, user_id, dimension, value FROM new_users
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
