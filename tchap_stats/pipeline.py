"""The run: for each export and day, source → staging (DuckDB) → load (PostgreSQL) → ledger.

`sync` is a run over one day, `backfill` over a range; both skip files the ledger has
already loaded with the same ETag (unless forced), carry on past missing or failing
files, and end with an exit code for the worst outcome.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import click
import psycopg

from . import ledger
from .config import Settings, mask
from .database import connect
from .exports import Export
from .ledger import DayResult
from .load import DayWriter, ensure_partitions, lock_days, summarize_new_ranges
from .schema import require_schema
from .source import LocalSource, S3Source, SourceError
from .staging import StagedFile, Stager, StagingError
from .summaries import Preaggregation, RefreshReport, refresh_changed

log = logging.getLogger("tchap_stats")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_MISSING = 0, 1, 2, 3
MAX_REJECTS_KEPT_ON_FAILURE = 1_000


@dataclass
class FileOutcome:
    export: str
    name: str
    status: str  # loaded | skipped | failed | missing
    rows_read: int = 0
    rows_loaded: int = 0
    rows_duplicate: int = 0
    rows_rejected: int = 0
    days_changed: list[date] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None

    def summary(self) -> str:
        if self.status == "missing":
            return f"{self.name}: MISSING"
        if self.status == "skipped":
            return f"{self.name}: skipped (already loaded with the same ETag; --force reloads)"
        figures = (f"read {self.rows_read:,} · loaded {self.rows_loaded:,} · "
                   f"duplicates {self.rows_duplicate:,} · rejected {self.rows_rejected:,}")
        if self.status == "failed":
            return f"{self.name}: FAILED ({figures}): {self.error}"
        days = self.days_changed
        span = f" ({days[0]}..{days[-1]})" if len(days) > 1 else f" ({days[0]})" if days else ""
        return f"{self.name}: {figures} · days changed {len(days)}{span} · {self.seconds:.1f} s"


@dataclass
class RunReport:
    outcomes: list[FileOutcome]
    seconds: float
    refresh: RefreshReport | None = None

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def missing(self) -> list[FileOutcome]:
        return [o for o in self.outcomes if o.status == "missing"]

    @property
    def changed_days(self) -> set[tuple[str, date]]:
        return {(o.export, d) for o in self.outcomes for d in o.days_changed}

    @property
    def exit_code(self) -> int:
        return worst(self.outcomes)

    def by_export(self) -> list[str]:
        """One line per export of the run: its files' outcomes, rows and exit code."""
        exports: dict[str, list[FileOutcome]] = {}
        for outcome in self.outcomes:
            exports.setdefault(outcome.export, []).append(outcome)
        return [export_summary(name, outcomes) for name, outcomes in exports.items()]

    def totals(self) -> str:
        def total(attr: str) -> int:
            return sum(getattr(o, attr) for o in self.outcomes)

        return (f"{len(self.outcomes)} file(s): {self.count('loaded')} loaded, "
                f"{self.count('skipped')} skipped, {self.count('failed')} failed, "
                f"{len(self.missing)} missing · rows read {total('rows_read'):,} · "
                f"loaded {total('rows_loaded'):,} · duplicates {total('rows_duplicate'):,} · "
                f"rejected {total('rows_rejected'):,} · days changed {len(self.changed_days)} · "
                f"{self.seconds:.1f} s")


def worst(outcomes: list[FileOutcome]) -> int:
    """The exit code of the worst outcome: a failure, then a missing file, else 0."""
    if any(o.status == "failed" for o in outcomes):
        return EXIT_FAILED
    if any(o.status == "missing" for o in outcomes):
        return EXIT_MISSING
    return EXIT_OK


OUTCOME_WORDS = {EXIT_OK: "ok", EXIT_FAILED: "FAILED", EXIT_MISSING: "MISSING FILES"}


def export_summary(name: str, outcomes: list[FileOutcome]) -> str:
    def count(status: str) -> int:
        return sum(o.status == status for o in outcomes)

    code = worst(outcomes)
    loaded = sum(o.rows_loaded for o in outcomes)
    rejected = sum(o.rows_rejected for o in outcomes)
    days = {d for o in outcomes for d in o.days_changed}
    return (f"{name}: {OUTCOME_WORDS[code]} (exit {code}) · {len(outcomes)} file(s): "
            f"{count('loaded')} loaded, {count('skipped')} skipped, {count('failed')} failed, "
            f"{count('missing')} missing · rows loaded {loaded:,} · rejected {rejected:,} · "
            f"days changed {len(days)}")


