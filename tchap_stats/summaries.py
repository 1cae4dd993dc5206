"""Summaries: the tables behind the dashboards' views, recomputed only for what changed.

Loads record the days they changed in tchap_stats.changed_days. A refresh hands those days
out to the queues of three groups of summaries (daily, monthly, user_months: GROUPS), then
each group rewrites its rows for its days (and their months) from the raw table, or adds
to them, and removes the days it consumed, in one transaction of its own; two run side by
side, the third follows the first to end. One SQL file per summary (sql/summaries/) serves
the incremental refresh, the full recompute and `check`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar, copy_context
from dataclasses import dataclass, field
from datetime import date, timedelta
from queue import Queue
from typing import Any

import psycopg
from psycopg import sql

from .config import SQL_DIR
from .database import connect, local_setting, one
from .dates import month_bounds, whole_months
from .exports import USER_DAILY_VISITS as USER_DAILY_VISITS_EXPORT
from .load import partition_name
from .sqltext import statements

SUMMARIES_SQL = SQL_DIR / "summaries"
log = logging.getLogger("tchap_stats")
EXPORT = "user_daily_visits"
_REFRESH_LOCK = 0x7C4A_0003  # advisory lock id (with a group's index): one refresh a group
RAW_TABLE = "public.user_daily_visits"  # what the summaries' SQL reads (sql/summaries/)
# The schema of the raw table the summaries read: public, except while the legacy takeover
# (tchap_stats/legacy.py) builds the new layout in its staging schema beside the old one.
_raw_schema: ContextVar[str] = ContextVar("raw_schema", default="public")


@contextmanager
def raw_schema(schema: str) -> Iterator[None]:
    """Summaries computed in this block (this thread) read `schema`.user_daily_visits and
    its month partitions instead of public's."""
    token = _raw_schema.set(schema)
    try:
        yield
    finally:
        _raw_schema.reset(token)


def _reading_raw(text: str) -> str:
    schema = _raw_schema.get()
    return text if schema == "public" else text.replace(RAW_TABLE, f"{schema}.user_daily_visits")


@dataclass(frozen=True)
class Summary:
    table: str  # in schema tchap_stats; its SQL file is sql/summaries/{table}.sql
    grain: str  # "day", "month", or "rolling" (every day whose window holds a changed day)
    group: str  # the refresh group (GROUPS) that rewrites it

    @property
    def identifier(self) -> sql.Identifier:
        return sql.Identifier("tchap_stats", self.table)

    def statement(self, suffix: str = "", **tables: sql.Composable) -> sql.Composed:
        text = _reading_raw((SUMMARIES_SQL / f"{self.table}{suffix}.sql").read_text())
        return sql.SQL(text).format(**tables)

    @property
    def staging_identifier(self) -> sql.Identifier:
        """Where loads put the rows DuckDB pre-aggregated (migration 007)."""
        return sql.Identifier("tchap_stats", f"{self.table}_staged")

    def delete(self, target: sql.Composable, by: str) -> sql.Composed:
        if self.grain == "rolling":
            return sql.SQL("DELETE FROM {} WHERE day BETWEEN %(rolling_first)s "
                           "AND %(rolling_last)s").format(target)
        return sql.SQL("DELETE FROM {} WHERE {} = ANY({}::date[])").format(
            target, sql.Identifier(self.grain), sql.Placeholder(by))


# Groups of summaries that read nothing another writes, each refreshed in a transaction of
# its own, two at a time (migrations 009, 019: refresh_changed).
DAILY, MONTHLY, MONTHS = "daily", "monthly", "user_months"
GROUPS = (DAILY, MONTHLY, MONTHS)
USER_VISITS_DAILY = Summary("user_visits_daily", "day", DAILY)
USER_DEVICES_MONTHLY = Summary("user_devices_monthly", "month", MONTHLY)
# A group of its own since migration 019, which follows whichever of the other two ends
# first: in the daily group it made that group's half the longer on nights that add nothing
# (29 in 31 of a stable month), in the monthly one it ran after the add on the nights whose
# add is long (a month's 1st; the first night after a bulk build: 5.98 s against 3.40 s)
# (benchmarks/README.md, "Every night of the month").
USER_MONTHS = Summary("user_months", "month", MONTHS)
# From user_devices_monthly; added to by user_devices_monthly_add.sql (migration 013).
USER_VALUES_MONTHLY = Summary("user_values_monthly", "month", MONTHLY)
ACTIVE_DAILY = Summary("active_daily", "day", DAILY)
# Counted from user_devices_monthly; added to by user_devices_monthly_add.sql.
ACTIVE_MONTHLY = Summary("active_monthly", "month", MONTHLY)
ACTIVE_ROLLING_30D = Summary("active_rolling_30d", "rolling", DAILY)  # from user_visits_daily
SUMMARIES = (USER_VISITS_DAILY, USER_DEVICES_MONTHLY, USER_VALUES_MONTHLY, USER_MONTHS,
             ACTIVE_DAILY, ACTIVE_MONTHLY, ACTIVE_ROLLING_30D)  # in dependency order
