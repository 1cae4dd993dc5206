"""The run: for each export and day, source → staging (DuckDB) → load (PostgreSQL) → ledger.

`sync` is a run over one day, `backfill` over a range; both skip files the ledger has
already loaded with the same ETag (unless forced), carry on past missing or failing
files, and end with an exit code for the worst outcome.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum

import psycopg

from . import ledger
from .config import Settings, mask
from .database import connect
from .exports import Export
from .filenames import near_miss_note
from .lake import archived_month_starts
from .ledger import DayResult
from .load import (
    ROW_ERRORS,
    DayWriter,
    LockTimeout,
    RowRefused,
    ensure_partitions,
    lock_days,
    refused_row,
    summarize_new_ranges,
)
from .preaggregate import Preaggregation
from .schema import require_schema
from .source import Source, SourceError, SourceFile
from .staging import StagedFile, Stager, StagingError
from .summaries import RefreshReport, refresh_changed

log = logging.getLogger("tchap_stats")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_MISSING = 0, 1, 2, 3
EXIT_BUDGET = 5  # stopped at the time budget between files: run again to continue
EXIT_BUSY = 6  # another run holds the run lock
# Of a time budget, the share kept for the refresh at the end of the run.
REFRESH_SHARE = 0.1
DATABASE_GONE = "not loaded: the run stopped, the database is unreachable"
MAX_REJECTS_KEPT_ON_FAILURE = 1_000


class Status(StrEnum):
    """What became of one file of a run."""

    LOADED = "loaded"
    SKIPPED = "skipped"  # already loaded with the same ETag
    FAILED = "failed"
    MISSING = "missing"
    NOT_RUN = "not_run"  # the run stopped before it: the database became unreachable
    LEFT = "left"  # not started: the time budget would not have held it; the next run will


@dataclass
class FileOutcome:
    export: str
    name: str
    status: Status
    rows_read: int = 0
    rows_loaded: int = 0
    rows_duplicate: int = 0
    rows_rejected: int = 0
    days_changed: list[date] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None

    @property
    def empty(self) -> bool:
        """Loaded, but the file held no data line: the export itself likely failed."""
        return self.status == Status.LOADED and self.rows_read == 0

    def summary(self) -> str:
        if self.status == Status.MISSING:
            return f"{self.name}: MISSING" + (f" ({self.error})" if self.error else "")
        if self.status == Status.SKIPPED and self.error:
            return f"{self.name}: skipped ({self.error})"
        if self.status == Status.SKIPPED:
            return f"{self.name}: skipped (already loaded with the same ETag; --force reloads)"
        if self.status == Status.NOT_RUN:
            return f"{self.name}: {DATABASE_GONE}"
        if self.status == Status.LEFT:
            return f"{self.name}: LEFT for the next run (the time budget would not hold it)"
        figures = (f"read {self.rows_read:,} · loaded {self.rows_loaded:,} · "
                   f"duplicates {self.rows_duplicate:,} · rejected {self.rows_rejected:,}")
        if self.status == Status.FAILED:
            return f"{self.name}: FAILED ({figures}): {self.error}"
        if self.empty:
            return (f"{self.name}: EMPTY: the file holds its header and no data line "
                    f"(is the export broken?) · {self.seconds:.1f} s")
        days = self.days_changed
        span = f" ({days[0]}..{days[-1]})" if len(days) > 1 else f" ({days[0]})" if days else ""
        return f"{self.name}: {figures} · days changed {len(days)}{span} · {self.seconds:.1f} s"


@dataclass
class RunReport:
    outcomes: list[FileOutcome]
    seconds: float
    refresh: RefreshReport | None = None
    refresh_error: str | None = None  # the refresh ran and failed

    def count(self, status: Status) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def missing(self) -> list[FileOutcome]:
        return [o for o in self.outcomes if o.status == Status.MISSING]

    @property
    def changed_days(self) -> set[tuple[str, date]]:
        return {(o.export, d) for o in self.outcomes for d in o.days_changed}

    @property
    def error(self) -> str | None:
        """The run's error, for its log and notice: its refresh's, else its first failed
        file's."""
        if self.refresh_error:
            return self.refresh_error
        failed = next((o for o in self.outcomes if o.status == Status.FAILED), None)
        return f"{failed.name}: {failed.error}" if failed else None

    @property
    def left(self) -> list[FileOutcome]:
        return [o for o in self.outcomes if o.status == Status.LEFT]

    @property
    def exit_code(self) -> int:
        return EXIT_FAILED if self.refresh_error else worst(self.outcomes)

    def by_export(self) -> list[str]:
        """One line per export of the run: its files' outcomes, rows and exit code."""
        exports: dict[str, list[FileOutcome]] = {}
        for outcome in self.outcomes:
            exports.setdefault(outcome.export, []).append(outcome)
        return [export_summary(name, outcomes) for name, outcomes in exports.items()]

    def totals(self) -> str:
        def total(attr: str) -> int:
            return sum(getattr(o, attr) for o in self.outcomes)

        return (f"{len(self.outcomes)} file(s): {self.count(Status.LOADED)} loaded, "
                f"{self.count(Status.SKIPPED)} skipped, {self.count(Status.FAILED)} failed, "
                f"{len(self.missing)} missing · rows read {total('rows_read'):,} · "
                f"loaded {total('rows_loaded'):,} · duplicates {total('rows_duplicate'):,} · "
                f"rejected {total('rows_rejected'):,} · days changed {len(self.changed_days)} · "
                f"{self.seconds:.1f} s")


