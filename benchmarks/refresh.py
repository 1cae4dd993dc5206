"""The nightly run against the size of history: tchap-stats against the legacy path.

A matrix of how tchap-stats' history was built, what its rows look like, and which night
of the month.

For each shape of history (--shape) and each size (--histories, 30, 120 and 365 days by
default, at --rows-per-day rows a day), measures in the same run and on the same embedded
PostgreSQL the nightly work of both systems for the nights of a month (--nights: its last
day, then the 1st, the 2nd and the 15th of the next):
  legacy       DESIGN §8: temp COPY, INSERT … ON CONFLICT into the unpartitioned indexed
               table, classification UPDATEs, REFRESH of the two materialized views, the
               monthly-lite insert (benchmarks/legacy.py; schema `legacy`);
  tchap-stats  `tchap-stats sync --date D --only user_daily_visits` as its own process
               (its peak RSS from /usr/bin/time), reading the file from S3 (a moto server
               on loopback): load + summaries; then, not timed, `tchap-stats check` of the
               month up to the night, whose exit code is recorded (0: summaries exact).
With --late-share, each night's file also holds late rows for the 7 days before it (the
days between nights are filled without), as production files do. With --whole-month,
tchap-stats is measured on every night of the month after `last` (the legacy's night and the
check only on --nights and the month's last day): the median and worst night of the month,
each against the median legacy night of that size.
Shapes (benchmarks/sql/history.sql): `stable`, every device with a fixed user, agent,
instance and domain; `churn`, 7 devices in 10 drawn again every day (a new device id and
agent each day, the same users), so most (user, device) pairs of a day are new to its month.
Builds of tchap-stats' history, each in a database of its own (the legacy history, in a
third, is shared: its night does not depend on how tchap-stats' history was built):
  nightly      a week of days inserted into the raw table and queued as fresh, then
               refresh_changed, repeated (a backfill, a week at a time);
  bulk         every day inserted and queued with no refresh in between (backfill
               --no-refresh, a takeover), then one refresh_changed (which vacuums the
               summaries, as any refresh of more than BULK_DAYS days does), then VACUUM
               ANALYZE of the raw table, and nothing else.
History is built up to the day before the first night (the last day of the month in which
history reaches its size); between two nights, the days in between (the 3rd to the 14th)
are filled in the `nightly` way in every database, the legacy's inserted with its indexes
(with those of the nights it sat out, in one go before its next night).
Each night starts on a quiet server (no autovacuum worker at work, then a CHECKPOINT) and
runs with autovacuum paused (resumed after it), in this order: tchap-stats on each build,
then the legacy. With --cache cold (the default), each system's night also starts with
PostgreSQL restarted and the kernel's page cache dropped: every night reads from disk,
whatever the benchmark touched before it. With --cache own, each system has a server
of its own with the same shared buffers (--shared-buffers, 1GB), never restarted, and
the page cache is dropped before each night: a night finds in memory what its own server
kept of its own work (its earlier nights, checks and fills), as on a dedicated server.
The legacy path runs inside this process; each tchap-stats sync follows a warm-up process
(a sync of a day with no file, which touches no data), so that both start with their
program files in the page cache, and with tchap-stats' bytecode compiled, as a deployed
one has it (this script first runs bin/post_compile; the libraries' bytecode is pip's).
History is generated inside PostgreSQL (benchmarks/sql/history.sql, the same rows for both
systems). Prints each night's -v statements, what the disk did during it (reads, their
average latency, writes, from /proc/diskstats: the other servers and the kernel share the
disk, and a night that reads at ten times the usual latency is the disk's doing) and a
matrix, writes
benchmarks/results/refresh.json and, with matplotlib (the `bench` extra),
benchmarks/results/refresh.png.

    .venv/bin/python benchmarks/refresh.py                      # 100,000 rows a day
    .venv/bin/python benchmarks/refresh.py --rows-per-day 5000 --histories 30,120  # fast
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import legacy  # noqa: E402
import moto_s3  # noqa: E402

from tchap_stats.classify import classify_sql  # noqa: E402
from tchap_stats.database import start_embedded  # noqa: E402
from tchap_stats.dates import days_between, month_bounds  # noqa: E402
from tchap_stats.exports import USER_DAILY_VISITS  # noqa: E402
from tchap_stats.load import ensure_partitions  # noqa: E402
from tchap_stats.schema import migrate  # noqa: E402
from tchap_stats.source import s3_client  # noqa: E402
from tchap_stats.summaries import refresh_changed  # noqa: E402

HISTORY_START = date(2024, 12, 31)
OVERLAP = 0.02  # share of a file's rows repeating the previous day's (identical) rows
LATE_DAYS = 7  # a night's file holds late rows for as many days before it (--late-share)
RESULTS = ROOT / "benchmarks" / "results"
SHAPES = {"stable": 0, "churn": 7}  # tenths of the devices drawn again every day
BUILDS = ("nightly", "bulk")
BUCKET = "bench"
TIME = "/usr/bin/time"  # GNU time: the peak RSS of the sync process itself
TARGETS = {"median": 50.0, "worst": 20.0, "growth": 1.3}


class Population:
    """Parameters of bench.visits: devices, a stride that visits them without repeat, and
    the tenths of them drawn again every day (the shape)."""

    def __init__(self, rows_per_day: int, churn: int = 0):
        self.rows = rows_per_day
        self.devices = rows_per_day * 8 // 5
        self.churn = churn
        self.stride = 1_000_003
        while math.gcd(self.stride, self.devices) != 1:
            self.stride += 2

    def visits(self, day: date | sql.Composable, first_row: int = 0,
               rows: int | None = None) -> sql.Composed:
        return sql.SQL("bench.visits({}, {}, {}, {}, {}, {})").format(
            day if isinstance(day, sql.Composable) else sql.Literal(day),
            sql.Literal(first_row), sql.Literal(rows or self.rows),
            sql.Literal(self.devices), sql.Literal(self.stride), sql.Literal(self.churn))


def tune(url: str, max_wal_size: str = "8GB") -> None:
    """Checkpoints spaced out for bulk history building (the same for both systems)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER SYSTEM SET max_wal_size = {}").format(
            sql.Literal(max_wal_size)))
        conn.execute("ALTER SYSTEM SET checkpoint_timeout = '30min'")
        conn.execute("ALTER SYSTEM SET maintenance_work_mem = '512MB'")
        conn.execute("SELECT pg_reload_conf()")


