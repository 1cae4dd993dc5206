"""Fault injection on real servers on loopback, shared by tests/test_faults.py and
benchmarks/faults.py: a TCP proxy in front of the S3 server that resets or cuts connections,
the real command line run as a child process and killed with SIGKILL, a private PostgreSQL
stopped with `pg_ctl stop -m immediate` and started again, and table fingerprints that
compare two databases.

Nothing here mocks anything: the proxy forwards real bytes to a real server and breaks real
TCP connections (RST), the kills are real signals and the stops are real server shutdowns.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg import sql

REPO = Path(__file__).resolve().parent.parent
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
APPLICATION = "tchap-stats"  # the application_name every connection of the product sets

# What the two databases compared may legitimately differ on: the ledger (ids, timestamps,
# one row per attempt), the run log and its views, and what loads leave for the next
# refresh, keyed by load ids.
LEDGER_TABLES = frozenset({"loads", "load_days", "rejects", "changed_days", "summary_queue",
                           "schema_version", "active_daily_staged", "runs", "runs_seen",
                           "freshness"})

# Variables the command line reads: a child process starts from none of them inherited.
CLI_VARIABLES = (
    "DATABASE_URL", "S3_BUCKET_NAME", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY", "S3_ENDPOINT",
    "S3_REGION", "S3_URL_STYLE", "S3_USE_SSL", "TCHAP_STATS_SOURCE", "TCHAP_STATS_TZ",
    "TCHAP_STATS_EXPORTS", "TCHAP_STATS_REJECT_THRESHOLD", "TCHAP_STATS_DUCKDB_MEMORY",
    "TCHAP_STATS_SPILL_DIR", "TCHAP_STATS_PREAGGREGATE",
)


# --------------------------------------------------------------------------- the proxy


@dataclass(frozen=True)
class Request:
    """One HTTP request as the proxy saw it go by (request line and headers)."""

    method: str
    target: str
    headers: dict[str, str]

    @property
    def path(self) -> str:
        return unquote(urlsplit(self.target).path)

    @property
    def client(self) -> str:
        """Who sent it: 'duckdb' (httpfs), 'botocore', or 'other'."""
        agent = self.headers.get("user-agent", "").lower()
        if "duckdb" in agent:
            return "duckdb"
        if "botocore" in agent or "boto3" in agent:
            return "botocore"
        return "other"


Matcher = Callable[[Request], bool]


def any_request(_: Request) -> bool:
    return True


def on_key(key: str, methods: tuple[str, ...] = (), client: str | None = None) -> Matcher:
    """Requests for one object (path-style URL /bucket/key), optionally only some methods
    or only one client (duckdb or botocore)."""

    def match(request: Request) -> bool:
        return (request.path.endswith("/" + key)
                and (not methods or request.method in methods)
                and (client is None or request.client == client))

    return match


@dataclass
class Fault:
    """A rule of the proxy. `remaining` None: persistent (every matching request)."""

    kind: str  # "reset": RST after `after_bytes` of response; "cut": RST before forwarding
    match: Matcher
    remaining: int | None
    after_bytes: int = 0
    fired: int = 0
    fired_on: list[str] = field(default_factory=list)


class _RequestParser:
    """Finds the requests in a client's byte stream (keep-alive: several per connection)."""

    MAX_HEAD = 64 * 1024

    def __init__(self) -> None:
        self.buffer = b""
        self.body_left = 0

    def feed(self, data: bytes) -> list[Request]:
        self.buffer += data
        requests = []
        while True:
            if self.body_left:
                taken = min(self.body_left, len(self.buffer))
                self.buffer, self.body_left = self.buffer[taken:], self.body_left - taken
                if self.body_left:
                    return requests
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = self.buffer[-self.MAX_HEAD:]
                return requests
            head, self.buffer = self.buffer[:end].decode("latin-1"), self.buffer[end + 4:]
            request = _parse_head(head)
            length = request.headers.get("content-length", "0")
            self.body_left = int(length) if length.isdigit() else 0
            requests.append(request)