def worst(outcomes: list[FileOutcome]) -> int:
    """The exit code of the worst outcome: a failure (or a file the run could not reach),
    then a missing or empty file, else 0."""
    if any(o.status in (Status.FAILED, Status.NOT_RUN) for o in outcomes):
        return EXIT_FAILED
    if any(o.status == Status.LEFT for o in outcomes):
        return EXIT_BUDGET
    if any(o.status == Status.MISSING or o.empty for o in outcomes):
        return EXIT_MISSING
    return EXIT_OK


OUTCOME_WORDS = {EXIT_OK: "ok", EXIT_FAILED: "FAILED", EXIT_MISSING: "MISSING FILES",
                 EXIT_BUDGET: "STOPPED AT THE TIME BUDGET"}


def export_summary(name: str, outcomes: list[FileOutcome]) -> str:
    def count(status: Status) -> int:
        return sum(o.status == status for o in outcomes)

    code = worst(outcomes)
    loaded = sum(o.rows_loaded for o in outcomes)
    rejected = sum(o.rows_rejected for o in outcomes)
    days = {d for o in outcomes for d in o.days_changed}
    empty = sum(o.empty for o in outcomes)
    return (f"{name}: {OUTCOME_WORDS[code]} (exit {code}) · {len(outcomes)} file(s): "
            f"{count(Status.LOADED)} loaded{f' ({empty} empty)' if empty else ''}, "
            f"{count(Status.SKIPPED)} skipped, {count(Status.FAILED)} failed, "
            f"{count(Status.MISSING)} missing"
            + (f", {count(Status.NOT_RUN)} not run" if count(Status.NOT_RUN) else "")
            + (f", {count(Status.LEFT)} left" if count(Status.LEFT) else "")
            + f" · rows loaded {loaded:,} · rejected {rejected:,} · days changed {len(days)}")


class DatabaseUnreachable(RuntimeError):
    """The database cannot be reached (even on a new connection): the run stops."""


