"""The lake: closed months of the raw tables moved out of PostgreSQL into Parquet files,
and still read by `check`, `refresh --from/--to`, `restore` and analysts (DESIGN §9).

It is a DuckLake: Parquet data files under TCHAP_STATS_LAKE_PATH (S3 or a directory), their
catalog in schema tchap_stats_lake of the same PostgreSQL, written and read by DuckDB with
the packaged ducklake and postgres extensions. The lake's table of an export has the raw
table's columns, its files partitioned by year and month of the partition column.

Which tier holds a month is said by tchap_stats.archived_months alone (migration 015): a
row there and the month's partition are never both committed. A month moves like this:
- archive: the partition is locked against writes; the month is written to the lake (its
  former lake rows, an interrupted run's, replaced) in one DuckLake transaction, counted
  and checksummed on both sides, then the row is recorded and the partition dropped in one
  PostgreSQL transaction. Killed before that commit, the month is still PostgreSQL's; the
  lake's copy is a leftover, which nothing reads and the next run removes.
- restore: the lake's rows are copied into a new partition, counted and checksummed
  against the record, and the record deleted, in one transaction; then the lake's copy
  is removed (a leftover again until then).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import TypeVar

import duckdb
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from .config import SQL_DIR, Settings
from .database import one
from .dates import add_months, month_bounds
from .exports import USER_DAILY_VISITS, Export
from .load import copy_rows, ensure_partitions, partition_name
from .sqltext import identifier as ident
from .sqltext import literal
from .staging import DUCKDB_TYPES, Stager, _pg_text, load_extension
from .summaries import raw_schema

LAKE_SQL = SQL_DIR / "lake"
_T = TypeVar("_T")
log = logging.getLogger("tchap_stats")
CATALOG_SCHEMA = "tchap_stats_lake"  # DuckLake's catalog tables (migration 015)
LAKE = "lake"  # the lake's name in DuckDB
POSTGRES = "pg"  # the database's name in DuckDB
# The exports whose months move: user_daily_visits is nearly all the raw rows (tens of
# billions); the hourly aggregates hold a few thousand rows a day, and the snapshots'
# tables are either not partitioned or off by default (pushers): docs/design.md.
ARCHIVED = (USER_DAILY_VISITS,)
# Advisory lock: a month moves (exclusive) while no check or refresh --from/--to reads
# archived months (shared), so that none reads a month in neither place.
MOVE_LOCK = 0x7C4A_0005


class LakeError(RuntimeError):
    """A month could not move (a verification failed, days wait for a refresh, ...)."""


# --- checksums ---------------------------------------------------------------------------

def _row_text(export: Export, dialect: str) -> str:
    """One text per row, the same in PostgreSQL and DuckDB: instants as microseconds since
    the epoch and dates as days since 2000-01-01 (no zone, no date style involved)."""
    parts = []
    for column in export.table_columns:
        name, kind = ident(column), export.column_type(column)
        if kind == "timestamptz":
            parts.append(f"epoch_us({name})" if dialect == "duckdb"
                         else f"(extract(epoch FROM {name}) * 1000000)::bigint")
        elif kind == "date":
            parts.append(f"({name} - DATE '2000-01-01')")
        elif kind == "bool":
            parts.append(f"CASE WHEN {name} THEN '1' ELSE '0' END")
        else:
            parts.append(name)
    return f"concat_ws(chr(31), {', '.join(parts)})"


def checksum_query(export: Export, dialect: str, table: str, where: str = "") -> str:
    """(rows, checksum) of `table`: the sum over its rows of the first 60 bits of the md5
    of each row's text, whatever their order. `table` and `where` are quoted SQL."""
    digest = f"substr(md5({_row_text(export, dialect)}), 1, 15)"
    number = (f"CAST('0x' || {digest} AS BIGINT)" if dialect == "duckdb"
              else f"('x' || {digest})::bit(60)::bigint")
    return (f"SELECT count(*), coalesce(sum({number}), 0) FROM {table}"
            + (f" WHERE {where}" if where else ""))


