"""Load: one staged file into its PostgreSQL table, atomically, then into the ledger.

All the days a file touches are written in one transaction, together with the ledger's
'loaded' status, the per-day counts and the changed days: a run killed at any point
leaves every day as it was or fully loaded, and the next run simply loads the file again.

A "day" is the calendar day (configured zone) of the row's partition column, or, for an
unpartitioned table, the whole table, counted for the file's extraction day. Per day:
- a day that holds no rows yet (the nightly case) receives the file's rows with a COPY
  straight into its month partition;
- a day that holds rows is merged: the file's rows go to a temporary table, then the
  export's merge rule decides, key by key, which row stays (sql/load/merge_*.sql,
  snapshot_*.sql);
- with --replace, the day is emptied first and receives exactly the file's rows (on an
  hourly table, only the hours the file holds; on an unpartitioned one, the file's rows win
  for their keys).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable
from contextlib import AbstractContextManager
from datetime import date, datetime, time, timedelta
from time import monotonic
from zoneinfo import ZoneInfo

import psycopg
from psycopg import sql
from psycopg.copy import LibpqWriter

from .config import DEFAULT_LOCK_TIMEOUT, DEFAULT_TZ, SQL_DIR
from .database import connect, local_setting, one
from .dates import month_bounds
from .exports import Export, SnapshotPerFile
from .ledger import DayResult
from .staging import StagedFile, Stager

LOAD_SQL = SQL_DIR / "load"
log = logging.getLogger("tchap_stats")
_PARTITION_LOCK = 0x7C4A_0002  # advisory lock id serialising partition creation


def _statement(name: str, **parts: sql.Composable) -> sql.Composed:
    return sql.SQL((LOAD_SQL / name).read_text()).format(**parts)


def partition_name(export: Export, day: date) -> str:
    return f"{export.table}_p{day:%Y_%m}"


Bound = date | datetime


def day_bounds(export: Export, first: date, end: date, timezone: str) -> tuple[Bound, Bound]:
    """[first, end) as values of the partition column: dates, or the zone's midnights."""
    assert export.partition is not None
    if export.column_type(export.partition.column) == "date":
        return first, end
    zone = ZoneInfo(timezone)
    return datetime.combine(first, time(), zone), datetime.combine(end, time(), zone)


def ensure_partitions(conn: psycopg.Connection, export: Export, days: list[date],
                      timezone: str = DEFAULT_TZ) -> None:
    """Create the month partitions the days need, in a short transaction of their own
    (an empty partition is harmless, and creating it locks the parent table briefly)."""
    if export.partition is None:
        return
    months = sorted({month_bounds(d) for d in days})
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PARTITION_LOCK,))
        for lower, upper in months:
            low, high = day_bounds(export, lower, upper, timezone)
            conn.execute(_statement(
                "partition.sql",
                partition=sql.Identifier(partition_name(export, lower)),
                table=sql.Identifier(export.table),
                lower=sql.Literal(low), upper=sql.Literal(high),
            ))


def summarize_new_ranges(conn: psycopg.Connection, export: Export, days: list[date]) -> None:
    """After a load commits: summarize the BRIN ranges of the pages it appended, so that
    the merges of the next file and the summaries read just their day, not the month.
    One short transaction per partition, always in name order (each takes a lock that
    another job's summarizing of the same partition waits for)."""
    tables = sorted({partition_name(export, d) for d in days}) if export.partition else [
        export.table]
    statement = (LOAD_SQL / "summarize_brin.sql").read_text()
    for table in tables:
        conn.execute(statement, {"table": sql.Identifier(table).as_string(conn)})


_MAX_LOCK_TIMEOUT_MS = 2**31 - 1  # PostgreSQL's largest lock_timeout (24.8 days)


class LockTimeout(RuntimeError):
    """A load waited longer than the lock timeout for days another load was writing."""


def lock_days(conn: psycopg.Connection, export: Export, days: list[date],
              timeout: float = DEFAULT_LOCK_TIMEOUT) -> None:
    """Serialise writers of the same days (parallel backfill, overlapping cron runs).
    Always taken in date order, so two loads never wait on each other in a cycle. Every
    file of an unpartitioned table writes the same rows: one lock for the table.

    A lock another load holds is logged (which day, which backend holds it), then waited
    for up to `timeout` seconds in all (Settings.lock_timeout), after which LockTimeout
    is raised. PostgreSQL does the waiting (lock_timeout, for this statement only): the
    load gets the lock the moment the other commits, in the order loads asked for it,
    with no polling; the error aborts the caller's transaction, which rolls back."""
    deadline = monotonic() + timeout
    if export.partition is None:
        keys = [(f"{export.name}:*", f"{export.name} (the whole table)")]
    else:
        keys = [(f"{export.name}:{day}", f"{export.name} {day}") for day in sorted(days)]
    for key, what in keys:
        if not one(conn.execute("SELECT pg_try_advisory_xact_lock(hashtext(%s))",
                                (key,)))[0]:
            _wait_for_lock(conn, key, what, deadline, timeout)


