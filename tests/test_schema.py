"""`migrate`: idempotent, never touches the old system's tables, and builds the layout of
DESIGN §4 in the catalog."""

from __future__ import annotations

import os
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from tchap_stats.database import connect
from tchap_stats.schema import LegacySchemaError, migrate, migrations

from .conftest import _names


@pytest.fixture
def empty_db(server_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to a fresh database that nothing has migrated."""
    name = f"tchap_test_{os.getpid()}_{next(_names)}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with connect(psycopg.conninfo.make_conninfo(server_url, dbname=name),
                 autocommit=True) as conn:
        yield conn
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))


def _versions(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute("SELECT version, name, applied_at FROM tchap_stats.schema_version "
                        "ORDER BY version").fetchall()


def test_migrate_is_idempotent(db):
    before = _versions(db)
    assert [v for v, _, _ in before] == [m.version for m in migrations()]
    tables = db.execute("SELECT count(*) FROM pg_class c JOIN pg_namespace n "
                        "ON n.oid = c.relnamespace WHERE n.nspname IN ('public', 'tchap_stats')"
                        ).fetchone()[0]
    assert migrate(db) == []
    assert migrate(db) == []
    assert _versions(db) == before
    assert db.execute("SELECT count(*) FROM pg_class c JOIN pg_namespace n "
                      "ON n.oid = c.relnamespace WHERE n.nspname IN ('public', 'tchap_stats')"
                      ).fetchone()[0] == tables


def test_a_first_migrate_applies_every_migration_and_records_it(empty_db):
    applied = migrate(empty_db)
    assert applied == [f"{m.version:03d}_{m.name}" for m in migrations()]
    assert [(v, n) for v, n, _ in _versions(empty_db)] == [
        (m.version, m.name) for m in migrations()]
    assert migrate(empty_db) == []


LEGACY_TABLE = """
CREATE TABLE public.user_daily_visits (
    user_id     varchar NOT NULL,
    device_id   varchar NOT NULL,
    visit_ts    timestamptz NOT NULL,
    user_agent  varchar NOT NULL,
    instance    varchar NOT NULL,
    domain      varchar NOT NULL,
    platform    varchar,
    device_type varchar,
    visit_date  date
);
CREATE UNIQUE INDEX user_daily_visits_unique
    ON public.user_daily_visits (user_id, device_id, visit_ts);
CREATE INDEX user_daily_visits_visit_ts_idx ON public.user_daily_visits (visit_ts DESC);
CREATE INDEX user_daily_visits_platform_null
    ON public.user_daily_visits (platform) WHERE platform IS NULL;
"""

LEGACY_ROW = ("\\aaaa", "DEV", "2023-05-17 00:00:00+02",
              "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) Safari/605.1.15",
              "agent_x", "x.gouv.fr")


def test_migrate_refuses_a_legacy_database_and_keeps_its_rows(empty_db):
    empty_db.execute(LEGACY_TABLE)
    empty_db.execute("INSERT INTO user_daily_visits (user_id, device_id, visit_ts, user_agent, "
                     "instance, domain) VALUES (%s, %s, %s, %s, %s, %s)", LEGACY_ROW)
    with pytest.raises(LegacySchemaError) as raised:
        migrate(empty_db)
    assert "user_daily_visits" in str(raised.value)
    assert empty_db.execute(
        "SELECT user_id, device_id, to_char(visit_ts AT TIME ZONE 'UTC', "
        "'YYYY-MM-DD HH24:MI:SS+00'), user_agent, instance, domain, platform, device_type, "
        "visit_date FROM user_daily_visits").fetchall() == [
        ("\\aaaa", "DEV", "2023-05-16 22:00:00+00", LEGACY_ROW[3], "agent_x", "x.gouv.fr",
         None, None, None)]
    # Still the old, unpartitioned table with its indexes; nothing half-created beside it.
    assert empty_db.execute("SELECT relkind FROM pg_class WHERE oid = "
                            "'public.user_daily_visits'::regclass").fetchone()[0] == "r"
    assert empty_db.execute("SELECT count(*) FROM pg_indexes WHERE tablename = "
                            "'user_daily_visits'").fetchone()[0] == 3
    assert empty_db.execute("SELECT to_regclass('tchap_stats.schema_version')"
                            ).fetchone()[0] is None
    # And it keeps refusing: a second attempt is no different.
    with pytest.raises(LegacySchemaError):
        migrate(empty_db)
    assert empty_db.execute("SELECT count(*) FROM user_daily_visits").fetchone()[0] == 1


# DESIGN §4 columns, in order, with the types of the old table (DESIGN §8) that the
# dashboards' questions were written against.
USER_DAILY_VISITS_COLUMNS = [
    ("user_id", "character varying"),
    ("device_id", "character varying"),
    ("visit_ts", "timestamp with time zone"),
    ("visit_date", "date"),
    ("user_agent", "character varying"),
    ("instance", "character varying"),
    ("domain", "character varying"),
    ("platform", "character varying"),
    ("device_type", "character varying"),
]


def test_user_daily_visits_columns_and_types(db):
    columns = db.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name = 'user_daily_visits' "
        "ORDER BY ordinal_position").fetchall()
    assert columns == USER_DAILY_VISITS_COLUMNS


def test_user_daily_visits_is_range_partitioned_by_visit_date(db):
    relkind, partkey = db.execute(
        "SELECT c.relkind, pg_get_partkeydef(c.oid) FROM pg_class c "
        "WHERE c.oid = 'public.user_daily_visits'::regclass").fetchone()
    assert relkind == "p"
    assert partkey == "RANGE (visit_date)"
    strategy = db.execute("SELECT partstrat FROM pg_partitioned_table "
                          "WHERE partrelid = 'public.user_daily_visits'::regclass").fetchone()
    assert strategy == ("r",)


EXPORT_TABLES = ["subscriptions_aggregate", "events_aggregate", "account_data_aggregate",
                 "sso_aggregate", "crisp_conversation_segments", "pushers_aggregate"]


@pytest.mark.parametrize("table", EXPORT_TABLES)
def test_migrate_refuses_an_old_export_table_and_keeps_it(empty_db, table):
    empty_db.execute(sql.SQL("CREATE TABLE public.{} (domain varchar, n integer)").format(
        sql.Identifier(table)))
    empty_db.execute(sql.SQL("INSERT INTO {} VALUES ('x.gouv.fr', 1)").format(
        sql.Identifier(table)))
    with pytest.raises(LegacySchemaError, match=f"{table} \\(table\\)"):
        migrate(empty_db)
    assert empty_db.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(table))
                            ).fetchall() == [("x.gouv.fr", 1)]
    assert empty_db.execute("SELECT to_regclass('tchap_stats.schema_version')"
                            ).fetchone()[0] is None


def test_an_old_table_is_refused_while_the_migration_creating_ours_is_pending(db):
    # A database on the core schema only (005 not applied yet) that holds the old system's
    # crisp table: our own table is a plain table too, so only the pending version tells.
    db.execute("DELETE FROM tchap_stats.schema_version WHERE version = 5")
    for table in EXPORT_TABLES:
        db.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(table)))
    db.execute("CREATE TABLE crisp_conversation_segments (session_id varchar, "
               "segment varchar, created_at timestamp)")
    with pytest.raises(LegacySchemaError, match="crisp_conversation_segments"):
        migrate(db)
    db.execute("DROP TABLE crisp_conversation_segments")
    assert migrate(db) == ["005_exports"]
    assert migrate(db) == []  # ours, once created, are never taken for the old ones


def test_migrations_may_skip_numbers():
    versions = [m.version for m in migrations()]
    assert versions == sorted(set(versions))
    assert 5 in versions


def test_scripts_split_at_semicolons_outside_strings_comments_and_dollar_quotes():
    from tchap_stats.sqltext import statements

    script = """-- a comment; with a semicolon
SELECT 'a;b', "odd;name" FROM t;  /* block; comment */
DO $body$ BEGIN PERFORM 1; END $body$;
INSERT INTO t VALUES ($$x;y$$);
-- only a comment at the end;
"""
    assert statements(script) == [
        "-- a comment; with a semicolon\nSELECT 'a;b', \"odd;name\" FROM t",
        "/* block; comment */\nDO $body$ BEGIN PERFORM 1; END $body$",
        "INSERT INTO t VALUES ($$x;y$$)"]


def test_read_roles_may_read_every_dashboard_name_and_nothing_else(db, server_url):
    """TCHAP_STATS_READ_ROLES: a role of Metabase's reads the dashboards, through the SQL
    functions their views inline too; not the run log. A missing role is named."""
    from tchap_stats.schema import DASHBOARD_NAMES, READER_VIEWS, RoleMissing

    role = f"reader_{os.getpid()}_{next(_names)}"
    db.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(role)))
    try:
        migrate(db, read_roles=[role])
        db.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
        for name in (*DASHBOARD_NAMES, *READER_VIEWS, "tchap_stats.freshness"):
            db.execute(sql.SQL("SELECT * FROM {}").format(
                sql.Identifier(*name.split(".")) if "." in name
                else sql.Identifier("public", name))).fetchall()
        for forbidden in ("tchap_stats.runs", "tchap_stats.loads", "public.user_daily_visits"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                db.execute(f"SELECT FROM {forbidden}")
        db.execute("RESET ROLE")
        with pytest.raises(RoleMissing, match=f"'{role}_gone', which does not exist"):
            migrate(db, read_roles=[f"{role}_gone"])
    finally:
        db.execute("RESET ROLE")
        db.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        db.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


QUEUE = ("INSERT INTO tchap_stats.summary_queue "
         "(summary_group, day, last_load_id, fresh, rewritten) VALUES (%s, %s, %s, %s, %s)")
LATE = ("INSERT INTO tchap_stats.late_rows (summary_group, visit_date, new_key, user_id, "
        "device_id, visit_ts, instance, domain, platform, device_type) "
        "VALUES (%s, %s, true, %s, 'D', '2025-03-01 10:00+01', 'agent', 'x.gouv.fr', "
        "'Web', 'Web')")


def test_migration_018_queues_for_the_monthly_group_what_the_daily_one_had_not_consumed(db):
    """user_months moved to the monthly group: a day (and its late rows) only the daily
    group still held must reach it through the monthly group's queue."""
    db.execute("DELETE FROM tchap_stats.schema_version WHERE version = 18")
    db.execute(QUEUE, ("daily", "2025-03-01", 7, True, False))     # the monthly group had it
    db.execute(QUEUE, ("daily", "2025-03-02", 8, False, True))     # both still hold it
    db.execute(QUEUE, ("monthly", "2025-03-02", 5, False, False))
    db.execute(LATE, ("daily", "2025-03-01", "@only-daily"))
    db.execute(LATE, ("daily", "2025-03-02", "@both"))
    db.execute(LATE, ("monthly", "2025-03-02", "@both"))
    assert migrate(db) == ["018_user_months_in_the_monthly_group"]
    assert db.execute(
        "SELECT day::text, last_load_id, fresh, rewritten FROM tchap_stats.summary_queue "
        "WHERE summary_group = 'monthly' ORDER BY day").fetchall() == [
            ("2025-03-01", 7, True, False), ("2025-03-02", 8, False, True)]
    assert db.execute(
        "SELECT visit_date::text, user_id FROM tchap_stats.late_rows "
        "WHERE summary_group = 'monthly' ORDER BY 1").fetchall() == [
            ("2025-03-01", "@only-daily"), ("2025-03-02", "@both")]


def test_migration_019_gives_the_user_months_group_what_the_monthly_one_had_not_consumed(db):
    """user_months got a group of its own: what the monthly group (which refreshed it since
    migration 018) still held must reach it through its own queue."""
    db.execute("DELETE FROM tchap_stats.schema_version WHERE version = 19")
    db.execute("DELETE FROM tchap_stats.summary_queue")
    db.execute("DELETE FROM tchap_stats.late_rows")
    db.execute(QUEUE, ("daily", "2025-03-01", 7, True, False))    # the daily group's alone
    db.execute(QUEUE, ("monthly", "2025-03-02", 8, False, True))
    db.execute(LATE, ("monthly", "2025-03-02", "@late"))
    assert migrate(db) == ["019_user_months_group"]
    assert db.execute(
        "SELECT day::text, last_load_id, fresh, rewritten FROM tchap_stats.summary_queue "
        "WHERE summary_group = 'user_months'").fetchall() == [("2025-03-02", 8, False, True)]
    assert db.execute(
        "SELECT visit_date::text, user_id FROM tchap_stats.late_rows "
        "WHERE summary_group = 'user_months'").fetchall() == [("2025-03-02", "@late")]