@dataclass(frozen=True)
class Sums:
    rows: int
    checksum: int

    @classmethod
    def of(cls, row: tuple) -> Sums:
        return cls(int(row[0]), int(Decimal(row[1])))


def postgres_sums(conn: psycopg.Connection, export: Export, month: date) -> Sums:
    table = sql.Identifier("public", partition_name(export, month)).as_string(conn)
    return Sums.of(one(conn.execute(checksum_query(export, "postgres", table))))


# --- the lake itself ----------------------------------------------------------------------

def _without_password(url: str) -> tuple[str, str | None]:
    """The connection string minus its password, and the password: DuckDB's libpq gets it
    from PGPASSWORD, so that no string DuckDB keeps or prints (duckdb_databases(), an
    error) holds it."""
    params = conninfo_to_dict(url)
    password = params.pop("password", None)
    return make_conninfo("", **{k: v for k, v in params.items() if v is not None}), (
        str(password) if password else None)


class Lake:
    """A DuckDB with the lake attached (and the database, `postgres=True`)."""

    def __init__(self, settings: Settings, database_url: str, *, postgres: bool = False,
                 read_only: bool = False, lake: bool = True):
        self.settings = settings
        self.path = settings.lake_data_path()
        self.stager = Stager(settings)
        try:
            self._attach(database_url, postgres, read_only, lake)
        except BaseException:
            self.stager.close()
            raise

    def _attach(self, database_url: str, postgres: bool, read_only: bool, lake: bool
                ) -> None:
        con = self.con
        # Rows need no order in the lake: kept in order within DuckDB's memory cap, a month's
        # write took 5.9 s instead of 2.3 s (benchmarks/README.md, "The lake").
        con.execute("SET preserve_insertion_order = false")
        for name in ("postgres", "ducklake"):
            load_extension(con, name)
        if self.path.startswith("s3://"):
            self.stager.use_s3(self.settings.s3)
        conninfo, password = _without_password(database_url)
        if password:
            os.environ["PGPASSWORD"] = password
        options = [f"METADATA_SCHEMA {literal(CATALOG_SCHEMA)}",
                   f"DATA_PATH {literal(self.path)}"]
        if read_only:
            options.append("READ_ONLY")
        if lake:
            con.execute(f"ATTACH {literal('ducklake:postgres:' + conninfo)} AS {LAKE} "
                        f"({', '.join(options)})")
        if lake and not read_only:
            # Every row in Parquet: none inlined into the catalog's tables.
            con.execute(f"CALL {LAKE}.set_option('data_inlining_row_limit', 0)")
        if postgres:
            con.execute(f"ATTACH {literal(conninfo)} AS {POSTGRES} (TYPE postgres, READ_ONLY)")

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        return self.stager.con

    def close(self) -> None:
        self.stager.close()

    def __enter__(self) -> Lake:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def table(self, export: Export) -> str:
        return f"{LAKE}.{ident(export.table)}"

    def ensure_table(self, export: Export) -> None:
        assert export.partition is not None
        columns = ", ".join(f"{ident(c)} {DUCKDB_TYPES[export.column_type(c)]} NOT NULL"
                            for c in export.table_columns)
        exists = one(self.con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND table_name = ?",
            [LAKE, export.table]))[0]
        if not exists:
            # Not partitioned: each archive writes one month, so each file holds one month,
            # and its min and max of the day column prune it as a partition would. Writing a
            # month of 3 million rows took 3.7 to 4.2 s partitioned by year and month, 2.4
            # to 2.6 s not (benchmarks/README.md, "The lake").
            self.con.execute(f"CREATE TABLE {self.table(export)} ({columns})")

    def _month(self, export: Export, months: list[date]) -> str:
        """The condition of a row of `months` (the months' first days): ranges of the
        partition column, which DuckLake prunes files by (their min and max)."""
        assert export.partition is not None
        column = ident(export.partition.column)
        return "(" + " OR ".join(
            f"({column} >= DATE {literal(m.isoformat())} AND "
            f"{column} < DATE {literal(month_bounds(m)[1].isoformat())})" for m in months) + ")"

    def write_month(self, export: Export, month: date) -> None:
        """The partition's rows in place of whatever the lake held of the month, in one
        DuckLake transaction."""
        source = f"{POSTGRES}.public.{ident(partition_name(export, month))}"
        columns = ", ".join(ident(c) for c in export.table_columns)
        con = self.con
        con.execute("BEGIN")
        try:
            con.execute(f"DELETE FROM {self.table(export)} WHERE {self._month(export, [month])}")
            con.execute(f"INSERT INTO {self.table(export)} ({columns}) "
                        f"SELECT {columns} FROM {source}")
            con.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(Exception):
                con.execute("ROLLBACK")
            raise

    def sums(self, export: Export, month: date) -> Sums:
        query = checksum_query(export, "duckdb", self.table(export),
                               self._month(export, [month]))
        return Sums.of(one(self.con.execute(query)))

    def delete_months(self, export: Export, months: list[date]) -> None:
        if months:
            self.con.execute(f"DELETE FROM {self.table(export)} "
                             f"WHERE {self._month(export, months)}")

    def rows(self, export: Export, months: list[date]) -> Iterator[bytes]:
        """The months' rows in PostgreSQL's COPY text format, as DuckDB writes them."""
        values = ", ".join(_pg_text(ident(c)) if export.column_type(c) == "text" else ident(c)
                           for c in export.table_columns)
        query = (f"SELECT {', '.join(ident(c) for c in export.table_columns)} "
                 f"FROM {self.table(export)} WHERE {self._month(export, months)}")
        return self.stager.stream_rows(query, {}, values)

    def forget_deleted_files(self) -> None:
        """Remove the files of deleted rows, and any a killed write left, from the storage:
        the lake keeps no history (the ledger is the history)."""
        for call in (f"CALL ducklake_expire_snapshots({literal(LAKE)}, older_than => now())",
                     f"CALL ducklake_cleanup_old_files({literal(LAKE)}, cleanup_all => true)",
                     f"CALL ducklake_delete_orphaned_files({literal(LAKE)}, "
                     f"cleanup_all => true)"):
            self.con.execute(call)


