-- Synthetic history for benchmarks/refresh.py, generated inside PostgreSQL (files would take
-- longer to write than to load). Deterministic: the same (day, rows) always gives the same
-- rows. A population of {devices} devices, two per user, each with a fixed user agent,
-- instance and domain; each day {rows} distinct devices visit, a different subset every day
-- (so about rows/devices of them are active on any day, nearly all of them over a month).
-- Rows first_row .. first_row + rows - 1 of the day: a file's overlap with the previous
-- day repeats that day's first rows exactly.
-- churn (tenths, 0 by default): the devices with device % 10 < churn are drawn again every
-- day (refresh.py --shape churn: 7): such a row's device id and user agent come from the
-- device and the day (day number mod 997), so most of the (user, device) pairs of a day are
-- new to its month; its user, instance, domain and time of visit stay the device's, so the
-- users (and how many visit a day or a month) are the same as with churn 0. Still
-- deterministic in (day, row): the overlap rows of a file still repeat the day before.
CREATE SCHEMA IF NOT EXISTS bench;
CREATE OR REPLACE FUNCTION bench.visits(day date, first_row integer, rows integer,
                                        devices bigint, stride bigint,
                                        churn integer DEFAULT 0)
RETURNS TABLE (user_id varchar, device_id varchar, visit_ts timestamptz, user_agent varchar,
               instance varchar, domain varchar)
LANGUAGE sql IMMUTABLE AS $$
    WITH agents(n, agent) AS (
        SELECT ordinality - 1, agent FROM unnest(ARRAY[
            'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36',
            'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:132.0) Gecko/20100101 Firefox/132.0',
            'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Safari/605.1.15',
            'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/129.0 Safari/537.36',
            'Tchap/2.13.4 (Android 14; SM-S911B)',
            'Tchap/2.13.4 (iPhone; iOS 17.6; Scale/3.00)',
            'Tchap/4.2.1 (NEO; Android 13)',
            'RiotNSE/2.8 (iPhone; iOS 16.7; Scale/3.00)',
            'Element/1.6.10 (Android 12)',
            'Riot/0.9 (iPad; iOS)',
            'Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 Chrome/130.0 Mobile Safari/537.36',
            'Synapse/1.98 (bot)',
            'Tchap/2.13.4 (Android 14; Pixel 8)',
            'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36 Edg/130.0'
        ]) WITH ORDINALITY AS a(agent, ordinality)
    ), picked AS (
        SELECT (i * stride + (day - date '2000-01-01') * 7919) % devices AS device
        FROM generate_series(first_row, first_row + rows - 1) AS i
    ), drawn AS (
        -- key: the device itself, or for a churning device a number of its own for the
        -- day, above every device: distinct within a day, and up to 3 M devices (1.9 M rows
        -- a day) below 2^32 with its product by the hash's multiplier within a bigint, so
        -- that the device id stays one-to-one with the key
        SELECT device, CASE WHEN device % 10 < churn
                            THEN device + devices * (1 + (day - date '2000-01-01') % 997)
                            ELSE device END AS key
        FROM picked
    )
    SELECT ('@user' || device / 2 || '-' || 'dom' || (device / 2) % 40 || '.gouv.fr:agent.'
            || 'inst' || (device / 2) % 40 % 7 || '.tchap.gouv.fr')::varchar,
           ('DEV' || upper(to_hex(key * 2654435761 % 4294967296)))::varchar,
           (day + make_interval(secs => (device * 40503 + (day - date '2000-01-01') * 97) % 86400))
               AT TIME ZONE 'Europe/Paris',
           agents.agent::varchar,
           ('agent.inst' || (device / 2) % 40 % 7 || '.tchap.gouv.fr')::varchar,
           ('dom' || (device / 2) % 40 || '.gouv.fr')::varchar
    FROM drawn JOIN agents ON agents.n = (key * 2654435761 / 7) % 14
$$;
