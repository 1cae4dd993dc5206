"""PostgreSQL connections: DATABASE_URL in production, an embedded server otherwise.

The embedded server is for the demo and the tests only. It is `pgserver` (a PostgreSQL
shipped inside a wheel) when installed, else the initdb/pg_ctl of a system PostgreSQL,
else a clear error explaining DATABASE_URL. Its data lives under .tchap-stats/ in the
working directory and is reused across runs.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol, TypeVar

import psycopg

EMBEDDED_DIR = Path(".tchap-stats")


class DatabaseError(RuntimeError):
    pass


_Row = TypeVar("_Row", covariant=True)


class _Fetches(Protocol[_Row]):
    def fetchone(self) -> _Row | None: ...


def one(cursor: _Fetches[_Row]) -> _Row:
    """The row of a query that always returns one (an aggregate, a function call): a
    psycopg or DuckDB cursor's fetchone(), which the drivers type as maybe None."""
    row = cursor.fetchone()
    if row is None:
        raise AssertionError("the query returned no row")
    return row


def connect(url: str, autocommit: bool = False) -> psycopg.Connection:
    conn = psycopg.connect(url, autocommit=autocommit, application_name="tchap-stats")
    # Dates are always derived explicitly in the configured zone; UTC keeps anything
    # implicit (logs, now()) unambiguous.
    conn.execute("SET TIME ZONE 'UTC'")
    if not autocommit:
        conn.commit()
    return conn


@contextmanager
def local_setting(conn: psycopg.Connection, name: str, value: str) -> Iterator[None]:
    """A server setting for the statements run inside the block only (within the caller's
    transaction), then back to what it was: the rest of the transaction plans as configured."""
    previous = one(conn.execute("SELECT current_setting(%s)", (name,)))[0]
    conn.execute("SELECT set_config(%s, %s, true)", (name, value))
    try:
        yield
    finally:
        # A failed transaction forgets the setting as it rolls back: restoring it there
        # would only replace the statement's error with "transaction is aborted".
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.INERROR:
            conn.execute("SELECT set_config(%s, %s, true)", (name, previous))


def resolve_database_url(database_url: str | None) -> str:
    """DATABASE_URL when set; otherwise start (or reuse) the embedded server."""
    if database_url:
        return database_url
    url = start_embedded(EMBEDDED_DIR / "pgdata")
    print(f"DATABASE_URL is not set: using the embedded PostgreSQL in {EMBEDDED_DIR}/pgdata",
          file=sys.stderr)
    return url


class _EmbeddedServer(Protocol):  # what is used of pgserver's PostgresServer
    def get_uri(self) -> str: ...


_embedded_servers: dict[Path, _EmbeddedServer] = {}


def start_embedded(pgdata: Path) -> str:
    pgdata = pgdata.resolve()
    try:
        with warnings.catch_warnings():  # platformdirs' note that XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            import pgserver
    except ImportError:
        return _start_system_postgres(pgdata)
    server = _embedded_servers.get(pgdata)
    if server is None:
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        server = pgserver.get_server(pgdata, cleanup_mode="stop")
        _embedded_servers[pgdata] = server
    return server.get_uri()


def _find_pg_bin() -> Path | None:
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


def _start_system_postgres(pgdata: Path) -> str:
    bindir = _find_pg_bin()
    if bindir is None:
        raise DatabaseError(
            "DATABASE_URL is not set and no embedded PostgreSQL is available. Either set "
            "DATABASE_URL=postgresql://user:password@host:5432/dbname, or install the "
            "embedded server with `pip install 'tchap-stats[embedded]'` (Python 3.11/3.12), "
            "or install PostgreSQL (initdb and pg_ctl on PATH)."
        )
    socket_dir = pgdata.parent / "socket"
    socket_dir.mkdir(parents=True, exist_ok=True)
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(pgdata.parent, "postgres")
        shutil.chown(socket_dir, "postgres")
    if not (pgdata / "PG_VERSION").exists():
        subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(pgdata), "-U", "postgres",
                        "--auth=trust", "--encoding=UTF8"], check=True, capture_output=True)
    status = subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(pgdata), "status"],
                            capture_output=True)
    if status.returncode != 0:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(pgdata), "-w", "-l",
                        str(pgdata.parent / "postgres.log"), "-o",
                        f"-k {socket_dir} -c listen_addresses=''", "start"],
                       check=True, capture_output=True)
    return f"postgresql://postgres@/postgres?host={socket_dir}"