class Loader:
    """Loads files one at a time on its own PostgreSQL connection."""

    def __init__(self, settings: Settings, database_url: str, stager: Stager,
                 source: Source):
        self.settings = settings
        self.stager = stager
        self.source = source
        self.database_url = database_url
        self.conn = self._connect()

    def _connect(self) -> psycopg.Connection:
        try:
            return connect(self.database_url, autocommit=True)
        except psycopg.OperationalError as exc:
            raise DatabaseUnreachable(self._mask(exc)) from exc

    def _reconnect_if_broken(self) -> None:
        """A connection lost in the previous file (server restarted, network cut) is
        replaced; DatabaseUnreachable if no new one can be opened."""
        if self.conn.broken or self.conn.closed:
            self.conn.close()
            self.conn = self._connect()

    def close(self) -> None:
        self.conn.close()

    def _mask(self, exc: BaseException) -> str:
        return mask(str(exc), self.settings.secrets())

    def load(self, export: Export, day: date, *, replace: bool, force: bool,
             catching_up: bool = False) -> FileOutcome:
        """Load one file. Any error of the file is its failed outcome; only an unreachable
        database raises (DatabaseUnreachable), ending the run. `catching_up`: a day that
        has a loaded file is skipped without asking the source."""
        name = export.file_name(day)
        if catching_up and self._day_loaded(export, day):
            return FileOutcome(export.name, name, Status.SKIPPED, error="already loaded")
        try:
            file = self.source.find(name)
        except Exception as exc:  # any error of one file is that file's
            return FileOutcome(export.name, name, Status.FAILED, error=self._mask(exc))
        if file is None:
            return FileOutcome(export.name, name, Status.MISSING,
                               error=near_miss_note(self.source.near_misses(name)))
        self._reconnect_if_broken()
        try:
            if not force and ledger.is_loaded(self.conn, export.name, file):
                return FileOutcome(export.name, name, Status.SKIPPED)
            load_id = ledger.start(self.conn, export.name, file, export.file_date(name),
                                   "replace" if replace else "merge")
        except psycopg.OperationalError as exc:
            raise DatabaseUnreachable(self._mask(exc)) from exc
        return self._load_file(export, day, file, load_id, replace)

    def _day_loaded(self, export: Export, day: date) -> bool:
        self._reconnect_if_broken()
        try:
            return ledger.day_loaded(self.conn, export.name, day)
        except psycopg.OperationalError as exc:
            raise DatabaseUnreachable(self._mask(exc)) from exc

    def _load_file(self, export: Export, day: date, file: SourceFile, load_id: int,
                   replace: bool) -> FileOutcome:
        started = time.monotonic()
        name = export.file_name(day)
        outcome = FileOutcome(export.name, name, Status.FAILED)
        staged = None
        try:
            Preaggregation.translate_ahead(export.name, self.settings.preaggregate)
            staged = self.stager.stage(export, self.source, file, day)
            log.debug("%s: staged %s rows over %d day(s) in %.1f s", name,
                      f"{staged.rows_staged:,}", len(staged.days), time.monotonic() - started)
            outcome.rows_read, outcome.rows_rejected = staged.rows_read, staged.rows_rejected
            self._check_rejects(staged.rows_read, staged.rows_rejected)
            ensure_partitions(self.conn, export, list(staged.days), self.settings.timezone)
            with Preaggregation(self.stager, staged, load_id, self.settings.preaggregate
                                ) as preaggregation, self.conn.transaction():
                results = self._write(staged, replace)
                preaggregation.copy(self.conn, [r.day for r in results if r.was_empty])
                ledger.save_rejects(self.conn, load_id, file.key, staged.rejects)
                outcome.rows_loaded = sum(r.loaded for r in results)
                outcome.rows_duplicate = (staged.duplicates_in_file
                                          + sum(r.rows_in_file - r.loaded for r in results))
                ledger.finish(self.conn, load_id, export.name, rows_read=outcome.rows_read,
                              rows_loaded=outcome.rows_loaded,
                              rows_duplicate=outcome.rows_duplicate,
                              rows_rejected=outcome.rows_rejected, days=results)
            log.debug("%s: written and committed at %.1f s", name, time.monotonic() - started)
            outcome.status = Status.LOADED
            outcome.days_changed = sorted(r.day for r in results if r.changed)
            if staged.rows_read == 0:
                log.warning("%s: the file holds its header and no data line", name)
            self._summarize_ranges(export, list(staged.days))
        except Exception as exc:  # any error of one file is that file's
            if not isinstance(exc, StagingError | SourceError | TooManyRejects | LockTimeout
                              | RowRefused | psycopg.Error):
                log.debug("%s: unexpected error", name, exc_info=True)
            outcome.error = self._mask(exc) or type(exc).__name__
            outcome.rows_loaded = 0
            self._record_failure(load_id, file.key, outcome, staged)
        except BaseException as exc:  # interrupted: record it, then let it propagate
            outcome.error = self._mask(exc) or type(exc).__name__
            self._record_failure(load_id, file.key, outcome, staged)
            raise
        finally:
            if staged is not None:
                self.stager.drop(staged)
            outcome.seconds = time.monotonic() - started
        return outcome

    def _summarize_ranges(self, export: Export, days: list[date]) -> None:
        """Index upkeep after the commit: a failure here loses nothing (the next load's
        summarizing, or autovacuum, covers the same ranges), so it is only logged."""
        try:
            summarize_new_ranges(self.conn, export, days)
        except psycopg.Error as exc:
            log.warning("%s: could not summarize the BRIN ranges of its days: %s",
                        export.name, self._mask(exc))

    def _check_rejects(self, rows_read: int, rows_rejected: int) -> None:
        threshold = self.settings.reject_threshold
        if rows_rejected and rows_rejected > threshold * max(rows_read, 1):
            raise TooManyRejects(
                f"{rows_rejected:,} of {rows_read:,} lines rejected, above the threshold of "
                f"{threshold:.2%} (TCHAP_STATS_REJECT_THRESHOLD): nothing of the file was "
                f"loaded; see tchap_stats.rejects for the lines and reasons")

    def _write(self, staged: StagedFile, replace: bool) -> list[DayResult]:
        days = sorted(staged.days)
        lock_days(self.conn, staged.export, days, self.settings.lock_timeout)
        writer = DayWriter(self.conn, self.stager, staged, self.settings.timezone)
        results = []
        for day in days:
            try:
                results.append(writer.write(day, replace))
            except ROW_ERRORS as exc:
                raise self._refusal(staged, day, exc) from exc
        return results

    def _refusal(self, staged: StagedFile, day: date, exc: psycopg.Error) -> Exception:
        """A row PostgreSQL refused (staging checks what it can; a constraint added by hand,
        an index over several long values can still refuse one), named by its file line."""
        try:
            found = refused_row(self.database_url, self.stager, staged, day,
                                self.settings.timezone)
        except Exception:  # the original error is the one to report
            log.debug("could not locate the refused row", exc_info=True)
            found = None
        if found is None:
            return exc
        line, column, message = found
        where = f"line {line}" if line else "a line"
        return RowRefused(f"{staged.file.key}: PostgreSQL refused the row of {where}"
                          + (f" (column {column})" if column else "")
                          + f": {message}; nothing of the file was loaded")

    def _record_failure(self, load_id: int, file_key: str, outcome: FileOutcome,
                        staged: StagedFile | None) -> None:
        try:
            with self.conn.transaction():
                ledger.fail(self.conn, load_id, outcome.error or "failed",
                            rows_read=outcome.rows_read or None,
                            rows_rejected=outcome.rows_rejected or None)
                if staged is not None:
                    ledger.save_rejects(self.conn, load_id, file_key,
                                        staged.rejects[:MAX_REJECTS_KEPT_ON_FAILURE])
        except psycopg.Error as exc:  # the database itself is gone: the run reports it
            log.error("could not record the failure of %s in the ledger: %s",
                      file_key, self._mask(exc))


