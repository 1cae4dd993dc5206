-- Active users and devices: the views the old system abandoned as "too long to update".
-- One row per period and dimension value; dimension is 'overall' (value ''), 'instance',
-- 'domain' or 'platform'. Distinct counts do not add up across values, hence one row each.

CREATE TABLE tchap_stats.active_daily (
    day       date    NOT NULL,
    dimension text    NOT NULL,
    value     varchar NOT NULL,
    users     bigint  NOT NULL,
    devices   bigint  NOT NULL,
    PRIMARY KEY (day, dimension, value)
);

CREATE TABLE tchap_stats.active_monthly (
    month     date    NOT NULL,
    dimension text    NOT NULL,
    value     varchar NOT NULL,
    users     bigint  NOT NULL,
    devices   bigint  NOT NULL,
    PRIMARY KEY (month, dimension, value)
);

CREATE VIEW public.daily_active_users AS
SELECT day, dimension, value, users, devices FROM tchap_stats.active_daily;

CREATE VIEW public.monthly_active_users AS
SELECT month, dimension, value, users, devices FROM tchap_stats.active_monthly;

-- Users active at least once in the 30 days ending on `day` (day - 29 .. day).
CREATE TABLE tchap_stats.active_rolling_30d (
    day       date    NOT NULL,
    dimension text    NOT NULL,
    value     varchar NOT NULL,
    users     bigint  NOT NULL,
    PRIMARY KEY (day, dimension, value)
);

CREATE VIEW public.rolling_30d_active_users AS
SELECT day, dimension, value, users FROM tchap_stats.active_rolling_30d
WHERE day <= tchap_stats.today();
