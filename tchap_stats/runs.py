"""The run log and the run lock.

A run (sync, backfill, refresh) opens one connection of its own for its whole life: it
takes the run lock there (sync and backfill: one of them at a time), and writes its row of
tchap_stats.runs at its start and its end. The lock is a session advisory lock, so a
killed run's lock goes with its connection; its row, left 'running' with a backend that
is gone, reads as 'killed' in tchap_stats.runs_seen.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import psycopg

from .database import connect, one
from .pipeline import EXIT_BUDGET, EXIT_FAILED, EXIT_MISSING, EXIT_OK, RunReport, Status
from .schema import require_schema

log = logging.getLogger("tchap_stats")

RUN_LOCK = 0x7C4A_0004  # advisory lock id: one sync or backfill at a time
OUTCOMES = {EXIT_OK: "ok", EXIT_FAILED: "failed", EXIT_MISSING: "missing",
            EXIT_BUDGET: "budget"}
WAIT_POLL = 1.0  # seconds between two tries of a lock another run holds


class RunBusy(RuntimeError):
    """Another run holds the run lock."""


class RunLog:
    """A run's connection: its lock (when `exclusive`) and its row in tchap_stats.runs."""

    def __init__(self, database_url: str, command: str, arguments: str, *,
                 exclusive: bool = True, wait: float | None = None):
        self.conn = connect(database_url, autocommit=True)
        try:
            require_schema(self.conn)
            if exclusive:
                self._lock(wait)
            self.run_id: int = one(self.conn.execute(
                "INSERT INTO tchap_stats.runs (command, arguments) VALUES (%s, %s) "
                "RETURNING run_id", (command, arguments)))[0]
        except BaseException:
            self.conn.close()
            raise

    def _lock(self, wait: float | None) -> None:
        """The run lock, now (wait None), within `wait` seconds, or whenever (wait < 0)."""
        deadline = None if wait is None or wait < 0 else time.monotonic() + wait
        said = False
        while not one(self.conn.execute("SELECT pg_try_advisory_lock(%s)", (RUN_LOCK,)))[0]:
            holder = describe_holder(self.conn)
            if wait is None:
                raise RunBusy(f"another run is under way ({holder}): this one exits; "
                              f"--wait waits for it")
            if deadline is not None and time.monotonic() >= deadline:
                raise RunBusy(f"another run is still under way after {wait:g} s of waiting "
                              f"({holder})")
            if not said:
                log.info("waiting for another run to end (%s)", holder)
                said = True
            time.sleep(WAIT_POLL)

    def finish(self, exit_code: int, report: RunReport | None = None,
               error: str | None = None) -> None:
        outcome = OUTCOMES.get(exit_code, "failed")
        figures: dict[str, Any] = {}
        if report is not None:
            figures = {
                "files_loaded": report.count(Status.LOADED),
                "files_skipped": report.count(Status.SKIPPED),
                "files_failed": report.count(Status.FAILED),
                "files_missing": report.count(Status.MISSING),
                "files_left": [o.name for o in report.outcomes
                               if o.status in (Status.LEFT, Status.NOT_RUN)],
                "rows_loaded": sum(o.rows_loaded for o in report.outcomes),
                "days_refreshed": len(report.refresh.days) if report.refresh else 0,
            }
            error = error or report.error
        self.conn.execute(
            "UPDATE tchap_stats.runs SET finished_at = clock_timestamp(), outcome = %(outcome)s,"
            " exit_code = %(exit_code)s, files_loaded = %(files_loaded)s, "
            "files_skipped = %(files_skipped)s, files_failed = %(files_failed)s, "
            "files_missing = %(files_missing)s, files_left = %(files_left)s, "
            "rows_loaded = %(rows_loaded)s, days_refreshed = %(days_refreshed)s, "
            "error = %(error)s WHERE run_id = %(run_id)s",
            {"outcome": outcome, "exit_code": exit_code, "error": error,
             "run_id": self.run_id, **{k: figures.get(k) for k in (
                 "files_loaded", "files_skipped", "files_failed", "files_missing",
                 "files_left", "rows_loaded", "days_refreshed")}})

    def close(self) -> None:
        self.conn.close()  # releases the run lock


def describe_holder(conn: psycopg.Connection) -> str:
    """Who holds the run lock: its backend, and its run's command and start."""
    row = conn.execute(
        "SELECT l.pid, r.command, r.arguments, to_char(r.started_at AT TIME ZONE 'UTC', "
        "'YYYY-MM-DD HH24:MI:SS \"UTC\"') FROM pg_locks AS l "
        "LEFT JOIN LATERAL (SELECT * FROM tchap_stats.runs WHERE backend_pid = l.pid "
        "  AND outcome = 'running' ORDER BY run_id DESC LIMIT 1) AS r ON true "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 0 "
        "  AND l.objid = %s AND l.objsubid = 1", (RUN_LOCK,)).fetchone()
    if row is None:
        return "its backend just ended"
    pid, command, arguments, started = row
    if command is None:
        return f"PostgreSQL backend pid {pid}"
    return f"`tchap-stats {arguments}`, since {started}, PostgreSQL backend pid {pid}"


@dataclass(frozen=True)
class Freshness:
    export: str
    last_day_loaded: date | None
    days_behind: int | None
    days_missing_last_7: int
    last_run_outcome: str | None
    last_run_started_at: datetime | None
    last_run_seconds: float | None


def freshness(conn: psycopg.Connection) -> list[Freshness]:
    rows = conn.execute(
        "SELECT export, last_day_loaded, days_behind, days_missing_last_7, last_run_outcome, "
        "last_run_started_at, last_run_seconds::float FROM tchap_stats.freshness "
        "ORDER BY export").fetchall()
    return [Freshness(*row) for row in rows]


def last_runs(conn: psycopg.Connection, limit: int) -> list[dict[str, Any]]:
    cur = conn.execute(
        "SELECT run_id, command, arguments, started_at, finished_at, outcome, exit_code, "
        "files_loaded, files_skipped, files_failed, files_missing, files_left, rows_loaded, "
        "days_refreshed, round(seconds::numeric, 1)::float AS seconds, error "
        "FROM tchap_stats.runs_seen ORDER BY run_id DESC LIMIT %s", (limit,))
    names = [c.name for c in cur.description or []]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def to_json(value: object) -> str:
    """JSON with dates and times as ISO text."""
    def default(item: object) -> str:
        if isinstance(item, date | datetime):
            return item.isoformat()
        raise TypeError(type(item).__name__)

    return json.dumps(value, default=default, indent=2, ensure_ascii=False)