def _wait_for_lock(conn: psycopg.Connection, key: str, what: str, deadline: float,
                   timeout: float) -> None:
    held_by = lock_holders(conn, key)
    message = (f"{what}: another load is writing it{held_by}; gave up waiting after "
               f"{timeout:g} s (TCHAP_STATS_LOCK_TIMEOUT), nothing of this file was loaded")
    remaining = deadline - monotonic()
    if remaining <= 0:
        raise LockTimeout(message)
    log.info("%s: waiting for another load to finish writing it%s; giving up in %d s (%s)",
             what, held_by, math.ceil(remaining), "TCHAP_STATS_LOCK_TIMEOUT")
    previous = one(conn.execute("SELECT current_setting('lock_timeout')"))[0]
    milliseconds = min(max(1, round(remaining * 1000)), _MAX_LOCK_TIMEOUT_MS)
    conn.execute("SELECT set_config('lock_timeout', %s, true)", (f"{milliseconds}ms",))
    try:
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (key,))
    except psycopg.errors.LockNotAvailable as exc:
        raise LockTimeout(message) from exc
    conn.execute("SELECT set_config('lock_timeout', %s, true)", (previous,))
    log.info("%s: got the lock after waiting", what)


def lock_holders(conn: psycopg.Connection, key: str) -> str:
    """Who holds lock_days' lock on `key`, as pg_locks tells (a bigint advisory lock is
    its high and low halves in classid and objid): ' (held by backend pid 123, the load
    of FILE, in a transaction open for 12 s)', or '' when the holder is gone."""
    rows = conn.execute(
        """
        WITH k AS (SELECT hashtext(%s)::bigint AS k)
        SELECT l.pid, (SELECT file_key FROM tchap_stats.loads
                       WHERE status = 'running' AND backend_pid = l.pid
                       ORDER BY load_id DESC LIMIT 1),
               round(extract(epoch FROM clock_timestamp() - a.xact_start))::bigint
        FROM pg_locks AS l CROSS JOIN k
        LEFT JOIN pg_stat_activity AS a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND l.classid::bigint = (k.k >> 32) & 4294967295
          AND l.objid::bigint = k.k & 4294967295
          AND l.pid <> pg_backend_pid()
        """, (key,)).fetchall()
    return "".join(
        f" (held by backend pid {pid}" + (f", the load of {file}" if file else "")
        + (f", in a transaction open for {age} s" if age is not None else "") + ")"
        for pid, file, age in rows)


def hash_joins(conn: psycopg.Connection) -> AbstractContextManager[None]:
    """Merge statements match a file's rows to a day's by key: hashing is right whatever
    the sizes. The statistics may not know the day yet (loaded earlier in this run, before
    any ANALYZE) and estimate it at one row; a nested loop then scans the day once per
    incoming row (40 s instead of 0.2 s for 2,000 overlap rows against a day of 100,000;
    docs/design.md, "Loading a file")."""
    return local_setting(conn, "enable_nestloop", "off")


DayParts = tuple[dict[str, sql.Composable], dict[str, object]]


def day_parts(export: Export, day: date, timezone: str = DEFAULT_TZ) -> DayParts:
    """The relation a day's rows live in, the condition selecting them (on alias t), and
    its parameters."""
    if export.partition is None:
        return {"target": sql.Identifier(export.table), "in_day": sql.SQL("TRUE")}, {}
    lower, upper = day_bounds(export, day, day + timedelta(days=1), timezone)
    in_day = sql.SQL("t.{c} >= %(lower)s AND t.{c} < %(upper)s").format(
        c=sql.Identifier(export.partition.column))
    return ({"target": sql.Identifier(partition_name(export, day)), "in_day": in_day},
            {"lower": lower, "upper": upper})


