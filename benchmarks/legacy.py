"""The old system's nightly path (DESIGN §8), rebuilt faithfully: the baseline of the
benchmarks. Its tables live in schema `legacy`, beside (never inside) tchap-stats' own.

Per day: COPY the CSV into a temp table; INSERT … ON CONFLICT DO NOTHING into the
unpartitioned, indexed user_daily_visits; classify with UPDATEs of 10,000 rows (by ctid);
REFRESH the two materialized views; fill user_monthly_visits_lite from the last 30 days.
"""

from __future__ import annotations

import time
from pathlib import Path

import psycopg

from tchap_stats.classify import classify_sql

TABLE = """
CREATE TABLE legacy.user_daily_visits (
    user_id varchar NOT NULL, device_id varchar NOT NULL, visit_ts timestamptz NOT NULL,
    user_agent varchar NOT NULL, instance varchar NOT NULL, domain varchar NOT NULL,
    platform varchar, device_type varchar, visit_date date)
"""
INDEXES = """
CREATE UNIQUE INDEX user_daily_visits_unique
    ON legacy.user_daily_visits (user_id, device_id, visit_ts);
CREATE INDEX user_daily_visits_visit_ts_idx ON legacy.user_daily_visits (visit_ts DESC);
CREATE INDEX user_daily_visits_visit_ts_desc ON legacy.user_daily_visits (visit_ts DESC);
CREATE INDEX user_daily_visits_platform_null
    ON legacy.user_daily_visits (platform) WHERE platform IS NULL
"""
INDEX_NAMES = ("user_daily_visits_unique", "user_daily_visits_visit_ts_idx",
               "user_daily_visits_visit_ts_desc", "user_daily_visits_platform_null")
# "Today" is a setting so that a benchmark can replay past nights; the old views used now().
TODAY = "current_setting('legacy.today')::date"
VIEWS = f"""
CREATE MATERIALIZED VIEW legacy.user_daily_visits_agg_30d_v2 AS
SELECT date_trunc('day', visit_ts) AS day, user_id, instance, domain,
       count(*) AS visits_count,
       count(*) FILTER (WHERE platform = 'Web') AS web_visits_count,
       count(*) FILTER (WHERE platform = 'Mobile') AS mobile_visits_count,
       count(*) FILTER (WHERE platform = 'Autre') AS other_visits_count
FROM legacy.user_daily_visits
WHERE visit_ts >= {TODAY} - interval '30 days'
GROUP BY 1, 2, 3, 4;
CREATE MATERIALIZED VIEW legacy.user_daily_visits_by_month_1y_v3 AS
SELECT DISTINCT user_id, date_trunc('month', visit_date) AS month, device_id, instance,
       domain, device_type, platform
FROM legacy.user_daily_visits
WHERE device_type <> 'Autre' AND visit_date >= {TODAY} - interval '12 months';
CREATE INDEX ON legacy.user_daily_visits_by_month_1y_v3 (user_id);
CREATE INDEX ON legacy.user_daily_visits_by_month_1y_v3 (month);
CREATE INDEX ON legacy.user_daily_visits_by_month_1y_v3 (device_id);
CREATE INDEX ON legacy.user_daily_visits_by_month_1y_v3 (instance);
CREATE INDEX ON legacy.user_daily_visits_by_month_1y_v3 (domain);
CREATE INDEX ON legacy.user_daily_visits_by_month_1y_v3 (device_type);
CREATE INDEX ON legacy.user_daily_visits_by_month_1y_v3 (platform);
CREATE TABLE legacy.user_monthly_visits_lite (
    user_id varchar NOT NULL, visit_date date NOT NULL, instance varchar, domain varchar,
    PRIMARY KEY (user_id, visit_date))
"""
MONTHLY_LITE = f"""
INSERT INTO legacy.user_monthly_visits_lite (user_id, visit_date, instance, domain)
SELECT DISTINCT ON (user_id, date_trunc('month', visit_date))
       user_id, date_trunc('month', visit_date)::date, instance, domain
FROM legacy.user_daily_visits
WHERE visit_date >= {TODAY} - 30 AND device_type <> 'Autre'
ORDER BY user_id, date_trunc('month', visit_date), visit_ts
ON CONFLICT DO NOTHING
"""
# An empty user agent is an empty string, as in the loader, not NULL.
CSV_OPTIONS = "FORMAT csv, HEADER true, FORCE_NOT_NULL (user_agent)"
CSV_COLUMNS = ("user_id varchar, device_id varchar, visit_ts timestamptz, user_agent varchar, "
               "instance varchar, domain varchar")


def copy_file(cur: psycopg.Cursor, statement: str, path: Path) -> None:
    with cur.copy(statement) as copy, path.open("rb") as f:
        while chunk := f.read(1 << 20):
            copy.write(chunk)


def create(conn: psycopg.Connection, *, indexes: bool = True) -> None:
    conn.execute("DROP SCHEMA IF EXISTS legacy CASCADE; CREATE SCHEMA legacy")
    conn.execute(TABLE)
    if indexes:
        conn.execute(INDEXES)


def load_day(conn: psycopg.Connection, path: Path) -> dict[str, float]:
    """The old loading steps for one file; seconds per step."""
    platform = classify_sql("platform", "user_agent")
    device_type = classify_sql("device_type", "user_agent")
    steps: dict[str, float] = {}
    started = time.perf_counter()
    with conn.transaction():
        conn.execute(f"CREATE TEMP TABLE tmp ({CSV_COLUMNS}) ON COMMIT DROP")
        copy_file(conn.cursor(), f"COPY tmp FROM STDIN ({CSV_OPTIONS})", path)
        steps["copy_temp"] = time.perf_counter() - started
        conn.execute("INSERT INTO legacy.user_daily_visits "
                     "(user_id, device_id, visit_ts, user_agent, instance, domain) "
                     "SELECT * FROM tmp ON CONFLICT DO NOTHING")
    steps["insert_on_conflict"] = time.perf_counter() - started - steps["copy_temp"]
    mark = time.perf_counter()
    batch = (f"UPDATE legacy.user_daily_visits SET platform = {platform}, "
             f"device_type = {device_type}, visit_date = visit_ts::date "
             "WHERE ctid IN (SELECT ctid FROM legacy.user_daily_visits "
             "WHERE platform IS NULL LIMIT 10000)")
    while conn.execute(batch).rowcount:
        pass
    steps["classify_updates"] = time.perf_counter() - mark
    return steps


def refresh_views(conn: psycopg.Connection) -> dict[str, float]:
    """The old nightly refresh; the caller sets legacy.today. Seconds per step."""
    steps: dict[str, float] = {}
    for name, statement in (
            ("refresh_agg_30d_v2",
             "REFRESH MATERIALIZED VIEW legacy.user_daily_visits_agg_30d_v2"),
            ("refresh_by_month_1y_v3",
             "REFRESH MATERIALIZED VIEW legacy.user_daily_visits_by_month_1y_v3"),
            ("insert_monthly_lite", MONTHLY_LITE)):
        started = time.perf_counter()
        conn.execute(statement)
        steps[name] = time.perf_counter() - started
    return steps
