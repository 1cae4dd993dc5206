"""The `tchap-stats` command line.

Exit codes: 0 success · 1 failure (a file failed, or the run could not start) ·
2 bad usage · 3 finished, but some expected input files were missing (each named) ·
4 (check) rows differ while days wait for a summary refresh ·
5 stopped at the time budget (--max-minutes) with work left: run again ·
6 another sync or backfill is under way (--wait waits for it).
"""

from __future__ import annotations

import atexit
import csv
import dataclasses
import gc
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click
import duckdb
import psycopg

from . import lake, ledger
from .alerts import message, notify, stale
from .config import ConfigError, Settings, mask
from .database import DatabaseError, connect, resolve_database_url
from .dates import days_between, today, whole_months, yesterday
from .exports import EXPORTS, Export, default_exports, parse_only
from .pipeline import (
    EXIT_BUDGET,
    EXIT_BUSY,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    FileOutcome,
    RunOptions,
    RunReport,
    Status,
    run,
)
from .runs import RunBusy, RunLog, freshness, last_runs, to_json
from .schema import (
    LegacySchemaError,
    RoleMissing,
    SchemaNotReady,
    applied_versions,
    migrate,
    require_schema,
)
from .source import open_source
from .summaries import EXPORT as SUMMARISED_EXPORT
from .summaries import check, refresh_changed, refresh_range

if TYPE_CHECKING:
    from click._termui_impl import ProgressBar  # what click.progressbar returns

log = logging.getLogger("tchap_stats")
# When the process started, near enough (its imports took a few tenths of a second): the
# Scheduler's 15 minutes count from the container's start, --max-minutes from this.
PROCESS_START = time.monotonic()


