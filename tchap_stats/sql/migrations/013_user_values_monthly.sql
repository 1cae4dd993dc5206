-- Per month, each user's dimension values (overall, its instances, domains and platforms):
-- what a night asks of a month about a user, kept apart from the month's device tuples.
-- A night that brings many device tuples new to their month finds which users are new to a
-- value by hashing this (a month's users, about five rows each) instead of looking each
-- user up among the month's tuples (summaries/user_devices_monthly_add.sql). Distinct by
-- construction, like every summary (see `check`); filled here from user_devices_monthly.
CREATE TABLE tchap_stats.user_values_monthly (
    month     date    NOT NULL,
    user_id   varchar NOT NULL,
    dimension text    NOT NULL,
    value     text    NOT NULL
);
CREATE INDEX user_values_monthly_month_idx ON tchap_stats.user_values_monthly (month);
INSERT INTO tchap_stats.user_values_monthly (month, user_id, dimension, value)
SELECT DISTINCT m.month, m.user_id, d.dimension, d.value
FROM tchap_stats.user_devices_monthly AS m
CROSS JOIN LATERAL (VALUES ('overall', ''), ('instance', m.instance), ('domain', m.domain),
                           ('platform', m.platform)) AS d(dimension, value);
