-- The late-row path looks a user up in user_visits_daily by (user hash, day). Migration
-- 014's index for it, (user hash, day), spanned all of history: each night's 80,000 new rows
-- landed all over it, and from a cold cache at 365 days of history inserting a day took
-- 5.7 s with it against 0.4 s without (benchmarks/README.md, "Cache"). Led by the month,
-- a night's rows land in the current month's part of it, whatever the history; lookups name
-- the month (a day's, or the few months of a range).
CREATE INDEX user_visits_daily_month_user_hash_day_idx ON tchap_stats.user_visits_daily
    (date_trunc('month', day::timestamp), hashtextextended(user_id, 0), day);
DROP INDEX tchap_stats.user_visits_daily_user_hash_day_idx;