# --- what PostgreSQL knows: the ledger, the partitions, the catalog ------------------------

@dataclass(frozen=True)
class Archived:
    export: str
    month: date
    rows: int
    checksum: int
    partition_bytes: int
    lake_bytes: int
    seconds: float


def archived_months(conn: psycopg.Connection, export: Export | None = None
                    ) -> list[Archived]:
    if one(conn.execute("SELECT to_regclass('tchap_stats.archived_months')"))[0] is None:
        return []
    rows = conn.execute(
        "SELECT export, month, rows, checksum, partition_bytes, lake_bytes, seconds "
        "FROM tchap_stats.archived_months WHERE %(export)s::text IS NULL "
        "OR export = %(export)s ORDER BY export, month",
        {"export": export.name if export else None}).fetchall()
    return [Archived(e, m, r, int(c), pb, lb, s) for e, m, r, c, pb, lb, s in rows]


def archived_month_starts(conn: psycopg.Connection) -> dict[str, list[date]]:
    """Each export's archived months (their first days): what loads reject rows of."""
    found: dict[str, list[date]] = {}
    for record in archived_months(conn):
        found.setdefault(record.export, []).append(record.month)
    return found


def lake_months(conn: psycopg.Connection, export: Export) -> dict[date, tuple[int, int]]:
    """month → (rows, Parquet bytes) the lake's catalog lists, leftovers included."""
    if one(conn.execute("SELECT to_regclass(%s)",
                        (f"{CATALOG_SCHEMA}.ducklake_data_file",)))[0] is None:
        return {}
    assert export.partition is not None
    query = sql.SQL((LAKE_SQL / "lake_months.sql").read_text())
    found = {}
    for month, rows, size, spans in conn.execute(
            query, {"table": export.table, "day_column": export.partition.column}):
        if spans:
            raise LakeError(f"{month:%Y-%m}: a file of the lake holds rows of other months "
                            "too, which no archive writes: the lake was written to otherwise")
        found[month] = (rows, size)
    return found


@dataclass(frozen=True)
class Partition:
    month: date
    name: str
    bytes: int
    estimated_rows: int


