"""Staging: DuckDB reads one export file where it lies, checks, types, rejects,
derives and deduplicates it, and keeps the result for the load stage to stream out.

No row passes through Python: the load stage receives COPY text bytes that DuckDB writes
into a pipe (see `stream_day`).
"""

from __future__ import annotations

import bisect
import contextlib
import csv
import importlib
import itertools
import logging
import os
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import duckdb

from . import dates, lines
from .config import SQL_DIR, S3Settings, Settings
from .database import one
from .exports import FILE_DATE, Derived, Export
from .source import Source, SourceFile
from .sqltext import identifier as ident
from .sqltext import literal
from .workdir import ProcessDir

STAGING_SQL = SQL_DIR / "staging"
MAX_STORED_REJECTS = 10_000
TCHAP_STARTED = date(2018, 1, 1)  # no usage statistic is older

# Offsets are spelled +01, +0100, +01:00, " +02:00" or Z; a timestamp without one is
# ambiguous and rejected. DuckDB's own cast does not accept the space before the offset.
NAIVE_TIMESTAMP_PATTERN = r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d{1,6})?"
# UTC offsets run from -12:00 to +14:00: anything beyond ±14:00 is not an offset.
TIMESTAMPTZ_PATTERN = NAIVE_TIMESTAMP_PATTERN + r" ?([+-](0\d|1[0-3])(:?[0-5]\d)?|[+-]14(:?00)?|Z)"

DUCKDB_TYPES = {"text": "VARCHAR", "timestamptz": "TIMESTAMPTZ", "timestamp": "TIMESTAMP",
                "int": "INTEGER", "date": "DATE", "bool": "BOOLEAN"}
TYPE_PROBLEMS = {
    "timestamptz": "not a timestamp with a UTC offset (within ±14:00)",
    "timestamp": "not a timestamp",
    "int": "not an integer",
    "date": "not a date (YYYY-MM-DD)",
    "bool": "not a boolean (true or false)",
}


# Every value as PostgreSQL's COPY text format reads it: its text, with backslashes, tabs,
# newlines and carriage returns escaped (NULL is written as \N). PostgreSQL parses this
# format faster than CSV: 0.37 s against 0.48 s for a day of 100,000 rows (docs/design.md,
# "Loading a file"). Values rarely hold those characters: testing first costs DuckDB a third
# of always replacing.
def _pg_text(value: str) -> str:
    """DuckDB SQL writing `value` as PostgreSQL's COPY text format reads it."""
    special = " OR ".join(f"contains({value}, {char})" for char in ("'\\'", "chr(9)", "chr(10)",
                                                                    "chr(13)"))
    escaped = value
    for char, escape in (("'\\'", r"'\\'"), ("chr(9)", r"'\t'"), ("chr(10)", r"'\n'"),
                         ("chr(13)", r"'\r'")):
        escaped = f"replace({escaped}, {char}, {escape})"
    return f"CASE WHEN {special} THEN {escaped} ELSE {value} END"


PG_TEXT_VALUE = _pg_text("CAST(COLUMNS(*) AS VARCHAR)")

log = logging.getLogger("tchap_stats")

DAY = "_day"  # staging's column for the day a row counts for, when no table column is it


class StagingError(RuntimeError):
    """The file cannot be staged; nothing of it was written anywhere."""


class HeaderMismatch(StagingError):
    pass


@dataclass(frozen=True)
class Reject:
    line: int | None
    column: str | None
    reason: str
    raw_line: str | None

    def __post_init__(self) -> None:
        # PostgreSQL's text holds no NUL: the rejects table shows it as \x00.
        for name in ("reason", "raw_line"):
            value = getattr(self, name)
            if value and "\x00" in value:
                object.__setattr__(self, name, value.replace("\x00", "\\x00"))


