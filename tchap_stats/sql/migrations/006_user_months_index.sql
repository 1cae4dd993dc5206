-- user_months is added to each night for the users of the day's months: find a user's
-- month by (month, user_id) instead of reading the whole month (or every month) for it.
-- The index also serves the views' month filters, like the one it replaces.
CREATE INDEX user_months_month_user_idx ON tchap_stats.user_months (month, user_id);
DROP INDEX tchap_stats.user_months_month_idx;