ROLLING_WINDOW = 30
# Computed by DuckDB for a day its load found empty (measured faster than PostgreSQL's
# recompute; user_visits_daily is not: copying its rows costs more than recomputing them).
PREAGGREGATED = (ACTIVE_DAILY,)
@dataclass(frozen=True)
class ChangedDay:
    day: date
    fresh: bool = False  # no row of the day was ever summarised (see migration 004)
    rewritten: bool = True  # rows of the day were replaced or removed


@dataclass
class Plan:
    """What a refresh does with its changed days."""

    days: list[date]  # day-grain rows recomputed
    months: list[date]  # months whose rows change
    recomputed_months: list[date]  # ... recomputed from the raw table (the others: added to)
    added_days: list[date]  # days folded into the monthly summaries of the other months
    rolling_append: bool = False  # rolling counts appended to, rather than recomputed
    # Days only added to (not fresh, no row gone): their late rows (tchap_stats.late_rows)
    # are folded into the summaries rather than the days re-read whole.
    grown_days: list[date] = field(default_factory=list)
    fresh_days: list[date] = field(default_factory=list)  # no row of them summarised before
    # Grown days whose late rows are also folded into user_visits_daily and active_daily
    # (the daily group; the others are re-read whole there).
    folded_days: list[date] = field(default_factory=list)

    @classmethod
    def full(cls, days: Iterable[date]) -> Plan:
        days = sorted(set(days))
        months = sorted({d.replace(day=1) for d in days})
        return cls(days, months, months, [])

    @classmethod
    def incremental(cls, changed: Iterable[ChangedDay]) -> Plan:
        changed = sorted(changed, key=lambda c: c.day)
        # A month must be re-read when rows the summaries counted may be gone from it.
        recomputed = sorted({c.day.replace(day=1) for c in changed
                             if c.rewritten and not c.fresh})
        added = [c.day for c in changed if c.day.replace(day=1) not in recomputed]
        plan = cls.full(c.day for c in changed)
        plan.recomputed_months, plan.added_days = recomputed, added
        plan.grown_days = [c.day for c in changed if not c.fresh and not c.rewritten]
        plan.fresh_days = [c.day for c in changed if c.fresh]
        return plan

    @property
    def whole_days(self) -> list[date]:
        """The days whose user_visits_daily and active_daily rows are recomputed."""
        return [d for d in self.days if d not in self.folded_days]

    def parameters(self) -> dict[str, object]:
        days = self.days
        return {"days": days, "first_day": days[0] if days else None,
                "last_day": days[-1] if days else None,
                "rolling_first": days[0] if days else None,
                "rolling_last": days[-1] + timedelta(days=ROLLING_WINDOW - 1) if days else None,
                **_month_parameters(self.months)}

    def recomputed_parameters(self) -> dict[str, object]:
        """The months the monthly group recomputes."""
        return _month_parameters(self.recomputed_months)

    def added_parameters(self, days: list[date] | None = None) -> dict[str, object]:
        """The days added to their months (all the plan's, or `days` of them): read from
        the raw table, or from their late rows (grown_days)."""
        days = self.added_days if days is None else days
        grown = [d for d in days if d in self.grown_days]
        return {"days": days, "grown_days": grown,
                "raw_days": [d for d in days if d not in grown],
                "months": sorted({d.replace(day=1) for d in days})}


def _month_parameters(months: list[date]) -> dict[str, object]:
    return {"months": months, "first": months[0] if months else None,
            "end": month_bounds(months[-1])[1] if months else None}


@dataclass
class RefreshReport:
    days: list[date] = field(default_factory=list)
    months: list[date] = field(default_factory=list)
    seconds: float = 0.0
    recomputed_months: list[date] = field(default_factory=list)
    rolling_append: bool = False
    preaggregated_days: list[date] = field(default_factory=list)  # active_daily from staging

    def summary(self) -> str:
        if not self.days:
            return "summaries: nothing changed"
        span = f"{self.days[0]}..{self.days[-1]}" if len(self.days) > 1 else f"{self.days[0]}"
        how = (f"{len(self.recomputed_months)} re-read, the others added to"
               if self.recomputed_months and len(self.recomputed_months) < len(self.months)
               else "re-read" if self.recomputed_months else "added to")
        rolling = "appended to" if self.rolling_append else "recomputed"
        staged = (f" (active_daily of {len(self.preaggregated_days)} from staging)"
                  if self.preaggregated_days else "")
        return (f"summaries: {len(self.days)} day(s) ({span}) recomputed{staged}, "
                f"{len(self.months)} month(s) {how}, rolling window {rolling} · "
                f"{self.seconds:.1f} s")


