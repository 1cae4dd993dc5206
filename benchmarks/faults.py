"""Nothing lost, ever: a backfill under a rain of faults, on real servers on loopback.

A 30-day backfill (`tchap-stats backfill --jobs 2`, every export enabled by default) reads
its files from S3 (a moto server on 127.0.0.1) through a TCP proxy of ours
(tests/faultkit.py) into a private PostgreSQL (pgserver), and is hit, run after run, by:
  SIGKILL          the command killed at a random moment of its run, after a random number
                   of files, in the middle of a COPY, or during the summaries' refresh;
  PostgreSQL stop  `pg_ctl stop -m immediate` at a random moment, during a COPY or the
                   refresh, then started again (crash recovery);
  S3 reset / cut   a connection reset after a random number of bytes of a response, or
                   one file's every request cut for the whole run, via the proxy.
Each run starts where the last one stopped (the command is simply run again). When a run
completes, a clean run follows and every table and view is compared with a reference run
without faults, row by row; then the next round starts a new backfill in a fresh database,
until the faults asked for are spent.

All along, a dashboard connection reads what Metabase reads, in one snapshot at a time:
the per-day counts of `user_daily_visits` and `user_daily_visits_agg_30d`, with the ledger.
Files overlap (each repeats part of the day before and brings late rows for the week
before), so a day's full count is only reached when its last file is loaded; what a query
must see is every day exactly as the files the ledger says are loaded make it (their keys,
known from loading each file alone), never part of a file: "half a day". The summary view
must equal its raw rows for every day no refresh is still owed.

Prints a table: faults injected by kind, kills survived, hostile files tried, rows lost,
queries that saw half a day, wall time. Exits 1 if a row was lost, a half day seen, a table
or view differed from the reference, or a run printed a traceback or hung.

    .venv/bin/python benchmarks/faults.py                       # 30 days, 100 faults
    .venv/bin/python benchmarks/faults.py --days 10 --rows-per-day 1000 --faults 30 --seed 7
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tchap_stats.config import S3Settings, Settings  # noqa: E402
from tchap_stats.database import connect  # noqa: E402
from tchap_stats.dates import days_between  # noqa: E402
from tchap_stats.exports import EXPORTS, USER_DAILY_VISITS, default_exports  # noqa: E402
from tchap_stats.pipeline import RunOptions, run  # noqa: E402
from tchap_stats.schema import migrate  # noqa: E402
from tchap_stats.source import LocalSource, s3_client  # noqa: E402
from tchap_stats.synthetic.generate import Options, generate  # noqa: E402
from tests.faultkit import (  # noqa: E402
    Child,
    Fault,
    FaultProxy,
    Finished,
    PrivatePostgres,
    Watcher,
    cli_command,
    cli_env,
    create_database,
    differences,
    drop_database,
    fingerprints_of,
    has_traceback,
    kill_at,
    on_key,
    row_digests,
    rows_differing,
    wait_until,
)

FIRST_DAY = date(2024, 11, 1)

# Hostile lines mixed into the visits files (classes tests/test_hostile.py gives an outcome):
# the reference run reads the same files, so every round must still equal it.
HOSTILE: tuple[tuple[str, Callable[[date], bytes]], ...] = (
    ("stray quote", lambda day: f'@hostile-quote:x,DEV,{day} 10:00:00+01,"Mozilla/5.0 (X11; '
                                f'Linux,agent_x,x.gouv.fr'.encode()),
    ("NUL byte", lambda day: f"@hostile-nul:x,DEV,{day} 10:00:00+01,Moz\x00illa,agent_x,"
                             f"x.gouv.fr".encode()),
    ("year 2999", lambda day: b"@hostile-2999:x,DEV,2999-12-31 10:00:00+01,Mozilla,agent_x,"
                              b"x.gouv.fr"),
    ("offset +25", lambda day: f"@hostile-offset:x,DEV,{day} 10:00:00+25,Mozilla,agent_x,"
                               f"x.gouv.fr".encode()),
    ("Latin-1 line", lambda day: f"@hostile-latin:x,DEV,{day} 10:00:00+01,Navigateur "
                                 f"d".encode() + b"\xe9mo,agent_x,x.gouv.fr"),
    ("5 KB user id", lambda day: ("@" + "x" * 5000 + f",DEV,{day} 10:00:00+01,Mozilla,"
                                  f"agent_x,x.gouv.fr").encode()),
)


def make_hostile(files: Path, first: date, last: date) -> Counter[str]:
    """One hostile line (the classes in turn) in the middle of every other visits file;
    every fifth of those is also rewritten with CRLF line endings and a byte order mark."""
    tried: Counter[str] = Counter()
    for n, day in enumerate(days_between(first, last)):
        if n % 2:
            continue
        path = files / USER_DAILY_VISITS.file_name(day)
        lines = path.read_bytes().split(b"\n")
        name, line = HOSTILE[(n // 2) % len(HOSTILE)]
        lines.insert(len(lines) // 2, line(day))
        data = b"\n".join(lines)
        tried[name] += 1
        if n % 10 == 0:
            data = b"\xef\xbb\xbf" + data.replace(b"\n", b"\r\n")
            tried["CRLF and BOM"] += 1
        path.write_bytes(data)
    return tried
BUCKET = "faults"
RUN_TIMEOUT = 300.0  # seconds a run may take before it counts as hung
MAX_RUNS_PER_ROUND = 200
MAX_ROUNDS = 50
TIMEZONE = "Europe/Paris"
RAW_TABLES = {f"public.{e.table}" for e in EXPORTS.values()}

# Kinds of faults, as the table names them.
SIGKILL, SIGKILL_REFRESH, SIGKILL_COPY = "SIGKILL", "SIGKILL in refresh", "SIGKILL in COPY"
PG_STOP, S3_RESET, S3_CUT = "PostgreSQL stop", "S3 reset", "S3 cut"
KINDS = (SIGKILL, SIGKILL_REFRESH, SIGKILL_COPY, PG_STOP, S3_RESET, S3_CUT)
KILLS = (SIGKILL, SIGKILL_REFRESH, SIGKILL_COPY)

# What happens to the command during a run: (name, weight).
PROCESS_FAULTS = (("kill", 30), ("kill-files", 10), ("kill-copy", 10), ("kill-refresh", 12),
                  ("stop", 10), ("stop-copy", 6), ("stop-refresh", 6), ("none", 8))


# ------------------------------------------------------------------------ the setting


@dataclass
class Bench:
    workdir: Path
    pg: PrivatePostgres
    proxy: FaultProxy
    s3: S3Settings  # through the proxy: what the command reads with
    files: Path  # the generated files, also in the bucket
    first: date
    last: date
    jobs: int
    template: str = "faults_template"

    @property
    def today(self) -> date:
        """The dashboards' "today" while checking: the backfill's last day."""
        return self.last

    @property
    def names(self) -> list[str]:
        return sorted(p.name for p in self.files.glob("*.csv"))

    def args(self) -> list[str]:
        return cli_command("--source", f"s3://{BUCKET}", "backfill", "--from",
                           self.first.isoformat(), "--to", self.last.isoformat(),
                           "--jobs", str(self.jobs))

    def env(self, url: str) -> dict[str, str]:
        return cli_env(url, self.workdir / "spill", self.s3)

    def new_database(self, name: str) -> str:
        with contextlib.suppress(psycopg.Error):
            drop_database(self.pg.url, name)
        return create_database(self.pg.url, name, self.template)


def start_s3(files: Path):  # -> (moto server, direct S3Settings)
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    s3 = S3Settings(bucket=None, access_key_id="bench-key-id",
                    secret_access_key="bench-secret-key", endpoint=f"{host}:{port}",
                    region="us-east-1", url_style="path", use_ssl=False)
    client = s3_client(s3)
    client.create_bucket(Bucket=BUCKET)
    for path in sorted(files.glob("*.csv")):
        client.upload_file(str(path), BUCKET, path.name)
    return server, s3


def migrated_template(pg: PrivatePostgres, name: str) -> None:
    url = create_database(pg.url, name)
    with connect(url, autocommit=True) as conn:
        migrate(conn)


def run_cli(bench: Bench, url: str, workdir: Path) -> Finished:
    with Child(bench.args(), bench.env(url), workdir) as child:
        return child.wait(RUN_TIMEOUT)


# ---------------------------------------------------------- what each file brings a day


DayKeys = dict[str, dict[date, frozenset]]  # file name → day → keys of its rows that day


def file_keys(bench: Bench, settings: Settings) -> DayKeys:
    """Each user_daily_visits file's keys per day, from loading it alone: with --replace,
    each day the file holds ends up holding exactly the file's rows."""
    url = bench.new_database("faults_keys")
    source = LocalSource(bench.files)
    keys: DayKeys = {}
    with connect(url, autocommit=True) as conn:
        for day in days_between(bench.first, bench.last):
            report = run(settings, url, source, [USER_DAILY_VISITS], [day],
                         RunOptions(replace=True, refresh_summaries=False))
            outcome = report.outcomes[0]
            if outcome.status != "loaded":
                raise RuntimeError(f"{outcome.summary()}")
            days = [r[0] for r in conn.execute(
                "SELECT day FROM tchap_stats.load_days WHERE load_id = "
                "(SELECT max(load_id) FROM tchap_stats.loads)").fetchall()]
            rows = conn.execute(
                "SELECT visit_date, user_id, device_id FROM user_daily_visits "
                "WHERE visit_date = ANY(%s)", (days,)).fetchall()
            per_day: dict[date, set] = {d: set() for d in days}
            for visit_date, user_id, device_id in rows:
                per_day[visit_date].add((user_id, device_id))
            keys[outcome.name] = {d: frozenset(k) for d, k in per_day.items()}
    drop_database(bench.pg.url, "faults_keys")
    return keys