@dataclass
class StagedFile:
    export: Export
    file: SourceFile
    checked: str  # DuckDB table: every line of the file, typed and checked, in file order
    losers: str  # DuckDB table: rowids of the lines beaten by a duplicate
    rows_read: int
    rows_rejected: int
    rows_valid: int
    days: dict[date, int]  # day → deduplicated rows for that day
    rejects: list[Reject] = field(default_factory=list)
    spanning: int = 0  # records with a value running over several lines
    blank_lines: int = 0
    reader_reject_lines: list[int] = field(default_factory=list)  # to number the other lines

    @property
    def rows_staged(self) -> int:
        return sum(self.days.values())

    @property
    def duplicates_in_file(self) -> int:
        return self.rows_valid - self.rows_staged


def _render(template: str, **fragments: str) -> str:
    return (STAGING_SQL / template).read_text().format(**fragments)


def _parse_timestamptz(raw: str) -> str:
    return (f"CASE WHEN regexp_full_match({raw}, {literal(TIMESTAMPTZ_PATTERN)}) "
            f"THEN try_cast(regexp_replace({raw}, ' ([+-])', '\\1') AS TIMESTAMPTZ) END")


def _parse_expression(column_type: str, raw: str) -> str:
    if column_type == "text":
        return raw
    if column_type == "timestamptz":
        return _parse_timestamptz(raw)
    if column_type == "timestamp":
        # Without an offset: the wall-clock time as written. With one: that instant's
        # wall-clock time in the configured zone (the staging cursor's TimeZone). DuckDB's
        # own cast to TIMESTAMP would silently drop the offset.
        return (f"CASE WHEN regexp_full_match({raw}, {literal(NAIVE_TIMESTAMP_PATTERN)}) "
                f"THEN try_cast({raw} AS TIMESTAMP) "
                f"ELSE CAST({_parse_timestamptz(raw)} AS TIMESTAMP) END")
    if column_type == "int":
        # DuckDB's cast would round 1.5 and read 1e3, 0x10 or 1_000: only digits pass.
        return (f"CASE WHEN regexp_full_match({raw}, '[+-]?[0-9]+') "
                f"THEN try_cast({raw} AS INTEGER) END")
    return f"try_cast({raw} AS {DUCKDB_TYPES[column_type]})"


def _csv_field(raw: str) -> str:
    """SQL rebuilding one field of a rejected line, quoted as RFC 4180 would."""
    return (f"CASE WHEN {raw} IS NULL THEN '' "
            f"WHEN regexp_matches({raw}, '[\",\\r\\n]') "
            f"THEN '\"' || replace({raw}, '\"', '\"\"') || '\"' ELSE {raw} END")


def _problems(export: Export, raw: dict[str, str], parsed: dict[str, str],
              windowed: bool, archived: bool = False) -> list[tuple[str, str, str]]:
    """(condition, column, reason SQL) of each check a line must pass, in order: the first
    one failed is the line's reject reason. Line breaks come first, so that a record
    holding several lines is always known as such (see `spans_lines`)."""
    problems: list[tuple[str, str, str]] = [
        (f"(contains({raw[c.name]}, chr(10)) OR contains({raw[c.name]}, chr(13)))", c.name,
         literal("a line break in a column that cannot hold one (an unbalanced quote?)"))
        for c in export.columns if not c.multiline]
    for c in export.columns:
        value, typed = raw[c.name], parsed[c.name]
        if c.required:
            problems.append((f"coalesce({value}, '') = ''", c.name, literal("empty value")))
        problems.append((f"contains({value}, chr(0))", c.name,
                         literal("a NUL character in the value")))
        if c.type == "text" and c.max_bytes:
            problems.append((f"strlen({value}) > {c.max_bytes}", c.name, (
                f"{literal(f'longer than {c.max_bytes:,} bytes: ')} || "
                f"CAST(strlen({value}) AS VARCHAR) || ' bytes'")))
        if c.type != "text":
            reason = f"{literal(TYPE_PROBLEMS[c.type] + ': ')} || {value}"
            problems.append((f"{value} <> '' AND {typed} IS NULL", c.name, reason))
        # Instants compare with the zone's midnights (cast once from the bound dates): no
        # per-row conversion to a calendar day.
        bound = "TIMESTAMPTZ" if c.type == "timestamptz" else "TIMESTAMP"
        if c.type in ("timestamp", "timestamptz"):
            implausible = f"implausible date (before {TCHAP_STARTED}, or more than a day ahead): "
            problems.append((
                f"({typed} < CAST($earliest AS {bound}) OR {typed} >= CAST($latest AS {bound}))",
                c.name, f"{literal(implausible)} || {value}"))
        if windowed and c.name == export.dated_by:
            problems.append((
                f"({typed} < CAST($window_start AS {bound}) "
                f"OR {typed} >= CAST($window_end AS {bound}))", c.name,
                "'outside the file''s window (' || CAST($window_first AS VARCHAR) || '..' || "
                f"CAST($window_last AS VARCHAR) || '): ' || {value}"))
        if archived and c.name == export.dated_by:
            # Its partition is gone (tchap_stats/lake.py): a load must not recreate it.
            month = f"CAST(date_trunc('month', CAST({typed} AS DATE)) AS DATE)"
            problems.append((
                f"list_contains(CAST($archived_months AS DATE[]), {month})", c.name,
                f"'month ' || strftime({month}, '%Y-%m') || ' is archived in the lake "
                f"(restore it first: tchap-stats restore --month ' || "
                f"strftime({month}, '%Y-%m') || '): ' || {value}"))
    return problems


