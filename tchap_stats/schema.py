"""`tchap-stats migrate`: apply the numbered files of tchap_stats/sql/migrations/ once each,
in order.

Idempotent and safe on every deploy: applied versions are recorded in
tchap_stats.schema_version, and an advisory lock serialises concurrent runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.resources.abc import Traversable

import psycopg
from psycopg import sql

from .config import DEFAULT_TZ, SQL_DIR
from .database import one

MIGRATIONS_DIR = SQL_DIR / "migrations"
_LOCK_KEY = 0x7C4A_0001  # advisory lock id for migrations


class SchemaNotReady(RuntimeError):
    """The database lacks migrations this version needs."""


class LegacySchemaError(RuntimeError):
    """The database holds the old system's tables where ours would go."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Traversable


def migrations() -> list[Migration]:
    found = []
    for path in sorted((p for p in MIGRATIONS_DIR.iterdir() if p.name.endswith(".sql")),
                       key=lambda p: p.name):
        match = re.fullmatch(r"(\d+)_(\w+)\.sql", path.name)
        if not match:
            raise RuntimeError(f"{path}: migration files are named NNN_name.sql")
        found.append(Migration(int(match[1]), match[2], path))
    # Numbers may have gaps (a migration may land from another branch later): applied
    # versions are recorded one by one, so only the order and uniqueness matter.
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"{MIGRATIONS_DIR}: two migrations share a number: {versions}")
    return found


DASHBOARD_NAMES = (
    "user_daily_visits_agg_30d_v2", "user_daily_visits_agg_30d", "user_daily_visits_agg_120d",
    "user_daily_visits_agg_1y", "user_daily_visits_by_month_1y_v3",
    "user_daily_visits_by_month_1y", "user_daily_visits_by_month_18m", "user_monthly_visits_lite",
)
# What a role reading the dashboards needs besides them: the views over the active-user
# summaries, the freshness card, and the summaries the dashboards' SQL functions read (an
# inlined function's tables are checked against the reader, not the view's owner).
READER_VIEWS = ("daily_active_users", "monthly_active_users", "rolling_30d_active_users")
READER_TABLES = ("tchap_stats.user_visits_daily", "tchap_stats.user_devices_monthly",
                 "tchap_stats.freshness")
# The old system's table names that a migration creates: while that migration is pending,
# any relation under such a name is the old system's (ours does not exist yet).
LEGACY_NAMES_BY_VERSION = {
    5: ("subscriptions_aggregate", "events_aggregate", "account_data_aggregate",
        "sso_aggregate", "crisp_conversation_segments", "pushers_aggregate"),
}
# Ours are partitioned: under these names, a plain table is always the old system's.
PARTITIONED_NAMES = ("user_daily_visits", "subscriptions_aggregate", "events_aggregate",
                     "sso_aggregate", "pushers_aggregate")
KINDS = {"r": "table", "m": "materialized view", "v": "view", "p": "partitioned table"}


def _legacy_tables(conn: psycopg.Connection, pending: set[int]) -> list[str]:
    """Old-system relations where ours would go: unpartitioned tables under our partitioned
    tables' names, dashboard names that are tables or materialized views (ours are views),
    and any relation under a name a pending migration would create."""
    created = [n for v, names in LEGACY_NAMES_BY_VERSION.items() if v in pending for n in names]
    rows = conn.execute(
        """
        SELECT c.relname, c.relkind
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public'
          AND ((c.relname = ANY(%s) AND c.relkind = 'r')
               OR (c.relname = ANY(%s) AND c.relkind IN ('r', 'm', 'p'))
               OR (c.relname = ANY(%s) AND c.relkind IN ('r', 'm', 'p', 'v')))
        ORDER BY 1
        """,
        (list(PARTITIONED_NAMES), list(DASHBOARD_NAMES), created),
    ).fetchall()
    return [f"{name} ({KINDS[kind]})" for name, kind in rows]


def applied_versions(conn: psycopg.Connection) -> set[int]:
    exists = one(conn.execute("SELECT to_regclass('tchap_stats.schema_version')"))[0]
    if exists is None:
        return set()
    return {v for (v,) in conn.execute("SELECT version FROM tchap_stats.schema_version")}