class Expected:
    """A day's row count for any set of loaded files (the size of the union of their keys
    for the day), memoised."""

    def __init__(self, keys: DayKeys):
        self.keys = keys
        self.days = sorted({d for per_day in keys.values() for d in per_day})
        self._cache: dict[tuple[date, frozenset], int] = {}

    def count(self, day: date, loaded: frozenset) -> int:
        files = frozenset(f for f in loaded if day in self.keys.get(f, {}))
        cached = self._cache.get((day, files))
        if cached is None:
            union: set = set()
            for name in files:
                union |= self.keys[name][day]
            cached = self._cache[(day, files)] = len(union)
        return cached


# ------------------------------------------------------------- the dashboards, watching


@dataclass
class Seen:
    queries: int = 0
    half_days: int = 0
    unavailable: int = 0  # attempts while PostgreSQL was down
    examples: list[str] = field(default_factory=list)


class Dashboard(threading.Thread):
    """Reads what the dashboards read, in a loop, on a connection of its own; each read
    is one snapshot (REPEATABLE READ) holding the raw per-day counts, the summary view's
    and what the ledger says (files loaded, days whose refresh is still owed)."""

    def __init__(self, url: str, expected: Expected, today: date, seen: Seen):
        super().__init__(name="dashboard", daemon=True)
        self.url, self.expected, self.today, self.seen = url, expected, today, seen
        self.stopping = threading.Event()

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=60)

    def run(self) -> None:
        conn: psycopg.Connection | None = None
        while not self.stopping.is_set():
            try:
                if conn is None or conn.closed:
                    conn = self._connect()
                self._check(conn)
                self.seen.queries += 1
                time.sleep(0.05)
            except psycopg.Error:
                self.seen.unavailable += 1
                if conn is not None:
                    with contextlib.suppress(psycopg.Error):
                        conn.close()
                conn = None
                time.sleep(0.2)
        if conn is not None:
            conn.close()

    def _connect(self) -> psycopg.Connection:
        conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5,
                               application_name="dashboard")
        conn.execute("SELECT set_config('tchap_stats.today', %s, false)",
                     (self.today.isoformat(),))
        return conn

    def _check(self, conn: psycopg.Connection) -> None:
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            loaded = frozenset(r[0] for r in conn.execute(
                "SELECT DISTINCT file_key FROM tchap_stats.loads "
                "WHERE export = %s AND status = 'loaded'", (USER_DAILY_VISITS.name,)))
            raw = {d: (rows, users) for d, rows, users in conn.execute(
                "SELECT visit_date, count(*), count(DISTINCT (user_id, instance, domain)) "
                "FROM user_daily_visits GROUP BY visit_date")}
            summary = {d: (rows, users) for d, users, rows in conn.execute(
                "SELECT (day AT TIME ZONE %s)::date, count(*), sum(visits_count) "
                "FROM user_daily_visits_agg_30d GROUP BY day", (TIMEZONE,))}
            owed = {r[0] for r in conn.execute(
                "SELECT day FROM tchap_stats.changed_days WHERE export = %s "
                "UNION SELECT day FROM tchap_stats.summary_queue WHERE summary_group = 'daily'",
                (USER_DAILY_VISITS.name,))}
        self._compare(loaded, raw, summary, owed)

    def _compare(self, loaded: frozenset, raw: dict, summary: dict, owed: set) -> None:
        for day in sorted(set(self.expected.days) | set(raw)):
            rows = raw.get(day, (0, 0))[0]
            expected = self.expected.count(day, loaded)
            if rows != expected:
                self._half(f"user_daily_visits {day}: {rows:,} rows, the {len(loaded)} "
                           f"file(s) loaded make {expected:,}")
        window = {self.today - timedelta(days=n) for n in range(30)}
        for day in sorted(window - owed):
            if summary.get(day, (0, 0)) != raw.get(day, (0, 0)):
                self._half(f"user_daily_visits_agg_30d {day}: (visits, users) "
                           f"{summary.get(day)} but the raw rows make {raw.get(day)}")

    def _half(self, example: str) -> None:
        self.seen.half_days += 1
        if len(self.seen.examples) < 10:
            self.seen.examples.append(example)


