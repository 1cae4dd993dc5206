-- Adds to tchap_stats.user_devices_monthly the tuples of the days in %(days)s that their
-- month does not hold yet, and counts them into tchap_stats.active_monthly: a user (or
-- device) is new to a month's dimension value when no tuple the month held before this
-- statement had it (every part of the statement reads that snapshot, not the insert).
-- Exact when the summaries never saw rows of those days that are gone since (fresh or
-- only-grown days): a month's tuples are the union of its days'. Costs what was added.
WITH added AS (
    INSERT INTO tchap_stats.user_devices_monthly
        (month, user_id, device_id, instance, domain, device_type, platform)
    SELECT date_trunc('month', visit_date)::date, user_id, device_id, instance, domain,
           device_type, platform
    FROM public.user_daily_visits
    WHERE visit_date = ANY(%(days)s::date[])
    EXCEPT
    SELECT month, user_id, device_id, instance, domain, device_type, platform
    FROM tchap_stats.user_devices_monthly
    WHERE month = ANY(%(months)s::date[])
    RETURNING month, user_id, device_id, instance, domain, platform
), added_devices AS (
    SELECT DISTINCT a.month, d.dimension, d.value, a.user_id, a.device_id
    FROM added AS a
    CROSS JOIN LATERAL (VALUES ('overall', ''), ('instance', a.instance),
                               ('domain', a.domain), ('platform', a.platform))
               AS d(dimension, value)
), held_devices AS (
    -- The month's tuples of the users who got one, found by (month, user_id) one user at a
    -- time: OFFSET 0 keeps the planner from flattening the lookup into a join that reads
    -- the whole month (or, by merge join, the index from its first month: 8.4 s on the
    -- second day of a month), so the cost follows what was added, nothing most nights.
    SELECT DISTINCT m.month, d.dimension, d.value, m.user_id, m.device_id
    FROM (SELECT DISTINCT month, user_id FROM added) AS a
    CROSS JOIN LATERAL (SELECT h.month, h.user_id, h.device_id, h.instance, h.domain,
                               h.platform
                        FROM tchap_stats.user_devices_monthly AS h
                        WHERE h.month = a.month AND h.user_id = a.user_id
                        OFFSET 0) AS m
    CROSS JOIN LATERAL (VALUES ('overall', ''), ('instance', m.instance),
                               ('domain', m.domain), ('platform', m.platform))
               AS d(dimension, value)
), new_devices AS (
    SELECT * FROM added_devices EXCEPT SELECT * FROM held_devices
), new_users AS (
    SELECT month, dimension, value, user_id FROM added_devices
    EXCEPT
    SELECT month, dimension, value, user_id FROM held_devices
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