def recompute(conn: psycopg.Connection, plan: Plan,
              targets: dict[str, sql.Composable] | None = None) -> None:
    """Rewrite every summary row the plan names (refresh --from/--to, check), every group
    in the caller's transaction. `targets` redirects every summary to another table
    (check's temporary copies); then nothing is appended, all is recomputed."""
    if not plan.days:
        return
    _analyze_raw(conn, plan.months)
    recompute_daily(conn, plan, targets)
    recompute_monthly(conn, plan, targets)
    _user_months(conn, plan, _tables(targets)["user_months"])


def _tables(targets: dict[str, sql.Composable] | None) -> dict[str, sql.Composable]:
    return {s.table: (targets or {}).get(s.table, s.identifier) for s in SUMMARIES}


def _memory_for_a_day(conn: psycopg.Connection) -> None:
    # Sorts and hashes of a day's rows fit in memory instead of spilling (this transaction
    # only; the server's default is 4 MB).
    conn.execute("SET LOCAL work_mem = '64MB'")


def recompute_daily(conn: psycopg.Connection, plan: Plan,
                    targets: dict[str, sql.Composable] | None = None,
                    from_staging: bool = False) -> list[date]:
    """The daily group: user_visits_daily and active_daily for the plan's days, then the
    rolling window. `from_staging` (the incremental refresh) moves in the active_daily rows
    loads pre-aggregated where they are still the day's; returns the days it moved."""
    if not plan.days:
        return []
    _memory_for_a_day(conn)
    tables = _tables(targets)
    params = plan.parameters()
    if plan.grown_days:
        _fold_late_rows_daily(conn, plan)  # before user_visits_daily changes
    whole = {**params, "days": plan.whole_days}
    staged: set[date] = set()
    for summary in (USER_VISITS_DAILY, ACTIVE_DAILY):
        if not plan.whole_days:
            break
        _timed(conn, summary.delete(tables[summary.table], "days"), whole)
        moved: set[date] = set()
        if from_staging and summary in PREAGGREGATED:
            moved = {day for (day,) in _timed(conn, summary.statement("_from_staging"),
                                              {"days": plan.whole_days})}
            staged |= moved
        # A day at a time: the hashes of one day's users fit in work_mem; those of 30 days
        # spill, and took 3 times as long for active_daily (benchmarks/README.md, "check").
        for day in (d for d in plan.whole_days if d not in moved):
            _timed(conn, summary.statement(target=tables[summary.table]),
                   {**whole, "days": [day]})
    _rolling(conn, plan, params, tables["active_rolling_30d"], redirected=bool(targets))
    return sorted(staged)


def _user_months(conn: psycopg.Connection, plan: Plan, target: sql.Composable) -> None:
    """The user_months group: recomputed for the plan's recomputed months, added to for its
    added days (their rows: added_day_rows.sql)."""
    if not plan.days:
        return
    _memory_for_a_day(conn)
    if plan.recomputed_months:
        recomputed = plan.recomputed_parameters()
        _timed(conn, USER_MONTHS.delete(target, "months"), recomputed)
        _timed(conn, USER_MONTHS.statement(target=target), recomputed)
    if plan.added_days:  # never with targets: check recomputes every month
        _timed(conn, USER_MONTHS.statement("_add", target=target,
                                           day_rows=_added_day_rows(MONTHS)),
               plan.added_parameters())


def _added_day_rows(group: str) -> sql.Composed:
    return sql.SQL(_reading_raw((SUMMARIES_SQL / "added_day_rows.sql").read_text())).format(
        group=sql.Literal(group))


def _fold_late_rows_daily(conn: psycopg.Connection, plan: Plan) -> None:
    """The grown days' late rows, when the rolling window is appended to, into its counts
    and the state appending starts from (otherwise the window is recomputed from
    user_visits_daily after this); those of the folded days into user_visits_daily and
    active_daily. What each user gained is read before user_visits_daily changes."""
    if not plan.rolling_append and not plan.folded_days:
        return
    grown = {"days": plan.grown_days}
    _run_file(conn, "late_gained.sql", grown)
    if plan.rolling_append:
        _run_file(conn, "active_rolling_30d_late.sql", grown)
        _run_script(conn, "rolling_last_active_late.sql", grown)
    if plan.folded_days:
        folded = {"days": plan.folded_days}
        _run_script(conn, "user_visits_daily_late.sql", folded)
        _run_file(conn, "active_daily_late.sql", folded)