# --------------------------------------------------------------------- injecting faults


@dataclass
class Armed:
    kind: str  # S3_RESET or S3_CUT
    fault: Fault
    name: str  # the file it hits
    what: str


@dataclass
class Tally:
    injected: Counter = field(default_factory=Counter)
    not_retried: list[str] = field(default_factory=list)  # resets that failed a file
    exits: Counter = field(default_factory=Counter)  # (fault, exit code) of faulted runs
    tracebacks: list[str] = field(default_factory=list)
    hung: int = 0
    runs: int = 0

    def kills(self) -> int:
        return sum(self.injected[k] for k in KILLS)

    def total(self) -> int:
        return sum(self.injected.values())


class Injector:
    def __init__(self, bench: Bench, rng: random.Random, tally: Tally, run_seconds: float):
        self.bench, self.rng, self.tally = bench, rng, tally
        self.run_seconds = run_seconds

    def arm_s3(self, remaining: list[str]) -> list[Armed]:
        """0 to 3 faults of the proxy for this run, on files it still has to read."""
        armed = []
        for _ in range(self.rng.choice((0, 1, 1, 2, 2, 3))):
            name = self.rng.choice(remaining or self.bench.names)
            if self.rng.random() < 0.6:
                armed.append(self._reset(name))
            else:
                methods = self.rng.choice(((), ("GET",)))
                what = f"cut {'/'.join(methods) or 'every request'} {name}"
                armed.append(Armed(S3_CUT, self.bench.proxy.cut(on_key(name, methods)),
                                   name, what))
        return armed

    def _reset(self, name: str) -> Armed:
        method, client = self.rng.choice((("GET", "duckdb"), ("GET", "botocore"),
                                          ("HEAD", None)))
        size = (self.bench.files / name).stat().st_size
        after = int(size * self.rng.random()) if method == "GET" else 0
        count = self.rng.randint(1, 2)
        fault = self.bench.proxy.reset(count, after, on_key(name, (method,), client))
        what = (f"reset {method} {client or 'any client'} {name} after {after:,} bytes "
                f"of response, {count} time(s)")
        return Armed(S3_RESET, fault, name, what)

    def process_fault(self, kind: str, child: Child, watcher: Watcher,
                      remaining: float) -> str | None:
        """Apply one fault to the running command; returns what was injected, if any."""
        span = 1.0 + self.run_seconds * remaining
        delay = self.rng.uniform(0.05, 0.8) * span
        moments: dict[str, Callable[[], bool]] = {
            "kill": lambda: self._after(child, delay),
            "kill-files": lambda: wait_until(self._files_loaded(watcher), RUN_TIMEOUT,
                                             child),
            "kill-copy": lambda: wait_until(watcher.copying, RUN_TIMEOUT, child, 0.005),
            "kill-refresh": lambda: wait_until(watcher.refreshing, RUN_TIMEOUT, child),
            "stop": lambda: self._after(child, delay),
            "stop-copy": lambda: wait_until(watcher.copying, RUN_TIMEOUT, child, 0.005),
            "stop-refresh": lambda: wait_until(watcher.refreshing, RUN_TIMEOUT, child),
        }
        if kind not in moments or not moments[kind]() or not child.running():
            return None
        if kind.startswith("kill"):
            if not kill_at(child, self.rng.uniform(0.0, 0.15)):
                return None
            return {"kill-copy": SIGKILL_COPY, "kill-refresh": SIGKILL_REFRESH}.get(kind,
                                                                                    SIGKILL)
        watcher.close()
        self.bench.pg.stop_immediate()
        time.sleep(self.rng.uniform(0.2, 1.0))
        self.bench.pg.start()
        return PG_STOP

    def _after(self, child: Child, delay: float) -> bool:
        """True when the child is still running `delay` seconds from now."""
        with contextlib.suppress(Exception):
            child.proc.wait(timeout=delay)
        return child.running()

    def _files_loaded(self, watcher: Watcher) -> Callable[[], bool]:
        target: list[int] = []

        def reached() -> bool:
            if not target:
                target.append(watcher.loads() + self.rng.randint(1, 8))
            return watcher.loads() >= target[0]

        return reached