def database_url(url: str, name: str) -> str:
    """`url` (the embedded server's) naming database `name` instead."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def create_database(admin_url: str, name: str, *, legacy_schema: bool) -> str:
    """A fresh database of the cluster with the history generator, and tchap-stats' schema
    (migrate) or the legacy one. Returns its URL."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = database_url(admin_url, name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute((ROOT / "benchmarks" / "sql" / "history.sql").read_text())
        if legacy_schema:
            legacy.create(conn, indexes=False)
        else:
            migrate(conn)
    return url


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def generated_rows(population: Population, first: date, last: date) -> sql.Composed:
    """The rows of the days first..last, classified and dated as tchap-stats' raw table
    holds them (literals: the classification has LIKE '%…')."""
    return sql.SQL(
        "SELECT user_id, device_id, visit_ts, user_agent, instance, domain, {}, {}, "
        "(visit_ts AT TIME ZONE 'Europe/Paris')::date "
        "FROM generate_series({}::date, {}::date, '1 day') AS days(day) "
        "CROSS JOIN LATERAL {}").format(
            sql.SQL(classify_sql("platform", "user_agent")),
            sql.SQL(classify_sql("device_type", "user_agent")),
            sql.Literal(first), sql.Literal(last),
            population.visits(sql.SQL("days.day::date")))


def insert_days(conn: psycopg.Connection, population: Population, days: list[date]) -> None:
    """One load's worth: the rows of `days` into the raw table, the days queued as fresh
    (never summarised), in one transaction."""
    with conn.transaction():
        conn.execute(sql.SQL(
            "INSERT INTO public.user_daily_visits (user_id, device_id, visit_ts, user_agent, "
            "instance, domain, platform, device_type, visit_date) {}").format(
                generated_rows(population, days[0], days[-1])))
        conn.execute("INSERT INTO tchap_stats.changed_days "
                     "(export, day, last_load_id, fresh, rewritten) "
                     "SELECT 'user_daily_visits', day, 0, true, false "
                     "FROM unnest(%s::date[]) AS day", (days,))


def build_nightly(conn: psycopg.Connection, url: str, population: Population,
                  days: list[date]) -> float:
    """Append `days` to tchap-stats' raw table and its summaries (its own incremental
    refresh, a week of new days at a time, as a backfill does), then VACUUM ANALYZE the raw
    table. Returns the seconds."""
    ensure_partitions(conn, USER_DAILY_VISITS, days)
    started = time.perf_counter()
    # Weeks of new days through the nightly path (a full recompute of the same months, a
    # month at a time, took 200 to 250 s a month: the rolling window's sort dominates).
    for week in range(0, len(days), 7):
        insert_days(conn, population, days[week:week + 7])
        report = refresh_changed(conn, url)
        print(f"    {report.summary()} · {time.perf_counter() - started:.0f} s so far",
              flush=True)
    conn.execute("VACUUM ANALYZE public.user_daily_visits")
    return time.perf_counter() - started


def build_bulk(conn: psycopg.Connection, url: str, population: Population,
               days: list[date]) -> float:
    """Append `days` as a takeover or a long `backfill --no-refresh` does: every day loaded
    (a week a transaction) and queued as fresh, no refresh in between; then one
    refresh_changed over them all, then VACUUM ANALYZE of the raw table, nothing else.
    Returns the seconds."""
    ensure_partitions(conn, USER_DAILY_VISITS, days)
    started = time.perf_counter()
    for week in range(0, len(days), 7):
        insert_days(conn, population, days[week:week + 7])
    loaded = time.perf_counter() - started
    report = refresh_changed(conn, url)
    print(f"    {len(days)} day(s) loaded in {loaded:.0f} s; {report.summary()}", flush=True)
    conn.execute("VACUUM ANALYZE public.user_daily_visits")
    return time.perf_counter() - started


BUILD = {"nightly": build_nightly, "bulk": build_bulk}


def build_legacy(conn: psycopg.Connection, population: Population, days: list[date],
                 first_build: bool) -> float:
    """Append `days` (the same generated rows) to the legacy table: when they are as many as
    it holds or more, with its indexes dropped and built again after, otherwise into the
    indexed table; its views created on the first build (each legacy night refreshes them).
    Returns the seconds."""
    started = time.perf_counter()
    held = (days[0] - HISTORY_START).days  # history is contiguous from HISTORY_START
    rebuild = first_build or len(days) >= held
    with conn.transaction():
        if rebuild:  # a bulk insert, then the indexes built once
            for name in legacy.INDEX_NAMES:
                conn.execute(sql.SQL("DROP INDEX IF EXISTS legacy.{}").format(
                    sql.Identifier(name)))
        conn.execute(sql.SQL(
            "INSERT INTO legacy.user_daily_visits (user_id, device_id, visit_ts, user_agent, "
            "instance, domain, platform, device_type, visit_date) {}").format(
                generated_rows(population, days[0], days[-1])))
        if rebuild:
            conn.execute(legacy.INDEXES)
        if first_build:
            conn.execute(f"SET LOCAL legacy.today = '{days[-1] + timedelta(days=1)}'")
            conn.execute(legacy.VIEWS)
    conn.execute("VACUUM ANALYZE legacy.user_daily_visits")
    return time.perf_counter() - started


