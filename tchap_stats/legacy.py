"""`tchap-stats migrate-legacy`: take over a database of the old system.

The new layout is built in schema legacy_new (STAGING) while the old tables, materialized
views and user_monthly_visits_lite keep their names in public and keep answering. Rows move
a unit at a time: a month of user_daily_visits (month of visit_ts in the configured zone),
or a whole old export table. Each unit is one REPEATABLE READ transaction that converts the
rows by their export's rules (tchap_stats/exports.py: zone day, classification, merge
rule), checks a count and a checksum computed on both sides, leaves a month's days in
changed_days and records the unit (tchap_stats.legacy_units, migration 011): a unit is
moved once, or not at all. The summaries are refreshed beside the moves, by the nightly
machinery on a thread of their own. Triggers on the old tables note the units their writes
change after that, which are moved again. Once every unit is moved and summarised, one
transaction (the switch) moves the old relations to legacy_old and the new ones to public;
`--finish` drops legacy_old. docs/design.md, "Taking over the old database", says why.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from time import monotonic
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg import sql

from . import summaries
from .classify import classify_sql
from .config import SQL_DIR
from .database import connect, one
from .dates import days_between, month_bounds, today, whole_months_between
from .exports import (
    ACCOUNT_DATA,
    EVENTS_AGGREGATE,
    EXPORTS,
    PG_TYPES,
    SUBSCRIPTIONS_AGGREGATE,
    USER_DAILY_VISITS,
    Export,
)
from .load import day_bounds, partition_name
from .schema import (
    DASHBOARD_NAMES,
    applied_versions,
    create_version_table,
    grant_reading,
    migration_sql,
    migrations,
    record_version,
)

log = logging.getLogger("tchap_stats")

STAGING = "legacy_new"  # where the new layout is built until the switch
OLD = "legacy_old"  # where the old relations go at the switch, until --finish
EXIT_TIME_BUDGET = 5  # stopped at --max-minutes with work left: run again
_TAKEOVER_LOCK = 0x7C4A_0004  # advisory lock id: one takeover at a time
# Before any unit was measured, the budget assumes these rates (rows a second): below what
# a 2-core server measured (benchmarks/README.md, "Taking over the old database"), so that
# a first unit is not started when it may not fit.
ASSUMED_MOVE_RATE = 30_000.0
ASSUMED_SUMMARY_RATE = 15_000.0
LOAD_SQL = SQL_DIR / "load"
VISITS = USER_DAILY_VISITS.table
TRIGGERS = {  # trigger name → (event, REFERENCING clause)
    "tchap_stats_takeover_insert": ("INSERT", "REFERENCING NEW TABLE AS changed"),
    "tchap_stats_takeover_update": ("UPDATE", "REFERENCING OLD TABLE AS changed_before "
                                              "NEW TABLE AS changed"),
    "tchap_stats_takeover_delete": ("DELETE", "REFERENCING OLD TABLE AS changed"),
    "tchap_stats_takeover_truncate": ("TRUNCATE", ""),
}


class TakeoverError(RuntimeError):
    """The takeover cannot go on (verification mismatch, an old table it cannot read, a
    zone that changed); nothing of the unit at fault was recorded."""


# Tables taken over, in the order they move: the exports' small tables, then the months.
TABLES: tuple[Export, ...] = (*(e for e in EXPORTS.values() if e is not USER_DAILY_VISITS),
                              USER_DAILY_VISITS)


@dataclass(frozen=True)
class Unit:
    relation: str  # the old table's name (public) and ours
    month: date | None  # user_daily_visits: a month in the zone; else None (whole table)
    rows: int | None  # old rows, as planned (None: not counted yet)
    moved: bool = False
    changed: bool = False  # moved, but the old system wrote to it since
    estimated: bool = False  # rows estimated from the statistics (ESTIMATE_ABOVE_ROWS)

    @property
    def name(self) -> str:
        return f"{self.relation} {self.month:%Y-%m}" if self.month else self.relation

    @property
    def export(self) -> Export:
        return next(e for e in TABLES if e.table == self.relation)

    @property
    def pending(self) -> bool:
        return not self.moved or self.changed


@dataclass
class Moved:
    unit: Unit
    rows_old: int
    rows_new: int
    duplicates: int
    skipped: int
    days_corrected: int
    days_filled: int
    classified: int
    checksum: int
    seconds: float
    steps: dict[str, float] = field(default_factory=dict)  # seconds per step (benchmarks)

    def line(self) -> str:
        details = [f"{self.duplicates:,} duplicates merged"]
        if self.unit.relation == VISITS:
            details.append(f"visit_date corrected on {self.days_corrected:,}, filled on "
                           f"{self.days_filled:,}")
            details.append(f"{self.classified:,} classified")
        if self.skipped:
            details.append(f"{self.skipped:,} left out (NULL where a value is required)")
        again = " (again: the old system wrote to it)" if self.unit.changed else ""
        return (f"{self.unit.name}{again}: {self.rows_old:,} old rows → {self.rows_new:,} "
                f"({'; '.join(details)}) · count and checksum verified · {self.seconds:.1f} s")


@dataclass
class Plan:
    state: str  # "none" (nothing to take over), "new", "in progress", "switched", "finished"
    units: list[Unit] = field(default_factory=list)
    old_relations: list[tuple[str, str]] = field(default_factory=list)  # (name, kind)
    rates: Rates = field(default_factory=lambda: Rates())
    backlog: int = 0  # rows moved whose summaries wait
    readers: list[str] = field(default_factory=list)  # others' views on the old relations

    @property
    def pending(self) -> list[Unit]:
        return [u for u in self.units if u.pending]


@dataclass
class Outcome:
    exit_code: int
    moved: list[Moved] = field(default_factory=list)

    def totals(self) -> str:
        m = self.moved
        return (f"{len(m)} unit(s) moved: {sum(x.rows_old for x in m):,} old rows → "
                f"{sum(x.rows_new for x in m):,} ({sum(x.duplicates for x in m):,} "
                f"duplicates merged, {sum(x.skipped for x in m):,} left out; visit_date "
                f"corrected on {sum(x.days_corrected for x in m):,} rows, filled on "
                f"{sum(x.days_filled for x in m):,}; {sum(x.classified for x in m):,} "
                f"classified) · {sum(x.seconds for x in m):.1f} s")


Echo = Callable[[str], None]
KINDS = {"r": "table", "p": "table", "m": "materialized view", "v": "view"}
ALTER = {"r": "TABLE", "p": "TABLE", "m": "MATERIALIZED VIEW", "v": "VIEW"}


# --- what the old database holds ------------------------------------------------------------

def old_relations(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """The old system's relations in public that the new layout replaces: its tables and
    the relations under the dashboards' names (before the switch, nothing of ours is in
    public)."""
    names = [e.table for e in TABLES] + list(DASHBOARD_NAMES)
    return [(n, k) for n, k in conn.execute(
        "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relname = ANY(%s) "
        "AND c.relkind IN ('r', 'p', 'm', 'v') ORDER BY 1", (names,)).fetchall()]


def _old_tables(conn: psycopg.Connection) -> list[Export]:
    """The exports whose old table is in public (a plain table: the old system's, on a
    database without tchap_stats' schema_version)."""
    present = {n for n, k in old_relations(conn) if k == "r"}
    return [e for e in TABLES if e.table in present]


def _state(conn: psycopg.Connection) -> dict[str, Any] | None:
    if one(conn.execute("SELECT to_regclass('tchap_stats.legacy_takeover')"))[0] is None:
        return None
    row = conn.execute("SELECT timezone, staged_versions, planned_at, switched_at, "
                       "finished_at FROM tchap_stats.legacy_takeover").fetchone()
    if row is None:
        return None
    keys = ("timezone", "staged_versions", "planned_at", "switched_at", "finished_at")
    return dict(zip(keys, row, strict=True))


def _count_months(conn: psycopg.Connection, timezone: str) -> list[tuple[date, int]]:
    """Old visits per month of visit_ts in the zone: one pass over the old table (the
    visit_ts index, or the table, as the planner finds cheaper)."""
    return conn.execute(
        "SELECT date_trunc('month', visit_ts AT TIME ZONE %s)::date, count(*) "
        "FROM public.user_daily_visits GROUP BY 1 ORDER BY 1", (timezone,)).fetchall()


# Above this many old visits (the table's statistics say), the plan estimates each month's
# rows instead of counting them: counting is a pass over the whole table, hours at tens of
# billions of rows. Each month is counted exactly anyway when it moves.
ESTIMATE_ABOVE_ROWS = 50_000_000


def _estimate_months(conn: psycopg.Connection, timezone: str) -> list[tuple[date, int]] | None:
    """Old visits per month, estimated from the statistics of visit_ts (its histogram and
    most common values, times the table's row count), for every month from the first
    visit's to the last one's (two index lookups), none left out. None: the table is small
    enough to count, or has no statistics yet."""
    total = one(conn.execute("SELECT reltuples FROM pg_class "
                             "WHERE oid = 'public.user_daily_visits'::regclass"))[0]
    stats = conn.execute(
        "SELECT null_frac, histogram_bounds::text::timestamptz[], "
        "       most_common_vals::text::timestamptz[], most_common_freqs "
        "FROM pg_stats WHERE schemaname = 'public' AND tablename = 'user_daily_visits' "
        "AND attname = 'visit_ts'").fetchone()
    if total < ESTIMATE_ABOVE_ROWS or stats is None:
        return None
    null_frac, bounds, common, frequencies = stats
    first, last = one(conn.execute("SELECT min(visit_ts), max(visit_ts) "
                                   "FROM public.user_daily_visits"))
    zone = ZoneInfo(timezone)
    months = whole_months_between(first.astimezone(zone).date(), last.astimezone(zone).date())
    share = dict.fromkeys(months, 0.0)
    for value, frequency in zip(common or [], frequencies or [], strict=True):
        share[value.astimezone(zone).date().replace(day=1)] += frequency
    spread = 1 - (null_frac or 0) - sum(frequencies or [])
    buckets = list(zip(bounds or [], (bounds or [])[1:], strict=False))
    for low, high in buckets:  # each holds an equal part of the rest, spread evenly in time
        for month in months:
            start, end = (datetime.combine(d, time(), zone) for d in month_bounds(month))
            overlap = (min(high, end) - max(low, start)).total_seconds()
            width = (high - low).total_seconds()
            if overlap > 0 and width > 0:
                share[month] += spread / len(buckets) * overlap / width
    return [(month, round(share[month] * total)) for month in months]


def _count_table(conn: psycopg.Connection, export: Export) -> int:
    return one(conn.execute(sql.SQL("SELECT count(*) FROM public.{}").format(
        sql.Identifier(export.table))))[0]


def _counted_units(conn: psycopg.Connection, timezone: str) -> list[Unit]:
    units = []
    for export in _old_tables(conn):
        if export is USER_DAILY_VISITS:
            estimated = _estimate_months(conn, timezone)
            units += [Unit(VISITS, month, rows, estimated=estimated is not None)
                      for month, rows in estimated or _count_months(conn, timezone)]
        else:
            units.append(Unit(export.table, None, _count_table(conn, export)))
    return units


def _recorded_units(conn: psycopg.Connection) -> list[Unit]:
    """The units the plan recorded, with their state, and months the old system wrote to
    that the plan had not seen (their rows not counted yet)."""
    rows = conn.execute(
        """
        WITH noted AS (SELECT DISTINCT relation, month FROM tchap_stats.legacy_changes)
        SELECT coalesce(u.relation, n.relation), coalesce(u.month, n.month), u.rows_planned,
               coalesce(u.moved_at IS NOT NULL, false), n.relation IS NOT NULL
        FROM tchap_stats.legacy_units AS u
        FULL JOIN noted AS n
          ON n.relation = u.relation AND n.month IS NOT DISTINCT FROM u.month
        """).fetchall()
    order = [e.table for e in TABLES]
    units = [Unit(r, m, planned, moved, moved and noted)
             for r, m, planned, moved, noted in rows]
    return sorted(units, key=lambda u: (order.index(u.relation), u.month or date.min))


# Units smaller than this do not measure the rate: their fixed costs (a transaction, the
# summaries' statements, their ANALYZE) would make a month of millions look like days.
RATE_MIN_ROWS = 100_000


@dataclass(frozen=True)
class Rates:
    """Rows a second: moving (and checking) a unit, and refreshing a month's summaries."""

    move: float = ASSUMED_MOVE_RATE
    summaries: float = ASSUMED_SUMMARY_RATE
    measured: bool = False

    summaries_measured: bool = False

    def describe(self) -> str:
        def how(measured: bool) -> str:
            return "measured" if measured else "assumed"
        return (f"{self.move:,.0f} rows/s moved ({how(self.measured)}), "
                f"{self.summaries:,.0f} summarised ({how(self.summaries_measured)})")

    def seconds(self, units: list[Unit], backlog: int = 0) -> float:
        """How long `units` take from now, moved one after the other while the summaries
        of each month follow beside them, after the `backlog` of rows moved whose summaries
        are not refreshed yet."""
        moved = 0.0
        summarised = backlog / self.summaries
        for unit in units:
            moved += (unit.rows or 0) / self.move
            if unit.relation == VISITS:
                summarised = max(summarised, moved) + (unit.rows or 0) / self.summaries
        return max(moved, summarised)


def _rates(conn: psycopg.Connection) -> Rates:
    """Over the units moved so far of RATE_MIN_ROWS rows or more; else the assumed ones."""
    rows, seconds, summarised, summary_seconds = one(conn.execute(
        "SELECT m.rows, m.seconds, r.rows, r.seconds "
        "FROM (SELECT sum(rows_old) AS rows, sum(seconds) AS seconds "
        "      FROM tchap_stats.legacy_units "
        "      WHERE moved_at IS NOT NULL AND rows_old >= %(min)s) AS m, "
        "     (SELECT sum(rows_old) AS rows, sum(seconds) AS seconds "
        "      FROM tchap_stats.legacy_refreshes WHERE rows_old >= %(min)s) AS r",
        {"min": RATE_MIN_ROWS}))
    if not (rows and seconds):
        return Rates()
    summary_rate = (float(summarised) / float(summary_seconds) if summary_seconds
                    else ASSUMED_SUMMARY_RATE)
    return Rates(float(rows) / float(seconds), summary_rate, True, bool(summary_seconds))


def _backlog(conn: psycopg.Connection) -> int:
    """Rows of the months moved whose days still wait for their summaries."""
    return int(one(conn.execute(
        "SELECT coalesce(sum(u.rows_old), 0) FROM tchap_stats.legacy_units AS u "
        "WHERE u.relation = %s AND u.moved_at IS NOT NULL AND EXISTS ("
        "  SELECT FROM (SELECT day FROM tchap_stats.changed_days WHERE export = %s "
        "               UNION ALL SELECT day FROM tchap_stats.summary_queue) AS w "
        "  WHERE w.day >= u.month AND w.day < u.month + interval '1 month')",
        (VISITS, VISITS)))[0])


def plan(conn: psycopg.Connection, timezone: str) -> Plan:
    """What the takeover has left to do; reads only (the counts of a takeover not started
    yet take one pass over the old tables)."""
    state = _state(conn)
    if state is None:
        relations = old_relations(conn)
        if applied_versions(conn) or not any(k == "r" for _, k in relations):
            return Plan("none", old_relations=relations)
        return Plan("new", _counted_units(conn, timezone), relations,
                    readers=_views_reading(conn, "public", [n for n, _ in relations]))
    if state["finished_at"]:
        return Plan("finished")
    if state["switched_at"]:
        return Plan("switched", _recorded_units(conn))
    units = _recorded_units(conn) if state["planned_at"] else _counted_units(conn, timezone)
    relations = old_relations(conn)
    return Plan("in progress", units, relations, _rates(conn), _backlog(conn),
                _views_reading(conn, "public", [n for n, _ in relations]))


# --- converting an old table's rows -----------------------------------------------------------

def _old_columns(conn: psycopg.Connection, table: str) -> set[str]:
    return {name for (name,) in conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
        "AND NOT attisdropped", (sql.Identifier("public", table).as_string(conn),))}