def partitions(conn: psycopg.Connection, export: Export) -> list[Partition]:
    found = []
    prefix = f"{export.table}_p"
    for name, size, estimated in conn.execute(
            sql.SQL((LAKE_SQL / "partitions.sql").read_text()),
            {"table": f"public.{export.table}"}):
        suffix = name.removeprefix(prefix)
        try:
            month = date(int(suffix[:4]), int(suffix[5:7]), 1)
        except ValueError:
            continue  # not one of ours
        found.append(Partition(month, name, size, estimated))
    return found


# --- which months may move ------------------------------------------------------------------

def first_open_month(settings: Settings, today: date) -> date:
    """The first month that may still receive rows, or did less than a month ago: a file
    holds rows of up to TCHAP_STATS_ACCEPT_DAYS_BEFORE days before its extraction day, and
    one late by a month is still loaded. The months before it are closed."""
    month = today.replace(day=1)
    while month + timedelta(days=settings.accept_days_before + 31) > today:
        month = add_months(month, -1)
    return month


# --- archive ------------------------------------------------------------------------------

@dataclass
class ArchiveReport:
    archived: list[Archived] = field(default_factory=list)
    left: list[date] = field(default_factory=list)  # not started: the time budget
    failed: list[str] = field(default_factory=list)
    leftovers_removed: list[date] = field(default_factory=list)


def plan_months(conn: psycopg.Connection, settings: Settings, today: date,
                before: date | None) -> tuple[list[Partition], date]:
    """The partitions an archive moves, oldest first, and the month they are before."""
    limit = first_open_month(settings, today)
    wanted = before or add_months(today.replace(day=1), -settings.keep_months)
    upto = min(limit, wanted)
    return [p for p in partitions(conn, USER_DAILY_VISITS) if p.month < upto], upto


def remove_leftovers(conn: psycopg.Connection, lake: Lake, export: Export) -> list[date]:
    """Lake rows of months the ledger does not say are in the lake: an interrupted
    archive's or restore's copy. PostgreSQL holds those months (or never did)."""
    recorded = {a.month for a in archived_months(conn, export)}
    stale = sorted(set(lake_months(conn, export)) - recorded)
    if stale:
        lake.delete_months(export, stale)
    return stale


def _timed(step: str, month: date, function: Callable[..., _T], *args: object) -> _T:
    started = time.monotonic()
    result = function(*args)
    log.debug("%s: %s in %.2f s", f"{month:%Y-%m}", step, time.monotonic() - started)
    return result


def _recorded(conn: psycopg.Connection, export: Export, month: date) -> bool:
    return conn.execute(
        "SELECT FROM tchap_stats.archived_months WHERE export = %s AND month = %s "
        "FOR UPDATE", (export.name, month)).fetchone() is not None


def _drop_empty_partition(conn: psycopg.Connection, export: Export, part: Partition) -> None:
    """A partition of a month the lake holds: a failed restore's, empty (loads reject the
    month's rows). Never is the lake's copy rewritten from it."""
    table = sql.Identifier("public", part.name)
    if one(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table)))[0]:
        raise LakeError(f"{part.month:%Y-%m} is in the lake and its partition holds rows: "
                        f"`tchap-stats restore --month {part.month:%Y-%m}` merges nothing; "
                        "compare the two and remove one")
    conn.execute(sql.SQL("DROP TABLE {}").format(table))