class TooManyRejects(RuntimeError):
    pass


@dataclass(frozen=True)
class RunOptions:
    """How a run loads its files, and whom it tells as each ends."""

    replace: bool = False  # each day of a file holds exactly its rows (default: merge)
    force: bool = False  # reload files already loaded with the same ETag
    jobs: int = 1  # files loaded at once
    refresh_summaries: bool = True  # refresh what the loads changed, once at the end
    on_outcome: Callable[[FileOutcome], None] | None = None  # as each file ends
    on_start: Callable[[int], None] | None = None  # the number of files, before the first
    # time.monotonic() by which the run must end (--max-minutes from the process's start):
    # no file starts that the time left would not hold, judging by the longest so far and
    # keeping REFRESH_SHARE of the budget for the refresh. The first file always starts.
    deadline: float | None = None
    budget: float = 0.0  # seconds, the whole budget (for its refresh share)
    catching_up: bool = False  # days with a loaded file are skipped without a look at S3


class Budget:
    """Whether a file may start: the time left holds the longest file so far and the
    refresh's share. Shared by the run's threads."""

    def __init__(self, options: RunOptions):
        self.deadline = options.deadline
        self.reserve = REFRESH_SHARE * options.budget
        self.longest = 0.0
        self.started = 0
        self.lock = threading.Lock()

    def admit(self) -> bool:
        with self.lock:
            if self.deadline is not None and self.started and (
                    time.monotonic() + self.longest + self.reserve > self.deadline):
                return False
            self.started += 1
            return True

    def took(self, seconds: float) -> None:
        with self.lock:
            self.longest = max(self.longest, seconds)