@dataclass(frozen=True)
class Conversion:
    """How an old table's rows become the new table's, as SQL over the old rows (alias o)."""

    export: Export
    columns: dict[str, sql.Composable]  # new column → expression
    required: list[sql.Composable]  # expressions a row cannot be taken over without
    extras: dict[str, sql.Composable]  # more columns the statistics need (visits)

    @property
    def names(self) -> sql.Composable:
        return sql.SQL(", ").join(map(sql.Identifier, self.export.table_columns))

    def select(self, scope: sql.Composable) -> sql.Composed:
        """The converted rows of the unit, with _ok: whether the row can be taken over."""
        exprs = [sql.SQL("{} AS {}").format(e, sql.Identifier(c))
                 for c, e in self.columns.items()]
        exprs += [sql.SQL("{} AS {}").format(e, sql.Identifier(c))
                  for c, e in self.extras.items()]
        ok = sql.SQL(" AND ").join(sql.SQL("({}) IS NOT NULL").format(r)
                                   for r in self.required) if self.required else sql.SQL("true")
        return sql.SQL("SELECT {}, {} AS _ok FROM public.{} AS o WHERE {}").format(
            sql.SQL(", ").join(exprs), ok, sql.Identifier(self.export.table), scope)

    def _text(self, column: str) -> bool:
        return self.export.column_type(column) == "text"

    def _ordered(self, column: str, descending: bool = False) -> sql.Composable:
        collated = (sql.SQL('{} COLLATE "C"') if self._text(column) else sql.SQL("{}")).format(
            sql.Identifier(column))
        return sql.SQL("{} DESC").format(collated) if descending else collated

    @property
    def key(self) -> sql.Composable:
        return sql.SQL(", ").join(self._ordered(c) for c in self.export.key)

    @property
    def order(self) -> sql.Composable:
        rule = self.export.merge
        return sql.SQL(", ").join(self._ordered(c, rule.descending) for c in rule.order)

    @property
    def winner(self) -> sql.Composable:
        """The aggregate of a key's rows that gives its winner's first order column."""
        column = self.export.merge.order[0]
        least = not self.export.merge.descending
        if self.export.column_type(column) == "bool":
            function = "bool_and" if least else "bool_or"
        else:
            function = "min" if least else "max"
        return sql.SQL("{}({})").format(sql.SQL(function), self._ordered(column))

    def fingerprint(self, winner: sql.Composable) -> sql.Composed:
        """hashtextextended of a row's key and winner: the same text on both sides."""
        fields = [sql.Identifier(c) for c in self.export.key] + [winner]
        return sql.SQL("hashtextextended(ROW({})::text, 0)").format(sql.SQL(", ").join(fields))


