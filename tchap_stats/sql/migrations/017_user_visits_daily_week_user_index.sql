-- Migration 016's index, led by the month, still took each night's 80,000 rows at random
-- places in the current month's part of it: by the month's last night that part holds 2.5
-- million entries, and the first change to each of its pages after a checkpoint writes the
-- whole page to the WAL. At 100,000 rows a day, the last night's insert wrote 18,083 full
-- pages (137 MB of WAL) and took 0.83 to 0.86 s; led by the week, 1,599 (46 MB) and 0.46 to
-- 0.51 s (benchmarks/README.md, "The week-led index"). A night's rows now land in a part
-- that holds at most the 6 days before them, whatever the day of the month; the late-row
-- path's lookups name the week (a day's, or the 9 to 11 weeks of a window of 59 to 66 days).
CREATE INDEX user_visits_daily_week_user_hash_day_idx ON tchap_stats.user_visits_daily
    (date_trunc('week', day::timestamp), hashtextextended(user_id, 0), day);
DROP INDEX tchap_stats.user_visits_daily_month_user_hash_day_idx;