def write_nightly_file(conn: psycopg.Connection, population: Population, day: date,
                       path: Path, late_share: float = 0.0) -> int:
    """The day's file as the exports are: the day's rows, a few rows of the day before
    (identical to what that day holds), timestamps with their Paris offset; and, with
    `late_share`, as many late rows (devices the day did not hold) for each of the
    LATE_DAYS days before it, as production files have. A day k days back gets the k-th
    slice of its devices beyond its own rows: the next night's late rows for it are new."""
    overlap = int(population.rows * OVERLAP)
    late = int(population.rows * late_share)
    parts = [population.visits(day), population.visits(day - timedelta(days=1), 0, overlap)]
    parts += [population.visits(day - timedelta(days=k), population.rows + (k - 1) * late, late)
              for k in range(1, LATE_DAYS + 1) if late]
    columns = sql.SQL("SELECT user_id, device_id, visit_ts, user_agent, instance, domain FROM ")
    query = sql.SQL("COPY ({}) TO STDOUT (FORMAT csv, HEADER true)").format(
        sql.SQL(" UNION ALL ").join(columns + part for part in parts))
    conn.execute("SET TimeZone = 'Europe/Paris'")
    with path.open("wb") as f, conn.cursor().copy(query) as copy:
        for chunk in copy:
            f.write(chunk)
    conn.execute("RESET TimeZone")
    return population.rows + overlap + LATE_DAYS * late


def quiet(url: str, timeout: float = 300.0) -> float:
    """Wait until no autovacuum worker runs, then CHECKPOINT: each system's night starts
    on a quiet server, not beside the other's leftovers (autovacuum analyzing the legacy
    views its REFRESH just rewrote). Returns the seconds waited."""
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        while time.perf_counter() - started < timeout and conn.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE backend_type = 'autovacuum worker'").fetchone()[0]:
            time.sleep(0.5)
        conn.execute("CHECKPOINT")
    return time.perf_counter() - started


@contextmanager
def autovacuum_paused(*urls: str) -> Iterator[None]:
    """No autovacuum worker starts during a measured night, either system's: on 2 cores, a
    worker on the history build's tables takes a core from a 5-second night. (In the run
    before this pause, the 30- and 120-day nights took 6.4 and 7.6 s, their statements
    twice as slow as the 365-day night's, which took 5.2 s.) Resumed after the night."""
    def autovacuum(value: str) -> None:
        for url in urls:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(f"ALTER SYSTEM SET autovacuum = {value}")
                conn.execute("SELECT pg_reload_conf()")

    autovacuum("off")
    try:
        yield
    finally:
        autovacuum("on")


def cold_start(pgdata: Path) -> None:
    """PostgreSQL restarted (its shared buffers emptied) and the kernel's page cache dropped
    (root only): the night reads from disk whatever it reads, as a server does whose memory
    went to other work since the last night. Without it, what the cache holds depends on
    which database the benchmark touched last: at 365 days, the three databases (58 GB)
    do not fit in 24 GiB, and the history builds and the legacy night (which reads its
    whole table) leave tchap-stats' month cold, while at 30 days everything stays cached
    (benchmarks/README.md, "Cache")."""
    restart_server(pgdata)
    drop_page_cache()


def drop_page_cache() -> None:
    """The kernel's page cache dropped (root only), the servers left running: with
    --cache own, a night finds in memory only what its own server's shared buffers kept."""
    subprocess.run(["sync"], check=True)
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def set_shared_buffers(pgdata: Path, admin_url: str, size: str) -> None:
    """shared_buffers (which takes a restart) set to `size`."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER SYSTEM SET shared_buffers = {}").format(sql.Literal(size)))
    restart_server(pgdata)


class Servers:
    """Where each system's databases live: one embedded server for all (--cache cold,
    as-left), or with --cache own one per system (`nightly`, `bulk`, `legacy`), each with
    the same shared buffers, as if each ran on a database server of its own."""

    def __init__(self, workdir: Path, systems: list[str], own: bool, shared_buffers: str):
        self.pgdata = {s: workdir / (f"pgdata_{s}" if own else "pgdata") for s in systems}
        # start_embedded starts a data directory's server once, then returns its URL
        self.admin = {s: start_embedded(pgdata) for s, pgdata in self.pgdata.items()}
        # each server once: its data directory and admin URL
        self.servers = {pgdata: self.admin[s] for s, pgdata in self.pgdata.items()}
        for pgdata, admin in self.servers.items():
            # three servers' WAL at 8 GB each would not fit beside a 365-day shape (61 GB)
            tune(admin, "2GB" if own else "8GB")
            if own:
                set_shared_buffers(pgdata, admin, shared_buffers)

    def before_night(self, system: str, cache: str) -> None:
        """The night's memory as --cache says; the other servers quiet (the night's own
        waits for its server in the night's function)."""
        if cache == "cold":
            cold_start(self.pgdata[system])
        for pgdata, admin in self.servers.items():
            if pgdata != self.pgdata[system]:
                quiet(admin)
        if cache == "own":
            drop_page_cache()

    @contextmanager
    def autovacuum_paused(self) -> Iterator[None]:
        with autovacuum_paused(*self.servers.values()):
            yield

    def stop(self) -> None:
        for pgdata in self.servers:
            stop_server(pgdata)


