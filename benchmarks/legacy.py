"""The old system's nightly path (DESIGN §8), rebuilt faithfully: the baseline of the
benchmarks. Its tables live in schema `legacy`, beside (never inside) tchap-stats' own.

Per day: COPY the CSV into a temp table; INSERT … ON CONFLICT DO NOTHING into the
unpartitioned, indexed user_daily_visits; classify with UPDATEs of 10,000 rows (by ctid);
REFRESH the two materialized views; fill user_monthly_visits_lite from the last 30 days.
"""

from __future__ import annotations

import re
import time
from datetime import date
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


# The other exports' old tables, as the old scripts created them: nullable columns, the
# unique indexes their ON CONFLICT clauses named, none on sso_aggregate (reruns duplicated
# its rows), added_date the load's day.
EXPORT_TABLES = """
CREATE TABLE legacy.subscriptions_aggregate (
    subscriptions integer, domain varchar, hour timestamptz, instance varchar);
CREATE UNIQUE INDEX subscriptions_aggregate_unique
    ON legacy.subscriptions_aggregate (domain, hour, instance);
CREATE TABLE legacy.events_aggregate (
    events integer, domain varchar, hour timestamptz, instance varchar, type varchar);
CREATE UNIQUE INDEX events_aggregate_unique
    ON legacy.events_aggregate (domain, hour, instance, type);
CREATE INDEX events_aggregate_hour ON legacy.events_aggregate (hour);
CREATE TABLE legacy.account_data_aggregate (
    user_id varchar, account_data_type varchar, content varchar, instance varchar,
    domain varchar);
CREATE UNIQUE INDEX account_data_aggregate_unique
    ON legacy.account_data_aggregate (user_id, account_data_type);
CREATE TABLE legacy.sso_aggregate (
    total_users integer, domain varchar, instance varchar, only_pwd integer,
    pwd_and_prococonnect integer, only_proconnect integer,
    added_date date DEFAULT current_date);
CREATE TABLE legacy.crisp_conversation_segments (
    session_id varchar, segment varchar, state varchar, domain varchar,
    created_at timestamp, updated_at timestamp);
CREATE UNIQUE INDEX crisp_conversation_segments_unique
    ON legacy.crisp_conversation_segments (session_id, segment);
CREATE TABLE legacy.pushers_aggregate (
    user_name varchar, device_id varchar, app_id varchar, kind varchar, is_enabled boolean,
    instance varchar, domain varchar, added_date date DEFAULT current_date);
CREATE UNIQUE INDEX pushers_aggregate_unique
    ON legacy.pushers_aggregate (added_date, kind, app_id, device_id)
"""


def in_schema(text: str, schema: str) -> str:
    """The old DDL for another schema (public: the old system's own database); the
    `legacy.today` setting keeps its name."""
    return re.sub(r"\blegacy\.(?!today\b)", f"{schema}.", text)


def create_old_database(conn: psycopg.Connection, today: date,
                        schema: str = "public") -> None:
    """The whole old layout in `schema`: user_daily_visits with its indexes, the
    materialized views, user_monthly_visits_lite and the other exports' tables. The views'
    "today" is the `legacy.today` setting, set here for this session (REFRESH them with it
    set)."""
    conn.execute("SELECT set_config('legacy.today', %s, false)", (today.isoformat(),))
    for text in (TABLE, INDEXES, VIEWS, EXPORT_TABLES):
        conn.execute(in_schema(text, schema))