def recompute_monthly(conn: psycopg.Connection, plan: Plan,
                      targets: dict[str, sql.Composable] | None = None) -> None:
    """The monthly group: user_devices_monthly, user_values_monthly and active_monthly,
    recomputed for the plan's recomputed months, added to for its added days."""
    if not plan.days:
        return
    _memory_for_a_day(conn)
    tables = _tables(targets)
    if plan.recomputed_months:
        recomputed = plan.recomputed_parameters()
        target = tables["user_devices_monthly"]
        _timed(conn, USER_DEVICES_MONTHLY.delete(target, "months"), recomputed)
        _timed(conn, USER_DEVICES_MONTHLY.statement(target=target), recomputed)
        _timed(conn, USER_VALUES_MONTHLY.delete(tables["user_values_monthly"], "months"),
               recomputed)
        _timed(conn, USER_VALUES_MONTHLY.statement(
            target=tables["user_values_monthly"],
            user_devices_monthly=tables["user_devices_monthly"]), recomputed)
        _timed(conn, ACTIVE_MONTHLY.delete(tables["active_monthly"], "months"), recomputed)
        _timed(conn, ACTIVE_MONTHLY.statement(
            target=tables["active_monthly"],
            user_devices_monthly=tables["user_devices_monthly"]), recomputed)
    # Adds to user_devices_monthly and counts what it added into active_monthly, once per
    # way of finding the new tuples, each month the way its size calls for (a night's late
    # rows for a full month beside its own day, the first of an empty one).
    day_rows = _added_day_rows(MONTHLY)
    for path, days in _days_by_path(conn, plan).items():
        added = plan.added_parameters(days)
        # A day's raw rows are one per user and device; its late rows may hold a key twice
        # (added by a load, then replaced by an earlier visit).
        one_day_a_month = len({d.replace(day=1) for d in days}) == len(days)
        distinct = sql.SQL("" if one_day_a_month and not added["grown_days"] else "DISTINCT")
        new_tuples = sql.SQL(_reading_raw((SUMMARIES_SQL / (
            f"user_devices_monthly_new_by_{path}.sql")).read_text())
            ).format(distinct=distinct, day_rows=day_rows)
        user_new_to_value = sql.SQL(
            (SUMMARIES_SQL / f"user_new_to_value_by_{path}.sql").read_text())
        # On the lookup path its users new to a value are an anti join against the month's
        # user values (the hash path's come from its users' tuples). A month's statistics
        # come days after it starts (autoanalyze waits for a tenth of the table to change):
        # estimating a few thousand of its rows, the planner sorts both sides on their text
        # keys, 1.2 s on a 2nd of the month where hashing takes half that
        # (benchmarks/README.md, "The second night of a month").
        with local_setting(conn, "enable_mergejoin", "off"):
            _timed(conn, USER_DEVICES_MONTHLY.statement(
                "_add", new_tuples=new_tuples, distinct=distinct,
                user_new_to_value=user_new_to_value), added)


def _days_by_path(conn: psycopg.Connection, plan: Plan) -> dict[str, list[date]]:
    """The plan's added days, by how each one's month finds its new tuples (never with
    check's targets: check recomputes every month)."""
    by_path: dict[str, list[date]] = {}
    for month in sorted({d.replace(day=1) for d in plan.added_days}):
        days = [d for d in plan.added_days if d.replace(day=1) == month]
        by_path.setdefault(_new_tuples_by(conn, plan.added_parameters(days)), []).extend(days)
    return by_path


# Above this many device tuples a month holds per row of the days added to it, each day
# tuple is looked up in the month rather than the month's tuples hashed: when devices are
# drawn anew every day, a month's tuples grow all month long (benchmarks/README.md).
LOOKUP_ABOVE = 4.0


def _new_tuples_by(conn: psycopg.Connection, added: Mapping[str, Any]) -> str:
    """How user_devices_monthly_add.sql finds the days' new tuples: "hash" or "lookup".
    The month's tuples are its distinct devices (active_monthly); the days' rows are the
    planner's estimate from the statistics _analyze_raw has just brought up to date, not
    counted (a second read of the days); a grown day's rows are its late rows, counted."""
    held, late = one(conn.execute(
        "SELECT (SELECT coalesce(sum(devices), 0) FROM tchap_stats.active_monthly "
        "        WHERE dimension = 'overall' AND month = ANY(%(months)s::date[])), "
        "       (SELECT count(*) FROM tchap_stats.late_rows "
        "        WHERE summary_group = 'monthly' AND visit_date = ANY(%(grown_days)s::date[]))",
        added))
    rows = _estimated_rows(conn, added["raw_days"])
    return "lookup" if float(held) > LOOKUP_ABOVE * (rows + late) else "hash"


def _estimated_rows(conn: psycopg.Connection, days: list[date]) -> float:
    """The planner's estimate of the raw table's rows of `days` (none: no statement)."""
    if not days:
        return 0.0
    plan = one(conn.execute(sql.SQL(
        "EXPLAIN (FORMAT JSON) SELECT FROM {} WHERE {} = ANY(%s::date[])").format(
            sql.Identifier(_raw_schema.get(), USER_DAILY_VISITS_EXPORT.table),
            sql.Identifier(DAY_COLUMN)), (days,)))[0]
    return float(plan[0]["Plan"]["Plan Rows"])