def _parse_head(head: str) -> Request:
    first, *lines = head.split("\r\n")
    parts = first.split(" ")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if len(parts) < 2:
        return Request("", "", headers)
    return Request(parts[0], parts[1], headers)


def _reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the peer gets a TCP RST, as from a broken network path."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class FaultProxy:
    """A TCP proxy on 127.0.0.1 (port chosen by the system) in front of an upstream
    server on loopback, one thread per connection, with faults armed by `reset` and `cut`.
    Usable as a context manager; `endpoint` is the host:port to give S3 clients."""

    MAX_SEEN = 10_000

    def __init__(self, upstream: str):
        host, _, port = upstream.rpartition(":")
        if host not in LOOPBACK:
            raise ValueError(f"the proxy forwards to loopback only, not {host!r}")
        self.upstream = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.endpoint = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.faults: list[Fault] = []
        self.requests: Counter[str] = Counter()
        self.seen: list[Request] = []  # the first MAX_SEEN requests, for diagnostics
        self.connections = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, name="proxy-accept",
                                          daemon=True)

    def __enter__(self) -> FaultProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._acceptor.start()

    def stop(self) -> None:
        self._stopping.set()
        self._acceptor.join(timeout=5)
        self.listener.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def reset(self, count: int = 1, after_bytes: int = 0,
              match: Matcher = any_request) -> Fault:
        """Reset the next `count` connections carrying a matching request, after
        forwarding `after_bytes` bytes of response (headers included)."""
        return self._add(Fault("reset", match, count, after_bytes))

    def cut(self, match: Matcher = any_request) -> Fault:
        """Reset every connection carrying a matching request, before forwarding it,
        until `clear`."""
        return self._add(Fault("cut", match, None))

    def clear(self) -> None:
        with self._lock:
            self.faults = []

    def fired(self) -> int:
        with self._lock:
            return sum(f.fired for f in self.faults)

    def _add(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def _decide(self, request: Request) -> Fault | None:
        with self._lock:
            self.requests[f"{request.method} {request.client}"] += 1
            if len(self.seen) < self.MAX_SEEN:
                self.seen.append(request)
            for fault in self.faults:
                if fault.remaining != 0 and fault.match(request):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                    fault.fired += 1
                    fault.fired_on.append(f"{request.method} {request.path}")
                    return fault
        return None

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._threads = [t for t in self._threads if t.is_alive()]
            thread = threading.Thread(target=self._serve, args=(client,), daemon=True,
                                      name="proxy-conn")
            self._threads.append(thread)
            thread.start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=10)
        except OSError:
            _reset(client)
            return
        try:
            self._pump(client, upstream)
        finally:
            with contextlib.suppress(OSError):
                upstream.close()
            with contextlib.suppress(OSError):
                client.close()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        parser = _RequestParser()
        allowance: int | None = None  # bytes of response left before a reset
        while not self._stopping.is_set():
            readable, _, _ = select.select([client, upstream], [], [], 0.2)
            for sock in readable:
                try:
                    data = sock.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                if sock is client:
                    for request in parser.feed(data):
                        fault = self._decide(request)
                        if fault and fault.kind == "cut":
                            _reset(client)
                            return
                        if fault:
                            allowance = fault.after_bytes
                    upstream.sendall(data)
                    if allowance == 0:
                        _reset(client)
                        return
                    continue
                if allowance is not None and len(data) >= allowance:
                    client.sendall(data[:allowance])
                    _reset(client)
                    return
                if allowance is not None:
                    allowance -= len(data)
                client.sendall(data)


# ------------------------------------------------------------------- the command line


def cli_command(*args: str) -> list[str]:
    """The real command line (`tchap-stats`), run by this interpreter."""
    return [sys.executable, "-m", "tchap_stats", *args]


