"""Summaries: the tables behind the dashboards' views, recomputed only for what changed.

Loads record the days they changed in tchap_stats.changed_days. A refresh takes those
days, rewrites their daily summary rows and their months' monthly rows from the raw
table, and removes the days it consumed, all in one transaction. One SQL file per
summary (sql/summaries/) serves the incremental refresh, the full recompute and `check`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta

import psycopg
from psycopg import sql

from .config import SQL_DIR
from .load import days_between, month_bounds

SUMMARIES_SQL = SQL_DIR / "summaries"
EXPORT = "user_daily_visits"
_REFRESH_LOCK = 0x7C4A_0003  # advisory lock id: one refresh rewrites summaries at a time


@dataclass(frozen=True)
class Summary:
    table: str  # in schema tchap_stats; its SQL file is sql/summaries/{table}.sql
    grain: str  # "day", "month", or "rolling" (every day whose window holds a changed day)

    @property
    def identifier(self) -> sql.Identifier:
        return sql.Identifier("tchap_stats", self.table)

    def insert(self, target: sql.Composable) -> sql.Composed:
        text = (SUMMARIES_SQL / f"{self.table}.sql").read_text()
        return sql.SQL(text).format(target=target)

    def delete(self, target: sql.Composable) -> sql.Composed:
        if self.grain == "rolling":
            return sql.SQL("DELETE FROM {} WHERE day BETWEEN %(rolling_first)s "
                           "AND %(rolling_last)s").format(target)
        array = "days" if self.grain == "day" else "months"
        return sql.SQL("DELETE FROM {} WHERE {} = ANY({}::date[])").format(
            target, sql.Identifier(self.grain), sql.Placeholder(array))


SUMMARIES = (
    Summary("user_visits_daily", "day"),
    Summary("user_devices_monthly", "month"),
    Summary("user_months", "month"),
    Summary("active_daily", "day"),
    Summary("active_monthly", "month"),
    Summary("active_rolling_30d", "rolling"),  # after user_visits_daily: it reads it
)
ROLLING_WINDOW = 30


@dataclass
class RefreshReport:
    days: list[date] = field(default_factory=list)
    months: list[date] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        if not self.days:
            return "summaries: nothing changed"
        span = f"{self.days[0]}..{self.days[-1]}" if len(self.days) > 1 else f"{self.days[0]}"
        return (f"summaries: {len(self.days)} day(s) ({span}) and {len(self.months)} month(s) "
                f"recomputed · {self.seconds:.1f} s")


def _parameters(days: Iterable[date]) -> dict[str, object]:
    days = sorted(set(days))
    months = sorted({d.replace(day=1) for d in days})
    return {"days": days, "months": months, "first": months[0] if months else None,
            "end": month_bounds(months[-1])[1] if months else None}


def recompute(conn: psycopg.Connection, days: Iterable[date],
              targets: dict[str, sql.Composable] | None = None) -> dict[str, object]:
    """Rewrite the summary rows of `days` (and of their months) from the raw table.
    `targets` redirects a summary to another table (check's temporary copies)."""
    params = _parameters(days)
    if not params["days"]:
        return params
    # Sorts and hashes of a day's rows fit in memory instead of spilling (this transaction
    # only; the server's default is 4 MB).
    conn.execute("SET LOCAL work_mem = '64MB'")
    for summary in SUMMARIES:
        if summary.grain == "rolling":
            _rolling_range(conn, params)
            # The rolling window reads user_visits_daily: plan it on fresh statistics.
            conn.execute("ANALYZE tchap_stats.user_visits_daily")
        target = (targets or {}).get(summary.table, summary.identifier)
        conn.execute(summary.delete(target), params)
        conn.execute(summary.insert(target), params)
    return params


def _rolling_range(conn: psycopg.Connection, params: dict[str, object]) -> None:
    """The days whose 30-day window holds a recomputed day. Days still in the future get
    provisional rows (the view hides them) that their own load recomputes."""
    days = params["days"]
    params["rolling_first"] = days[0]
    params["rolling_last"] = days[-1] + timedelta(days=ROLLING_WINDOW - 1)


def refresh_changed(conn: psycopg.Connection) -> RefreshReport:
    """Consume tchap_stats.changed_days: recompute those days and months, in one
    transaction with the removal of the days consumed."""
    started = time.monotonic()
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_REFRESH_LOCK,))
        days = [d for (d,) in conn.execute(
            "SELECT day FROM tchap_stats.changed_days WHERE export = %s ORDER BY day "
            "FOR UPDATE", (EXPORT,))]
        params = recompute(conn, days)
        conn.execute("DELETE FROM tchap_stats.changed_days WHERE export = %s AND day = ANY(%s)",
                     (EXPORT, days))
    return RefreshReport(days, params["months"], time.monotonic() - started)


def whole_months(first: date, last: date) -> list[date]:
    """The days of every month the range touches: monthly rows are per whole month."""
    return days_between(first.replace(day=1), month_bounds(last)[1] - timedelta(days=1))


def refresh_range(conn: psycopg.Connection, first: date, last: date) -> RefreshReport:
    """Full recompute of the months touching [first, last] (the recovery tool)."""
    started = time.monotonic()
    days = whole_months(first, last)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_REFRESH_LOCK,))
        params = recompute(conn, days)
        conn.execute("DELETE FROM tchap_stats.changed_days WHERE export = %s AND day = ANY(%s)",
                     (EXPORT, days))
    return RefreshReport(days, params["months"], time.monotonic() - started)


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
        targets = {}
        for summary in SUMMARIES:
            temp = sql.Identifier(f"check_{summary.table}")
            conn.execute(sql.SQL("CREATE TEMP TABLE {} (LIKE {}) ON COMMIT DROP").format(
                temp, summary.identifier))
            targets[summary.table] = temp
        params = recompute(conn, days, targets)
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
