"""The ledger (schema tchap_stats): which files were processed, what each did to each
day, which lines were rejected, and which days changed since the summaries last ran.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

import psycopg
from psycopg import sql

from .database import one
from .source import SourceFile
from .staging import Reject


@dataclass(frozen=True)
class DayResult:
    day: date
    rows_in_file: int  # after in-file deduplication
    inserted: int  # keys new to the day
    replaced: int  # existing rows this file's row won over
    removed: int = 0  # rows deleted by --replace
    was_empty: bool = False  # the day held no rows before this load
    # Of the replaced rows, those whose replacement differs where the summaries look
    # (Export.summarised; all of them for an export that declares none).
    replaced_summarised: int = 0

    @property
    def rewritten(self) -> bool:
        """Rows the day held were removed, or replaced by rows that change what the
        summaries counted (not only added to, nor only moved to an earlier time)."""
        return self.replaced_summarised > 0 or self.removed > 0

    @property
    def loaded(self) -> int:
        return self.inserted + self.replaced

    @property
    def changed(self) -> bool:
        return self.loaded > 0 or self.removed > 0


INTERRUPTED = "the process running this load stopped before it finished"

# A 'running' load whose PostgreSQL backend is gone: its process was killed, its container
# stopped. A backend that started after the load holds the same pid by reuse (Metabase's
# long-lived connections, say): the load's own is gone too. backend_start is NULL for
# another role's sessions when this one may not see them: the pid alone decides then.
_GONE = sql.SQL("""status = 'running' AND NOT EXISTS (
    SELECT FROM pg_stat_activity AS a
    WHERE a.pid = loads.backend_pid
      AND (a.backend_start IS NULL OR a.backend_start <= loads.started_at))""")


def mark_interrupted(conn: psycopg.Connection) -> int:
    """Record as interrupted the loads left 'running' by a process that is gone."""
    cur = conn.execute(sql.SQL(
        "UPDATE tchap_stats.loads SET status = 'interrupted', finished_at = now(), "
        "error = %s WHERE {}").format(_GONE), (INTERRUPTED,))
    return cur.rowcount


@dataclass(frozen=True)
class LoadLine:
    """A load as `status` shows it."""

    file_key: str
    status: str  # 'interrupted' too for a running load whose process is gone
    rows_read: int
    rows_loaded: int
    rows_duplicate: int
    rows_rejected: int
    days_changed: int
    started_at: str
    finished_at: str | None
    backend_pid: int
    error: str | None


def last_loads(conn: psycopg.Connection, limit: int) -> list[LoadLine]:
    """The last loads, newest first. A load whose process is gone reads as interrupted
    (as mark_interrupted, the next run, records it), without writing anything."""
    stamp = sql.SQL("""to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"')""")
    rows = conn.execute(sql.SQL(
        "SELECT file_key, CASE WHEN {gone} THEN 'interrupted' ELSE status END, "
        "coalesce(rows_read, 0), coalesce(rows_loaded, 0), coalesce(rows_duplicate, 0), "
        "coalesce(rows_rejected, 0), coalesce(days_changed, 0), {started}, {finished}, "
        "backend_pid, CASE WHEN {gone} THEN %s ELSE error END "
        "FROM tchap_stats.loads ORDER BY load_id DESC LIMIT %s").format(
            gone=_GONE, started=stamp.format(sql.Identifier("started_at")),
            finished=stamp.format(sql.Identifier("finished_at"))),
        (INTERRUPTED, limit)).fetchall()
    return [LoadLine(*row) for row in rows]


def waiting_days(conn: psycopg.Connection, export: str, first: date | None = None,
                 last: date | None = None) -> list[date]:
    """The days of `export` whose summaries wait for a refresh, in [first, last] when
    given: changed by loads (changed_days), or handed out to a summary group's queue
    that the group has not consumed yet (summary_queue, whose days are all of the one
    summarised export)."""
    rows = conn.execute(
        "SELECT DISTINCT day FROM ("
        "  SELECT day FROM tchap_stats.changed_days WHERE export = %(export)s"
        "  UNION ALL SELECT day FROM tchap_stats.summary_queue) AS waiting "
        "WHERE (%(first)s::date IS NULL OR day >= %(first)s::date) "
        "  AND (%(last)s::date IS NULL OR day <= %(last)s::date) ORDER BY day",
        {"export": export, "first": first, "last": last}).fetchall()
    return [day for (day,) in rows]


