-- For user_devices_monthly_add.sql, the hash path: a user is new to a value when its group
-- of the month's tuples held none with it (user_devices_monthly_new_by_hash.sql).
NOT n.user_known