def run(settings: Settings, database_url: str, source: Source, exports: Iterable[Export],
        days: list[date], options: RunOptions = RunOptions()) -> RunReport:
    """Load each export's file of each day (source → staging → load → ledger), then
    refresh the summaries of what changed."""
    started = time.monotonic()
    replace, force, jobs = options.replace, options.force, options.jobs
    tasks = [(export, day) for day in days for export in exports]
    stager = Stager(settings)
    local = threading.local()
    loaders: list[Loader] = []
    lock = threading.Lock()

    def loader() -> Loader:
        if not hasattr(local, "loader"):
            local.loader = Loader(settings, database_url, stager, source)
            with lock:
                loaders.append(local.loader)
        return local.loader

    unreachable: list[str] = []  # set once: the database is gone, the run stops
    budget = Budget(options)

    def work(task: tuple[Export, date]) -> FileOutcome:
        export, day = task
        if unreachable:
            return FileOutcome(export.name, export.file_name(day), Status.NOT_RUN)
        if not budget.admit():
            return FileOutcome(export.name, export.file_name(day), Status.LEFT)
        began = time.monotonic()
        try:
            return loader().load(export, day, replace=replace, force=force,
                                 catching_up=options.catching_up)
        except DatabaseUnreachable as exc:
            unreachable.append(str(exc))
            log.error("the database is unreachable: the run stops (%s)", exc)
            return FileOutcome(export.name, export.file_name(day), Status.FAILED,
                               error=f"the database is unreachable: {exc}")
        finally:
            budget.took(time.monotonic() - began)

    outcomes: list[FileOutcome] = []
    if options.on_start:
        options.on_start(len(tasks))
    try:
        # First, so that DuckDB loads httpfs while the S3 client is being created.
        stager.prepare(source)
        with connect(database_url, autocommit=True) as conn:
            require_schema(conn)
            stager.archived_months = archived_month_starts(conn)
            interrupted = ledger.mark_interrupted(conn)
            if interrupted:
                log.warning("%d load(s) left running by a stopped process marked "
                            "interrupted; their files are loaded again when asked", interrupted)
        with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="load") as pool:
            futures = [pool.submit(work, t) for t in tasks]
            for future in as_completed(futures):
                outcome = future.result()
                outcomes.append(outcome)
                if options.on_outcome:
                    options.on_outcome(outcome)
    finally:
        for each in loaders:
            each.close()
        stager.close()
    order = {(e.name, e.file_name(d)): i for i, (e, d) in enumerate(tasks)}
    outcomes.sort(key=lambda o: order[(o.export, o.name)])
    report = RunReport(outcomes, time.monotonic() - started)
    if unreachable:
        report.refresh_error = "not run: the database is unreachable"
    elif options.refresh_summaries:
        _refresh(report, database_url, settings)
    report.seconds = time.monotonic() - started
    return report


def _refresh(report: RunReport, database_url: str, settings: Settings) -> None:
    """Once per run, not per file: the days all loads changed (and any left over). A
    failure here loses nothing: the days stay queued for the next refresh."""
    try:
        with connect(database_url, autocommit=True) as conn:
            report.refresh = refresh_changed(conn, database_url)
    except Exception as exc:  # reported, with the loads that did happen
        log.debug("refresh failed", exc_info=True)
        report.refresh_error = (f"{mask(str(exc).strip(), settings.secrets())} (the changed "
                                f"days stay queued for the next refresh)")
