-- For user_devices_monthly_add.sql: the tuples of the days in %(days)s that their month
-- does not hold, found by hashing the month's tuples (a night whose month holds not many
-- more than the days bring: no lookup at all, nothing read at all from a month that holds
-- nothing yet, as on its 1st), each with what the month held of its device and of its
-- user. Only the users of those tuples have their month's tuples grouped: a night that
-- adds nothing, most of a `stable` month, groups none (0.68 s when every user's were:
-- benchmarks/README.md, "Every night of the month"). A user is new to a value when its
-- group holds no tuple with it, which spares user_values_monthly's month a hash (the
-- lookup path's way: user_new_to_value_by_lookup.sql). The days' rows: added_day_rows.sql;
-- EXCEPT keeps each tuple once (no DISTINCT needed for several days or late rows).
WITH new AS MATERIALIZED (
    SELECT date_trunc('month', visit_date)::date AS month, user_id, device_id, instance,
           domain, device_type, platform
    FROM {day_rows} AS day_rows
    EXCEPT
    SELECT month, user_id, device_id, instance, domain, device_type, platform
    FROM tchap_stats.user_devices_monthly
    WHERE month = ANY(%(months)s::date[])
)
SELECT t.*, coalesce(t.device_id = ANY(h.devices), false) AS device_known,
       coalesce(ROW(t.device_id, t.instance) = ANY(h.device_instances), false)
           AS device_instance,
       coalesce(ROW(t.device_id, t.domain) = ANY(h.device_domains), false) AS device_domain,
       coalesce(ROW(t.device_id, t.platform) = ANY(h.device_platforms), false)
           AS device_platform,
       h.user_id IS NOT NULL AS user_overall,
       coalesce(t.instance = ANY(h.instances), false) AS user_instance,
       coalesce(t.domain = ANY(h.domains), false) AS user_domain,
       coalesce(t.platform = ANY(h.platforms), false) AS user_platform
FROM new AS t
LEFT JOIN (
    SELECT m.month, m.user_id, array_agg(m.device_id) AS devices,
           array_agg(ROW(m.device_id, m.instance)) AS device_instances,
           array_agg(ROW(m.device_id, m.domain)) AS device_domains,
           array_agg(ROW(m.device_id, m.platform)) AS device_platforms,
           array_agg(m.instance) AS instances, array_agg(m.domain) AS domains,
           array_agg(m.platform) AS platforms
    FROM tchap_stats.user_devices_monthly AS m
    WHERE m.month = ANY(%(months)s::date[])
      AND (m.month, m.user_id) IN (SELECT month, user_id FROM new)
    GROUP BY m.month, m.user_id
) AS h USING (month, user_id)