def conversion(conn: psycopg.Connection, export: Export, timezone: str,
               extracted_on: date) -> Conversion:
    """The export's table columns from the old table's: the same names and the old values,
    cast to the new types; optional text NULL → '' (as an empty field of a file); the
    derived columns computed by the same rules as staging does (the zone's day, the
    classification's CASE), except what the old table already knew (its classification,
    sso's and pushers' added_date)."""
    old = _old_columns(conn, export.table)
    zone = sql.Literal(timezone)
    derived: dict[str, sql.Composable] = {}
    if export is USER_DAILY_VISITS:
        derived["visit_date"] = sql.SQL("(o.visit_ts AT TIME ZONE {})::date").format(zone)
        for column in ("platform", "device_type"):
            derived[column] = sql.SQL("coalesce(o.{}, {})").format(
                sql.Identifier(column), sql.SQL(classify_sql(column, "user_agent")))
    elif export in (SUBSCRIPTIONS_AGGREGATE, EVENTS_AGGREGATE):
        # The earliest extraction that can have produced the row: any file extracted that
        # day or later, loaded after the takeover, is newer than the old row.
        derived["extracted_on"] = sql.SQL("(o.hour AT TIME ZONE {})::date").format(zone)
    elif export is ACCOUNT_DATA:
        derived["extracted_on"] = sql.Literal(extracted_on)
    columns: dict[str, sql.Composable] = {}
    required: list[sql.Composable] = []
    for column in export.table_columns:
        if column in derived:
            columns[column] = derived[column]
            continue
        if column not in old:
            raise TakeoverError(f"public.{export.table} has no column {column}: it cannot "
                                "be taken over as it is")
        kind = export.column_type(column)
        value = sql.SQL("CAST(o.{} AS {})").format(sql.Identifier(column),
                                                   sql.SQL(PG_TYPES[kind]))
        spec = next((c for c in export.columns if c.table_name == column), None)
        if kind == "text" and spec is not None and not spec.required:
            value = sql.SQL("coalesce({}, '')").format(value)
        else:
            required.append(value)
        columns[column] = value
    extras: dict[str, sql.Composable] = {}
    if export is USER_DAILY_VISITS:
        extras["_old_day"] = sql.SQL("o.visit_date")
        extras["_unclassified"] = sql.SQL("o.platform IS NULL OR o.device_type IS NULL")
    return Conversion(export, columns, required, extras)