def typed_rows_sql(export: Export, reader_rejects: str, reader_scans: str, *,
                   windowed: bool = False, numbered: bool = False,
                   archived: bool = False) -> str:
    """The checked lines of a file (`numbered`: a file rewritten line by line, whose first
    column is each record's line in the original file)."""
    raw = {c.name: ident(f"raw_{c.name}") for c in export.columns}
    parsed = {c.name: ident(f"parsed_{c.name}") for c in export.columns}
    problems = _problems(export, raw, parsed, windowed, archived)
    # Each condition is evaluated once, for the number of the first one a line fails; its
    # column and reason are then looked up by that number, for rejected lines only.
    problem = "CASE " + " ".join(
        f"WHEN {cond} THEN {n}" for n, (cond, _, _) in enumerate(problems, 1)) + " END"
    reject_column = "CASE problem " + " ".join(
        f"WHEN {n} THEN {literal(col)}" for n, (_, col, _) in enumerate(problems, 1)) + " END"
    reject_reason = "CASE problem " + " ".join(
        f"WHEN {n} THEN {literal(col + ': ')} || {reason}"
        for n, (_, col, reason) in enumerate(problems, 1)) + " END"
    line_breaks = sum(not c.multiline for c in export.columns)
    spans_lines = " OR ".join([f"coalesce(problem <= {line_breaks}, false)"] + [
        f"coalesce(contains({raw[c.name]}, chr(10)) OR contains({raw[c.name]}, chr(13)), false)"
        for c in export.columns if c.multiline])
    line = ident(lines.LINE_COLUMN)
    reader_columns = ([lines.LINE_COLUMN] if numbered else []) + list(export.header)
    raw_line = " || ',' || ".join(_csv_field(raw[c.name]) for c in export.columns)

    outputs = []
    for c in export.columns:
        value = parsed[c.name]
        if c.type == "text" and not c.required:
            value = f"coalesce({value}, '')"
        outputs.append(f"{value} AS {ident(c.table_name)}")
    derived = "".join(f",\n    {d.duckdb_sql} AS {ident(d.name)}" for d in early_derived(export))
    day_column, day_sql = staging_day(export)
    if day_sql:
        derived += f",\n    {day_sql} AS {ident(day_column)}"
    return _render(
        "typed_rows.sql",
        output_columns=",\n        ".join(outputs),
        derived_columns=derived,
        problem=problem,
        reject_column=reject_column,
        reject_reason=reject_reason,
        raw_line=f"left({raw_line}, {lines.MAX_RAW_LINE})",
        file_line=f"TRY_CAST({line} AS BIGINT)" if numbered else "CAST(NULL AS BIGINT)",
        spans_lines=spans_lines,
        parsed_columns=", ".join(
            f"{_parse_expression(c.type, ident(c.name))} AS {parsed[c.name]}"
            for c in export.columns) + (f", {line}" if numbered else ""),
        raw_columns=", ".join(f"{ident(c.name)} AS {raw[c.name]}" for c in export.columns),
        reader_columns="{" + ", ".join(f"{literal(c)}: 'VARCHAR'" for c in reader_columns)
        + "}",
        reader_rejects=literal(reader_rejects),
        reader_scans=literal(reader_scans),
    )