def cli_env(database_url: str, spill_dir: Path, s3=None, **extra: str) -> dict[str, str]:
    """The environment of a child `tchap-stats`: this one without any variable the command
    reads, then DATABASE_URL, the spill directory, the S3 settings when given and `extra`."""
    env = {k: v for k, v in os.environ.items()
           if k not in CLI_VARIABLES and not k.startswith("TCHAP_STATS_")}
    env.update(DATABASE_URL=database_url, TCHAP_STATS_SPILL_DIR=str(spill_dir))
    if s3 is not None:
        env.update(S3_ENDPOINT=s3.endpoint_url, S3_URL_STYLE=s3.url_style,
                   S3_ACCESS_KEY_ID=s3.access_key_id or "",
                   S3_SECRET_ACCESS_KEY=s3.secret_access_key or "", S3_REGION=s3.region)
    env.update(extra)
    return env


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str
    killed: bool
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class Child:
    """A child process whose output goes to files (no pipe to fill up and block it)."""

    def __init__(self, args: list[str], env: dict[str, str], workdir: Path):
        workdir.mkdir(parents=True, exist_ok=True)
        self.out_path, self.err_path = workdir / "stdout", workdir / "stderr"
        self.started = time.monotonic()
        self.wall_start = time.time()  # what pg_stat_activity.backend_start compares with
        with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
            self.proc = subprocess.Popen(args, env=env, cwd=workdir, stdout=out, stderr=err,
                                         stdin=subprocess.DEVNULL)
        self.killed = False

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        """Never leave it behind: killed if still running when the block ends."""
        if self.kill():
            self.proc.wait(timeout=30)

    def running(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> bool:
        """SIGKILL, if still running. True when the signal was sent."""
        if self.proc.poll() is not None:
            return False
        os.kill(self.proc.pid, signal.SIGKILL)
        self.killed = True
        return True

    def wait(self, timeout: float) -> Finished:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.proc.wait(timeout=30)
            raise
        return Finished(code, self.out_path.read_text(errors="replace"),
                        self.err_path.read_text(errors="replace"), self.killed,
                        time.monotonic() - self.started)


def kill_at(child: Child, seconds: float) -> bool:
    """Wait up to `seconds` for the child to finish; SIGKILL it if it has not.
    True when it was killed."""
    try:
        child.proc.wait(timeout=max(0.0, seconds))
        return False
    except subprocess.TimeoutExpired:
        return child.kill()


def wait_until(condition: Callable[[], bool], timeout: float, child: Child | None = None,
               poll: float = 0.02) -> bool:
    """Poll `condition` until it holds (True), the deadline passes or `child` exits
    (False). A condition that raises counts as not holding yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child is not None and not child.running():
            return False
        with contextlib.suppress(psycopg.Error):
            if condition():
                return True
        time.sleep(poll)
    return False


def kill_when(child: Child, condition: Callable[[], bool], timeout: float,
              delay: float = 0.0) -> bool:
    """SIGKILL the child `delay` seconds after `condition` first holds. True when killed."""
    if not wait_until(condition, timeout, child):
        return False
    return kill_at(child, delay)


# ------------------------------------------------------------------ watching the database


class Watcher:
    """A connection of its own that looks at what the product's connections are doing.
    `since` (time.time()): only connections opened since then count, so that a backend
    still finishing the statement of a killed process is not taken for the next one's."""

    def __init__(self, url: str):
        self.url = url
        self.conn: psycopg.Connection | None = None
        self.since = 0.0

    def _connection(self) -> psycopg.Connection:
        if self.conn is None or self.conn.closed:
            self.conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5,
                                        application_name="faultkit-watcher")
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(psycopg.Error):
                self.conn.close()
        self.conn = None

    def _query(self, query: str, params: tuple = ()) -> list[tuple]:
        try:
            return self._connection().execute(query, params).fetchall()
        except psycopg.Error:
            self.close()
            raise

    def statements(self) -> list[str]:
        """The statements the product's connections to this database are running, or
        last ran in the transaction they are in."""
        rows = self._query(
            "SELECT query FROM pg_stat_activity WHERE application_name = %s "
            "AND datname = current_database() "
            "AND state IN ('active', 'idle in transaction') "
            "AND backend_start >= to_timestamp(%s)", (APPLICATION, self.since))
        return [r[0] for r in rows]

    def copying(self) -> bool:
        """A COPY of raw rows is under way (a load writing a file's rows)."""
        return any(s.lstrip().upper().startswith("COPY ") and "tchap_stats." not in s
                   for s in self.statements())

    def refreshing(self) -> bool:
        """A transaction of the summaries' refresh is under way."""
        return any(SUMMARY_STATEMENT.search(s) for s in self.statements())

    def loads(self, status: str = "loaded") -> int:
        return self._query("SELECT count(*) FROM tchap_stats.loads WHERE status = %s",
                           (status,))[0][0]