# Statistics of the visits that only the old side has, counted over its rows.
VISIT_EXTRAS = {
    "days_corrected": "_old_day IS NOT NULL AND _old_day <> visit_date",
    "days_filled": "_old_day IS NULL",
    "classified": "_unclassified",
}


def _scope(unit: Unit, timezone: str) -> tuple[sql.Composable, sql.Composable, str]:
    """The old rows of the unit, the relation their new rows go to, and its name."""
    if unit.month is None:
        return (sql.SQL("true"), sql.Identifier(STAGING, unit.relation), unit.relation)
    zone = ZoneInfo(timezone)
    first, end = month_bounds(unit.month)
    lower, upper = (datetime.combine(d, time(), zone) for d in (first, end))  # midnights
    name = partition_name(USER_DAILY_VISITS, unit.month)
    scope = sql.SQL("o.visit_ts >= {} AND o.visit_ts < {}").format(
        sql.Literal(lower), sql.Literal(upper))
    return scope, sql.Identifier(STAGING, name), name


def _create_partitions(conn: psycopg.Connection, export: Export, months: list[date],
                       timezone: str) -> None:
    statement = (LOAD_SQL / "partition.sql").read_text()
    for month in months:
        lower, upper = day_bounds(export, *month_bounds(month), timezone)
        conn.execute(sql.SQL(statement).format(
            partition=sql.Identifier(STAGING, partition_name(export, month)),
            table=sql.Identifier(STAGING, export.table),
            lower=sql.Literal(lower), upper=sql.Literal(upper)))


def _months_of(conn: psycopg.Connection, convert: Conversion, rows: sql.Composable,
               timezone: str) -> list[date]:
    column = convert.export.partition_column
    assert column is not None
    value: sql.Composable = sql.Identifier(column)
    if convert.export.column_type(column) == "timestamptz":
        value = sql.SQL("{} AT TIME ZONE {}").format(value, sql.Literal(timezone))
    return [m for (m,) in conn.execute(sql.SQL(
        "SELECT DISTINCT date_trunc('month', {})::date FROM ({}) AS c WHERE _ok").format(
            value, rows))]