def early_derived(export: Export) -> list[Derived]:
    """Derived columns the checks need (key, merge order, partition, the file's date):
    computed when the file is read. The others (classification) are computed while rows
    stream out to PostgreSQL, on the core PostgreSQL leaves free."""
    needed = {*export.key, *export.merge.order}
    if export.partition:
        needed.add(export.partition.column)
    return [d for d in export.derived if d.name in needed or d.duckdb_sql == FILE_DATE]


def staging_day(export: Export) -> tuple[str, str | None]:
    """The staged column holding the day a row counts for (its partition column's calendar
    day in the configured zone, or the file's date for an unpartitioned table), and its SQL
    when it is not a stored column itself."""
    if export.partition is None:
        return DAY, f"CAST({FILE_DATE} AS DATE)"
    column = export.partition.column
    if export.column_type(column) == "date":
        return column, None
    # The staging cursor's TimeZone is the configured one: the cast gives the local day.
    return DAY, f"CAST({ident(column)} AS DATE)"


def _bound(query: str, **params: object) -> dict[str, object]:
    """The parameters a query uses (DuckDB refuses unused ones)."""
    return {name: value for name, value in params.items() if f"${name}" in query}


def _output_columns(export: Export) -> str:
    late = {d.name: d for d in export.derived if d not in early_derived(export)}
    return ", ".join(f"{late[c].duckdb_sql} AS {ident(c)}" if c in late else ident(c)
                     for c in export.table_columns)


def duplicate_losers_sql(export: Export, checked: str, losers: str) -> str:
    # Full ties on the merge order are broken by the remaining file columns; derived columns
    # are functions of those, so the winner is always one well-defined row.
    stored = [c.table_name for c in export.columns] + [d.name for d in early_derived(export)]
    others = [c for c in stored if c not in export.key and c not in export.merge.order]
    order = list(export.merge.order) + others
    direction = " DESC" if export.merge.descending else ""
    return _render(
        "duplicate_losers.sql",
        checked=ident(checked), losers=ident(losers),
        key_columns=", ".join(ident(k) for k in export.key),
        merge_order=", ".join(ident(c) + direction for c in order),
    )


COMPRESSED = {b"\x1f\x8b": "gzip", b"PK\x03\x04": "zip", b"BZh": "bzip2",
              b"\x28\xb5\x2f\xfd": "zstd"}


def check_header(export: Export, file: SourceFile, first_line: bytes) -> None:
    """The file's first line is the export's header, exactly; else HeaderMismatch saying
    what differs (or what the file is, when it is no CSV text at all)."""
    for magic, kind in COMPRESSED.items():
        if first_line.startswith(magic):
            raise HeaderMismatch(f"{file.key}: the file is {kind}-compressed, not CSV text: "
                                 f"decompress it under the same name to load it")
    try:
        text = first_line.decode("utf-8-sig")
        found = tuple(next(csv.reader([text], strict=True), []))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise HeaderMismatch(f"{file.key}: the first line is not a CSV header in UTF-8 "
                             f"({exc}); expected: {','.join(export.header)}") from exc
    expected = export.header
    if found == expected:
        return
    missing = [c for c in expected if c not in found]
    extra = [c for c in found if c not in expected]
    details = []
    if missing:
        details.append(f"missing column(s): {', '.join(missing)}")
    if extra:
        details.append(f"unexpected column(s): {', '.join(extra)}")
    if not details:
        details.append("columns in another order")
    raise HeaderMismatch(
        f"{file.key}: header does not match export {export.name} ({'; '.join(details)}). "
        f"Expected: {','.join(expected)}. Found: {','.join(found)}"
    )