# The tables only a refresh writes (active_daily_staged, which loads write, does not match).
SUMMARY_STATEMENT = re.compile(
    r"tchap_stats\.(summary_queue|user_visits_daily|active_daily|active_monthly|"
    r"active_rolling_30d|user_devices_monthly|user_months|rolling_last_active)\b")


# ------------------------------------------------------------------ comparing databases


def compared_relations(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """Every table and view the data lives in or the dashboards read: those of schema
    public (partitioned tables whole, not their partitions) and of schema tchap_stats,
    but the ledger's."""
    rows = conn.execute(
        "SELECT n.nspname, c.relname FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname IN ('public', 'tchap_stats') AND c.relkind IN ('r', 'p', 'v', 'm') "
        "AND NOT c.relispartition ORDER BY 1, 2").fetchall()
    return [(s, t) for s, t in rows if not (s == "tchap_stats" and t in LEDGER_TABLES)]


@contextlib.contextmanager
def _reading(url: str, today: date | None) -> Iterator[psycopg.Connection]:
    """One snapshot of the database, in UTC, with the dashboards' "today" pinned."""
    with psycopg.connect(url, autocommit=True, application_name="faultkit-compare") as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        if today is not None:
            conn.execute("SELECT set_config('tchap_stats.today', %s, false)",
                         (today.isoformat(),))
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            yield conn
        finally:
            conn.execute("ROLLBACK")


def table_fingerprints(url: str, today: date | None = None) -> dict[str, str]:
    """Per relation ("schema.name"): its row count and a hash of its rows as a multiset,
    the sums of two 60-bit slices of each row's md5 (no sort: a few seconds less per
    database than the md5 of the sorted rows). Views whose window is relative to the date
    read it from `today` when given."""
    fingerprints = {}
    with _reading(url, today) as conn:
        for schema, name in compared_relations(conn):
            count, high, low = conn.execute(sql.SQL(
                "SELECT count(*), sum(('x' || left(h, 15))::bit(60)::bigint), "
                "sum(('x' || right(h, 15))::bit(60)::bigint) "
                "FROM (SELECT md5(r::text) AS h FROM {} AS r) AS rows"
            ).format(sql.Identifier(schema, name))).fetchone()
            digest = f"{int(high or 0):x}.{int(low or 0):x}"
            fingerprints[f"{schema}.{name}"] = f"{count} rows, hash {digest}"
    return fingerprints


def fingerprints_of(urls: list[str], today: date | None = None) -> list[dict[str, str]]:
    """table_fingerprints of several databases at once (a thread each)."""
    with ThreadPoolExecutor(len(urls)) as pool:
        return list(pool.map(lambda url: table_fingerprints(url, today), urls))


def row_digests(url: str, relations: list[str], today: date | None = None
                ) -> dict[str, Counter[str]]:
    """Per relation, the multiset of its rows' md5: what `rows_differing` compares."""
    found = {}
    with _reading(url, today) as conn:
        for relation in relations:
            schema, name = relation.split(".", 1)
            rows = conn.execute(sql.SQL("SELECT md5(r::text) FROM {} AS r").format(
                sql.Identifier(schema, name))).fetchall()
            found[relation] = Counter(r[0] for r in rows)
    return found


def rows_differing(expected: dict[str, Counter[str]], actual: dict[str, Counter[str]]
                   ) -> dict[str, tuple[int, int]]:
    """Per relation that differs: (rows of `expected` missing from `actual`, extra rows)."""
    differing = {}
    for relation, rows in expected.items():
        other = actual.get(relation, Counter())
        lost, extra = sum((rows - other).values()), sum((other - rows).values())
        if lost or extra:
            differing[relation] = (lost, extra)
    return differing


def differences(expected: dict[str, str], actual: dict[str, str]) -> dict[str, tuple]:
    """The relations whose fingerprints differ: {name: (expected, actual)}."""
    names = sorted(set(expected) | set(actual))
    return {n: (expected.get(n), actual.get(n)) for n in names
            if expected.get(n) != actual.get(n)}


# ------------------------------------------------------------------ databases and servers


def create_database(server_url: str, name: str, template: str | None = None) -> str:
    """A new database on the server of `server_url`; returns its URL."""
    statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template:
        statement = sql.SQL("{} TEMPLATE {}").format(statement, sql.Identifier(template))
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(statement)
    return psycopg.conninfo.make_conninfo(server_url, dbname=name)


def drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))