def move(conn: psycopg.Connection, unit: Unit, timezone: str,
         summarise_now: bool = False) -> Moved:
    """Move one unit inside the caller's REPEATABLE READ transaction: its rows converted
    into the staging table, checked on both sides, the unit recorded, and a month's days
    left in changed_days for the refresh beside the moves (`summarise_now`: refreshed here,
    in this transaction). A mismatch raises TakeoverError (the caller's transaction rolls
    back)."""
    started = monotonic()
    export = unit.export
    conn.execute("SET LOCAL work_mem = '128MB'")
    # Changes noted so far are read by this transaction's snapshot; later ones are not,
    # and stay noted: the unit will be moved again.
    conn.execute("DELETE FROM tchap_stats.legacy_changes WHERE relation = %s "
                 "AND month IS NOT DISTINCT FROM %s", (unit.relation, unit.month))
    convert = conversion(conn, export, timezone, today(timezone) - timedelta(days=2))
    scope, target, target_name = _scope(unit, timezone)
    rows = convert.select(scope)
    if unit.month is not None:
        _create_partitions(conn, export, [unit.month], timezone)
    elif export.partition is not None:
        _create_partitions(conn, export, _months_of(conn, convert, rows, timezone), timezone)
    conn.execute(sql.SQL("TRUNCATE {}").format(target))  # a unit moved again
    steps = {"prepare": monotonic() - started}
    conn.execute(sql.SQL(
        "INSERT INTO {target} ({names}) SELECT DISTINCT ON ({key}) {names} "
        "FROM ({rows}) AS c WHERE _ok ORDER BY {key}, {order}").format(
            target=target, names=convert.names, key=convert.key, order=convert.order,
            rows=rows))
    steps["insert"] = monotonic() - started - sum(steps.values())
    # The old side: the distinct keys of the old rows, each with its winner's first order
    # column, grouped on their own (hashing, not the insert's sort), and the visits'
    # corrections counted over every old row.
    key = sql.SQL(", ").join(map(sql.Identifier, export.key))
    extras = {name: sql.SQL(condition) for name, condition in VISIT_EXTRAS.items()
              } if export is USER_DAILY_VISITS else {}
    per_key = [sql.SQL("count(*) FILTER (WHERE {}) AS {}").format(c, sql.Identifier(n))
               for n, c in extras.items()]
    totals = [sql.SQL("coalesce(sum({}), 0)").format(sql.Identifier(n)) for n in extras]
    old_side = sql.SQL(
        "SELECT count(*) FILTER (WHERE _ok), coalesce(sum(n) FILTER (WHERE _ok), 0), "
        "coalesce(sum(n) FILTER (WHERE NOT _ok), 0), "
        "coalesce(sum({fingerprint}) FILTER (WHERE _ok), 0) {totals} "
        "FROM (SELECT _ok, {key}, count(*) AS n, {winner} AS _winner {per_key} "
        "      FROM ({rows}) AS c GROUP BY _ok, {key}) AS g").format(
            fingerprint=convert.fingerprint(sql.Identifier("_winner")),
            totals=sql.SQL("").join(sql.SQL(", {}").format(t) for t in totals),
            key=key, winner=convert.winner,
            per_key=sql.SQL("").join(sql.SQL(", {}").format(p) for p in per_key),
            rows=rows)
    keys, rows_ok, skipped, checksum, *figures = one(conn.execute(old_side))
    steps["check_old"] = monotonic() - started - sum(steps.values())
    new_rows, new_checksum = one(conn.execute(sql.SQL(
        "SELECT count(*), coalesce(sum({}), 0) FROM {}").format(
            convert.fingerprint(sql.Identifier(export.merge.order[0])), target)))
    steps["check_new"] = monotonic() - started - sum(steps.values())
    if (new_rows, new_checksum) != (keys, checksum):
        raise TakeoverError(
            f"{unit.name}: the new rows do not match the old ones (new: {new_rows:,} rows, "
            f"checksum {new_checksum}; old: {keys:,} keys, checksum {checksum}); nothing of "
            "it was recorded")
    if unit.month is not None:
        # As a load that found the month's days empty (the summaries are added to, and the
        # rolling window appended to, in date order), or that rewrote them (a month moved
        # again: its summaries recomputed).
        first, end = month_bounds(unit.month)
        days = days_between(first, end - timedelta(days=1))
        if summarise_now:
            with summaries.raw_schema(STAGING):
                summaries.refresh_days(conn, days, fresh=not unit.moved)
            steps["summaries"] = monotonic() - started - sum(steps.values())
        else:
            conn.execute(
                "INSERT INTO tchap_stats.changed_days AS c "
                "(export, day, last_load_id, fresh, rewritten) "
                "SELECT %s, d, 0, %s, %s FROM unnest(%s::date[]) AS d "
                "ON CONFLICT (export, day) DO UPDATE SET last_load_id = excluded.last_load_id, "
                "changed_at = now(), rewritten = c.rewritten OR excluded.rewritten",
                (VISITS, not unit.moved, unit.moved, days))
    corrected, filled, classified = figures if figures else (0, 0, 0)
    moved = Moved(unit, rows_ok + skipped, new_rows, rows_ok - new_rows, skipped, corrected,
                  filled, classified, int(checksum), monotonic() - started, steps)
    conn.execute("DELETE FROM tchap_stats.legacy_units WHERE relation = %s "
                 "AND month IS NOT DISTINCT FROM %s", (unit.relation, unit.month))
    conn.execute(
        "INSERT INTO tchap_stats.legacy_units (relation, month, rows_planned, rows_old, "
        "rows_new, duplicates_merged, rows_skipped, days_corrected, days_filled, "
        "classified, checksum, seconds, moved_at) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now())",
        (unit.relation, unit.month, unit.rows if unit.rows is not None else moved.rows_old,
         moved.rows_old, moved.rows_new, moved.duplicates, moved.skipped, corrected, filled,
         classified, checksum, moved.seconds))
    log.debug("%s moved into %s.%s", unit.name, STAGING, target_name)
    return moved


def _snapshot(conn: psycopg.Connection) -> None:
    """The current transaction reads one snapshot: the insert and both checks see the same
    old rows, whatever the old system commits meanwhile."""
    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")


SERIALIZATION_ATTEMPTS = 5  # a unit whose rows the old system updated meanwhile is retried


def _move_committed(conn: psycopg.Connection, unit: Unit, timezone: str) -> Moved:
    for attempt in range(1, SERIALIZATION_ATTEMPTS + 1):
        try:
            with conn.transaction():
                _snapshot(conn)
                moved = move(conn, unit, timezone)
            break
        except psycopg.errors.SerializationFailure:
            # The old system wrote to the rows this snapshot was converting, or the refresh
            # beside handed the month's days out: the unit's transaction rolled back whole,
            # nothing was recorded; it starts again from a new snapshot.
            if attempt == SERIALIZATION_ATTEMPTS:
                raise
            log.info("%s: the old system wrote to it meanwhile; moving it again", unit.name)
    if unit.month is not None:  # after the commit, as loads do (load.summarize_new_ranges)
        conn.execute((LOAD_SQL / "summarize_brin.sql").read_text(), {
            "table": sql.Identifier(STAGING, partition_name(USER_DAILY_VISITS, unit.month)
                                    ).as_string(conn)})
    return moved


# --- start, run, switch, finish -------------------------------------------------------------

def _lock(conn: psycopg.Connection, lock_timeout: float) -> None:
    """One takeover at a time. A takeover killed a moment ago may still hold the lock until
    its server process notices (client_connection_check_interval, below): wait for it."""
    if not one(conn.execute("SELECT pg_try_advisory_lock(%s)", (_TAKEOVER_LOCK,)))[0]:
        log.info("another migrate-legacy holds the takeover's lock; waiting up to %g s",
                 lock_timeout)
        conn.execute("SELECT set_config('lock_timeout', %s, false)",
                     (f"{max(1, round(lock_timeout * 1000))}ms",))
        conn.execute("SELECT pg_advisory_lock(%s)", (_TAKEOVER_LOCK,))
        conn.execute("RESET lock_timeout")
    if one(conn.execute("SELECT current_setting('server_version_num')::int"))[0] >= 140000:
        # A killed takeover's statement stops within a second, not when it would next
        # write to its gone client (which may be an hour into a month).
        conn.execute("SET client_connection_check_interval = '1s'")


def _install_triggers(conn: psycopg.Connection, export: Export) -> None:
    for name, (event, referencing) in TRIGGERS.items():
        conn.execute(sql.SQL(
            "CREATE TRIGGER {} AFTER {} ON public.{} {} FOR EACH STATEMENT "
            "EXECUTE FUNCTION tchap_stats.legacy_note_change()").format(
                sql.Identifier(name), sql.SQL(event), sql.Identifier(export.table),
                sql.SQL(referencing)))


