"""`tchap-stats migrate`: apply the numbered files of tchap_stats/sql/migrations/ once each,
in order.

Idempotent and safe on every deploy: applied versions are recorded in
tchap_stats.schema_version, and an advisory lock serialises concurrent runs.
"""

from __future__ import annotations

import re
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


def migrate(conn: psycopg.Connection, timezone: str = DEFAULT_TZ) -> list[str]:
    """Apply what is missing; return the names of the migrations applied now. `timezone`
    (TCHAP_STATS_TZ) is the zone whose calendar the dashboards' views follow: migrations
    write it where they say {timezone}."""
    applied_now = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        done = applied_versions(conn)
        pending = {m.version for m in migrations()} - done
        if pending:
            legacy = _legacy_tables(conn, pending)
            if legacy:
                raise LegacySchemaError(
                    "this database holds the old system's " + ", ".join(legacy) + ". "
                    "`migrate` never drops or rewrites existing data: take it over with "
                    "`tchap-stats migrate-legacy` (`--dry-run` shows its plan first), or "
                    "point DATABASE_URL at an empty database."
                )
        conn.execute("CREATE SCHEMA IF NOT EXISTS tchap_stats")
        create_version_table(conn)
        for migration in migrations():
            if migration.version in done:
                continue
            conn.execute(migration_sql(migration, timezone))
            record_version(conn, migration)
            applied_now.append(f"{migration.version:03d}_{migration.name}")
    return applied_now


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


def require_schema(conn: psycopg.Connection) -> None:
    missing = {m.version for m in migrations()} - applied_versions(conn)
    if missing:
        raise SchemaNotReady(
            "the database schema is not up to date (missing migrations "
            f"{sorted(missing)}): run `tchap-stats migrate`"
        )