def day_loaded(conn: psycopg.Connection, export: str, day: date) -> bool:
    """Whether a file of `export` for extraction day `day` was loaded (whatever its ETag)."""
    row = conn.execute(
        "SELECT 1 FROM tchap_stats.loads WHERE export = %s AND extraction_date = %s "
        "AND status = 'loaded' LIMIT 1", (export, day)).fetchone()
    return row is not None


def is_loaded(conn: psycopg.Connection, export: str, file: SourceFile) -> bool:
    row = conn.execute(
        "SELECT 1 FROM tchap_stats.loads "
        "WHERE export = %s AND file_key = %s AND etag = %s AND status = 'loaded' LIMIT 1",
        (export, file.key, file.etag),
    ).fetchone()
    return row is not None


def start(conn: psycopg.Connection, export: str, file: SourceFile,
          extraction_date: date | None, mode: str) -> int:
    return one(conn.execute(
        "INSERT INTO tchap_stats.loads "
        "(export, file_key, etag, size_bytes, extraction_date, mode, status) "
        "VALUES (%s, %s, %s, %s, %s, %s, 'running') RETURNING load_id",
        (export, file.key, file.etag, file.size, extraction_date, mode),
    ))[0]


def save_rejects(conn: psycopg.Connection, load_id: int, file_key: str,
                 rejects: Iterable[Reject]) -> None:
    with conn.cursor().copy(
        "COPY tchap_stats.rejects (load_id, file_key, line, column_name, reason, raw_line) "
        "FROM STDIN"
    ) as copy:
        for r in rejects:
            copy.write_row((load_id, file_key, r.line, r.column, r.reason, r.raw_line))


def fail(conn: psycopg.Connection, load_id: int, error: str, *, rows_read: int | None = None,
         rows_rejected: int | None = None) -> None:
    conn.execute(
        "UPDATE tchap_stats.loads SET status = 'failed', finished_at = clock_timestamp(), "
        "error = %s, rows_read = %s, rows_rejected = %s, rows_loaded = 0 WHERE load_id = %s",
        (error, rows_read, rows_rejected, load_id),
    )


def finish(conn: psycopg.Connection, load_id: int, export: str, *, rows_read: int,
           rows_loaded: int, rows_duplicate: int, rows_rejected: int,
           days: list[DayResult]) -> None:
    """Record a successful load; called inside the transaction that wrote its rows."""
    changed = [d for d in days if d.changed]
    conn.execute(
        "UPDATE tchap_stats.loads SET status = 'loaded', finished_at = clock_timestamp(), "
        "rows_read = %s, rows_loaded = %s, rows_duplicate = %s, rows_rejected = %s, "
        "days_changed = %s WHERE load_id = %s",
        (rows_read, rows_loaded, rows_duplicate, rows_rejected, len(changed), load_id),
    )
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO tchap_stats.load_days "
            "(load_id, day, rows_in_file, rows_inserted, rows_replaced, rows_removed) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            [(load_id, d.day, d.rows_in_file, d.inserted, d.replaced, d.removed) for d in days],
        )
        cur.executemany(
            "INSERT INTO tchap_stats.changed_days AS c "
            "(export, day, last_load_id, fresh, rewritten) VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT (export, day) DO UPDATE SET last_load_id = excluded.last_load_id, "
            "changed_at = now(), rewritten = c.rewritten OR excluded.rewritten",
            # `fresh` stays as the first change since the last refresh found the day.
            [(export, d.day, load_id, d.was_empty, d.rewritten) for d in days if d.changed],
        )