def _reader_line(record: int, reader_reject_lines: list[int]) -> int:
    """Line of the `record`-th accepted record, counting the header and rejected records."""
    line = record + 1
    while True:
        skipped = bisect.bisect_right(reader_reject_lines, line)
        if record + 1 + skipped == line:
            return line
        line = record + 1 + skipped


class Stager:
    """One DuckDB connection, capped in memory, spilling to disk when it must."""

    _ids = itertools.count(1)

    def __init__(self, settings: Settings):
        self.settings = settings
        self.workdir = ProcessDir(settings.spill_dir)
        # Global settings, shared by every cursor: set here once, never per query (insertion
        # order must stay preserved: line numbers rely on it). TimeZone is per cursor.
        self.db = duckdb.connect(config={
            "memory_limit": settings.duckdb_memory,
            "temp_directory": str(self.workdir.path),
            "preserve_insertion_order": True,
        })
        self._local = threading.local()
        self._s3_lock = threading.Lock()
        self._s3_ready: object | None = None
        # Per export, the months in the lake (their first days): their rows are rejected.
        self.archived_months: dict[str, list[date]] = {}

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """This thread's cursor on the shared DuckDB database (settings are per cursor)."""
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            cursor = self._local.cursor = self._new_cursor()
        return cursor

    def _new_cursor(self, timezone: str | None = None) -> duckdb.DuckDBPyConnection:
        cursor = self.db.cursor()
        cursor.execute(f"SET TimeZone = {literal(timezone or self.settings.timezone)}")
        cursor.execute("SET enable_progress_bar = false")  # the run reports its own progress
        return cursor

    def close(self) -> None:
        self.db.close()
        self.workdir.close()

    def prepare(self, source: Source) -> None:
        """Ready DuckDB to read `source` (for S3: load httpfs, create the secret). Staging
        does it when needed; a run does it first, while other work waits on the network."""
        if source.s3 is not None:
            self.use_s3(source.s3)

    def use_s3(self, s3: S3Settings) -> None:
        """Load httpfs and create the S3 secret (once per settings)."""
        with self._s3_lock:
            if self._s3_ready == s3:
                return
            load_extension(self.con, "httpfs")
            options = {
                "TYPE": "s3",
                "KEY_ID": s3.access_key_id or "",
                "SECRET": s3.secret_access_key or "",
                "REGION": s3.region,
                "ENDPOINT": s3.endpoint,
                "URL_STYLE": "path" if s3.url_style == "path" else "vhost",
                "USE_SSL": "true" if s3.use_ssl else "false",
            }
            body = ", ".join(
                f"{k} {v if k in {'TYPE', 'USE_SSL'} else literal(v)}" for k, v in options.items())
            self.con.execute(f"CREATE OR REPLACE SECRET tchap_stats_s3 ({body})")
            self._s3_ready = s3

    def stage(self, export: Export, source: Source, file: SourceFile,
              file_date: date | None = None) -> StagedFile:
        """Stage one file; `file_date` (default: the date in its name) feeds the derived
        columns holding the extraction date and centres the file's acceptance window.

        DuckDB reads the file where it lies. When its reader cannot account for every line
        (a value or a reject running over several lines, or the whole file refused), the
        file is read again line by line (lines.py) so that each line is loaded or rejected
        on its own."""
        file_date = file_date or export.file_date(file.key)
        if file_date is None and any(d.duckdb_sql == FILE_DATE for d in export.derived):
            raise StagingError(f"{file.key}: no extraction date (YYYY-MM-DD) in the file's name")
        check_header(export, file, source.first_line(file))
        self.prepare(source)
        try:
            staged = self._read(export, file, file.url, file_date)
        except duckdb.InvalidInputException as exc:  # the CSV reader refused the whole file
            log.info("%s: DuckDB's reader refused the file (%s); reading it line by line",
                     file.key, str(exc).splitlines()[0])
            return self._stage_line_by_line(export, source, file, file_date)
        if not self._lines_unaccounted(staged):
            return staged
        log.info("%s: %d value(s) or reject(s) run over several lines; reading the file line "
                 "by line", file.key, staged.spanning)
        self.drop(staged)
        return self._stage_line_by_line(export, source, file, file_date)

    @staticmethod
    def _lines_unaccounted(staged: StagedFile) -> bool:
        """Whether some record may hold several lines that are not one multiline value."""
        if not staged.spanning:
            return False
        multiline = any(c.multiline for c in staged.export.columns)
        return not multiline or staged.rows_rejected > 0

    def _stage_line_by_line(self, export: Export, source: Source, file: SourceFile,
                            file_date: date | None) -> StagedFile:
        rewritten = self.workdir.path / f"lines_{next(self._ids)}.csv"
        try:
            with source.open(file) as stream:
                report = lines.rewrite(stream, export, rewritten)
            staged = self._read(export, file, str(rewritten), file_date, numbered=True)
        except duckdb.Error as exc:
            raise StagingError(f"{file.key}: {exc}") from exc
        finally:
            rewritten.unlink(missing_ok=True)
        read_as_records = staged.rows_read
        if read_as_records != report.records or not report.accounted:
            self.drop(staged)
            where = (f"; check the quoting from line {report.first_open_quote}, where a quote "
                     f"opened and did not close" if report.first_open_quote else "")
            raise StagingError(
                f"{file.key}: could not account for every line: {report.lines:,} lines after "
                f"the header, {report.records:,} records found line by line but "
                f"{read_as_records:,} read by DuckDB{where}; nothing of the file was loaded")
        line_rejects = [Reject(line, column, reason, raw)
                        for line, column, reason, raw in report.rejects]
        staged.rejects = sorted(staged.rejects + line_rejects,
                                key=lambda r: r.line or 0)[:MAX_STORED_REJECTS]
        staged.rows_read += len(line_rejects)
        staged.rows_rejected += len(line_rejects)
        staged.blank_lines = report.blank
        return staged

    def _read(self, export: Export, file: SourceFile, url: str, file_date: date | None, *,
              numbered: bool = False) -> StagedFile:
        n = next(self._ids)
        checked, losers = f"checked_{n}", f"losers_{n}"
        reader_rejects, reader_scans = f"reader_rejects_{n}", f"reader_scans_{n}"
        window = self._window(export, file_date)
        con = self.con
        try:
            archived = self.archived_months.get(export.name, [])
            query = _render("checked_rows.sql", checked=ident(checked), typed_rows=typed_rows_sql(
                export, reader_rejects, reader_scans, windowed=window is not None,
                numbered=numbered, archived=bool(archived)))
            con.execute(query, _bound(query, url=url, file_date=file_date,
                                      archived_months=archived, **self._date_bounds(window)))
            con.execute(duplicate_losers_sql(export, checked, losers))
            days = dict(con.execute(_render(
                "rows_per_day.sql", checked=ident(checked), losers=ident(losers),
                day_column=ident(staging_day(export)[0]))).fetchall())
            accepted, valid, spanning = one(con.execute(
                f"SELECT count(*), count(*) FILTER (WHERE reject_reason IS NULL), "
                f"count(*) FILTER (WHERE spans_lines) FROM {ident(checked)}"))
            rejects, reader_rejected, reader_spanning = self._reader_rejects(reader_rejects,
                                                                             numbered)
            reader_lines = sorted(r.line for r in rejects if r.line is not None)
            if accepted > valid:
                rejects += self._checked_rejects(checked, reader_lines)
                rejects.sort(key=lambda r: r.line or 0)
        except duckdb.InvalidInputException:
            for table in (checked, losers):
                con.execute(f"DROP TABLE IF EXISTS {ident(table)}")
            raise
        except duckdb.Error as exc:
            for table in (checked, losers):
                con.execute(f"DROP TABLE IF EXISTS {ident(table)}")
            raise StagingError(f"{file.key}: {exc}") from exc
        finally:
            for table in (reader_rejects, reader_scans):
                con.execute(f"DROP TABLE IF EXISTS {ident(table)}")
        return StagedFile(
            export=export, file=file, checked=checked, losers=losers,
            rows_read=accepted + reader_rejected,
            rows_rejected=accepted - valid + reader_rejected,
            rows_valid=valid, days=days, rejects=rejects[:MAX_STORED_REJECTS],
            spanning=spanning + reader_spanning,
        )

    def _date_bounds(self, window: tuple[date, date] | None) -> dict[str, object]:
        """The days a line's timestamps must lie within: since Tchap started until the end
        of tomorrow, and the file's window. Bound as dates in text, which DuckDB casts to
        the cursor zone's midnights (a TIMESTAMPTZ) or to naive midnights (a TIMESTAMP)."""
        today = dates.today(self.settings.timezone)
        bounds: dict[str, object] = {
            "earliest": TCHAP_STARTED.isoformat(),
            "latest": (today + timedelta(days=2)).isoformat()}
        if window:
            first, last = window
            bounds.update(window_first=first, window_last=last, window_start=first.isoformat(),
                          window_end=(last + timedelta(days=1)).isoformat())
        return bounds

    def _window(self, export: Export, file_date: date | None) -> tuple[date, date] | None:
        """The days a dated export's file may hold rows for, around its extraction date."""
        if not export.dated_by or file_date is None:
            return None
        return (file_date - timedelta(days=self.settings.accept_days_before),
                file_date + timedelta(days=self.settings.accept_days_after))

    def _reader_rejects(self, reader_rejects: str, numbered: bool
                        ) -> tuple[list[Reject], int, int]:
        """Records the CSV reader could not split; one reject per record (the reader may
        report a record several times, once per column at fault). Also how many of them
        run over several lines."""
        rows = self.con.execute(
            f"SELECT line, first(column_name ORDER BY column_idx), "
            f"string_agg(DISTINCT error_message, '; '), first(csv_line) "
            f"FROM {ident(reader_rejects)} GROUP BY line ORDER BY line").fetchall()
        rejects: list[Reject] = []
        spanning = 0
        for line, column, reason, raw in rows:
            text = (raw or "").rstrip("\r\n")
            spanning += "\n" in text or "\r" in text
            if numbered:  # the rewritten file's first column is the original line
                number, _, text = text.partition(",")
                line = int(number) if number.isdigit() else None
            if len(rejects) < MAX_STORED_REJECTS:
                rejects.append(Reject(line, column, reason, text[:lines.MAX_RAW_LINE]))
        return rejects, len(rows), spanning

    def _checked_rejects(self, checked: str, reader_lines: list[int]) -> list[Reject]:
        """Lines the reader split but the checks refused, with their line numbers."""
        found = self.con.execute(
            f"SELECT rowid + 1, file_line, reject_column, reject_reason, raw_line "
            f"FROM {ident(checked)} WHERE reject_reason IS NOT NULL ORDER BY rowid "
            f"LIMIT {MAX_STORED_REJECTS}"
        ).fetchall()
        return [Reject(file_line or _reader_line(record, reader_lines), column, reason, raw)
                for record, file_line, column, reason, raw in found]

    def line_of_day_row(self, staged: StagedFile, day: date, position: int) -> int | None:
        """The file line of the `position`-th (from 1) row of `day` as `stream_day(...,
        ordered=True)` writes them."""
        export = staged.export
        found = self.con.execute(_render(
            "loadable_row_at.sql", checked=ident(staged.checked), losers=ident(staged.losers),
            day_column=ident(staging_day(export)[0])), {"day": day, "offset": position - 1}
        ).fetchone()
        if found is None:
            return None
        record, file_line = found
        return file_line or _reader_line(record, staged.reader_reject_lines)

    def drop(self, staged: StagedFile) -> None:
        for table in (staged.checked, staged.losers):
            self.con.execute(f"DROP TABLE IF EXISTS {ident(table)}")

    def stream_day(self, staged: StagedFile, day: date, ordered: bool = False
                   ) -> Iterator[bytes]:
        """The staged rows of `day`, in PostgreSQL's COPY text format (`ordered`: in file
        order, to tell which line a refused row came from; else as fast as DuckDB writes).

        DuckDB writes into a named pipe from a worker thread while the caller consumes it,
        so memory stays flat and DuckDB's formatting overlaps PostgreSQL's parsing.
        """
        # Only text values can hold characters to escape; DuckDB writes the others itself.
        export = staged.export
        values = ", ".join(_pg_text(ident(c)) if export.column_type(c) == "text" else ident(c)
                           for c in export.table_columns)
        return self.stream_over_day(staged, day, "SELECT * FROM day_rows", {}, values,
                                    ordered=ordered)

    def stream_over_day(self, staged: StagedFile, day: date, query: str,
                        params: dict[str, object], values: str = PG_TEXT_VALUE, *,
                        ordered: bool = False) -> Iterator[bytes]:
        """The rows (COPY text format) of a DuckDB `query` over `day_rows`: the staged
        rows of `day`, in the table's columns, as they are loaded (e.g. a summary's
        aggregate of them)."""
        export = staged.export
        rows = _render(
            "loadable_rows.sql", checked=ident(staged.checked), losers=ident(staged.losers),
            day_column=ident(staging_day(export)[0]), table_columns=_output_columns(export),
            order="ORDER BY rowid" if ordered else "")
        try:
            yield from self.stream_rows(f"WITH day_rows AS (\n{rows}\n)\n{query}",
                                        {**params, "day": day}, values, ordered=ordered)
        except StagingError as exc:
            raise StagingError(f"{staged.file.key}: streaming {day}: {exc}") from exc

    def stream_rows(self, query: str, params: dict[str, object],
                    values: str = PG_TEXT_VALUE, ordered: bool = False) -> Iterator[bytes]:
        """The rows of a DuckDB query in PostgreSQL's COPY text format, written into a
        named pipe from a worker thread while the caller consumes them. `values` is the
        select list writing the query's columns in that format."""
        # Row order does not matter to PostgreSQL: let DuckDB write from several threads.
        copy = (f"COPY (SELECT {values} FROM ({query})) TO $pipe "
                f"(FORMAT csv, DELIMITER '\t', QUOTE '', ESCAPE '', NULLSTR '\\N', "
                f"HEADER false, PRESERVE_ORDER {'true' if ordered else 'false'})")
        with tempfile.TemporaryDirectory(dir=self.workdir.path) as tmp:
            pipe = Path(tmp) / "rows"
            os.mkfifo(pipe)
            failure: list[BaseException] = []

            def write() -> None:
                try:
                    # Timestamps keep their offset: UTC formats fastest (no zone rules).
                    self._new_cursor("UTC").execute(copy, {**params, "pipe": str(pipe)})
                except BaseException as exc:  # reported by the reading side
                    failure.append(exc)
                finally:
                    # Unblock a reader still waiting in open() if DuckDB never opened the pipe.
                    with contextlib.suppress(OSError):
                        os.close(os.open(pipe, os.O_WRONLY | os.O_NONBLOCK))

            writer = threading.Thread(target=write, name="duckdb-copy", daemon=True)
            writer.start()
            reader = open(pipe, "rb", buffering=0)  # noqa: SIM115 (closed in finally)
            try:
                while chunk := reader.read(1 << 20):
                    yield chunk
            finally:
                reader.close()  # a consumer that stopped early makes DuckDB's write fail
                writer.join()
            if failure:
                raise StagingError(str(failure[0]))


def load_extension(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """An extension shipped in its duckdb-extension-NAME wheel (no network), else DuckDB's
    own INSTALL (needs the network)."""
    try:
        package = importlib.import_module(f"duckdb_extension_{name}")
        package_dir = Path(package.__file__ or "").parent
        version_dir = package_dir / "extensions" / f"v{duckdb.__version__}"
        candidates = sorted(version_dir.glob("*.duckdb_extension"))
        if candidates:
            con.execute(f"INSTALL {literal(str(candidates[0]))}")
    except ImportError:
        con.execute(f"INSTALL {ident(name)}")
    con.execute(f"LOAD {ident(name)}")
