-- Migration 016's index, led by the month, still took each night's 80,000 rows at random
-- places in the current month's part of it: by the month's last night that part holds 2.5
-- million entries, and the first change to each of its pages after a checkpoint writes the
-- whole page to the WAL (18,088 pages, 137 MB at 100,000 rows a day). Led by the day, a
-- night's rows land in a part of their own, whatever the day of the month or of the week
-- (benchmarks/README.md, "The day-led index"); it also serves what the (day) index served,
-- which goes: one index to write instead of two. The late-row path's lookups name the day
-- (one descent per day of the window it reads a user over).
CREATE INDEX user_visits_daily_day_user_hash_idx ON tchap_stats.user_visits_daily
    (day, hashtextextended(user_id, 0));
DROP INDEX tchap_stats.user_visits_daily_month_user_hash_day_idx;
DROP INDEX tchap_stats.user_visits_daily_day_idx;