def _start(conn: psycopg.Connection, timezone: str) -> None:
    """Build the new layout in the staging schema (every migration, public's objects in
    legacy_new) and watch the old tables for writes, in one transaction."""
    with conn.transaction():
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(STAGING)))
        for migration in migrations():
            conn.execute(migration_sql(migration, timezone, public=STAGING))
        conn.execute("INSERT INTO tchap_stats.legacy_takeover (timezone, staged_versions) "
                     "VALUES (%s, %s)", (timezone, [m.version for m in migrations()]))
        for export in _old_tables(conn):
            _install_triggers(conn, export)


def _upgrade_staging(conn: psycopg.Connection, state: dict[str, Any], timezone: str) -> None:
    """A release that came with new migrations while the takeover was under way: apply
    them to the staging schema too."""
    if state["timezone"] != timezone:
        raise TakeoverError(
            f"this takeover started with TCHAP_STATS_TZ={state['timezone']}, not {timezone}: "
            "its days and months follow that zone; run it with the same")
    missing = [m for m in migrations() if m.version not in state["staged_versions"]]
    if not missing:
        return
    with conn.transaction():
        for migration in missing:
            conn.execute(migration_sql(migration, timezone, public=STAGING))
        conn.execute("UPDATE tchap_stats.legacy_takeover SET staged_versions = "
                     "staged_versions || %s", ([m.version for m in missing],))


def _record_plan(conn: psycopg.Connection, timezone: str) -> None:
    """Count the old rows per unit once (the triggers already watch the old tables), and
    create the months' partitions: creating one locks the whole table, which the
    summaries of the month moved before are reading."""
    with conn.transaction():
        units = _counted_units(conn, timezone)
        _create_partitions(conn, USER_DAILY_VISITS,
                           [u.month for u in units if u.month is not None], timezone)
        conn.execute("DELETE FROM tchap_stats.legacy_units WHERE moved_at IS NULL")
        for unit in units:
            conn.execute(
                "INSERT INTO tchap_stats.legacy_units (relation, month, rows_planned) "
                "SELECT %s, %s, %s WHERE NOT EXISTS (SELECT FROM tchap_stats.legacy_units "
                "WHERE relation = %s AND month IS NOT DISTINCT FROM %s)",
                (unit.relation, unit.month, unit.rows, unit.relation, unit.month))
        conn.execute("UPDATE tchap_stats.legacy_takeover SET planned_at = now()")


def _count_unit(conn: psycopg.Connection, unit: Unit, timezone: str) -> Unit:
    """A month the plan had not seen (the old system wrote to it since): count it."""
    if unit.rows is not None:
        return unit
    scope = _scope(unit, timezone)[0]
    rows = one(conn.execute(sql.SQL("SELECT count(*) FROM public.{} AS o WHERE {}").format(
        sql.Identifier(unit.relation), scope)))[0]
    return Unit(unit.relation, unit.month, rows, unit.moved, unit.changed)


def _views_reading(conn: psycopg.Connection, schema: str,
                   names: list[str] | None = None) -> list[str]:
    """Views that read relations of `schema` (those `names`, or all), other than those
    relations themselves: before the switch, others' views on the old relations in public
    (they would keep reading them in legacy_old); after it, views reading legacy_old."""
    return [name for (name,) in conn.execute(
        """
        SELECT DISTINCT format('%%I.%%I', dn.nspname, dep.relname)
        FROM pg_depend d
        JOIN pg_rewrite r ON r.oid = d.objid AND d.classid = 'pg_rewrite'::regclass
        JOIN pg_class dep ON dep.oid = r.ev_class
        JOIN pg_namespace dn ON dn.oid = dep.relnamespace
        JOIN pg_class ref ON ref.oid = d.refobjid AND d.refclassid = 'pg_class'::regclass
        JOIN pg_namespace rn ON rn.oid = ref.relnamespace
        WHERE rn.nspname = %(schema)s AND dep.oid <> ref.oid
          AND (%(names)s::text[] IS NULL OR ref.relname = ANY(%(names)s))
          AND NOT (dn.nspname = %(schema)s
                   AND (%(names)s::text[] IS NULL OR dep.relname = ANY(%(names)s)))
        ORDER BY 1
        """, {"schema": schema, "names": names})]


def _switch(conn: psycopg.Connection, timezone: str, lock_timeout: float, echo: Echo,
            read_roles: tuple[str, ...]) -> list[Moved]:
    """In one transaction: writers of the old tables held off (readers go on), units the
    old system wrote to since they moved moved again, then the old relations to legacy_old,
    the new ones to public with the old ones' privileges, the staged migrations recorded as
    applied. The roles that could read a dashboard name, and `read_roles`, may read them
    all (schema.grant_reading)."""
    moved = []
    with conn.transaction():
        conn.execute("SELECT set_config('lock_timeout', %s, true)",
                     (f"{max(1, round(lock_timeout * 1000))}ms",))
        tables = _old_tables(conn)
        if tables:  # EXCLUSIVE: no writer until the commit; readers keep reading
            conn.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(sql.SQL(", ").join(
                sql.Identifier("public", e.table) for e in tables)))
        for unit in (u for u in _recorded_units(conn) if u.pending):
            moved.append(move(conn, _count_unit(conn, unit, timezone), timezone,
                              summarise_now=True))
            echo(moved[-1].line())
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(OLD)))
        old = old_relations(conn)
        grants = _grants(conn, [name for name, _ in old])
        for name, kind in old:
            conn.execute(sql.SQL("ALTER {} public.{} SET SCHEMA {}").format(
                sql.SQL(ALTER[kind]), sql.Identifier(name), sql.Identifier(OLD)))
        for export in tables:
            for trigger in TRIGGERS:
                conn.execute(sql.SQL("DROP TRIGGER {} ON {}").format(
                    sql.Identifier(trigger), sql.Identifier(OLD, export.table)))
        new = conn.execute(
            "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind IN "
            "('r', 'p', 'm', 'v') ORDER BY c.relkind, c.relname", (STAGING,)).fetchall()
        for name, kind in new:
            conn.execute(sql.SQL("ALTER {} {} SET SCHEMA public").format(
                sql.SQL(ALTER[kind]), sql.Identifier(STAGING, name)))
        for (signature,) in conn.execute(
                "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n "
                "ON n.oid = p.pronamespace WHERE n.nspname = %s", (STAGING,)).fetchall():
            conn.execute(sql.SQL("ALTER ROUTINE {} SET SCHEMA public").format(
                sql.SQL(signature)))
        stale = [name for (name,) in conn.execute(
            "SELECT oid::regprocedure::text FROM pg_proc WHERE prosrc LIKE %s",
            (f"%{STAGING}.%",))]
        if stale:
            raise TakeoverError(f"function(s) {', '.join(stale)} name the staging schema "
                                f"{STAGING} in their body: they would break after the switch")
        conn.execute(sql.SQL("DROP SCHEMA {}").format(sql.Identifier(STAGING)))  # empty now
        _grant(conn, grants)
        reader_roles = sorted({g.grantee for g in grants if g.privilege == "SELECT"
                          and g.relation in DASHBOARD_NAMES} | set(read_roles))
        grant_reading(conn, reader_roles)
        state = _state(conn)
        assert state is not None
        create_version_table(conn)
        for migration in migrations():
            if migration.version in state["staged_versions"]:
                record_version(conn, migration)
        conn.execute("UPDATE tchap_stats.legacy_takeover SET switched_at = now()")
        conn.execute("DELETE FROM tchap_stats.legacy_changes")
    described = ", ".join(f"{n} ({KINDS[k]})" for n, k in old)
    for grantee, privileges in _grants_by_role(grants).items():
        echo(f"privileges carried over to the new relations: {grantee}: {privileges}")
    if reader_roles:
        echo(f"may read every dashboard name and the freshness card: "
             f"{', '.join(reader_roles)}")
    echo(f"switched, in one transaction: the old {described} are now in schema {OLD}; "
         "the dashboards' names are the new views over the summaries")
    readers = _views_reading(conn, OLD)
    if readers:
        echo(f"still reading the old tables in {OLD}: {', '.join(readers)}")
    echo(f"the old relations stay in {OLD} until `tchap-stats migrate-legacy --finish`")
    return moved


