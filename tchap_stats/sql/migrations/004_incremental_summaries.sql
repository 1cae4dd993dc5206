-- What a refresh needs to update summaries from the changed days alone (DESIGN §5.5).

-- fresh: the day held no rows when the first load since the last refresh reached it, so
--   the summaries have never seen any of its rows: they can be added, not recomputed.
-- rewritten: a load replaced or removed rows of the day (a conflicting duplicate that won,
--   --replace); unless the day is also fresh, its month is recomputed from the raw table.
-- Rows written before this migration are treated as rewritten: recomputed in full.
ALTER TABLE tchap_stats.changed_days
    ADD COLUMN fresh     boolean NOT NULL DEFAULT false,
    ADD COLUMN rewritten boolean NOT NULL DEFAULT true;

-- user_months keeps the timestamp of the month's earliest visit, so a new day only
-- replaces a user's month when it holds an earlier visit (no month re-read).
ALTER TABLE tchap_stats.user_months ADD COLUMN first_visit_ts timestamptz;
UPDATE tchap_stats.user_months AS u
SET first_visit_ts = f.first_visit_ts
FROM (SELECT user_id, date_trunc('month', visit_date)::date AS month,
             min(visit_ts) AS first_visit_ts
      FROM public.user_daily_visits
      WHERE device_type <> 'Autre'
      GROUP BY 1, 2) AS f
WHERE f.user_id = u.user_id AND f.month = u.month;
ALTER TABLE tchap_stats.user_months ALTER COLUMN first_visit_ts SET NOT NULL;

-- user_devices_monthly now holds every device type ('Autre' included): active_monthly is
-- counted from it (a month's distinct devices, not its raw rows). The dashboards' views
-- keep filtering 'Autre' out.
INSERT INTO tchap_stats.user_devices_monthly
    (month, user_id, device_id, instance, domain, device_type, platform)
SELECT DISTINCT date_trunc('month', visit_date)::date, user_id, device_id, instance, domain,
       device_type, platform
FROM public.user_daily_visits
WHERE device_type = 'Autre';

-- A month's tuples of one user: what an added tuple is compared with (active_monthly).
DROP INDEX tchap_stats.user_devices_monthly_month_idx;
CREATE INDEX user_devices_monthly_month_user_idx
    ON tchap_stats.user_devices_monthly (month, user_id);

CREATE OR REPLACE FUNCTION tchap_stats.user_devices_last_months(months integer)
RETURNS TABLE (user_id varchar, month timestamptz, device_id varchar, instance varchar,
               domain varchar, device_type varchar, platform varchar)
LANGUAGE sql STABLE AS $$
    SELECT m.user_id, (m.month::timestamp AT TIME ZONE {timezone}), m.device_id,
           m.instance, m.domain, m.device_type, m.platform
    FROM tchap_stats.user_devices_monthly AS m
    WHERE m.month >= (date_trunc('month', tchap_stats.today())
                      - make_interval(months => months - 1))::date
      AND m.month <= tchap_stats.today()
      AND m.device_type <> 'Autre'
$$;

-- A user's activity on a day, one row per dimension value it counts under: the rows the
-- active-user summaries count. Platforms come from the day's per-platform visit counts.
CREATE VIEW tchap_stats.daily_activity AS
SELECT v.day, v.user_id, d.dimension, d.value
FROM tchap_stats.user_visits_daily AS v
CROSS JOIN LATERAL (VALUES
    ('overall', ''), ('instance', v.instance), ('domain', v.domain),
    ('platform', CASE WHEN v.web_visits_count > 0 THEN 'Web' END),
    ('platform', CASE WHEN v.mobile_visits_count > 0 THEN 'Mobile' END),
    ('platform', CASE WHEN v.other_visits_count > 0 THEN 'Autre' END)
) AS d(dimension, value)
WHERE d.value IS NOT NULL;

-- For each (user, instance, domain) active in the 30 days ending on the latest day of
-- user_visits_daily, its latest active day, overall and per platform. A night that only
-- appends days after that one updates the rolling counts from this table and the new days,
-- without re-reading the window. One row per user and instance/domain (nearly always one
-- per user), not per dimension value: a fifth of the rows to rewrite each night.
-- rolling_state says up to which day the table is exact: a refresh may append only when
-- that is the latest day the summaries held before it (else it rebuilds the table).
CREATE TABLE tchap_stats.rolling_last_active (
    user_id     varchar NOT NULL,
    instance    varchar NOT NULL,
    domain      varchar NOT NULL,
    last_day    date    NOT NULL,
    last_web    date,
    last_mobile date,
    last_other  date,
    PRIMARY KEY (user_id, instance, domain)
) WITH (fillfactor = 80);  -- room for the nightly updates to stay on their page (HOT)
CREATE TABLE tchap_stats.rolling_state (
    singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    through_day  date              -- NULL: no day yet
);
-- With history already summarised, NULL does not match it: the first refresh rebuilds.
INSERT INTO tchap_stats.rolling_state (through_day) VALUES (NULL);