def day_has_rows(conn: psycopg.Connection, parts: dict[str, sql.Composable],
                 params: dict[str, object]) -> bool:
    """Whether the day (day_parts) holds rows yet, read through the index on the
    partition column. A month partition holds its rows in the order their days were
    loaded; once the statistics know the day, the planner expects a sequential scan to
    meet a matching row at once, but the scan first reads every earlier day of the month:
    0.5 to 0.65 s for the 29th day of 100,000-row days, against 1 ms through the BRIN
    index (benchmarks/refresh.py's nights merge their overlap into the month's last day;
    docs/design.md, "Loading a file")."""
    with local_setting(conn, "enable_seqscan", "off"):
        return one(conn.execute(_statement("day_has_rows.sql", **parts), params))[0]


def copy_rows(conn: psycopg.Connection, target: sql.Composable, columns: tuple[str, ...],
              chunks: Iterable[bytes]) -> None:
    """COPY a stream of rows in the text format (DuckDB's, through its pipe, see
    Stager.stream_rows) into `target`'s columns."""
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        target, sql.SQL(", ").join(map(sql.Identifier, columns)))
    cursor = conn.cursor()
    # The synchronous writer blocks while PostgreSQL is busy, so DuckDB's output waits
    # in the pipe instead of piling up in memory (psycopg's default queues ~1 GB).
    with cursor.copy(statement, writer=LibpqWriter(cursor)) as copy:
        for chunk in chunks:
            copy.write(chunk)


# The context PostgreSQL gives a row COPY refused: "COPY table, line 12, column x: ...".
_COPY_LINE = re.compile(r"COPY [^,]+, line (\d+)(?:, column ([^:]+))?")
# Errors a row's values can cause (as opposed to the server, locks or the connection).
ROW_ERRORS = (psycopg.DataError, psycopg.IntegrityError, psycopg.errors.ProgramLimitExceeded)


class RowRefused(RuntimeError):
    """PostgreSQL refused a row staging had accepted; the message names its file line."""


def refused_row(database_url: str, stager: Stager, staged: StagedFile, day: date,
                timezone: str = DEFAULT_TZ) -> tuple[int | None, str | None, str] | None:
    """Which line of the file PostgreSQL refuses: the day's rows are copied again, in file
    order, into an empty temporary copy of their table (same constraints and indexes), on
    a connection of their own; the COPY's failing line is then a position in file order.
    (file line, column, PostgreSQL's message), or None if the copy goes through."""
    export = staged.export
    target = day_parts(export, day, timezone)[0]["target"]
    probe = sql.Identifier("refused_row_probe")
    with connect(database_url) as conn:
        try:
            conn.execute(sql.SQL("CREATE TEMP TABLE {} (LIKE {} INCLUDING ALL)").format(
                probe, target))
            copy_rows(conn, probe, export.table_columns,
                      stager.stream_day(staged, day, ordered=True))
        except psycopg.Error as exc:
            found = _COPY_LINE.search(exc.diag.context or "")
            if found is None:
                return None
            line = stager.line_of_day_row(staged, day, int(found[1]))
            return line, found[2], exc.diag.message_primary or str(exc)
        finally:
            conn.rollback()
    return None