def stop_server(pgdata: Path) -> None:
    """The embedded server stopped now, so that its directory can go (pgserver stops it
    only at exit, and a server whose directory is gone lingers until it notices)."""
    _pg_ctl(pgdata, "stop")


def restart_server(pgdata: Path) -> None:
    _pg_ctl(pgdata, "-l", str(pgdata / "log"), "restart")


def _pg_ctl(pgdata: Path, *args: str) -> None:
    """The embedded server's own pg_ctl, waiting, fast shutdown, as pgserver runs it (as
    user pgserver under root)."""
    from pgserver._commands import pg_ctl

    pg_ctl(["-w", "-m", "fast", *args], pgdata=pgdata,
           user="pgserver" if os.geteuid() == 0 else None, timeout=120)


def can_drop_caches() -> bool:
    return os.access("/proc/sys/vm/drop_caches", os.W_OK)


def legacy_nightly(url: str, path: Path, day: date) -> dict:
    waited = quiet(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"SET legacy.today = '{day + timedelta(days=1)}'")
        started = time.perf_counter()
        disk = disk_counters(path)
        steps: dict = legacy.load_day(conn, path)
        steps.update(legacy.refresh_views(conn))
        steps["total"] = time.perf_counter() - started
        steps["disk"] = disk_activity(disk, disk_counters(path), steps["total"])
        steps["waited_for_quiet"] = waited
        return steps


# /proc/diskstats fields after the device's name: reads completed, merged, sectors read,
# ms reading, writes completed, merged, sectors written, ms writing, in flight, ms doing I/O
DISKSTATS = Path("/proc/diskstats")


def disk_counters(path: Path) -> list[int] | None:
    """The counters of the block device holding `path` (None where there are none: not
    Linux, or a filesystem with no block device of its own)."""
    device = os.stat(path).st_dev
    try:
        lines = DISKSTATS.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if (int(fields[0]), int(fields[1])) == (os.major(device), os.minor(device)):
            return [int(f) for f in fields[3:13]]
    return None


def disk_activity(before: list[int] | None, after: list[int] | None,
                  seconds: float) -> dict | None:
    """What the disk did between two disk_counters, over `seconds`."""
    if before is None or after is None:
        return None
    d = [a - b for a, b in zip(after, before, strict=True)]
    return {"reads": d[0], "read_mib": d[2] * 512 / 2**20,
            "read_ms_each": d[3] / d[0] if d[0] else None,
            "writes": d[4], "write_mib": d[6] * 512 / 2**20,
            "busy_share": min(d[9] / 1000 / seconds, 1.0) if seconds > 0 else None}


def describe_disk(activity: dict | None) -> str:
    if activity is None:
        return "disk: not measured"
    each = activity["read_ms_each"]
    busy = activity["busy_share"]
    return (f"disk: {activity['reads']:,} reads ({activity['read_mib']:.0f} MiB"
            f"{'' if each is None else f', {each:.2f} ms each'}), {activity['writes']:,} "
            f"writes ({activity['write_mib']:.0f} MiB), busy "
            f"{'?' if busy is None else f'{busy:.0%}'} of the night")


def tchap_stats_command(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "tchap-stats"), "--source", f"s3://{BUCKET}",
            *args]