def today(timezone: str) -> date:
    return datetime.now(ZoneInfo(timezone)).date()


def yesterday(timezone: str) -> date:
    return today(timezone) - timedelta(days=1)


def extraction_date(name: str) -> date | None:
    match = re.search(r"_(\d{4}-\d{2}-\d{2})\.csv$", name)
    return date.fromisoformat(match[1]) if match else None


class Loader:
    """Loads files one at a time on its own PostgreSQL connection."""

    def __init__(self, settings: Settings, database_url: str, stager: Stager,
                 source: LocalSource | S3Source):
        self.settings = settings
        self.stager = stager
        self.source = source
        self.conn = connect(database_url, autocommit=True)

    def close(self) -> None:
        self.conn.close()

    def _mask(self, exc: BaseException) -> str:
        return mask(str(exc), self.settings.secrets())

    def load(self, export: Export, day: date, *, replace: bool, force: bool) -> FileOutcome:
        started = time.monotonic()
        name = export.file_name(day)
        try:
            file = self.source.find(name)
        except SourceError as exc:
            return FileOutcome(export.name, name, "failed", error=self._mask(exc))
        if file is None:
            return FileOutcome(export.name, name, "missing")
        if not force and ledger.is_loaded(self.conn, export.name, file):
            return FileOutcome(export.name, name, "skipped")
        load_id = ledger.start(self.conn, export.name, file, extraction_date(name),
                               "replace" if replace else "merge")
        outcome = FileOutcome(export.name, name, "failed")
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
            outcome.status = "loaded"
            outcome.days_changed = sorted(r.day for r in results if r.changed)
            self._summarize_ranges(export, list(staged.days))
        except (StagingError, SourceError, TooManyRejects, psycopg.Error, OSError) as exc:
            outcome.error = self._mask(exc)
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
        lock_days(self.conn, staged.export, days)
        writer = DayWriter(self.conn, self.stager, staged, self.settings.timezone)
        return [writer.write(day, replace) for day in days]

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


def run(settings: Settings, database_url: str, source: LocalSource | S3Source,
        exports: Iterable[Export], days: list[date], *, replace: bool = False,
        force: bool = False, jobs: int = 1, progress: bool = False,
        on_outcome: Callable[[FileOutcome], None] | None = None,
        refresh_summaries: bool = True) -> RunReport:
    started = time.monotonic()
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

    def work(task: tuple[Export, date]) -> FileOutcome:
        export, day = task
        return loader().load(export, day, replace=replace, force=force)

    outcomes: list[FileOutcome] = []
    bar = click.progressbar(length=len(tasks), label="loading", file=sys.stderr,
                            show_pos=True) if progress and len(tasks) > 1 else None
    try:
        # First, so that DuckDB loads httpfs while the S3 client is being created.
        stager.prepare(source)
        with connect(database_url, autocommit=True) as conn:
            require_schema(conn)
            interrupted = ledger.mark_interrupted(conn)
            if interrupted:
                log.warning("%d load(s) left running by a stopped process marked "
                            "interrupted; their files are loaded again when asked", interrupted)
        with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="load") as pool:
            futures = [pool.submit(work, t) for t in tasks]
            for future in as_completed(futures):
                outcome = future.result()
                outcomes.append(outcome)
                if on_outcome:
                    on_outcome(outcome)
                if bar:
                    bar.update(1)
    finally:
        if bar:
            bar.render_finish()
        for each in loaders:
            each.close()
        stager.close()
    order = {(e.name, e.file_name(d)): i for i, (e, d) in enumerate(tasks)}
    outcomes.sort(key=lambda o: order[(o.export, o.name)])
    refresh = None
    if refresh_summaries:
        # Once per run, not per file: the days all loads changed (and any left over).
        with connect(database_url, autocommit=True) as conn:
            refresh = refresh_changed(conn, database_url)
    return RunReport(outcomes, time.monotonic() - started, refresh)