def _rolling(conn: psycopg.Connection, plan: Plan, params: Mapping[str, object],
             target: sql.Composable, redirected: bool) -> None:
    if plan.rolling_append and not redirected:
        # Appending reads single days of user_visits_daily, which its statistics estimate
        # well once they exist; re-analyzing it nightly would cost more as history grows.
        _analyze_if_stale(conn, "tchap_stats", "user_visits_daily")
        for day in plan.fresh_days:  # in date order: each follows the latest day held
            # The rewrite full-joins 80,000 rows with the day's: hashing them takes half the
            # time of sorting both on their text keys, which the planner would pick.
            with local_setting(conn, "enable_mergejoin", "off"):
                _run_script(conn, "rolling_last_active_add.sql", {"day": day})
            window = {"day": day, "rolling_first": day,
                      "rolling_last": day + timedelta(days=ROLLING_WINDOW - 1)}
            _timed(conn, ACTIVE_ROLLING_30D.delete(target, "days"), window)
            _timed(conn, ACTIVE_ROLLING_30D.statement("_add"), window)
        return
    # The recompute reads a range of days, maybe beyond what the statistics know.
    _analyze(conn, sql.Identifier("tchap_stats", "user_visits_daily"))
    _timed(conn, ACTIVE_ROLLING_30D.delete(target, "days"), params)
    _timed(conn, ACTIVE_ROLLING_30D.statement(target=target), params)
    if not redirected:
        _run_script(conn, "rolling_last_active.sql", params)


def _analyze_raw(conn: psycopg.Connection, months: list[date]) -> None:
    """Statistics for the month partitions just loaded: autovacuum comes later, and a plan
    that expects a handful of rows for a day of 100,000 picks nested loops that never end.
    Every time: a new day is a value the statistics of a month's few days have never seen
    (estimated at one row). Its day column alone, from a small sample, unless a fifth of
    the partition changed since its last full ANALYZE (0.01 s instead of 0.4 to 0.6 s:
    docs/design.md, "What keeps a night's cost flat as history grows")."""
    column = sql.Identifier(DAY_COLUMN)
    schema = _raw_schema.get()
    for month in months:
        name = partition_name(USER_DAILY_VISITS_EXPORT, month)
        table = sql.Identifier(schema, name)
        if one(conn.execute("SELECT to_regclass(%s)", (table.as_string(conn),)))[0] is None:
            continue
        if _is_stale(conn, schema, name):
            _analyze(conn, table, STALE_STATISTICS_TARGET)
        else:
            _analyze(conn, table, SAMPLE_STATISTICS_TARGET, column)


STALE_SHARE = 0.2  # of a table's rows changed since its last ANALYZE (autovacuum's is 0.1)
DAY_COLUMN = "visit_date"  # the raw table's partition column, which the summaries filter on
# Rows sampled = 300 x target, each read from a page of its own, at random: a partition the
# night finds out of memory (the first night after a bulk build) is read a page at a time.
# 300 rows see each of a month's days about ten times, which is what the planner needs:
# with no room for every day among the most common values, it estimates any day, the new
# one too, at the month's rows over its days. A sample of 9,000 (a target of 30) read 9,000
# pages, 18 s on a disk reading a page in 2 ms (benchmarks/README.md, "A cold month").
SAMPLE_STATISTICS_TARGET = 1
# A stale table's whole ANALYZE samples 3,000 rows instead of the default 30,000: on a month
# out of memory, 30,000 single-page reads made a month's worst night (7.8 s of 12.2 s).
# 3,000 rows still count every value of the few-valued columns exactly, and a month's users
# at 67,000 to 71,000 for 80,000 (81,000 from 30,000 rows; 190,000 from 900): docs/design.md,
# "What keeps a night's cost flat as history grows".
STALE_STATISTICS_TARGET = 10


def _analyze(conn: psycopg.Connection, table: sql.Identifier,
             statistics_target: int | None = None,
             column: sql.Identifier | None = None) -> None:
    """ANALYZE the table, or only its column, from a sample of 300 x statistics_target rows
    if given (else the server's default_statistics_target, 100 unless configured). One
    column leaves the table's count of changes since its last full ANALYZE as it was, so
    _is_stale still sees the other columns age."""
    statement = (sql.SQL("ANALYZE {}").format(table) if column is None
                 else sql.SQL("ANALYZE {} ({})").format(table, column))
    sample = (nullcontext() if statistics_target is None
              else local_setting(conn, "default_statistics_target", str(statistics_target)))
    with sample:
        _timed(conn, statement, {})


def _is_stale(conn: psycopg.Connection, schema: str, name: str) -> bool:
    """The table never was analyzed, or more than STALE_SHARE of its rows changed since."""
    return one(conn.execute(
        "SELECT s.relid IS NULL OR c.reltuples <= 0"
        "       OR coalesce(s.last_analyze, s.last_autoanalyze) IS NULL"
        "       OR s.n_mod_since_analyze > %s * c.reltuples "
        "FROM pg_class AS c LEFT JOIN pg_stat_user_tables AS s ON s.relid = c.oid "
        "WHERE c.oid = %s::regclass",
        (STALE_SHARE, sql.Identifier(schema, name).as_string(conn))))[0]