def warm_up(env: dict[str, str], day: date) -> float:
    """A `sync` of a day with no file (exit 3) before the measured one: it reads the same
    program files from disk (Python, DuckDB, psycopg, boto3), and touches no data. The
    legacy path runs inside this warm process; without it, tchap-stats' start pays for
    the page cache the history build just filled (0.6 to 0.8 s, benchmarks/README.md)."""
    command = tchap_stats_command("sync", "--date", day.isoformat(), "--only",
                                  "user_daily_visits", "--no-refresh")
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 3:  # 3: the expected file is missing
        sys.exit(f"warm-up failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return time.perf_counter() - started


def tchap_stats_nightly(url: str, env: dict[str, str], day: date, rss_file: Path
                        ) -> tuple[float, float | None, list[str], dict | None]:
    """The measured sync. Returns its seconds, its peak RSS in MiB (None without GNU time),
    its output (stdout, what the disk did, then the -v lines of the load and of the
    summaries' statements) and what the disk did (disk_activity)."""
    env = {**env, "DATABASE_URL": url}
    warmed = warm_up(env, day + timedelta(days=1))
    waited = quiet(url)
    command = tchap_stats_command("-v", "sync", "--date", day.isoformat(), "--only",
                                  "user_daily_visits")
    if Path(TIME).exists():  # its own child's peak (a fork, not the vfork of this process)
        rss_file.unlink(missing_ok=True)
        command = [TIME, "-f", "%M", "-o", str(rss_file), *command]
    started = time.perf_counter()
    disk = disk_counters(rss_file.parent)
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    activity = disk_activity(disk, disk_counters(rss_file.parent), elapsed)
    if result.returncode != 0:
        sys.exit(f"tchap-stats failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    rss = (int(rss_file.read_text().split()[-1]) / 1024
           if Path(TIME).exists() and rss_file.exists() else None)
    # -v, on stderr: when the file was staged and committed, and the summaries' statements
    # with their seconds
    steps = [line for line in result.stderr.splitlines()
             if ": staged " in line or ": written and committed " in line
             or (" s" in line and "→" in line)]
    return elapsed, rss, [f"(warm-up sync finding no file: {warmed:.1f} s; "
                          f"waited {waited:.1f} s for a quiet server)",
                          *result.stdout.strip().splitlines(), describe_disk(activity),
                          *steps], activity


def tchap_stats_check(url: str, env: dict[str, str], day: date) -> tuple[int, float, str]:
    """`tchap-stats check` of the night's month up to the night (not timed in the night).
    Returns its exit code, seconds and output."""
    first = day.replace(day=1)
    command = [str(Path(sys.executable).parent / "tchap-stats"), "check",
               "--from", first.isoformat(), "--to", day.isoformat()]
    started = time.perf_counter()
    result = subprocess.run(command, env={**env, "DATABASE_URL": url}, capture_output=True,
                            text=True)
    return (result.returncode, time.perf_counter() - started,
            (result.stdout + result.stderr).strip())


def day_rows(url: str, table: str, day: date) -> int:
    with psycopg.connect(url) as conn:
        if table == "legacy":
            return conn.execute("SELECT count(*) FROM legacy.user_daily_visits "
                                "WHERE (visit_ts AT TIME ZONE 'Europe/Paris')::date = %s",
                                (day,)).fetchone()[0]
        return conn.execute("SELECT count(*) FROM public.user_daily_visits "
                            "WHERE visit_date = %s", (day,)).fetchone()[0]


def month_end_on_or_after(day: date) -> date:
    return month_bounds(day)[1] - timedelta(days=1)


def night_dates(first_night: date, kinds: list[str], whole_month: bool = False
                ) -> list[tuple[date, str, bool]]:
    """The nights of one history size: `last` is the month's last day (first_night), a
    number N the Nth of the next month; each with whether it is one of `kinds` (the legacy
    night measured beside it, a check after it). With `whole_month`, every night of the
    next month too, the others tchap-stats' only."""
    nights = {}
    for kind in kinds:
        nights[first_night if kind == "last" else first_night + timedelta(days=int(kind))] = (
            "last" if kind == "last" else f"{int(kind)}", True)
    if whole_month:
        first = first_night + timedelta(days=1)
        for night in days_between(first, month_end_on_or_after(first)):
            nights.setdefault(night, (f"{night.day}", False))
    return sorted((night, kind, paired) for night, (kind, paired) in nights.items())


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarise(rows: list[dict], shapes: list[str], builds: list[str]) -> list[dict]:
    """Per (shape, build): the median and worst ratio at the largest history, and the
    growth of the median tchap-stats night from the smallest history to the largest, over
    the nights measured beside the legacy's; with --whole-month, also the median and worst
    ratio over every night of the month (month_nights: each against the median of the
    legacy nights measured at that size)."""
    out = []
    for shape in shapes:
        for build in builds:
            every = [r for r in rows if r["shape"] == shape and r["build"] == build]
            mine = [r for r in every if r["legacy_seconds"] is not None]
            if not mine:
                continue
            sizes = sorted({r["history_size"] for r in mine})
            at = {s: [r for r in mine if r["history_size"] == s] for s in sizes}
            largest = at[sizes[-1]]
            ratios = [r["ratio"] for r in largest]
            growth = (median([r["tchap_stats_seconds"] for r in largest])
                      / median([r["tchap_stats_seconds"] for r in at[sizes[0]]]))
            month, first_month = (month_summary([r for r in every if r["history_size"] == size])
                                  for size in (sizes[-1], sizes[0]))
            if month and first_month:
                month["month_growth"] = (month["month_median_seconds"]
                                         / first_month["month_median_seconds"])
            out.append({"shape": shape, "build": build, "smallest": sizes[0],
                        "largest": sizes[-1], "median_ratio": median(ratios),
                        "worst_ratio": min(ratios), "growth": growth,
                        "paired_nights": [r["kind"] for r in largest],
                        "checks_ok": all(r["check_exit"] == 0 for r in mine),
                        "slowest_night": max(mine, key=lambda r: r["tchap_stats_seconds"]
                                             )["night"],
                        **month})
    return out


def month_summary(rows: list[dict]) -> dict:
    """Over every night of the largest history's month (--whole-month: more nights than
    those measured beside the legacy's): the legacy's night follows the size of history,
    not the day (its nights of one size differ by a few per cent), so each tchap-stats
    night is set against the median of the legacy nights of that size."""
    month = [r for r in rows if r["kind"] != "last"]
    if all(r["legacy_seconds"] is not None for r in month):  # no --whole-month
        return {}
    legacy_nights = [r["legacy_seconds"] for r in rows if r["legacy_seconds"] is not None]
    ratios = [median(legacy_nights) / r["tchap_stats_seconds"] for r in month]
    return {"month_nights": len(month), "month_median_ratio": median(ratios),
            "month_median_seconds": median([r["tchap_stats_seconds"] for r in month]),
            "month_worst_ratio": min(ratios), "month_legacy_median": median(legacy_nights),
            "month_legacy_spread": [min(legacy_nights), max(legacy_nights)],
            "month_checks_ok": all(r["check_exit"] == 0 for r in rows
                                   if r["check_exit"] is not None)}


def chart(rows: list[dict], path: Path) -> bool:
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    keys = sorted({(r["shape"], r["build"]) for r in rows})
    for shape in sorted({k[0] for k in keys}):
        mine = [r for r in rows if r["shape"] == shape and r["build"] == keys[0][1]]
        sizes = sorted({r["history_size"] for r in mine})
        ax.plot(sizes, [max(r["legacy_seconds"] for r in mine if r["history_size"] == s
                            and r["legacy_seconds"] is not None)
                        for s in sizes], "s--", label=f"legacy, {shape}, worst night")
    for shape, build in keys:
        mine = [r for r in rows if r["shape"] == shape and r["build"] == build]
        sizes = sorted({r["history_size"] for r in mine})
        ax.plot(sizes, [max(r["tchap_stats_seconds"] for r in mine if r["history_size"] == s)
                        for s in sizes], "o-", label=f"tchap-stats, {shape}, {build} build, "
                                                    "worst night")
    ax.set_yscale("log")
    ax.set_xlabel("days of history")
    ax.set_ylabel("nightly run, seconds (log scale)")
    ax.set_title(f"One new day of {rows[0]['rows_per_day']:,} rows, nights "
                 f"{', '.join(sorted({r['kind'] for r in rows}))}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def choices(value: str, allowed: tuple[str, ...]) -> list[str]:
    if value == "both":
        return list(allowed)
    picked = [v.strip() for v in value.split(",")]
    for v in picked:
        if v not in allowed:
            raise argparse.ArgumentTypeError(f"{v!r}: one of {', '.join(allowed)} or both")
    return [v for v in allowed if v in picked]


def verdict(value: float, target: str, shown: bool = True) -> str:
    """`value` against TARGETS[target]: growth has a ceiling, the ratios a floor."""
    if not shown:
        return ""
    ceiling = target == "growth"
    met = value <= TARGETS[target] if ceiling else value >= TARGETS[target]
    return (f" (target {'≤' if ceiling else '≥'} {TARGETS[target]:g}×: "
            f"{'ok' if met else 'MISSED'})")


def print_matrix(rows: list[dict], summary: list[dict], total: float) -> None:
    print()
    print(f"{'shape':<7}{'build':<8}{'hist':>5}  {'night':<11}{'kind':<5}{'legacy s':>9}"
          f"{'tchap s':>9}{'ratio':>8}{'check':>6}{'RSS MiB':>8}{'summ. s':>8}")
    for r in rows:
        rss = f"{r['peak_rss_mib']:.0f}" if r["peak_rss_mib"] is not None else "?"
        summ = f"{r['summaries_seconds']:.1f}" if r["summaries_seconds"] is not None else "?"
        legacy_s = "—" if r["legacy_seconds"] is None else f"{r['legacy_seconds']:.1f}"
        ratio = "—" if r["ratio"] is None else f"{r['ratio']:.1f}×"
        check = "—" if r["check_exit"] is None else r["check_exit"]
        print(f"{r['shape']:<7}{r['build']:<8}{r['history_days']:>5}  {r['night']:<11}"
              f"{r['kind']:<5}{legacy_s:>9}{r['tchap_stats_seconds']:>9.2f}"
              f"{ratio:>8}{check:>6}{rss:>8}{summ:>8}")
    print()
    for s in summary:
        verdicts = "month_nights" not in s  # with --whole-month, the month carries them
        print(f"{s['shape']:<7}{s['build']:<8} at {s['largest']}-day history, the nights "
              f"beside the legacy's ({', '.join(s['paired_nights'])}): "
              f"median ratio {s['median_ratio']:.1f}×"
              f"{verdict(s['median_ratio'], 'median', verdicts)}"
              f" · worst {s['worst_ratio']:.1f}×"
              f"{verdict(s['worst_ratio'], 'worst', verdicts)}"
              f" · median night growth {s['smallest']} → {s['largest']}: {s['growth']:.2f}×"
              f"{verdict(s['growth'], 'growth', verdicts)}"
              f" · checks {'all 0' if s['checks_ok'] else 'NOT ALL 0'}")
        if "month_nights" in s:
            low, high = s["month_legacy_spread"]
            growth = ""
            if "month_growth" in s:
                growth = (f" · growth of the month's median night {s['smallest']} → "
                          f"{s['largest']}: {s['month_growth']:.2f}×"
                          f"{verdict(s['month_growth'], 'growth')}")
            print(f"{'':<15} every night of the month ({s['month_nights']}, each against the "
                  f"legacy's median night {s['month_legacy_median']:.1f} s, its nights "
                  f"{low:.1f}–{high:.1f} s): median ratio {s['month_median_ratio']:.1f}×"
                  f"{verdict(s['month_median_ratio'], 'median')}"
                  f" · worst {s['month_worst_ratio']:.1f}×"
                  f"{verdict(s['month_worst_ratio'], 'worst')}"
                  f"{growth} · checks {'all 0' if s['month_checks_ok'] else 'NOT ALL 0'}")
    print(f"whole benchmark {total / 60:.1f} min")


def summaries_seconds(output: list[str]) -> float | None:
    """The refresh's seconds from sync's summary line ("summaries: … · 1.2 s")."""
    for line in output:
        if line.strip().startswith("summaries:") and line.rstrip().endswith(" s"):
            try:
                return float(line.rstrip()[:-2].rsplit("·", 1)[1])
            except (IndexError, ValueError):
                return None
    return None


def fill(shape: str, conns: dict[str, psycopg.Connection], urls: dict[str, str],
         population: Population, days: list[date]) -> list[dict]:
    """The days between two nights, the same way in every database of tchap-stats: through
    its refresh a week at a time (whatever built its history: nights follow a bulk-built
    history too)."""
    return [{"shape": shape, "build": build, "how": "nightly fill",
             "first": days[0].isoformat(), "last": days[-1].isoformat(),
             "seconds": build_nightly(conn, urls[build], population, days)}
            for build, conn in conns.items()]


def fill_legacy(shape: str, conn: psycopg.Connection, population: Population,
                days: list[date]) -> list[dict]:
    """The days the legacy table lacks, inserted into its indexed table, in one go before
    its next night: a night of tchap-stats' alone (--whole-month) leaves its day to this.
    One insert and one VACUUM ANALYZE of 36 million rows instead of one a night, which
    took 2 to 5 minutes each at 365 days of history."""
    if not days:
        return []
    return [{"shape": shape, "build": "legacy", "how": "fill",
             "first": days[0].isoformat(), "last": days[-1].isoformat(),
             "seconds": build_legacy(conn, population, days, first_build=False)}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows-per-day", type=int, default=100_000)
    parser.add_argument("--histories", default="30,120,365",
                        help="days of history at which to measure, ascending: the first night "
                             "is the last day of the month in which history reaches it")
    parser.add_argument("--nights", default="last,1,2,15",
                        help="the nights of each history size: `last` (a month's last day) "
                             "and days of the next month (default: last,1,2,15)")
    parser.add_argument("--whole-month", action="store_true",
                        help="tchap-stats also measured on every other night of the month "
                             "after `last` (the legacy's night and the check only on --nights "
                             "and the month's last day): the median night of the month")
    parser.add_argument("--build", default="both", type=lambda v: choices(v, BUILDS),
                        help="nightly, bulk or both (default)")
    parser.add_argument("--shape", default="both",
                        type=lambda v: choices(v, tuple(SHAPES)),
                        help="stable, churn or both (default)")
    parser.add_argument("--late-share", type=float, default=0.0, metavar="SHARE",
                        help="each night's file also holds, for each of the 7 days before "
                             "it, this share of a day's rows as late rows (devices that day "
                             "did not hold), as production files do (default: 0, none)")
    parser.add_argument("--cache", choices=("cold", "own", "as-left"), default="cold",
                        help="cold (default): before each system's night, PostgreSQL is "
                             "restarted and the kernel's page cache dropped (needs root); "
                             "own: each system on a server of its own (--shared-buffers), "
                             "never restarted, the page cache dropped before each night "
                             "(needs root); as-left: one server, the night finds whatever "
                             "the run before it cached")
    parser.add_argument("--shared-buffers", default="1GB", metavar="SIZE",
                        help="with --cache own, each server's shared_buffers (default 1GB)")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="build in DIR and keep it (its PostgreSQL data directory can be "
                             "reused to replay nights; every database is kept); default: a "
                             "temporary directory")
    args = parser.parse_args()
    histories = [int(h) for h in args.histories.split(",")]
    kinds = [k.strip() for k in args.nights.split(",")]
    builds, shapes = args.build, args.shape
    if args.cache != "as-left" and not can_drop_caches():
        sys.exit(f"--cache {args.cache} drops the kernel's page cache, which needs root "
                 "(/proc/sys/vm/drop_caches): run as root, or pass --cache as-left")
    # The deploy step itself, with this interpreter first on PATH (compileall writes even
    # where PYTHONDONTWRITEBYTECODE is set, as on these machines)
    subprocess.run([str(ROOT / "bin" / "post_compile")], cwd=ROOT, check=True, env={
        **os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"})
    if not Path(TIME).exists():
        print(f"{TIME} not found: no peak RSS", file=sys.stderr)
    run_started = time.perf_counter()
    rows: list[dict] = []
    build_log: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="tchap-bench-refresh-") as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        servers = Servers(workdir, [*builds, "legacy"], args.cache == "own",
                          args.shared_buffers)
        moto, s3, endpoint = moto_s3.start_bucket(BUCKET)
        client = s3_client(s3)
        env = {**os.environ, "S3_ENDPOINT": endpoint, "S3_URL_STYLE": "path",
               "S3_ACCESS_KEY_ID": "bench", "S3_SECRET_ACCESS_KEY": "bench",
               "S3_REGION": "us-east-1", "TCHAP_STATS_SPILL_DIR": str(workdir / "spill")}
        for shape in shapes:
            population = Population(args.rows_per_day, SHAPES[shape])
            names = {b: f"bench_{shape}_{b}" for b in builds}
            urls = {b: create_database(servers.admin[b], names[b], legacy_schema=False)
                    for b in builds}
            legacy_url = create_database(servers.admin["legacy"], f"bench_{shape}_legacy",
                                         legacy_schema=True)
            conns = {b: psycopg.connect(urls[b], autocommit=True) for b in builds}
            legacy_conn = psycopg.connect(legacy_url, autocommit=True)
            built_until = HISTORY_START - timedelta(days=1)
            legacy_built = False
            legacy_behind: list[date] = []  # days of tchap-stats' nights alone (fill_legacy)

            for size in histories:
                first_night = month_end_on_or_after(HISTORY_START + timedelta(days=size))
                nights = night_dates(first_night, kinds, args.whole_month)
                if nights[0][0] <= built_until:
                    sys.exit(f"history {size}: its first night {nights[0][0]} is not after the "
                             f"last one of the smaller history ({built_until})")
                days = days_between(built_until + timedelta(days=1),
                                    nights[0][0] - timedelta(days=1))
                print(f"{shape}, history {HISTORY_START}..{days[-1]} "
                      f"({(days[-1] - HISTORY_START).days + 1} days, for {size}): building "
                      f"{len(days)} day(s) …", flush=True)
                for build in builds:
                    print(f"  {shape}: {build} build of tchap-stats' history …", flush=True)
                    seconds = BUILD[build](conns[build], urls[build], population, days)
                    build_log.append({"shape": shape, "build": build, "how": build,
                                      "first": days[0].isoformat(),
                                      "last": days[-1].isoformat(), "seconds": seconds})
                    print(f"    {seconds:.0f} s", flush=True)
                print(f"  {shape}: legacy history …", flush=True)
                legacy_days, legacy_behind = legacy_behind + days, []
                seconds = build_legacy(legacy_conn, population, legacy_days,
                                       first_build=not legacy_built)
                legacy_built = True
                build_log.append({"shape": shape, "build": "legacy", "how": "build",
                                  "first": legacy_days[0].isoformat(),
                                  "last": legacy_days[-1].isoformat(), "seconds": seconds})
                print(f"    {seconds:.0f} s", flush=True)
                built_until = days[-1]
                for night, kind, paired in nights:
                    between = days_between(built_until + timedelta(days=1),
                                           night - timedelta(days=1))
                    if between:
                        print(f"  {shape}: filling {between[0]}..{between[-1]} (before the "
                              f"night of {night}) …", flush=True)
                        build_log += fill(shape, conns, urls, population, between)
                        legacy_behind += between
                    if paired:
                        build_log += fill_legacy(shape, legacy_conn, population, legacy_behind)
                        legacy_behind = []
                    history_days = (night - HISTORY_START).days
                    path = workdir / USER_DAILY_VISITS.file_name(night)
                    file_rows = write_nightly_file(legacy_conn, population, night, path,
                                                   args.late_share)
                    client.upload_file(str(path), BUCKET, path.name)
                    measured: dict[str, dict] = {}
                    for conn in (*conns.values(), legacy_conn):  # a restart would cut them
                        conn.close()
                    for build in builds:
                        print(f"  {shape} · {build} · {history_days} days · night {night} "
                              f"({kind}): tchap-stats sync …", flush=True)
                        with servers.autovacuum_paused():
                            servers.before_night(build, args.cache)
                            seconds, rss, output, disk = tchap_stats_nightly(
                                urls[build], env, night, workdir / "rss")
                        for line in output:
                            print("     ", line)
                        # A night of --whole-month's alone: the check of the month's last
                        # day covers its days.
                        code, check_seconds, check_output = (
                            tchap_stats_check(urls[build], env, night)
                            if paired or night == month_end_on_or_after(night)
                            else (None, 0.0, "(not checked: the month's last night is)"))
                        print(f"    {seconds:.2f} s · peak RSS "
                              f"{rss if rss is None else round(rss)} MiB · check exit {code} "
                              f"({check_seconds:.1f} s): {check_output.splitlines()[-1:]}",
                              flush=True)
                        if code not in (0, None):
                            print("    check output:\n" + check_output, flush=True)
                        measured[build] = {"seconds": seconds, "rss": rss, "output": output,
                                           "disk": disk,
                                           "check_exit": code, "check_seconds": check_seconds,
                                           "check_output": check_output}
                    legacy_steps = None
                    if paired:
                        print(f"  {shape} · {history_days} days · night {night} ({kind}): "
                              "legacy …", flush=True)
                        with servers.autovacuum_paused():
                            servers.before_night("legacy", args.cache)
                            legacy_steps = legacy_nightly(legacy_url, path, night)
                    conns = {b: psycopg.connect(urls[b], autocommit=True) for b in builds}
                    legacy_conn = psycopg.connect(legacy_url, autocommit=True)
                    if legacy_steps:
                        print(f"    {legacy_steps['total']:.1f} s · "
                              f"{describe_disk(legacy_steps['disk'])}", flush=True)
                    else:  # its day waits for its next night (fill_legacy)
                        legacy_behind.append(night)
                    client.delete_object(Bucket=BUCKET, Key=path.name)  # no later warm-up
                    path.unlink()                                       # finds it
                    counts = {b: day_rows(urls[b], "tchap", night) for b in builds}
                    if paired:
                        counts["legacy"] = day_rows(legacy_url, "legacy", night)
                    assert set(counts.values()) == {args.rows_per_day}, counts
                    for build in builds:
                        m = measured[build]
                        rows.append({
                            "shape": shape, "build": build, "history_size": size,
                            "history_days": history_days,
                            "history_rows": history_days * args.rows_per_day,
                            "rows_per_day": args.rows_per_day, "night": night.isoformat(),
                            "kind": kind, "file_rows": file_rows,
                            "legacy_seconds": legacy_steps and legacy_steps["total"],
                            "legacy_steps": legacy_steps,
                            "tchap_stats_seconds": m["seconds"],
                            "summaries_seconds": summaries_seconds(m["output"]),
                            "ratio": legacy_steps and legacy_steps["total"] / m["seconds"],
                            "check_exit": m["check_exit"],
                            "check_seconds": m["check_seconds"],
                            "check_output": m["check_output"],
                            "peak_rss_mib": m["rss"], "disk": m["disk"],
                            "tchap_stats_output": m["output"]})
                    built_until = night
            for conn in (*conns.values(), legacy_conn):
                conn.close()
            if not args.keep:  # the next shape's builds find the page cache for themselves
                for build, name in names.items():
                    drop_database(servers.admin[build], name)
                drop_database(servers.admin["legacy"], f"bench_{shape}_legacy")
        moto.stop()
        if not args.keep:
            servers.stop()

    total = time.perf_counter() - run_started
    summary = summarise(rows, shapes, builds)
    print_matrix(rows, summary, total)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "refresh.json").write_text(json.dumps(
        {"rows_per_day": args.rows_per_day, "late_share": args.late_share,
         "histories": histories, "nights": kinds, "whole_month": args.whole_month,
         "shapes": shapes, "builds": builds, "cache": args.cache,
         "shared_buffers": args.shared_buffers if args.cache == "own" else None,
         "results": rows,
         "summary": summary,
         "targets": TARGETS, "history_builds": build_log, "cores": os.cpu_count(),
         "benchmark_seconds": total}, indent=2))
    print(f"written {RESULTS / 'refresh.json'}")
    if chart(rows, RESULTS / "refresh.png"):
        print(f"written {RESULTS / 'refresh.png'}")


if __name__ == "__main__":
    main()
