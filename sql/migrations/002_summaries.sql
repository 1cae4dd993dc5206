-- Summaries of user_daily_visits, maintained for the days and months that loads changed
-- (tchap_stats.changed_days), and the views with the names the Metabase dashboards use.

-- The dashboards' "today": the Europe/Paris date, unless a session sets tchap_stats.today
-- (tests, and replaying a past day).
CREATE FUNCTION tchap_stats.today() RETURNS date
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce(nullif(current_setting('tchap_stats.today', true), '')::date,
                    (now() AT TIME ZONE 'Europe/Paris')::date)
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
    other_visits_count bigint  NOT NULL,
    PRIMARY KEY (day, user_id, instance, domain)
);

-- Per month: distinct (user, device, instance, domain, device type, platform), device
-- type other than 'Autre'.
CREATE TABLE tchap_stats.user_devices_monthly (
    month       date    NOT NULL,
    user_id     varchar NOT NULL,
    device_id   varchar NOT NULL,
    instance    varchar NOT NULL,
    domain      varchar NOT NULL,
    device_type varchar NOT NULL,
    platform    varchar NOT NULL,
    PRIMARY KEY (month, user_id, device_id, instance, domain, device_type, platform)
);

-- Per (user, month): the instance and domain of the user's earliest visit that month
-- (device type other than 'Autre'; ties broken by instance, then domain, byte-wise).
CREATE TABLE tchap_stats.user_months (
    user_id  varchar NOT NULL,
    month    date    NOT NULL,
    instance varchar NOT NULL,
    domain   varchar NOT NULL,
    PRIMARY KEY (user_id, month)
);
CREATE INDEX user_months_month_idx ON tchap_stats.user_months (month);

-- The old materialized views' names and columns, over the summaries; windows are relative
-- to tchap_stats.today(), so they never need a refresh of their own. "day" stays a
-- timestamptz (the old views grouped by date_trunc('day', visit_ts)): the Paris midnight.
CREATE VIEW public.user_daily_visits_agg_30d_v2 AS
SELECT (day::timestamp AT TIME ZONE 'Europe/Paris') AS day, user_id, instance, domain,
       visits_count, web_visits_count, mobile_visits_count, other_visits_count
FROM tchap_stats.user_visits_daily
WHERE day > tchap_stats.today() - 30 AND day <= tchap_stats.today();

CREATE VIEW public.user_daily_visits_agg_30d AS
SELECT * FROM public.user_daily_visits_agg_30d_v2;

CREATE VIEW public.user_daily_visits_agg_120d AS
SELECT (day::timestamp AT TIME ZONE 'Europe/Paris') AS day, user_id, instance, domain,
       visits_count, web_visits_count, mobile_visits_count, other_visits_count
FROM tchap_stats.user_visits_daily
WHERE day > tchap_stats.today() - 120 AND day <= tchap_stats.today();

CREATE VIEW public.user_daily_visits_agg_1y AS
SELECT (day::timestamp AT TIME ZONE 'Europe/Paris') AS day, user_id, instance, domain,
       visits_count, web_visits_count, mobile_visits_count, other_visits_count
FROM tchap_stats.user_visits_daily
WHERE day > tchap_stats.today() - 365 AND day <= tchap_stats.today();

-- "month" as the old view's date_trunc('month', visit_date): a timestamptz.
CREATE VIEW public.user_daily_visits_by_month_1y_v3 AS
SELECT user_id, (month::timestamp AT TIME ZONE 'Europe/Paris') AS month, device_id, instance,
       domain, device_type, platform
FROM tchap_stats.user_devices_monthly
WHERE month >= (date_trunc('month', tchap_stats.today()) - interval '11 months')::date
  AND month <= tchap_stats.today();

CREATE VIEW public.user_daily_visits_by_month_1y AS
SELECT * FROM public.user_daily_visits_by_month_1y_v3;

CREATE VIEW public.user_daily_visits_by_month_18m AS
SELECT user_id, (month::timestamp AT TIME ZONE 'Europe/Paris') AS month, device_id, instance,
       domain, device_type, platform
FROM tchap_stats.user_devices_monthly
WHERE month >= (date_trunc('month', tchap_stats.today()) - interval '17 months')::date
  AND month <= tchap_stats.today();

CREATE VIEW public.user_monthly_visits_lite AS
SELECT user_id, month AS visit_date, instance, domain
FROM tchap_stats.user_months;