# ----------------------------------------------------------------------------- a round


@dataclass
class RoundResult:
    number: int
    faults: int
    kills: int
    runs: int
    final_exit: int
    rows_lost: int  # raw rows of the reference missing
    differing: dict[str, tuple[int, int]]  # relation → (rows missing, rows extra)
    seconds: float

    @property
    def intact(self) -> bool:
        return not self.differing and self.final_exit == 0


def remaining_files(url: str, names: list[str]) -> list[str]:
    with contextlib.suppress(psycopg.Error), psycopg.connect(url, connect_timeout=5) as conn:
        loaded = {r[0] for r in conn.execute(
            "SELECT DISTINCT file_key FROM tchap_stats.loads WHERE status = 'loaded'")}
        return [n for n in names if n not in loaded]
    return names


def not_retried(fired: list[Armed], output: str) -> list[str]:
    """The files that failed with only resets fired on them (no cut): each with its
    resets and its line of output."""
    cut = {a.name for a in fired if a.kind == S3_CUT}
    resets: dict[str, list[Armed]] = {}
    for armed in fired:
        if armed.kind == S3_RESET and armed.name not in cut:
            resets.setdefault(armed.name, []).append(armed)
    return [f"{'; '.join(a.what for a in each)} (fired {sum(a.fault.fired for a in each)} "
            f"time(s) in all) → {line}" for name, each in resets.items()
            for line in output.splitlines() if line.startswith(f"{name}: FAILED")]