def archive_month(conn: psycopg.Connection, lake: Lake, export: Export,
                  part: Partition) -> Archived | None:
    """The month moved to the lake; None when it was there already (its partition, empty,
    dropped)."""
    started = time.monotonic()
    month = part.month
    waiting = one(conn.execute(
        "SELECT count(*) FROM (SELECT day FROM tchap_stats.changed_days WHERE export = %s "
        "UNION SELECT day FROM tchap_stats.summary_queue) AS w "
        "WHERE day >= %s AND day < %s", (export.name, *month_bounds(month))))[0]
    if waiting:
        raise LakeError(f"{month:%Y-%m}: {waiting} day(s) wait for a summary refresh, which "
                        "reads the partition: run `tchap-stats refresh` first")
    table = sql.Identifier("public", part.name)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MOVE_LOCK,))
        conn.execute("SET LOCAL lock_timeout = '60s'")
        if _recorded(conn, export, month):
            _drop_empty_partition(conn, export, part)
            return None
        # Writes wait until the month is gone (loads hold the run lock besides); DuckDB's
        # own connection still reads the partition.
        conn.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(table))
        size = one(conn.execute("SELECT pg_total_relation_size(%s::regclass)",
                                (table.as_string(conn),)))[0]
        # PostgreSQL checksums the partition on its server while DuckDB writes it here: two
        # machines in production (on one of 2 cores, both are CPU-bound and it gains
        # nothing: benchmarks/README.md, "One month at 100,000 rows a day").
        with ThreadPoolExecutor(1, thread_name_prefix="checksum") as pool:
            summed = pool.submit(_timed, "checksum in PostgreSQL", month, postgres_sums,
                                 conn, export, month)
            _timed("write to the lake", month, lake.write_month, export, month)
            postgres = summed.result()
        in_lake = _timed("checksum in the lake", month, lake.sums, export, month)
        if in_lake != postgres:
            raise LakeError(f"{month:%Y-%m}: the lake holds {in_lake.rows:,} rows (checksum "
                            f"{in_lake.checksum}) where the partition holds {postgres.rows:,} "
                            f"({postgres.checksum}): nothing dropped")
        lake_bytes = lake_months(conn, export).get(month, (0, 0))[1]
        record = Archived(export.name, month, postgres.rows, postgres.checksum, size,
                          lake_bytes, time.monotonic() - started)
        conn.execute(
            "INSERT INTO tchap_stats.archived_months (export, month, rows, checksum, "
            "partition_bytes, lake_bytes, seconds) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (record.export, month, record.rows, record.checksum, size, lake_bytes,
             record.seconds))
        conn.execute(sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(
            sql.Identifier("public", export.table), table))
        conn.execute(sql.SQL("DROP TABLE {}").format(table))
    return record


def archive(conn: psycopg.Connection, settings: Settings, database_url: str,
            plan: list[Partition], deadline: float | None,
            echo: Callable[[str], None]) -> ArchiveReport:
    """Move the planned months, oldest first; stop before a month the time left would not
    hold (estimated from the months moved, else at 100,000 rows a second)."""
    report = ArchiveReport()
    export = USER_DAILY_VISITS
    with Lake(settings, database_url, postgres=True) as lake:
        lake.ensure_table(export)
        report.leftovers_removed = remove_leftovers(conn, lake, export)
        for stale in report.leftovers_removed:
            echo(f"{stale:%Y-%m}: removed the lake's copy an interrupted run left "
                 "(the month is in PostgreSQL)")
        rate = 100_000.0  # rows a second, until measured
        for index, part in enumerate(plan):
            rows = part.estimated_rows
            if deadline is not None and time.monotonic() + rows / rate > deadline:
                report.left = [p.month for p in plan[index:]]
                break
            try:
                record = archive_month(conn, lake, export, part)
            except (LakeError, psycopg.Error) as exc:
                report.failed.append(f"{part.month:%Y-%m}: {exc}")
                echo(f"{part.month:%Y-%m}: FAILED: {exc}")
                break
            if record is None:
                echo(f"{part.month:%Y-%m}: in the lake already; its empty partition dropped")
                continue
            rate = max(record.rows, 1) / max(record.seconds, 0.001)
            report.archived.append(record)
            echo(f"{record.month:%Y-%m}: archived {record.rows:,} rows · "
                 f"{record.partition_bytes:,} bytes in PostgreSQL → {record.lake_bytes:,} "
                 f"bytes of Parquet · {record.seconds:.1f} s")
        lake.forget_deleted_files()
    return report


def dry_run(conn: psycopg.Connection, plan: list[Partition], upto: date,
            echo: Callable[[str], None]) -> None:
    echo(f"months before {upto:%Y-%m} to archive: {len(plan)}")
    total_rows = total_bytes = 0
    for part in plan:
        rows = one(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
            sql.Identifier("public", part.name))))[0]
        total_rows, total_bytes = total_rows + rows, total_bytes + part.bytes
        echo(f"  {part.month:%Y-%m}: {rows:,} rows · {part.bytes:,} bytes in PostgreSQL")
    if plan:
        echo(f"total: {total_rows:,} rows · {total_bytes:,} bytes")


