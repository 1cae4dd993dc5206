-- For user_devices_monthly_add.sql, the lookup path: a user is new to a value when the
-- month's tchap_stats.user_values_monthly does not hold it.
NOT EXISTS (SELECT FROM tchap_stats.user_values_monthly AS u
            WHERE u.month = ANY(%(months)s::date[])  -- those months only, not all
              AND u.month = n.month AND u.user_id = n.user_id
              AND u.dimension = n.dimension AND u.value = n.value)