def fault_run(bench: Bench, injector: Injector, url: str, workdir: Path,
              first: bool) -> int | None:
    """One run of the command under faults; its exit code when it ended by itself. The
    first run of a round always gets a process fault (else it could complete unhurt)."""
    rng, tally = injector.rng, injector.tally
    remaining = remaining_files(url, bench.names)
    armed = injector.arm_s3(remaining)
    kinds = [(k, w) for k, w in PROCESS_FAULTS if not (first and k == "none")]
    kind = rng.choices([k for k, _ in kinds], [w for _, w in kinds])[0]
    watcher = Watcher(url)
    tally.runs += 1
    try:
        with Child(bench.args(), bench.env(url), workdir) as child:
            watcher.since = child.wall_start
            injected = injector.process_fault(kind, child, watcher,
                                              len(remaining) / len(bench.names))
            try:
                finished = child.wait(RUN_TIMEOUT)
            except subprocess.TimeoutExpired:
                tally.hung += 1
                return None
    finally:
        watcher.close()
        bench.proxy.clear()
    fired = [a for a in armed if a.fault.fired]
    tally.injected.update([a.kind for a in fired] + ([injected] if injected else []))
    if injected != PG_STOP:
        tally.not_retried += not_retried(fired, finished.output)
    label = injected or ("S3 only" if fired else "none")
    tally.exits[(label, "killed" if finished.killed else finished.returncode)] += 1
    if has_traceback(finished.output):
        tally.tracebacks.append(f"{workdir}: {finished.output[-2000:]}")
    return None if finished.killed else finished.returncode