def _analyze_if_stale(conn: psycopg.Connection, schema: str, name: str) -> None:
    """ANALYZE the table when it is stale: a sample of a table that grows all year would
    cost more every night."""
    if _is_stale(conn, schema, name):
        _analyze(conn, sql.Identifier(schema, name), STALE_STATISTICS_TARGET)


def _recompute_mostly_new_months(conn: psycopg.Connection, plan: Plan) -> None:
    """A month gaining at least as many days as it held is recomputed rather than added to:
    reading it whole costs at most twice its new days, while adding compares every new
    tuple with the month one by one (a bulk build's single refresh, a takeover's months:
    28 new days of 100,000 rows took over 6 minutes to add). Not for one night's day: the
    recompute of a month's first two nights measured no faster (the 1st) or slower (the
    2nd, 5.2 to 7.8 s against 2.8 s: benchmarks/README.md). Held days are those with
    user_visits_daily rows, the plan's days aside (the daily group, beside, may have
    written them already); grown days were held (only their late rows are added)."""
    for month in sorted({d.replace(day=1) for d in plan.added_days}):
        added = [d for d in plan.added_days
                 if d.replace(day=1) == month and d not in plan.grown_days]
        first, end = month_bounds(month)
        held = one(conn.execute(
            "SELECT count(*) FROM generate_series(%s::date, %s::date - 1, '1 day') AS d(day) "
            "WHERE d.day <> ALL(%s::date[]) AND EXISTS "
            "(SELECT FROM tchap_stats.user_visits_daily AS v WHERE v.day = d.day::date)",
            (first, end, plan.whole_days)))[0]
        if len(added) > 1 and len(added) >= held:
            plan.recomputed_months = sorted({*plan.recomputed_months, month})
            plan.added_days = [d for d in plan.added_days if d.replace(day=1) != month]


def _can_append_rolling(conn: psycopg.Connection, plan: Plan) -> bool:
    """Appending is exact when each changed day is either fresh and later than every day
    the summaries held, or grown (its late rows folded in first) and not later, and
    rolling_last_active is up to date with the latest day held."""
    fresh, grown = plan.fresh_days, plan.grown_days
    if not plan.days or len(fresh) + len(grown) < len(plan.days):
        return False
    held_until, through = one(conn.execute(
        "SELECT (SELECT max(day) FROM tchap_stats.user_visits_daily "
        "        WHERE day <> ALL(%(days)s::date[])), "
        "       (SELECT through_day FROM tchap_stats.rolling_state)", {"days": fresh}))
    if held_until != through:
        return False
    return held_until is None or (min(fresh, default=date.max) > held_until
                                  and max(grown, default=date.min) <= held_until)


def _run_file(conn: psycopg.Connection, name: str, params: Mapping[str, object]
              ) -> psycopg.Cursor:
    """A file of one statement."""
    return _timed(conn, sql.SQL((SUMMARIES_SQL / name).read_text()), params)


def _run_script(conn: psycopg.Connection, name: str, params: Mapping[str, object]
                ) -> None:
    """A file of several statements, run one at a time (each is timed and logged)."""
    for statement in statements((SUMMARIES_SQL / name).read_text()):
        _timed(conn, sql.SQL(statement), params)


def _timed(conn: psycopg.Connection, statement: sql.SQL | sql.Composed,
           params: Mapping[str, object]) -> psycopg.Cursor:
    started = time.monotonic()
    cur = conn.execute(statement, params)
    text = statement.as_string(conn)
    first = next((line for line in text.splitlines() if line.startswith("--")),
                 " ".join(text.split())[:70])
    log.debug("%s → %s row(s) in %.2f s", first.strip("- "), cur.rowcount,
              time.monotonic() - started)
    return cur


def _consume(conn: psycopg.Connection, group: str, days: list[date]) -> None:
    conn.execute("DELETE FROM tchap_stats.summary_queue "
                 "WHERE summary_group = %s AND day = ANY(%s)", (group, days))
    conn.execute("DELETE FROM tchap_stats.late_rows "
                 "WHERE summary_group = %s AND visit_date = ANY(%s)", (group, days))
    for summary in PREAGGREGATED:
        if summary.group == group:
            conn.execute(sql.SQL("DELETE FROM {} WHERE day = ANY(%s)").format(
                summary.staging_identifier), (days,))


def _lock_groups(conn: psycopg.Connection, groups: Iterable[str]) -> None:
    """One refresh of a group at a time; always taken in GROUPS order (no cycles)."""
    for group in sorted(groups, key=GROUPS.index):
        conn.execute("SELECT pg_advisory_xact_lock(%s, %s)",
                     (_REFRESH_LOCK, GROUPS.index(group)))


# Above this share of a day's rows (its devices), a grown day's new rows are not folded
# into user_visits_daily and active_daily one by one: the day is re-read whole there (a
# backfill loading a day a second time, a day that held only late rows). The rolling
# window still folds them in: recomputing it would read 30 days.
LATE_SHARE = 0.25