class MaskingFormatter(logging.Formatter):
    """Masks the whole formatted record, tracebacks included (`-v` logs them)."""

    def __init__(self, secrets: list[str]):
        super().__init__("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
        self.secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        return mask(super().format(record), self.secrets)


def _setup_logging(verbose: bool, settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(MaskingFormatter(settings.secrets()))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    logging.getLogger("tchap_stats").setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    # psycopg warns when it cannot roll back on a connection the server dropped; the error
    # that dropped it is reported already (-v shows both).
    logging.getLogger("psycopg").setLevel(logging.INFO if verbose else logging.ERROR)


class Context:
    def __init__(self, source: str | None):
        self.source_option = source
        self.settings = Settings.from_env(source)

    def fail(self, message: str, code: int = EXIT_FAILED) -> None:
        click.echo(f"error: {mask(message, self.settings.secrets())}", err=True)
        sys.exit(code)


def _iso_date(_ctx, _param, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not a date like 2024-11-14") from exc


def _only(_ctx, _param, value: str | None):
    if value is None:
        return None
    try:
        return parse_only(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


class _Cli(click.Group):
    """Errors any database command can meet end in one masked line and exit 1."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except (psycopg.Error, SchemaNotReady) as exc:
            secrets = ctx.obj.settings.secrets() if isinstance(ctx.obj, Context) else ()
            log.debug("command failed", exc_info=True)
            click.echo(f"error: {mask(str(exc).strip(), secrets)}", err=True)
            ctx.exit(EXIT_FAILED)


@click.group(cls=_Cli,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--source", envvar="TCHAP_STATS_SOURCE", metavar="DIR_OR_S3_URL",
              help="Where the export files are: a local directory or s3://bucket/prefix. "
                   "Overrides S3_BUCKET_NAME. [env TCHAP_STATS_SOURCE]")
@click.option("-v", "--verbose", is_flag=True, help="Also log DuckDB and database steps.")
@click.pass_context
def cli(ctx: click.Context, source: str | None, verbose: bool) -> None:
    """Load Tchap's daily usage exports from S3 into PostgreSQL, through DuckDB.

    \b
    Example (production settings come from the environment):
      DATABASE_URL=postgresql://user:pw@host/db S3_BUCKET_NAME=exports \\
      S3_ACCESS_KEY_ID=... S3_SECRET_ACCESS_KEY=... tchap-stats sync

    Without DATABASE_URL, an embedded PostgreSQL under ./.tchap-stats is used.
    Exit codes: 0 ok, 1 failure, 2 bad usage, 3 expected input files missing,
    4 check found differences while days wait for a summary refresh (see check --help),
    5 stopped at the time budget (--max-minutes) with work left (run it again),
    6 another sync or backfill is under way (--wait waits for it).
    """
    try:
        ctx.obj = Context(source)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    _setup_logging(verbose, ctx.obj.settings)


def _database_url(obj: Context) -> str:
    try:
        return resolve_database_url(obj.settings.database_url)
    except DatabaseError as exc:
        obj.fail(str(exc))
        raise  # unreachable


@cli.command("migrate")
@click.pass_obj
def migrate_command(obj: Context) -> None:
    """Create or upgrade the database schema (idempotent; run it on every deploy).

    On a database that still holds the old system's tables, it changes nothing, says where
    their takeover stands, and exits 0, so that a deploy goes on: `tchap-stats
    migrate-legacy` takes them over.

    TCHAP_STATS_READ_ROLES (Metabase's role, say) are granted what the dashboards read.

    \b
    Example:
      tchap-stats migrate
    """
    url = _database_url(obj)
    try:
        with connect(url, autocommit=True) as conn:
            applied = migrate(conn, obj.settings.timezone, obj.settings.read_roles)
    except RoleMissing as exc:
        obj.fail(str(exc))
        raise  # unreachable
    except LegacySchemaError as exc:
        # Exit 0: nothing is wrong with this deploy (Scalingo fails a deploy whose
        # postdeploy fails, and the takeover runs from a one-off container of that deploy).
        click.echo(f"schema left as it is: {exc}")
        return
    click.echo(f"schema up to date ({', '.join(applied)} applied now)" if applied
               else "schema already up to date")


@cli.command("migrate-legacy")
@click.option("--dry-run", is_flag=True,
              help="Print the plan (rows per month and per table, what the switch renames) "
                   "and change nothing; with --finish, what it would drop.")
@click.option("--max-minutes", type=click.FloatRange(min=0), metavar="N",
              help="Stop between units when the next would not fit in N minutes (exit 5).")
@click.option("--finish", is_flag=True,
              help="After the switch: drop the old relations kept in schema legacy_old.")
@click.pass_obj
def migrate_legacy_command(obj: Context, dry_run: bool, max_minutes: float | None,
                           finish: bool) -> None:
    """Take over a database of the old system: its rows into the new layout, then the
    dashboards' names switched to the new views in one transaction.

    The new layout is built in schema legacy_new while the old names keep answering with
    the old data. Rows move a month at a time (and each old export table whole), converted
    by the exports' rules, each month verified by a count and a checksum on both sides
    and its summaries refreshed. Interrupted anywhere, it carries on when run again. The
    old relations are kept in schema legacy_old after the switch, until --finish.

    \b
    Exit codes:
      0  taken over (or nothing to do)
      1  failure (nothing of the unit at fault recorded; run again once fixed)
      5  stopped at the time budget (--max-minutes) with work left: run again

    \b
    Example:
      tchap-stats migrate-legacy --dry-run
      tchap-stats migrate-legacy --max-minutes 600
      tchap-stats migrate-legacy --finish
    """
    from . import legacy

    url = _database_url(obj)
    settings = obj.settings
    with connect(url, autocommit=True) as conn:
        try:
            if finish:
                legacy.finish(conn, click.echo, dry_run)
                return
            if dry_run:
                legacy.dry_run(conn, settings.timezone, click.echo)
                return
            outcome = legacy.take_over(conn, url, settings.timezone, settings.lock_timeout,
                                       max_minutes, click.echo, settings.read_roles)
        except legacy.TakeoverError as exc:
            obj.fail(str(exc))
            raise  # unreachable
    if outcome.moved:
        click.echo(outcome.totals())
    sys.exit(outcome.exit_code)


def _report(report: RunReport) -> None:
    click.echo(report.totals())
    if report.refresh:
        click.echo(report.refresh.summary())
    if report.refresh_error:
        click.echo(f"refresh FAILED: {report.refresh_error}", err=True)
    if report.missing:
        click.echo("missing files:")
        for outcome in report.missing:  # with what was found instead, if anything
            click.echo(f"  {outcome.name}" + (f" ({outcome.error})" if outcome.error else ""))
    click.echo("by export:")
    for line in report.by_export():
        click.echo(f"  {line}")


class _Progress:
    """Each file's line as it ends; for several files, a progress bar on stderr too."""

    def __init__(self, bar: bool):
        self.wanted = bar
        self.bar: ProgressBar[int] | None = None

    def start(self, files: int) -> None:
        if self.wanted and files > 1:
            self.bar = click.progressbar(length=files, label="loading", file=sys.stderr,
                                         show_pos=True)

    def outcome(self, outcome: FileOutcome) -> None:
        failed = outcome.status in (Status.FAILED, Status.NOT_RUN) or outcome.empty
        click.echo(outcome.summary(), err=failed)
        if self.bar:
            self.bar.update(1)

    def finish(self) -> None:
        if self.bar:
            self.bar.render_finish()


@dataclass(frozen=True)
class Load:
    """What sync or backfill asked for."""

    command: str
    days: list[date]
    only: list[Export] | None
    options: RunOptions
    progress: bool = False
    wait: float | None = None  # --wait: seconds (negative: no limit); None: do not wait


def _load(obj: Context, load: Load) -> None:
    settings = obj.settings
    try:
        exports = load.only or default_exports(settings.enabled_exports)
    except ValueError as exc:
        obj.fail(f"TCHAP_STATS_EXPORTS: {exc}", EXIT_USAGE)
    try:
        source = open_source(settings.source, settings.s3)
    except ConfigError as exc:
        obj.fail(str(exc), EXIT_USAGE)
    url = _database_url(obj)
    shown = _Progress(load.progress)
    options = dataclasses.replace(load.options, on_start=shown.start, on_outcome=shown.outcome)
    run_log = _run_log(obj, url, load.command, exclusive=True, wait=load.wait)
    try:
        report = run(settings, url, source, exports, load.days, options)
    except Exception as exc:  # the run could not start
        log.debug("run failed", exc_info=True)
        shown.finish()
        _end_run(obj, run_log, load.command, EXIT_FAILED, error=str(exc))
        obj.fail(str(exc))
        raise  # unreachable
    shown.finish()
    _report(report)
    _end_run(obj, run_log, load.command, report.exit_code, report=report,
             exports=[e.name for e in exports])
    sys.exit(report.exit_code)


def _arguments(obj: Context) -> str:
    return mask(" ".join(sys.argv[1:]), obj.settings.secrets())


def _run_log(obj: Context, url: str, command: str, *, exclusive: bool,
             wait: float | None = None) -> RunLog:
    """The run's row in tchap_stats.runs (and, `exclusive`, the run lock): exit 6 at once
    when another run holds it."""
    try:
        return RunLog(url, command, _arguments(obj), exclusive=exclusive, wait=wait)
    except RunBusy as exc:
        obj.fail(str(exc), EXIT_BUSY)
        raise  # unreachable


def _end_run(obj: Context, run_log: RunLog, command: str, exit_code: int, *,
             report: RunReport | None = None, error: str | None = None,
             exports: list[str] | None = None) -> None:
    """Record the run's end, and send the failure notice if one is due. Neither may turn a
    run's outcome into another: their own failures are only logged."""
    secrets = obj.settings.secrets()
    stale_lines: list[str] = []
    try:
        run_log.finish(exit_code, report, mask(error, secrets) if error else None)
        if exports and obj.settings.alert_webhook:
            stale_lines = stale(freshness(run_log.conn), exports, obj.settings.alert_stale_days)
    except psycopg.Error as exc:
        log.warning("could not record the run's end: %s", mask(str(exc), secrets))
    finally:
        run_log.close()
    if not obj.settings.alert_webhook:
        return
    if report is not None:
        error = error or report.error
    notify(obj.settings, message(command, exit_code, error, stale_lines))


_only_option = click.option(
    "--only", callback=_only, metavar="EXPORTS",
    help="Comma-separated export names; `default` stands for the exports enabled by "
         "default (default: TCHAP_STATS_EXPORTS, else those). See `tchap-stats exports`.")
_force_option = click.option("--force", is_flag=True,
                             help="Reload files already loaded with the same ETag.")
_no_refresh_option = click.option(
    "--no-refresh", is_flag=True,
    help="Load only; the changed days wait in tchap_stats.changed_days for the next "
         "refresh (`tchap-stats refresh`, or the next sync).")
_replace_option = click.option(
    "--replace", is_flag=True,
    help="Each day in a file ends up holding exactly that file's rows (default: merge).")


_max_minutes_option = click.option(
    "--max-minutes", type=click.FloatRange(min=0, min_open=True), metavar="N",
    help="Time budget from the process's start: no file starts that the time left would "
         "not hold (judged by the longest so far; a tenth kept for the refresh). What is "
         "left is listed, the run exits 5, and the next run continues it.")
_wait_option = click.option(
    "--wait", type=float, is_flag=False, flag_value=-1.0, default=None, metavar="[SECONDS]",
    help="If another sync or backfill is under way, wait for it to end (at most SECONDS) "
         "instead of exiting 6 at once.")


def _within(options: RunOptions, max_minutes: float | None) -> RunOptions:
    """The options with the run's time budget, counted from the process's start."""
    if max_minutes is None:
        return options
    return dataclasses.replace(options, deadline=PROCESS_START + 60 * max_minutes,
                               budget=60 * max_minutes)


@cli.command()
@click.option("--date", "day", callback=_iso_date, metavar="YYYY-MM-DD",
              help="Load this extraction day's files (again if they changed).")
@click.option("--lookback", type=click.IntRange(1, 366), metavar="DAYS",
              help="Without --date: the extraction days looked back over, to yesterday "
                   "(default: TCHAP_STATS_LOOKBACK_DAYS, 7).")
@_only_option
@_force_option
@_replace_option
@_no_refresh_option
@_max_minutes_option
@_wait_option
@click.pass_obj
def sync(obj: Context, day: date | None, lookback: int | None, only, force: bool,
         replace: bool, no_refresh: bool, max_minutes: float | None,
         wait: float | None) -> None:
    """Load what has not been loaded yet (the nightly job).

    Without --date, every extraction day of the last DAYS days (to yesterday) whose file
    is not loaded yet, oldest first: missed nights heal at the next run. With --date, that
    day's files, skipping those already loaded with the same ETag.

    \b
    Example:
      tchap-stats sync --max-minutes 12       # the cron's: catch up, within 12 minutes
      tchap-stats sync --date 2024-11-14 --only user_daily_visits
    """
    if day is not None and lookback is not None:
        raise click.BadParameter("give --date or --lookback, not both", param_hint="--lookback")
    if day is None:
        last = yesterday(obj.settings.timezone)
        days = days_between(last - timedelta(days=(lookback or obj.settings.lookback_days) - 1),
                            last)
    else:
        days = [day]
    options = _within(RunOptions(replace=replace, force=force, refresh_summaries=not no_refresh,
                                 catching_up=day is None and not force), max_minutes)
    _load(obj, Load("sync", days, only, options, wait=wait))


@cli.command()
@click.option("--from", "first", required=True, callback=_iso_date, metavar="YYYY-MM-DD")
@click.option("--to", "last", required=True, callback=_iso_date, metavar="YYYY-MM-DD")
@_only_option
@_force_option
@_replace_option
@click.option("--jobs", type=click.IntRange(1, 16), default=1, show_default=True,
              help="Files loaded at once.")
@_no_refresh_option
@_max_minutes_option
@_wait_option
@click.pass_obj
def backfill(obj: Context, first: date, last: date, only, force: bool, replace: bool,
             jobs: int, no_refresh: bool, max_minutes: float | None,
             wait: float | None) -> None:
    """Load every file of a range of extraction days, skipping those already loaded.

    Missing days are listed at the end (exit code 3); the others are loaded anyway.

    \b
    Example:
      tchap-stats backfill --from 2024-01-01 --to 2024-03-31 --jobs 2
    """
    if last < first:
        raise click.BadParameter("--to is before --from", param_hint="--to")
    options = _within(RunOptions(replace=replace, force=force, jobs=jobs,
                                 refresh_summaries=not no_refresh), max_minutes)
    _load(obj, Load("backfill", days_between(first, last), only, options, progress=True,
                    wait=wait))


@cli.command("generate")
@click.option("--from", "first", required=True, callback=_iso_date, metavar="YYYY-MM-DD")
@click.option("--to", "last", required=True, callback=_iso_date, metavar="YYYY-MM-DD")
@click.option("--rows-per-day", type=click.IntRange(1), default=10_000, show_default=True)
@click.option("--out", required=True, metavar="DIR_OR_S3_URL")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--malformed", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of malformed lines.")
@click.option("--only", callback=_only, metavar="EXPORTS",
              help="Comma-separated export names (default: every export).")
@click.pass_obj
def generate_command(obj: Context, first: date, last: date, rows_per_day: int, out: str,
                     seed: int, malformed: float, only) -> None:
    """Write realistic synthetic files of every export (deterministic for a seed).

    --rows-per-day sizes user_daily_visits; the other exports follow from the same
    population of users (pushers and account data about as many rows, the hourly counts
    a few thousand, SSO one row per instance and domain).

    \b
    Example:
      tchap-stats generate --from 2024-11-01 --to 2024-11-30 --rows-per-day 50000 \\
          --out ./exports --malformed 0.001
    """
    if last < first:
        raise click.BadParameter("--to is before --from", param_hint="--to")
    from .synthetic import generate as generate_module

    options = generate_module.Options(rows_per_day=rows_per_day, seed=seed, malformed=malformed)
    names = [e.name for e in only] if only else None
    for path, lines in generate_module.generate(first, last, out, options, obj.settings.s3,
                                                exports=names):
        click.echo(f"{path}: {lines:,} lines")


def _range(obj: Context, first: date | None, last: date | None, default_days: int):
    last = last or today(obj.settings.timezone)
    first = first or last - timedelta(days=default_days - 1)
    if last < first:
        raise click.BadParameter("--to is before --from", param_hint="--to")
    return first, last


@cli.command()
@click.option("--from", "first", callback=_iso_date, metavar="YYYY-MM-DD")
@click.option("--to", "last", callback=_iso_date, metavar="YYYY-MM-DD")
@click.pass_obj
def refresh(obj: Context, first: date | None, last: date | None) -> None:
    """Recompute summaries: the days loads changed, or (with --from/--to) whole months.

    Loads already refresh what they changed; a range is the recovery tool.

    \b
    Example:
      tchap-stats refresh                                   # what loads changed
      tchap-stats refresh --from 2024-01-01 --to 2024-03-31 # those months, fully
    """
    url = _database_url(obj)
    if first is not None or last is not None:
        first, last = _range(obj, first, last, 1)
    run_log = _run_log(obj, url, "refresh", exclusive=False)  # checks the schema first
    try:
        with connect(url, autocommit=True) as conn:
            if first is None or last is None:
                report = refresh_changed(conn, url)
            else:
                with _lake_rows(obj, conn, url, first, last):
                    report = refresh_range(conn, first, last)
    except psycopg.Error as exc:
        _end_run(obj, run_log, "refresh", EXIT_FAILED, error=str(exc))
        raise
    _end_run(obj, run_log, "refresh", EXIT_OK)
    click.echo(report.summary())


@contextmanager
def _lake_rows(obj: Context, conn: psycopg.Connection, url: str, first: date, last: date
               ) -> Iterator[None]:
    """The archived months of the range readable by the summaries (from the lake)."""
    try:
        with lake.archived_rows_readable(conn, obj.settings, url, first, last) as months:
            if months:
                click.echo(f"{len(months)} archived month(s) read from the lake: "
                           + ", ".join(f"{m:%Y-%m}" for m in months), err=True)
            yield
    except ConfigError as exc:
        obj.fail(str(exc), EXIT_USAGE)
    except duckdb.Error as exc:
        obj.fail(f"reading the lake: {exc}")


EXIT_REFRESH_PENDING = 4  # check: rows differ while days of its months wait for a refresh


@cli.command("check")
@click.option("--from", "first", callback=_iso_date, metavar="YYYY-MM-DD",
              help="Default: 30 days before --to.")
@click.option("--to", "last", callback=_iso_date, metavar="YYYY-MM-DD",
              help="Default: today (Europe/Paris).")
@click.pass_obj
def check_command(obj: Context, first: date | None, last: date | None) -> None:
    """Recompute the summaries of a range from the raw table and compare, row by row.

    The days loads changed keep their old summaries until a refresh (`tchap-stats
    refresh`, or the next sync) rewrites them: check names those of its months, whose
    differences are expected, not corruption.

    \b
    Exit codes:
      0  the summaries match
      1  rows differ and no day of the months waits for a refresh: the summaries are
         wrong (`tchap-stats refresh --from ... --to ...` rewrites them)
      4  rows differ while days of the months wait for a refresh: run
         `tchap-stats refresh`, then check again; what still differs then is wrong

    \b
    Example:
      tchap-stats check --from 2024-11-01 --to 2024-11-30
    """
    first, last = _range(obj, first, last, 30)
    url = _database_url(obj)
    with connect(url, autocommit=True) as conn:
        require_schema(conn)
        with _lake_rows(obj, conn, url, first, last):
            count, sample = check(conn, first, last)
        months = whole_months(first, last)
        # Read after the comparison: a load that committed meanwhile has queued its days.
        waiting = ledger.waiting_days(conn, SUMMARISED_EXPORT, months[0], months[-1])
    if waiting:
        click.echo(f"{len(waiting)} day(s) of the months of {first}..{last} wait for a "
                   f"summary refresh ({_span(waiting)}): their rows, and their months', may "
                   "differ from a recompute until `tchap-stats refresh` (or the next sync) "
                   "runs; differences there are expected.")
    if not count:
        click.echo(f"summaries match a full recompute for the months of {first}..{last}")
        return
    click.echo(f"{count:,} row(s) differ from a full recompute for the months of "
               f"{first}..{last}; first ones:")
    for difference in sample:
        values = " | ".join(str(v) for v in difference.row)
        click.echo(f"  {difference.summary} {difference.side}: {values}")
    if not waiting:
        sys.exit(EXIT_FAILED)
    click.echo("Run `tchap-stats refresh`, then `tchap-stats check` again: rows that "
               "still differ then are wrong.")
    sys.exit(EXIT_REFRESH_PENDING)


@cli.command()
@click.option("--limit", type=click.IntRange(1, 1000), default=10, show_default=True,
              help="How many of the last runs and loads to list.")
@click.option("--json", "as_json", is_flag=True, help="The same, as JSON, for machines.")
@click.pass_obj
def status(obj: Context, limit: int, as_json: bool) -> None:
    """Freshness per export, the last runs and loads, days waiting for a refresh.

    A run or load shows `running` while its process lives; once that process is gone
    (killed, container stopped) the run shows `killed` and the load `interrupted`.

    \b
    Example:
      tchap-stats status --limit 5
      tchap-stats status --json | jq '.freshness[] | select(.days_behind > 1)'
    """
    url = _database_url(obj)
    with connect(url, autocommit=True) as conn:
        require_schema(conn)
        if as_json:
            click.echo(to_json(_status_document(conn, limit)))
            return
        click.echo(f"schema version {max(applied_versions(conn))}")
        click.echo("freshness (last day loaded · days missing of the last 7):")
        for row in freshness(conn):
            click.echo(f"  {row.export}: {row.last_day_loaded} ({row.days_behind} day(s) ago)"
                       f" · {row.days_missing_last_7} missing")
        runs = last_runs(conn, limit)
        click.echo(f"last {len(runs)} run(s):")
        for each in runs:
            click.echo(_run_line(each))
        loads = ledger.last_loads(conn, limit)
        click.echo(f"last {len(loads)} load(s):")
        for load in loads:
            click.echo(_load_line(load))
        # Only user_daily_visits has summaries yet; the other exports' changed days wait
        # in the ledger for summaries of their own.
        waiting = ledger.waiting_days(conn, SUMMARISED_EXPORT)
        click.echo(f"days waiting for a summary refresh: {len(waiting)}"
                   + (f" ({_span(waiting)})" if waiting else ""))
        for tier in lake.tiers(conn):
            for line in lake.tier_lines(tier):
                click.echo(line)


def _status_document(conn: psycopg.Connection, limit: int) -> dict[str, object]:
    waiting = ledger.waiting_days(conn, SUMMARISED_EXPORT)
    return {
        "schema_version": max(applied_versions(conn)),
        "freshness": [dataclasses.asdict(row) for row in freshness(conn)],
        "runs": last_runs(conn, limit),
        "loads": [dataclasses.asdict(load) for load in ledger.last_loads(conn, limit)],
        "days_waiting_for_refresh": waiting,
        "tiers": lake.tiers(conn),
    }


def _run_line(run: dict[str, object]) -> str:
    figures = (f"{run['files_loaded'] or 0} loaded, {run['files_failed'] or 0} failed, "
               f"{run['files_missing'] or 0} missing, rows {run['rows_loaded'] or 0:,}")
    left = run["files_left"] or []
    assert isinstance(left, list)
    line = (f"  #{run['run_id']} tchap-stats {run['arguments'] or run['command']}: "
            f"{run['outcome']} (exit {run['exit_code']}) · {figures} · {run['seconds']} s · "
            f"started {run['started_at']:%Y-%m-%d %H:%M:%S %Z}")
    if left:
        line += f"\n    left for the next run: {', '.join(left)}"
    if run["error"]:
        line += f"\n    {run['error']}"
    return line


def _span(days: list[date]) -> str:
    return f"{days[0]}..{days[-1]}"


def _load_line(load: ledger.LoadLine) -> str:
    """A load of `status`: its file, state, figures and time, then any error."""
    figures = (f"read {load.rows_read:,} · loaded {load.rows_loaded:,} · duplicates "
               f"{load.rows_duplicate:,} · rejected {load.rows_rejected:,} · days changed "
               f"{load.days_changed}")
    when = (f"since {load.started_at}, PostgreSQL backend pid {load.backend_pid}"
            if load.status == "running" else load.finished_at or "")
    line = f"  {load.file_key}: {load.status} ({figures}) {when}".rstrip()
    return line + (f"\n    {load.error}" if load.error else "")


def _month(_ctx, _param, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(f"{value}-01")
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not a month like 2024-11") from exc


def _lake_path(obj: Context) -> str:
    try:
        return obj.settings.lake_data_path()
    except ConfigError as exc:
        obj.fail(str(exc), EXIT_USAGE)
        raise  # unreachable


@cli.command("archive")
@click.option("--before", callback=_month, metavar="YYYY-MM",
              help="Archive the months before this one (default: those older than "
                   "TCHAP_STATS_KEEP_MONTHS); never a month still open to late rows.")
@click.option("--dry-run", is_flag=True,
              help="List the months, their rows and their size in PostgreSQL; change nothing.")
@_max_minutes_option
@click.pass_obj
def archive_command(obj: Context, before: date | None, dry_run: bool,
                    max_minutes: float | None) -> None:
    """Move closed months of user_daily_visits from PostgreSQL to the lake.

    Oldest first, a month at a time: written to the lake (Parquet under
    TCHAP_STATS_LAKE_PATH, its catalog in schema tchap_stats_lake), verified (rows and a
    checksum), recorded in tchap_stats.archived_months, and its partition dropped in the
    same transaction. Killed anywhere, a month is still in exactly one place: run it again.
    Only months closed to late rows (TCHAP_STATS_ACCEPT_DAYS_BEFORE plus a month) move.

    \b
    Exit codes:
      0  the months asked for are in the lake (or there were none)
      1  a month failed (days of it wait for a refresh, a verification): it stays in
         PostgreSQL
      5  stopped at the time budget (--max-minutes) with months left: run again
      6  another sync, backfill, archive or restore is under way

    \b
    Example:
      tchap-stats archive --dry-run
      tchap-stats archive --before 2025-01 --max-minutes 50
    """
    _lake_path(obj)
    url = _database_url(obj)
    settings = obj.settings
    if dry_run:
        with connect(url, autocommit=True) as conn:
            require_schema(conn)
            plan, upto = lake.plan_months(conn, settings, today(settings.timezone), before)
            lake.dry_run(conn, plan, upto, click.echo)
        return
    run_log = _run_log(obj, url, "archive", exclusive=True)
    try:
        plan, upto = lake.plan_months(run_log.conn, settings, today(settings.timezone), before)
        if before and upto < before:
            click.echo(f"months from {upto:%Y-%m} may still receive late rows: they stay")
        deadline = PROCESS_START + 60 * max_minutes if max_minutes is not None else None
        with connect(url, autocommit=True) as conn:
            report = lake.archive(conn, settings, url, plan, deadline, click.echo)
    except (duckdb.Error, lake.LakeError, psycopg.Error) as exc:
        _end_run(obj, run_log, "archive", EXIT_FAILED, error=str(exc))
        obj.fail(str(exc))
        raise  # unreachable
    code = EXIT_FAILED if report.failed else EXIT_BUDGET if report.left else EXIT_OK
    rows = sum(a.rows for a in report.archived)
    click.echo(f"{len(report.archived)} month(s) archived · {rows:,} rows"
               + (f" · left for the next run: {', '.join(f'{m:%Y-%m}' for m in report.left)}"
                  if report.left else "")
               + (" · nothing to archive" if not plan else ""))
    _end_run(obj, run_log, "archive", code,
             error="; ".join(report.failed) if report.failed else None)
    sys.exit(code)


@cli.command("restore")
@click.option("--month", required=True, callback=_month, metavar="YYYY-MM")
@click.pass_obj
def restore_command(obj: Context, month: date) -> None:
    """Bring an archived month back from the lake into its PostgreSQL partition.

    Verified like an archive (rows and checksum against the record), then the lake's copy
    is removed: the month is in exactly one place. Loads reject the rows of archived
    months (reason "archived in the lake"): restore a month before reloading it.

    \b
    Example:
      tchap-stats restore --month 2024-03
    """
    _lake_path(obj)
    url = _database_url(obj)
    run_log = _run_log(obj, url, "restore", exclusive=True)
    try:
        with connect(url, autocommit=True) as conn:
            record = lake.restore(conn, obj.settings, url, month, click.echo)
    except (duckdb.Error, lake.LakeError, psycopg.Error) as exc:
        _end_run(obj, run_log, "restore", EXIT_FAILED, error=str(exc))
        obj.fail(str(exc))
        raise  # unreachable
    _end_run(obj, run_log, "restore", EXIT_OK)
    if record is None:
        click.echo(f"{month:%Y-%m} is not archived: nothing to restore")
        return
    click.echo(f"{month:%Y-%m}: restored {record.rows:,} rows into PostgreSQL · "
               f"{record.seconds:.1f} s")


@cli.command("lake-sql")
@click.argument("query")
@click.pass_obj
def lake_sql_command(obj: Context, query: str) -> None:
    """Run a DuckDB query over hot and cold rows together; print CSV with a header.

    View user_daily_visits holds every row, PostgreSQL's partitions and the lake's
    archived months; pg.<schema>.<table> reads any table of the database (read only),
    e.g. pg.tchap_stats.active_daily. Nothing is written anywhere.

    \b
    Example:
      tchap-stats lake-sql "SELECT date_trunc('month', visit_date) AS month, count(*)
                            FROM user_daily_visits GROUP BY ALL ORDER BY 1"
    """
    _lake_path(obj)
    url = _database_url(obj)
    secrets = obj.settings.secrets()
    try:
        with connect(url, autocommit=True) as conn:
            require_schema(conn)
            archived = [a.month for a in lake.archived_months(conn, lake.USER_DAILY_VISITS)]
            exists = lake.catalog_exists(conn)
        header, rows = lake.query(obj.settings, url, archived, query, exists)
    except duckdb.Error as exc:
        obj.fail(str(exc))
        raise  # unreachable
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow([mask(h, secrets) for h in header])
    for row in rows:
        out.writerow(["" if v is None else mask(v, secrets) for v in row])


@cli.command("exports")
@click.pass_obj
def exports_command(obj: Context) -> None:
    """List every export: file, table, key, partitioning, merge rule, whether runs load it.

    `enabled` says whether sync and backfill load it without --only: by default, or as
    TCHAP_STATS_EXPORTS says.

    \b
    Example:
      tchap-stats exports
    """
    try:
        enabled = {e.name for e in default_exports(obj.settings.enabled_exports)}
    except ValueError as exc:
        obj.fail(f"TCHAP_STATS_EXPORTS: {exc}", EXIT_USAGE)
    for export in EXPORTS.values():
        by_default = "yes" if export.enabled_by_default else "no"
        renamed = [f"{c.name} → {c.table_name}" for c in export.columns if c.target]
        click.echo(f"{export.name}: {export.description}")
        click.echo(f"  file      {export.name}_YYYY-MM-DD.csv: {','.join(export.header)}")
        click.echo(f"  table     {export.table} ({', '.join(export.table_columns)})"
                   + (f"; renamed: {', '.join(renamed)}" if renamed else ""))
        click.echo(f"  key       ({', '.join(export.key)})")
        zone = (f" (months and days in {obj.settings.timezone})" if export.partition
                and export.column_type(export.partition.column) == "timestamptz" else "")
        click.echo(f"  partition {export.describe_partition()}{zone}")
        click.echo(f"  merge     {export.merge.describe()}")
        files = ", ".join(f"tchap_stats/sql/load/{f}" for f in export.merge.sql_files)
        click.echo(f"  sql       {files}")
        click.echo(f"  enabled   {'yes' if export.name in enabled else 'no'} "
                   f"(by default: {by_default})")


DEMO_DIR = Path(".tchap-stats/demo-exports")


@cli.command()
@click.option("--days", type=click.IntRange(1, 3650), default=60, show_default=True)
@click.option("--rows-per-day", type=click.IntRange(1), default=5_000, show_default=True)
@click.pass_obj
def demo(obj: Context, days: int, rows_per_day: int) -> None:
    """Synthetic exports → embedded PostgreSQL, printing what was done.

    Generates DAYS days of files (ending yesterday) under .tchap-stats/demo-exports,
    loads them into the embedded PostgreSQL (never DATABASE_URL), and shows sample rows.
    Run it twice: the second run skips every file already loaded.

    \b
    Example:
      tchap-stats demo --days 60
    """
    from .synthetic.demo import run_demo

    sys.exit(run_demo(obj.settings, DEMO_DIR, days, rows_per_day))


def main() -> None:
    # The libraries loaded (botocore, psycopg, DuckDB, sqlglot) are hundreds of thousands
    # of long-lived objects that every full garbage collection walks, the last one at exit
    # too (0.3 to 0.4 s of a nightly sync: docs/design.md, "The nightly path's start").
    # Frozen, collections skip them: those already loaded now, everything at exit (after
    # the other exit handlers have run).
    gc.freeze()
    atexit.register(gc.freeze)
    cli(prog_name="tchap-stats")


if __name__ == "__main__":
    main()