def pg_bin_dir() -> Path:
    """The directory of pg_ctl: pgserver's own (pginstall/bin), else a system one."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import pgserver  # type: ignore[import-untyped]
        except ImportError:
            pgserver = None
    if pgserver is not None:
        candidate = Path(pgserver.__file__).parent / "pginstall" / "bin"
        if (candidate / "pg_ctl").exists():
            return candidate
    from tchap_stats.database import _find_pg_bin

    found = _find_pg_bin()
    if found is None:
        raise RuntimeError("no pg_ctl: install pgserver or PostgreSQL")
    return found


START_TIMEOUT = 120.0  # seconds for a restarted server's crash recovery


class PrivatePostgres:
    """A PostgreSQL server of one's own (pgserver, unix socket only, in `pgdata`), that
    can be stopped hard and started again while clients are connected."""

    def __init__(self, pgdata: Path):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pgserver  # type: ignore[import-untyped]

        self.pgdata = pgdata.resolve()
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self.server = pgserver.get_server(self.pgdata, cleanup_mode="stop")
        self.url = self.server.get_uri()
        self.stops = 0

    def stop_immediate(self) -> None:
        """`pg_ctl stop -m immediate`: every backend quits at once, no checkpoint; the
        next start recovers from the WAL, as after a crash."""
        subprocess.run([str(pg_bin_dir() / "pg_ctl"), "-D", str(self.pgdata), "-m",
                        "immediate", "-w", "-t", "60", "stop"], check=True,
                       capture_output=True, timeout=90, user=self.server.system_user)
        self.stops += 1

    def start(self) -> None:
        """Start the server again on the same data directory and socket. Its crash recovery
        can outlast pgserver's 10-second wait for pg_ctl on a slow disk (it did once, with
        reads at 200 to 400 ms): the postmaster goes on starting, and is waited for here."""
        with self.server._lock:
            try:
                self.server.ensure_postgres_running()
            except subprocess.TimeoutExpired:
                if not wait_until(self._ready, START_TIMEOUT, poll=0.5):
                    raise
                self.server.ensure_postgres_running()
        url = self.server.get_uri()
        if url != self.url:
            raise RuntimeError(f"the server came back elsewhere: {url} after {self.url}")

    def _ready(self) -> bool:
        from pgserver.utils import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(self.pgdata)
        return info is not None and info.is_running() and info.status == "ready"

    def close(self) -> None:
        self.server.cleanup()


def has_traceback(text: str) -> bool:
    return "Traceback (most recent call last)" in text