def _foldable(conn: psycopg.Connection, grown: list[date]) -> list[date]:
    """The grown days whose late rows are few enough to fold into user_visits_daily and
    active_daily."""
    if not grown:
        return []
    too_many = {day for (day,) in conn.execute(
        "SELECT l.visit_date FROM (SELECT visit_date, count(*) AS rows "
        "                          FROM tchap_stats.late_rows "
        "                          WHERE summary_group = 'daily' AND new_key "
        "                            AND visit_date = ANY(%(days)s::date[]) "
        "                          GROUP BY 1) AS l "
        "LEFT JOIN tchap_stats.active_daily AS a "
        "  ON a.day = l.visit_date AND a.dimension = 'overall' AND a.value = '' "
        "WHERE a.devices IS NULL OR l.rows > %(share)s * a.devices",
        {"days": grown, "share": LATE_SHARE})}
    return [d for d in grown if d not in too_many]


def _hand_out(conn: psycopg.Connection) -> None:
    """Hand the days loads changed out to every group's queue (sql/summaries/
    summary_queue.sql), and bring the statistics of their month partitions up to date
    for every group (and of the late rows handed out), in one short transaction."""
    with conn.transaction():
        days = sorted({day for (day,) in _run_file(conn, "summary_queue.sql",
                                                    {"groups": list(GROUPS)})})
        _analyze_raw(conn, sorted({d.replace(day=1) for d in days}))
        # Filled and emptied every night, faster than autovacuum follows: without fresh
        # statistics the monthly add of a few thousand late rows took 42 s instead of 0.2 s
        # (nested loops over what the planner took for a handful of rows).
        _analyze(conn, sql.Identifier("tchap_stats", "late_rows"))


def _refresh_group(conn: psycopg.Connection, group: str) -> RefreshReport:
    """Consume the group's queue: recompute or add to what its days affect, in one
    transaction with the removal of the days consumed."""
    started = time.monotonic()
    report = RefreshReport()
    with conn.transaction():
        _lock_groups(conn, [group])
        changed = [ChangedDay(*row) for row in conn.execute(
            "SELECT day, fresh, rewritten FROM tchap_stats.summary_queue "
            "WHERE summary_group = %s ORDER BY day FOR UPDATE", (group,))]
        plan = Plan.incremental(changed)
        _recompute_mostly_new_months(conn, plan)
        if group == DAILY:
            plan.folded_days = _foldable(conn, plan.grown_days)
            plan.rolling_append = _can_append_rolling(conn, plan)
            report.preaggregated_days = recompute_daily(conn, plan, from_staging=True)
            report.rolling_append = plan.rolling_append
        elif group == MONTHLY:
            recompute_monthly(conn, plan)
            report.months, report.recomputed_months = plan.months, plan.recomputed_months
        else:
            _user_months(conn, plan, USER_MONTHS.identifier)
        _consume(conn, group, plan.days)
    report.days, report.seconds = plan.days, time.monotonic() - started
    return report


# More days than a night brings (its own and the 7 before it, late rows): a backfill's or a
# takeover's refresh, which writes its summaries' rows by the million.
BULK_DAYS = 14


def _vacuum_group(conn: psycopg.Connection, group: str) -> None:
    """VACUUM (ANALYZE) the group's summary tables after a bulk refresh. Rows no one has
    read yet carry no hint bits: the first night after a bulk build would set them on
    every page it reads, and write those pages back, a quarter of its time; a new month's
    statistics would wait for autoanalyze (benchmarks/README.md, "After a bulk build").
    VACUUM skips the pages it already marked all-visible: its cost follows what changed."""
    for summary in SUMMARIES:
        if summary.group == group:
            _timed(conn, sql.SQL("VACUUM (ANALYZE) {}").format(summary.identifier), {})


def _side_by_side(connections: list[psycopg.Connection],
                  work: Callable[[psycopg.Connection, str], Any]) -> list:
    """`work(connection, group)` for every group, as many at once as there are connections
    (PostgreSQL runs each on a core): the groups start in GROUPS order, each on the first
    connection free, in this thread's context (the raw table they read, raw_schema, too).
    The results in GROUPS order, once every group is done (the first error raised then)."""
    free: Queue[psycopg.Connection] = Queue()
    for connection in connections:
        free.put(connection)

    def on_a_free_connection(group: str) -> Any:
        connection = free.get()
        try:
            return work(connection, group)
        finally:
            free.put(connection)

    with ThreadPoolExecutor(len(connections), thread_name_prefix="refresh") as pool:
        futures = [pool.submit(copy_context().run, on_a_free_connection, group)
                   for group in GROUPS]
        wait(futures)
    return [future.result() for future in futures]


