-- Summaries of user_daily_visits, maintained for the days and months that loads changed
-- (tchap_stats.changed_days), and the views with the names the Metabase dashboards use.

-- The dashboards' "today": the configured zone's date (TCHAP_STATS_TZ, written here by
-- `migrate`), unless a session sets tchap_stats.today
-- (tests, and replaying a past day).
CREATE FUNCTION tchap_stats.today() RETURNS date
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce(nullif(current_setting('tchap_stats.today', true), '')::date,
                    (now() AT TIME ZONE {timezone})::date)
$$;

-- Per (day, user, instance, domain): visits (devices) that day, by platform.
CREATE TABLE tchap_stats.user_visits_daily (
    day                date    NOT NULL,
    user_id            varchar NOT NULL,
    instance           varchar NOT NULL,
    domain             varchar NOT NULL,
    visits_count       bigint  NOT NULL,
    web_visits_count   bigint  NOT NULL,
    mobile_visits_count bigint NOT NULL,
    other_visits_count bigint  NOT NULL
);
-- One row per (day, user_id, instance, domain) by construction (GROUP BY), verified by
-- `check`; a unique index would cost 4× the insert itself, for nothing the views need.
CREATE INDEX user_visits_daily_day_idx ON tchap_stats.user_visits_daily (day);

-- Per month: distinct (user, device, instance, domain, device type, platform), device
-- type other than 'Autre' (distinct by construction, like every summary: see `check`).
CREATE TABLE tchap_stats.user_devices_monthly (
    month       date    NOT NULL,
    user_id     varchar NOT NULL,
    device_id   varchar NOT NULL,
    instance    varchar NOT NULL,
    domain      varchar NOT NULL,
    device_type varchar NOT NULL,
    platform    varchar NOT NULL
);
CREATE INDEX user_devices_monthly_month_idx ON tchap_stats.user_devices_monthly (month);

-- Per (user, month): the instance and domain of the user's earliest visit that month
-- (device type other than 'Autre'; ties broken by instance, then domain, byte-wise).
CREATE TABLE tchap_stats.user_months (
    user_id  varchar NOT NULL,
    month    date    NOT NULL,
    instance varchar NOT NULL,
    domain   varchar NOT NULL
);
CREATE INDEX user_months_month_idx ON tchap_stats.user_months (month);

-- The old materialized views' names and columns, over the summaries; windows are relative
-- to tchap_stats.today(), so they never need a refresh of their own. "day" and "month"
-- stay timestamptz, as in the old views (date_trunc of a timestamp): the Paris midnight.
-- The window functions are plain SQL: PostgreSQL inlines them into the views' queries.
CREATE FUNCTION tchap_stats.user_visits_last_days(days integer)
RETURNS TABLE (day timestamptz, user_id varchar, instance varchar, domain varchar,
               visits_count bigint, web_visits_count bigint, mobile_visits_count bigint,
               other_visits_count bigint)
LANGUAGE sql STABLE AS $$
    SELECT (v.day::timestamp AT TIME ZONE {timezone}), v.user_id, v.instance, v.domain,
           v.visits_count, v.web_visits_count, v.mobile_visits_count, v.other_visits_count
    FROM tchap_stats.user_visits_daily AS v
    WHERE v.day > tchap_stats.today() - days AND v.day <= tchap_stats.today()
$$;

CREATE FUNCTION tchap_stats.user_devices_last_months(months integer)
RETURNS TABLE (user_id varchar, month timestamptz, device_id varchar, instance varchar,
               domain varchar, device_type varchar, platform varchar)
LANGUAGE sql STABLE AS $$
    SELECT m.user_id, (m.month::timestamp AT TIME ZONE {timezone}), m.device_id,
           m.instance, m.domain, m.device_type, m.platform
    FROM tchap_stats.user_devices_monthly AS m
    WHERE m.month >= (date_trunc('month', tchap_stats.today())
                      - make_interval(months => months - 1))::date
      AND m.month <= tchap_stats.today()
$$;

CREATE VIEW public.user_daily_visits_agg_30d_v2 AS
SELECT * FROM tchap_stats.user_visits_last_days(30);
CREATE VIEW public.user_daily_visits_agg_30d AS
SELECT * FROM tchap_stats.user_visits_last_days(30);
CREATE VIEW public.user_daily_visits_agg_120d AS
SELECT * FROM tchap_stats.user_visits_last_days(120);
CREATE VIEW public.user_daily_visits_agg_1y AS
SELECT * FROM tchap_stats.user_visits_last_days(365);

CREATE VIEW public.user_daily_visits_by_month_1y_v3 AS
SELECT * FROM tchap_stats.user_devices_last_months(12);
CREATE VIEW public.user_daily_visits_by_month_1y AS
SELECT * FROM tchap_stats.user_devices_last_months(12);
CREATE VIEW public.user_daily_visits_by_month_18m AS
SELECT * FROM tchap_stats.user_devices_last_months(18);

CREATE VIEW public.user_monthly_visits_lite AS
SELECT user_id, month AS visit_date, instance, domain
FROM tchap_stats.user_months;