class DayWriter:
    """Writes the staged rows of one file, day by day, inside the caller's transaction."""

    def __init__(self, conn: psycopg.Connection, stager: Stager, staged: StagedFile,
                 timezone: str = DEFAULT_TZ):
        self.conn = conn
        self.timezone = timezone
        self.stager = stager
        self.staged = staged
        self.export = staged.export
        self._incoming: sql.Identifier | None = None

    def _copy_day(self, target: sql.Composable, day: date) -> None:
        copy_rows(self.conn, target, self.export.table_columns,
                  self.stager.stream_day(self.staged, day))

    def write(self, day: date, replace: bool) -> DayResult:
        rows = self.staged.days[day]
        parts, params = day_parts(self.export, day, self.timezone)
        if replace:
            partition = self.export.partition
            if partition is None:
                # The whole table is one "day" here: emptying it would drop every key the
                # file lacks. --replace means instead that the file's rows win for their keys.
                return self._merge(day, rows, parts, params, file_wins=True)
            if self.export.column_type(partition.column) == "timestamptz":
                return self._replace_hours(day, rows, parts, params)
            removed = self.conn.execute(_statement("delete_day.sql", **parts), params).rowcount
            self._copy_day(parts["target"], day)
            return DayResult(day, rows, inserted=rows, replaced=0, removed=removed,
                             was_empty=removed == 0)
        if not day_has_rows(self.conn, parts, params):
            self._copy_day(parts["target"], day)
            return DayResult(day, rows, inserted=rows, replaced=0, was_empty=True)
        return self._merge(day, rows, parts, params)

    def _incoming_table(self) -> sql.Identifier:
        if self._incoming is None:
            self._incoming = sql.Identifier(f"incoming_{self.export.table}")
            self.conn.execute(_statement("incoming.sql", incoming=self._incoming,
                                         table=sql.Identifier(self.export.table)))
        self.conn.execute(sql.SQL("TRUNCATE {}").format(self._incoming))
        return self._incoming

    def _replace_hours(self, day: date, rows: int, parts: dict[str, sql.Composable],
                       params: dict[str, object]) -> DayResult:
        """--replace on an hourly table: the file's hours of the day hold exactly its rows;
        hours it does not hold (a recount of a few late hours) keep theirs."""
        incoming = self._incoming_table()
        self._copy_day(incoming, day)
        assert self.export.partition is not None
        with hash_joins(self.conn):
            removed = self.conn.execute(_statement(
                "replace_delete_file_hours.sql", **parts, incoming=incoming,
                column=sql.Identifier(self.export.partition.column)), params).rowcount
            self.conn.execute(_statement(
                "merge_insert_missing_keys.sql", **parts, incoming=incoming,
                key_match=self._key_match(), **self._insert_columns()), params)
        return DayResult(day, rows, inserted=rows, replaced=0, removed=removed)

    def _key_match(self) -> sql.Composable:
        return sql.SQL(" AND ").join(
            sql.SQL("t.{k} = i.{k}").format(k=sql.Identifier(k)) for k in self.export.key)

    def _insert_columns(self) -> dict[str, sql.Composable]:
        columns = self.export.table_columns
        return {"columns": sql.SQL(", ").join(map(sql.Identifier, columns)),
                "incoming_columns": sql.SQL(", ").join(
                    sql.SQL("i.{}").format(sql.Identifier(c)) for c in columns)}

    def _beats(self, file_wins: bool) -> sql.Composable:
        """When an incoming row replaces the stored row of its key."""
        export = self.export
        if file_wins:
            return sql.SQL("TRUE")

        def columns(alias: str, names: tuple[str, ...], collate: bool) -> sql.Composable:
            return sql.SQL(", ").join(
                sql.SQL('{}.{} COLLATE "C"' if collate and export.column_type(c) == "text"
                        else "{}.{}").format(sql.Identifier(alias), sql.Identifier(c))
                for c in names)

        if isinstance(export.merge, SnapshotPerFile):
            others = tuple(c for c in export.table_columns if c not in export.key)
            return sql.SQL("ROW({}) IS DISTINCT FROM ROW({})").format(
                columns("i", others, False), columns("t", others, False))
        order = export.merge.order
        return sql.SQL("({}) {} ({})").format(
            columns("i", order, True), sql.SQL(">" if export.merge.descending else "<"),
            columns("t", order, True))

    def _merge(self, day: date, rows: int, parts: dict[str, sql.Composable],
               params: dict[str, object], file_wins: bool = False) -> DayResult:
        incoming = self._incoming_table()
        self._copy_day(incoming, day)
        self.conn.execute(sql.SQL("ANALYZE {}").format(incoming))
        export = self.export
        key_match, beats = self._key_match(), self._beats(file_wins)
        with hash_joins(self.conn):
            if export.summarised is not None:
                self.conn.execute(_statement(
                    "late_rows.sql", **parts, incoming=incoming, key_match=key_match,
                    beats=beats), params)
            replaced, rewritten = one(self.conn.execute(_statement(
                "merge_delete_beaten.sql", **parts, incoming=incoming, key_match=key_match,
                beats=beats, changes=self._changes()), params))
            removed = 0
            if isinstance(export.merge, SnapshotPerFile):
                removed = self.conn.execute(_statement(
                    "snapshot_delete_absent_keys.sql", **parts, incoming=incoming,
                    key_match=key_match), params).rowcount
            inserted = self.conn.execute(_statement(
                "merge_insert_missing_keys.sql", **parts, incoming=incoming,
                key_match=key_match, **self._insert_columns()), params).rowcount
        return DayResult(day, rows, inserted=inserted - replaced, replaced=replaced,
                         removed=removed, replaced_summarised=rewritten)

    def _changes(self) -> sql.Composable:
        """Whether a beaten row differs from its replacement where the summaries look."""
        summarised = self.export.summarised
        if summarised is None:
            return sql.SQL("TRUE")
        return sql.SQL("ROW({}) IS DISTINCT FROM ROW({})").format(*(
            sql.SQL(", ").join(sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(c))
                               for c in summarised) for alias in ("t", "i")))