def fault_round(bench: Bench, number: int, expected: Expected, injector: Injector,
                reference_url: str, reference: dict[str, str], seen: Seen) -> RoundResult:
    """A backfill into a fresh database, run again and again under faults until a run
    completes; then a clean run, and the comparison with the reference."""
    started, tally = time.monotonic(), injector.tally
    faults_before, kills_before, runs_before = tally.total(), tally.kills(), tally.runs
    name = f"faults_round_{number}"
    url = bench.new_database(name)
    runs_dir = bench.workdir / "runs" / f"round-{number}"
    dashboard = Dashboard(url, expected, bench.today, seen)
    dashboard.start()
    try:
        for attempt in range(1, MAX_RUNS_PER_ROUND + 1):
            if fault_run(bench, injector, url, runs_dir / f"run-{attempt}", attempt == 1) == 0:
                break
        final = run_cli(bench, url, runs_dir / "final")
    finally:
        dashboard.stop()
    if final.returncode != 0 or has_traceback(final.output):
        tally.tracebacks.append(f"round {number}, clean run: exit {final.returncode}: "
                                f"{final.output[-2000:]}")
    differing = differences(reference, fingerprints_of([url], bench.today)[0])
    rows: dict[str, tuple[int, int]] = {}
    if differing:
        rows = rows_differing(row_digests(reference_url, list(differing), bench.today),
                              row_digests(url, list(differing), bench.today))
        rows = rows or {r: (0, 0) for r in differing}
    else:
        drop_database(bench.pg.url, name)
    lost = sum(missing for r, (missing, _) in rows.items() if r in RAW_TABLES)
    return RoundResult(number, tally.total() - faults_before, tally.kills() - kills_before,
                       tally.runs - runs_before, final.returncode, lost, rows,
                       time.monotonic() - started)


# ------------------------------------------------------------------------------ the run


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30, help="days of files (default 30)")
    parser.add_argument("--rows-per-day", type=int, default=2_000,
                        help="user_daily_visits rows a day (default 2,000)")
    parser.add_argument("--faults", type=int, default=100,
                        help="faults to inject, at least (default 100)")
    parser.add_argument("--seed", type=int, default=1, help="of the faults and files")
    parser.add_argument("--jobs", type=int, default=2, help="the backfill's --jobs")
    parser.add_argument("--keep", type=Path, help="work here and keep it (default: a "
                        "temporary directory, removed)")
    return parser.parse_args()


def check_model(expected: Expected, reference_url: str) -> None:
    """The per-file keys must give the reference's per-day counts with every file."""
    every = frozenset(expected.keys)
    with psycopg.connect(reference_url) as conn:
        counts = dict(conn.execute("SELECT visit_date, count(*) FROM user_daily_visits "
                                   "GROUP BY 1").fetchall())
    wrong = [d for d in set(counts) | set(expected.days)
             if counts.get(d, 0) != expected.count(d, every)]
    if wrong:
        raise SystemExit(f"the per-file keys do not add up to the reference on {wrong[:5]}")