# --- restore ------------------------------------------------------------------------------

def restore(conn: psycopg.Connection, settings: Settings, database_url: str, month: date,
            echo: Callable[[str], None]) -> Archived | None:
    """Bring an archived month back into its partition; None when it was not archived."""
    export = USER_DAILY_VISITS
    with Lake(settings, database_url) as lake:
        lake.ensure_table(export)
        record = next((a for a in archived_months(conn, export) if a.month == month), None)
        if record is None:
            stale = remove_leftovers(conn, lake, export)
            if stale:
                lake.forget_deleted_files()
                echo("removed the lake's copies an interrupted run left of "
                     + ", ".join(f"{m:%Y-%m}" for m in stale))
            return None
        started = time.monotonic()
        ensure_partitions(conn, export, [month], settings.timezone)
        table = sql.Identifier("public", partition_name(export, month))
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MOVE_LOCK,))
            if not _recorded(conn, export, month):
                raise LakeError(f"{month:%Y-%m} was restored meanwhile")
            if one(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table)))[0]:
                raise LakeError(f"{month:%Y-%m}: its partition holds rows already: "
                                "nothing restored")
            copy_rows(conn, table, export.table_columns, lake.rows(export, [month]))
            restored = postgres_sums(conn, export, month)
            if restored != Sums(record.rows, record.checksum):
                raise LakeError(
                    f"{month:%Y-%m}: {restored.rows:,} rows came back (checksum "
                    f"{restored.checksum}) where {record.rows:,} were archived "
                    f"({record.checksum}): nothing restored")
            conn.execute("DELETE FROM tchap_stats.archived_months WHERE export = %s "
                         "AND month = %s", (export.name, month))
        lake.delete_months(export, [month])
        lake.forget_deleted_files()
    return Archived(export.name, month, record.rows, record.checksum, record.partition_bytes,
                    record.lake_bytes, time.monotonic() - started)


# --- reading archived months ----------------------------------------------------------------

@contextlib.contextmanager
def archived_rows_readable(conn: psycopg.Connection, settings: Settings,
                           database_url: str, first: date, last: date) -> Iterator[list[date]]:
    """Within the block, the summaries computed on `conn` (check, refresh --from/--to)
    read the archived months of [first, last] from the lake beside PostgreSQL's: their rows
    are copied into a temporary table of the session. Yields those months."""
    export = USER_DAILY_VISITS
    lower, upper = first.replace(day=1), month_bounds(last)[1]
    conn.execute("SELECT pg_advisory_lock_shared(%s)", (MOVE_LOCK,))
    try:
        months = [a.month for a in archived_months(conn, export) if lower <= a.month < upper]
        if not months:
            yield []
            return
        with _lake_view(conn, settings, database_url, export, months), raw_schema("pg_temp"):
            yield months
    finally:
        conn.execute("SELECT pg_advisory_unlock_shared(%s)", (MOVE_LOCK,))


@contextlib.contextmanager
def _lake_view(conn: psycopg.Connection, settings: Settings, database_url: str,
               export: Export, months: list[date]) -> Iterator[None]:
    """pg_temp.user_daily_visits: PostgreSQL's partitions and the months' lake rows."""
    started = time.monotonic()
    lake_rows = sql.Identifier("pg_temp", f"lake_{export.table}")
    view = sql.Identifier("pg_temp", export.table)
    conn.execute(sql.SQL("CREATE TEMP TABLE {} (LIKE {})").format(
        lake_rows, sql.Identifier("public", export.table)))
    try:
        with Lake(settings, database_url, read_only=True) as lake:
            copy_rows(conn, lake_rows, export.table_columns, lake.rows(export, months))
        conn.execute(sql.SQL("ANALYZE {}").format(lake_rows))
        conn.execute(sql.SQL((LAKE_SQL / "hot_and_cold.sql").read_text()).format(
            view=view, table=sql.Identifier("public", export.table), lake_rows=lake_rows))
        log.debug("%d archived month(s) read from the lake in %.1f s",
                  len(months), time.monotonic() - started)
        yield
    finally:
        if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            conn.execute(sql.SQL("DROP VIEW IF EXISTS {}").format(view))
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(lake_rows))