@dataclass(frozen=True)
class Grant:
    relation: str
    grantee: str  # a role's name, or PUBLIC
    privilege: str  # SELECT, INSERT, …
    grantable: bool


def _grants(conn: psycopg.Connection, relations: list[str]) -> list[Grant]:
    """What roles other than the owner may do with the old relations in public (Metabase's
    role reading the dashboards' names): the new relations taking their names get the same
    at the switch."""
    return [Grant(*row) for row in conn.execute(
        "SELECT c.relname, coalesce(r.rolname, 'PUBLIC'), a.privilege_type, a.is_grantable "
        "FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace "
        "CROSS JOIN LATERAL aclexplode(c.relacl) AS a "
        "LEFT JOIN pg_roles AS r ON r.oid = a.grantee "
        "WHERE n.nspname = 'public' AND c.relname = ANY(%s) AND a.grantee <> c.relowner "
        "ORDER BY 1, 2, 3", (relations,))]


TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES",
                    "TRIGGER", "MAINTAIN")


def _grant(conn: psycopg.Connection, grants: list[Grant]) -> None:
    for g in grants:
        if g.privilege not in TABLE_PRIVILEGES:
            continue
        grantee = sql.SQL("PUBLIC") if g.grantee == "PUBLIC" else sql.Identifier(g.grantee)
        conn.execute(sql.SQL("GRANT {} ON public.{} TO {}{}").format(
            sql.SQL(g.privilege), sql.Identifier(g.relation), grantee,
            sql.SQL(" WITH GRANT OPTION") if g.grantable else sql.SQL("")))


def _grants_by_role(grants: list[Grant]) -> dict[str, str]:
    """Per grantee, its privileges and on how many relations, in words."""
    described: dict[str, str] = {}
    for grantee in sorted({g.grantee for g in grants}):
        mine = [g for g in grants if g.grantee == grantee]
        described[grantee] = ", ".join(
            f"{privilege} on {len({g.relation for g in mine if g.privilege == privilege})}"
            for privilege in sorted({g.privilege for g in mine}))
    return described


class _Refresher:
    """The summaries of the months moved, refreshed beside the moves by the nightly
    machinery: each move leaves its month's days in tchap_stats.changed_days, in its own
    transaction, as a load does; this thread refreshes them (summaries.refresh_changed:
    the groups side by side) on connections of its own, reading the staging schema. A
    month's summaries thus never hold up the next month's move, and whatever a killed run
    left in the queues is refreshed by the next run's, before anything else."""

    def __init__(self, database_url: str):
        self.url = database_url
        self.wake = threading.Event()
        self.closing = False
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="takeover-summaries",
                                       daemon=True)
        self.thread.start()

    def poke(self) -> None:
        self.wake.set()

    def failed(self) -> None:
        if self.error is not None:
            raise TakeoverError(f"refreshing the summaries failed: {self.error}")

    def close(self, report: bool = True) -> None:
        """Wait until every day moved is summarised (or the refresh failed)."""
        self.closing = True
        self.wake.set()
        self.thread.join()
        if report:
            self.failed()

    def _run(self) -> None:
        try:
            with connect(self.url, autocommit=True) as conn, summaries.raw_schema(STAGING):
                while True:
                    if one(conn.execute(
                            "SELECT EXISTS (SELECT FROM tchap_stats.summary_queue) OR EXISTS "
                            "(SELECT FROM tchap_stats.changed_days WHERE export = %s)",
                            (VISITS,)))[0]:
                        started = monotonic()
                        report = summaries.refresh_changed(conn, self.url)
                        _account(conn, report.days, monotonic() - started)
                        log.debug("takeover: %s", report.summary())
                    elif self.closing:
                        return
                    else:
                        self.wake.wait(1)
                        self.wake.clear()
        except BaseException as exc:  # reported by failed() in the moving thread
            self.error = exc


def _account(conn: psycopg.Connection, days: list[date], seconds: float) -> None:
    """Record a refresh: the rows of the months it summarised, its seconds (the rates)."""
    months = sorted({d.replace(day=1) for d in days})
    conn.execute(
        "INSERT INTO tchap_stats.legacy_refreshes (months, rows_old, seconds) "
        "SELECT %s, coalesce(sum(rows_old), 0), %s FROM tchap_stats.legacy_units "
        "WHERE relation = %s AND month = ANY(%s)", (months, seconds, VISITS, months))