def refresh_changed(conn: psycopg.Connection, database_url: str) -> RefreshReport:
    """Hand the days loads changed out to the groups' queues, then refresh each group from
    its queue in a transaction of its own, two at a time: on `conn` and on a second
    connection to `database_url`. The daily and monthly groups start side by side, and
    user_months follows on whichever finishes first: on a night that adds nothing the
    monthly group's add is the shorter half, on a month's first nights and after a bulk
    build the longer (three at once on 2 cores made every night that adds nothing 0.1 s
    longer). A group that fails leaves the others to finish, then its error is raised."""
    started = time.monotonic()
    _hand_out(conn)
    with connect(database_url, autocommit=True) as second:
        daily, monthly, months = _side_by_side([conn, second], _refresh_group)
        days = sorted(set(daily.days) | set(monthly.days) | set(months.days))
        if len(days) > BULK_DAYS:
            _side_by_side([conn, second], _vacuum_group)
    return RefreshReport(days, monthly.months,
                         time.monotonic() - started, monthly.recomputed_months,
                         daily.rolling_append, daily.preaggregated_days)


def refresh_days(conn: psycopg.Connection, days: list[date], fresh: bool) -> RefreshReport:
    """The summaries of `days` after their rows were all written at once (the legacy
    takeover's months), as a refresh of loads that wrote them: queued for every group, then
    each group refreshed on this connection, in the caller's transaction. `fresh`: the days
    held no rows before, so the monthly summaries are added to and the rolling window
    appended to, a day at a time, when they follow every day summarised (months in date
    order); otherwise their months and windows are recomputed."""
    started = time.monotonic()
    conn.execute(
        "INSERT INTO tchap_stats.summary_queue "
        "(summary_group, day, last_load_id, fresh, rewritten) "
        "SELECT g, d, 0, %(fresh)s, NOT %(fresh)s "
        "FROM unnest(%(groups)s::text[]) AS g, unnest(%(days)s::date[]) AS d "
        "ON CONFLICT (summary_group, day) DO UPDATE "
        "SET fresh = false, rewritten = true, queued_at = now()",
        {"fresh": fresh, "groups": list(GROUPS), "days": days})
    _analyze_raw(conn, sorted({d.replace(day=1) for d in days}))
    daily = _refresh_group(conn, DAILY)
    monthly = _refresh_group(conn, MONTHLY)
    _refresh_group(conn, MONTHS)
    return RefreshReport(daily.days, monthly.months, time.monotonic() - started,
                         monthly.recomputed_months, daily.rolling_append)


def refresh_range(conn: psycopg.Connection, first: date, last: date) -> RefreshReport:
    """Full recompute of the months touching [first, last] (the recovery tool)."""
    started = time.monotonic()
    plan = Plan.full(whole_months(first, last))
    with conn.transaction():
        _lock_groups(conn, GROUPS)
        # Consumed first: a load that commits while the recompute runs leaves a changed
        # day of its own for the next refresh, rather than one this one deletes unseen.
        conn.execute("DELETE FROM tchap_stats.changed_days WHERE export = %s "
                     "AND day = ANY(%s)", (EXPORT, plan.days))
        conn.execute("DELETE FROM tchap_stats.late_rows WHERE summary_group IS NULL "
                     "AND visit_date = ANY(%s)", (plan.days,))
        for group in GROUPS:
            _consume(conn, group, plan.days)
        recompute(conn, plan)
    return RefreshReport(plan.days, plan.months, time.monotonic() - started,
                         plan.recomputed_months)


@dataclass
class Difference:
    summary: str
    side: str  # "missing" (in the recompute, not the summary) or "extra"
    row: tuple


def check(conn: psycopg.Connection, first: date, last: date,
          sample: int = 10) -> tuple[int, list[Difference]]:
    """Recompute the months touching [first, last] into temporary tables and compare them
    row by row with the summaries. Returns (number of differing rows, a sample)."""
    days = whole_months(first, last)
    total, found = 0, []
    with conn.transaction():
        targets: dict[str, sql.Composable] = {}
        for summary in SUMMARIES:
            temp = sql.Identifier(f"check_{summary.table}")
            conn.execute(sql.SQL("CREATE TEMP TABLE {} (LIKE {}) ON COMMIT DROP").format(
                temp, summary.identifier))
            targets[summary.table] = temp
        plan = Plan.full(days)
        recompute(conn, plan, targets)
        params = plan.parameters()
        for summary in SUMMARIES:
            where = {
                "day": sql.SQL("day = ANY(%(days)s::date[])"),
                "month": sql.SQL("month = ANY(%(months)s::date[])"),
                "rolling": sql.SQL("day BETWEEN %(rolling_first)s AND %(rolling_last)s"),
            }[summary.grain]
            for side, left, right in (("missing", targets[summary.table], summary.identifier),
                                      ("extra", summary.identifier, targets[summary.table])):
                query = sql.SQL("SELECT * FROM {left} WHERE {where} EXCEPT ALL "
                                "SELECT * FROM {right} WHERE {where}").format(
                                    left=left, right=right, where=where)
                rows = conn.execute(query, params).fetchall()
                total += len(rows)
                found += [Difference(summary.table, side, r) for r in rows[:sample]]
    return total, found[:sample]
