-- Adds to tchap_stats.user_devices_monthly the tuples of the days in %(days)s that their
-- month does not hold yet, and counts them into tchap_stats.active_monthly. new_tuples
-- finds them, with what the month held of each one's device (device_known and per value):
-- user_devices_monthly_new_by_hash.sql or _by_lookup.sql (summaries._new_tuples_by chooses).
-- A device is new to a month's dimension value when none of its tuples the month held had
-- that value; a user when tchap_stats.user_values_monthly does not hold it (a month's
-- users: hashed, migration 013), which gains it.
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
    SELECT {distinct} t.month, d.dimension, d.value, t.user_id, t.device_id
    FROM new_tuples AS t
    CROSS JOIN LATERAL (VALUES ('overall', '', t.device_known),
                               ('instance', t.instance, t.device_instance),
                               ('domain', t.domain, t.device_domain),
                               ('platform', t.platform, t.device_platform))
               AS d(dimension, value, known)
    WHERE NOT d.known
), new_users AS (  -- of the users whose device is new to a value, those new to it
    SELECT DISTINCT n.month, n.dimension, n.value, n.user_id
    FROM new_devices AS n
    WHERE NOT EXISTS (SELECT FROM tchap_stats.user_values_monthly AS u
                      WHERE u.month = ANY(%(months)s::date[])  -- those months only, not all
                        AND u.month = n.month AND u.user_id = n.user_id
                        AND u.dimension = n.dimension AND u.value = n.value)
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