def self_check(expected: Expected, reference_url: str, today: date) -> None:
    """The dashboard's check passes on the reference, and sees one row too few."""
    seen = Seen()
    dashboard = Dashboard(reference_url, expected, today, seen)
    with dashboard._connect() as conn:
        dashboard._check(conn)
    if seen.half_days:
        raise SystemExit(f"the dashboard check fails on the reference: {seen.examples}")
    every = frozenset(expected.keys)
    day = expected.days[len(expected.days) // 2]
    raw = {d: (expected.count(d, every), 0) for d in expected.days}
    raw[day] = (raw[day][0] - 1, 0)
    dashboard._compare(every, raw, {}, set(expected.days) | {today - timedelta(days=n)
                                                            for n in range(30)})
    if seen.half_days != 1:
        raise SystemExit("the dashboard check does not see a day one row short")


@dataclass
class Outcome:
    tally: Tally
    seen: Seen
    rounds: list[RoundResult]
    reference_seconds: float
    hostile: Counter[str] = field(default_factory=Counter)  # files by hostile class


def bench_run(options: argparse.Namespace, workdir: Path) -> Outcome:
    first = FIRST_DAY
    last = first + timedelta(days=options.days - 1)
    files = workdir / "files"
    generate(first, last, str(files), Options(rows_per_day=options.rows_per_day),
             exports=[e.name for e in default_exports()])
    hostile = make_hostile(files, first, last)
    moto, direct = start_s3(files)
    pg = PrivatePostgres(workdir / "pg" / "pgdata")
    proxy = FaultProxy(direct.endpoint)
    proxy.start()
    try:
        bench = Bench(workdir, pg, proxy, replace(direct, endpoint=proxy.endpoint), files,
                      first, last, options.jobs)
        migrated_template(pg, bench.template)
        reference_url = bench.new_database("faults_reference")
        reference_run = run_cli(bench, reference_url, workdir / "runs" / "reference")
        if reference_run.returncode != 0:
            raise SystemExit(f"the reference run failed:\n{reference_run.output}")
        print(f"reference run: {reference_run.seconds:.1f} s", flush=True)
        reference = fingerprints_of([reference_url], bench.today)[0]
        keys_settings = Settings(database_url=None, s3=direct, source=str(files),
                                 spill_dir=workdir / "spill-keys")
        expected = Expected(file_keys(bench, keys_settings))
        check_model(expected, reference_url)
        self_check(expected, reference_url, bench.today)
        tally, seen, rounds = Tally(), Seen(), []
        injector = Injector(bench, random.Random(options.seed), tally,
                            reference_run.seconds)
        while tally.total() < options.faults and len(rounds) < MAX_ROUNDS:
            result = fault_round(bench, len(rounds) + 1, expected, injector, reference_url,
                                 reference, seen)
            rounds.append(result)
            print(f"round {result.number}: {result.runs} run(s), {result.faults} fault(s) "
                  f"({tally.total()} in all), final exit {result.final_exit}, "
                  f"{'same as the reference' if result.intact else 'DIFFERS'} · "
                  f"{result.seconds:.0f} s · dashboard queries {seen.queries:,}, "
                  f"half days {seen.half_days}", flush=True)
        return Outcome(tally, seen, rounds, reference_run.seconds, hostile)
    finally:
        proxy.stop()
        pg.close()
        moto.stop()


def hostile_summary(tried: Counter[str]) -> str:
    files = sum(n for kind, n in tried.items() if kind != "CRLF and BOM")
    return f"{files} ({', '.join(f'{kind} {n}' for kind, n in sorted(tried.items()))})"


def report(outcome: Outcome, wall: float) -> int:
    tally, seen, rounds = outcome.tally, outcome.seen, outcome.rounds
    lost = sum(r.rows_lost for r in rounds)
    survived = sum(r.kills for r in rounds if r.intact)
    table = [("faults injected", f"{tally.total():,}")]
    table += [(f"  {kind}", f"{tally.injected[kind]:,}") for kind in KINDS]
    table += [
        ("kills survived", f"{survived:,} of {tally.kills():,}"),
        ("hostile files tried", hostile_summary(outcome.hostile)),
        ("rows lost", f"{lost:,}"),
        ("queries that saw half a day", f"{seen.half_days:,} of {seen.queries:,}"),
        ("wall time", f"{wall / 60:.1f} min"),
    ]
    width = max(len(k) for k, _ in table)
    print()
    for key, value in table:
        print(f"{key:<{width}}  {value:>14}")
    print(f"\n{len(rounds)} round(s) of backfill, {tally.runs} faulted run(s); "
          f"reference run {outcome.reference_seconds:.1f} s; dashboard unavailable "
          f"{seen.unavailable} time(s) (PostgreSQL stopped)")
    print("exit codes of faulted runs: " + ", ".join(
        f"{label} → {code}: {n}" for (label, code), n in sorted(tally.exits.items(),
                                                                 key=str)))
    if tally.not_retried:
        print(f"S3 resets not retried (the file failed, to be loaded by the next run): "
              f"{len(tally.not_retried)}")
        for line in tally.not_retried[:10]:
            print(f"  {line}")
    failures = [f"round {r.number} differs from the reference: {r.differing}"
                for r in rounds if not r.intact]
    failures += [f"a query saw half a day: {e}" for e in seen.examples]
    failures += [f"traceback or failed clean run: {t}" for t in tally.tracebacks]
    failures += [f"{tally.hung} run(s) hung"] if tally.hung else []
    for failure in failures:
        print(f"FAILURE: {failure}")
    return 1 if failures or lost or seen.half_days else 0


def main() -> int:
    options = parse_args()
    started = time.monotonic()
    if options.keep:
        options.keep.mkdir(parents=True, exist_ok=True)
        outcome = bench_run(options, options.keep.resolve())
    else:
        with tempfile.TemporaryDirectory(prefix="tchap-faults-") as tmp:
            outcome = bench_run(options, Path(tmp))
    return report(outcome, time.monotonic() - started)


if __name__ == "__main__":
    sys.exit(main())