# --- status ---------------------------------------------------------------------------------

def tiers(conn: psycopg.Connection) -> list[dict[str, object]]:
    """Per archived export: its months in PostgreSQL and in the lake, and the lake's
    leftovers (read from PostgreSQL alone: the ledger, the partitions, the catalog)."""
    found: list[dict[str, object]] = []
    for export in ARCHIVED:
        hot = partitions(conn, export)
        cold = archived_months(conn, export)
        in_catalog = lake_months(conn, export)
        recorded = {a.month for a in cold}
        found.append({
            "export": export.name,
            "postgres": {"months": [p.month for p in hot],
                         "estimated_rows": sum(p.estimated_rows for p in hot),
                         "bytes": sum(p.bytes for p in hot)},
            "lake": {"months": [a.month for a in cold],
                     "rows": sum(a.rows for a in cold),
                     "bytes": sum(in_catalog.get(a.month, (0, 0))[1] for a in cold),
                     "bytes_in_postgresql_before": sum(a.partition_bytes for a in cold)},
            "leftovers": sorted(set(in_catalog) - recorded),
        })
    return found


def tier_lines(tier: dict[str, object]) -> list[str]:
    hot, cold = tier["postgres"], tier["lake"]
    assert isinstance(hot, dict) and isinstance(cold, dict)

    def months(listed: list[date]) -> str:
        return (f"{len(listed)} month(s)" + (f" {listed[0]:%Y-%m}..{listed[-1]:%Y-%m}"
                                             if listed else ""))

    lines = [f"{tier['export']} by tier:",
             f"  PostgreSQL: {months(hot['months'])} · ≈{hot['estimated_rows']:,} rows · "
             f"{hot['bytes']:,} bytes",
             f"  lake: {months(cold['months'])} · {cold['rows']:,} rows · {cold['bytes']:,} "
             f"bytes of Parquet ({cold['bytes_in_postgresql_before']:,} in PostgreSQL before)"]
    leftovers = tier["leftovers"]
    assert isinstance(leftovers, list)
    if leftovers:
        lines.append("  lake copies an interrupted archive or restore left (read by nothing; "
                     "the next archive removes them): "
                     + ", ".join(f"{m:%Y-%m}" for m in leftovers))
    return lines


# --- analysts ---------------------------------------------------------------------------

def catalog_exists(conn: psycopg.Connection) -> bool:
    """Whether an archive has created the lake's catalog yet."""
    return one(conn.execute("SELECT to_regclass(%s)",
                            (f"{CATALOG_SCHEMA}.ducklake_metadata",)))[0] is not None


def query(settings: Settings, database_url: str, archived: list[date], text: str,
          lake_exists: bool = True) -> tuple[list[str], list[tuple[str | None, ...]]]:
    """An analyst's query over view user_daily_visits (PostgreSQL's rows and the lake's
    archived months), every value as text (no time zone library needed). Without a lake
    yet (no archive ever ran), the view holds PostgreSQL's rows alone."""
    export = USER_DAILY_VISITS
    with Lake(settings, database_url, postgres=True, read_only=True,
              lake=lake_exists) as lake:
        con = lake.con
        hot = f"SELECT * FROM {POSTGRES}.public.{ident(export.table)}"
        cold = (f" UNION ALL SELECT * FROM {lake.table(export)} "
                f"WHERE {lake._month(export, archived)}") if archived else ""
        con.execute(f"CREATE TEMP VIEW {ident(export.table)} AS {hot}{cold}")
        con.execute("SET lock_configuration = true")
        cursor = con.execute(f"SELECT COLUMNS(*)::VARCHAR FROM ({text.rstrip().rstrip(';')})")
        header = [d[0] for d in cursor.description or []]
        return header, cursor.fetchall()