def migrate(conn: psycopg.Connection, timezone: str = DEFAULT_TZ,
            read_roles: Iterable[str] = ()) -> list[str]:
    """Apply what is missing; return the names of the migrations applied now. `timezone`
    (TCHAP_STATS_TZ) is the zone whose calendar the dashboards' views follow: migrations
    write it where they say {timezone}. `read_roles` (TCHAP_STATS_READ_ROLES) are granted
    what the dashboards read, every time (a migration may have added to it)."""
    applied_now = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        done = applied_versions(conn)
        pending = {m.version for m in migrations()} - done
        if pending:
            legacy = _legacy_tables(conn, pending)
            if legacy:
                raise LegacySchemaError(
                    "this database holds the old system's " + ", ".join(legacy)
                    + f" ({takeover_state(conn)}). `migrate` never drops or rewrites existing "
                    "data: take it over with `tchap-stats migrate-legacy` (`--dry-run` shows "
                    "its plan first), or point DATABASE_URL at an empty database.")
        conn.execute("CREATE SCHEMA IF NOT EXISTS tchap_stats")
        create_version_table(conn)
        for migration in migrations():
            if migration.version in done:
                continue
            conn.execute(migration_sql(migration, timezone))
            record_version(conn, migration)
            applied_now.append(f"{migration.version:03d}_{migration.name}")
        grant_reading(conn, read_roles)
    return applied_now


def grant_reading(conn: psycopg.Connection, roles: Iterable[str]) -> None:
    """Let `roles` (Metabase's) read every dashboard name and the freshness card; nothing
    else of schema tchap_stats (its run log, its ledger)."""
    views = [sql.Identifier("public", n) for n in (*DASHBOARD_NAMES, *READER_VIEWS)]
    tables = [sql.Identifier(*name.split(".")) for name in READER_TABLES]
    for role in roles:
        grantee: sql.Composable = sql.Identifier(role)
        if role.upper() == "PUBLIC":
            grantee = sql.SQL("PUBLIC")
        elif one(conn.execute("SELECT to_regrole(%s)", (role,)))[0] is None:
            raise RoleMissing(f"TCHAP_STATS_READ_ROLES names the role {role!r}, which does "
                              "not exist in this database's server")
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA tchap_stats TO {}").format(grantee))
        conn.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(
            sql.SQL(", ").join([*views, *tables]), grantee))


class RoleMissing(RuntimeError):
    """A role to grant reading to does not exist."""


def create_version_table(conn: psycopg.Connection) -> None:
    conn.execute(
        """
        CREATE TABLE IF NOT EXISTS tchap_stats.schema_version (
            version    integer PRIMARY KEY,
            name       text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )


def record_version(conn: psycopg.Connection, migration: Migration) -> None:
    conn.execute("INSERT INTO tchap_stats.schema_version (version, name) VALUES (%s, %s)",
                 (migration.version, migration.name))


def migration_sql(migration: Migration, timezone: str, public: str = "public") -> sql.Composed:
    """A migration's statements, with the zone written where it says {timezone}. `public`:
    the schema its objects of schema public are created in instead (the legacy takeover
    builds the new layout in a staging schema while the old tables keep public's names)."""
    text = migration.path.read_text()
    if public != "public":
        text = re.sub(r"\bpublic\.", f"{public}.", text)
    return sql.SQL(text).format(timezone=sql.Literal(timezone))


def takeover_state(conn: psycopg.Connection) -> str:
    """Where the takeover of the old system's database stands, in words (before its switch:
    tchap-stats' own tables are in schema tchap_stats, its public ones in legacy_new)."""
    if one(conn.execute("SELECT to_regclass('tchap_stats.legacy_takeover')"))[0] is None:
        return "takeover not started"
    moved, units = one(conn.execute(
        "SELECT count(*) FILTER (WHERE moved_at IS NOT NULL), count(*) "
        "FROM tchap_stats.legacy_units"))
    return f"takeover in progress: {moved} of {units} unit(s) moved"


def require_schema(conn: psycopg.Connection) -> None:
    missing = {m.version for m in migrations()} - applied_versions(conn)
    legacy = _legacy_tables(conn, missing) if missing else []
    if legacy:
        raise SchemaNotReady(
            f"this database is still in the old system's layout ({takeover_state(conn)}): "
            "nothing is loaded into it until `tchap-stats migrate-legacy` has taken it over")
    if missing:
        raise SchemaNotReady(
            "the database schema is not up to date (missing migrations "
            f"{sorted(missing)}): run `tchap-stats migrate`"
        )