def take_over(conn: psycopg.Connection, database_url: str, timezone: str,
              lock_timeout: float, max_minutes: float | None, echo: Echo,
              read_roles: tuple[str, ...] = ()) -> Outcome:
    """Run or resume the takeover: move what is left, unit by unit, their summaries
    refreshed beside them, then switch. Stops between units when the next would not fit
    in `max_minutes` (EXIT_TIME_BUDGET), once the summaries of the units moved are done."""
    started = monotonic()
    _lock(conn, lock_timeout)
    state = _state(conn)
    if state is None:
        if applied_versions(conn) or not _old_tables(conn):
            echo("nothing to take over: no table of the old system in schema public (or the "
                 "new layout already in place)")
            return Outcome(0)
        _start(conn, timezone)
        echo(f"new layout created in schema {STAGING}; the old tables answer under their "
             "names until the switch")
        state = _state(conn)
        assert state is not None
    elif state["finished_at"]:
        echo("already taken over; the old tables were dropped (--finish)")
        return Outcome(0)
    elif state["switched_at"]:
        echo(f"already taken over ({state['switched_at']:%Y-%m-%d %H:%M} UTC); the old "
             f"relations are in schema {OLD} until `tchap-stats migrate-legacy --finish`")
        return Outcome(0)
    else:
        _upgrade_staging(conn, state, timezone)
    if not state["planned_at"]:
        _record_plan(conn, timezone)
    outcome = Outcome(0)

    def fits(units: list[Unit]) -> bool:
        """Whether `units` (and the summaries waiting) fit in what is left of the budget;
        if not, say what is left."""
        rates = _rates(conn)
        needed = rates.seconds(units, _backlog(conn))
        if max_minutes is None or monotonic() - started + needed <= max_minutes * 60:
            return True
        left = [_count_unit(conn, u, timezone) for u in _recorded_units(conn) if u.pending]
        rows = sum(u.rows or 0 for u in left)
        echo(f"stopped at the time budget (--max-minutes {max_minutes:g}): {len(left)} "
             f"unit(s) left ({rows:,} old rows, about {_minutes(rates.seconds(left))} at "
             f"{rates.describe()}), from {left[0].name}, then the switch; run again to "
             "continue")
        alone = rates.seconds(units)  # the summaries waiting are done before this run exits
        if alone > max_minutes * 60:
            echo(f"(the next alone needs about {_minutes(alone)}: a run with less than "
                 "that never moves it)")
        outcome.exit_code = EXIT_TIME_BUDGET
        return False

    backlog = _backlog(conn)
    if backlog:
        echo(f"refreshing first the summaries of {backlog:,} rows a stopped run moved")
    refresher = _Refresher(database_url)  # what a killed run left waiting comes first
    stopped = False
    try:
        for unit in [u for u in _recorded_units(conn) if u.pending]:
            refresher.failed()
            unit = _count_unit(conn, unit, timezone)
            if not fits([unit]):
                stopped = True
                break
            outcome.moved.append(_move_committed(conn, unit, timezone))
            refresher.poke()
            echo(outcome.moved[-1].line())
    except BaseException:
        refresher.close(report=False)
        raise
    refresher.close()  # every month moved is summarised, also when stopping
    if stopped:
        return outcome
    echo("every unit moved and its summaries refreshed; switching")
    # What the old system wrote meanwhile moves again inside the switch, its writers held
    # off, its summaries refreshed there; the switch itself only renames.
    again = [_count_unit(conn, u, timezone) for u in _recorded_units(conn) if u.pending]
    if again and not fits(again):
        return outcome
    outcome.moved += _switch(conn, timezone, lock_timeout, echo, read_roles)
    return outcome


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"


def finish(conn: psycopg.Connection, echo: Echo, dry_run: bool = False) -> None:
    """Drop the old relations kept in legacy_old since the switch."""
    state = _state(conn)
    if state is None or not state["switched_at"]:
        raise TakeoverError("the takeover has not switched yet: `--finish` drops the old "
                            "tables only once the new layout is in place (run "
                            "`tchap-stats migrate-legacy` first)")
    if state["finished_at"]:
        echo("already finished: the old tables were dropped")
        return
    kept = conn.execute(
        "SELECT c.relname, c.relkind, pg_total_relation_size(c.oid) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s "
        "AND c.relkind IN ('r', 'p', 'm', 'v') ORDER BY 1", (OLD,)).fetchall()
    readers = _views_reading(conn, OLD)
    if readers:
        raise TakeoverError(f"{', '.join(readers)} still read the old tables in {OLD}: "
                            "drop or rewrite them first (nothing was dropped)")
    listed = ", ".join(f"{n} ({KINDS[k]})" for n, k, _ in kept)
    size = sum(s for _, _, s in kept) / 2**20
    if dry_run:
        echo(f"would drop schema {OLD}: {listed} ({size:,.0f} MiB)")
        return
    with conn.transaction():
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(OLD)))
        conn.execute("UPDATE tchap_stats.legacy_takeover SET finished_at = now()")
    echo(f"dropped schema {OLD}: {listed} ({size:,.0f} MiB)")


def describe(p: Plan, echo: Echo) -> None:
    """The plan, for --dry-run."""
    if p.state == "none":
        echo("nothing to take over: no table of the old system in schema public (or the "
                 "new layout already in place)")
        return
    if p.state == "finished":
        echo("already taken over; the old tables were dropped (--finish)")
        return
    if p.state == "switched":
        echo(f"already taken over: the old relations are in schema {OLD} until "
             "`tchap-stats migrate-legacy --finish`")
        return
    echo(f"takeover {'not started' if p.state == 'new' else 'in progress'} "
         "(dry run: nothing is changed)")
    for unit in p.units:
        state = ("moved, then written to by the old system: moves again" if unit.changed
                 else "moved" if unit.moved else "to move")
        counted = (f"{unit.rows:,} rows (estimated)" if unit.estimated and unit.rows is not None
                   else f"{unit.rows:,} rows" if unit.rows is not None
                   else "rows not counted yet")
        echo(f"  {unit.name}: {counted} · {state}")
    pending = p.pending
    rows = sum(u.rows or 0 for u in pending)
    waiting = f"; summaries of {p.backlog:,} rows moved still to refresh" if p.backlog else ""
    echo(f"left: {len(pending)} unit(s), {rows:,} old rows{waiting}; about "
         f"{_minutes(p.rates.seconds(pending, p.backlog))} at {p.rates.describe()}")
    echo(f"then the switch, in one transaction: to schema {OLD}: "
         + ", ".join(f"{n} ({KINDS[k]})" for n, k in p.old_relations)
         + "; the new tables and views take their names")
    if p.readers:
        echo(f"views of yours that read the old tables keep reading them in {OLD} after the "
             f"switch (and `--finish` refuses while they do): {', '.join(p.readers)}")


def dry_run(conn: psycopg.Connection, timezone: str, echo: Echo) -> None:
    with conn.transaction():
        conn.execute("SET TRANSACTION READ ONLY")
        describe(plan(conn, timezone), echo)

