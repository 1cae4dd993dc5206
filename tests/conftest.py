"""Real parts only: a real PostgreSQL (embedded pgserver, or the server of DATABASE_URL)
and S3 through a moto server speaking HTTP on loopback."""

from __future__ import annotations

import csv
import itertools
import os
from collections.abc import Iterator
from dataclasses import replace
from datetime import date
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tchap_stats.config import S3Settings, Settings
from tchap_stats.database import connect, start_embedded
from tchap_stats.exports import USER_DAILY_VISITS
from tchap_stats.pipeline import RunOptions, RunReport, run
from tchap_stats.schema import migrate
from tchap_stats.source import LocalSource, S3Source, s3_client

HEADER = USER_DAILY_VISITS.header
DATA = Path(__file__).resolve().parent / "data"  # public sample exports
_names = itertools.count(1)


@pytest.fixture(scope="session")
def server_url(tmp_path_factory) -> str:
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    return start_embedded(tmp_path_factory.mktemp("pg") / "pgdata")


@pytest.fixture(scope="session")
def migrated_template(server_url: str) -> Iterator[str]:
    """A migrated database that each test's database is copied from (faster than migrating
    each one; nothing ever connects to it after migrating, as copying requires)."""
    name = f"tchap_template_{os.getpid()}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with connect(psycopg.conninfo.make_conninfo(server_url, dbname=name),
                 autocommit=True) as conn:
        migrate(conn)
    yield name
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))


@pytest.fixture
def database_url(server_url: str, migrated_template: str) -> Iterator[str]:
    """A fresh, migrated database on the test server, dropped afterwards."""
    name = f"tchap_test_{os.getpid()}_{next(_names)}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(migrated_template)))
    url = psycopg.conninfo.make_conninfo(server_url, dbname=name)
    yield url
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))


@pytest.fixture
def empty_database_url(server_url: str) -> Iterator[str]:
    """A fresh database that nothing has migrated."""
    name = f"tchap_test_{os.getpid()}_{next(_names)}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield psycopg.conninfo.make_conninfo(server_url, dbname=name)
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection]:
    with connect(database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="session")
def s3_settings() -> Iterator[S3Settings]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield S3Settings(bucket=None, access_key_id="test-key-id",
                     secret_access_key="test-secret-key-123", endpoint=f"{host}:{port}",
                     region="us-east-1", url_style="path", use_ssl=False)
    server.stop()


@pytest.fixture
def bucket(s3_settings: S3Settings) -> str:
    name = f"exports-{os.getpid()}-{next(_names)}"
    s3_client(s3_settings).create_bucket(Bucket=name)
    return name


# Most tests put rows on whatever days they exercise, in files of any extraction day: their
# window accepts ten years each way. The acceptance window's own tests use the defaults.
WIDE_WINDOW = 3650


@pytest.fixture
def settings(tmp_path: Path, s3_settings: S3Settings) -> Settings:
    return Settings(database_url=None, s3=s3_settings, source=None,
                    spill_dir=tmp_path / "spill", duckdb_memory="256MB",
                    accept_days_before=WIDE_WINDOW, accept_days_after=WIDE_WINDOW)


@pytest.fixture
def exports_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "exports"
    directory.mkdir()
    return directory


def write_file(directory: Path, day: date, rows, header=HEADER, *,
               trailing_newline: bool = False, quoting: int = csv.QUOTE_MINIMAL) -> Path:
    """An export file as the real ones are: RFC 4180, no trailing newline."""
    path = directory / f"user_daily_visits_{day.isoformat()}.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n", quoting=quoting)
        writer.writerow(header)
        for row in rows:
            if isinstance(row, str):
                f.write(row + "\n")
            else:
                writer.writerow(row)
    if not trailing_newline:
        path.write_bytes(path.read_bytes().rstrip(b"\n"))
    return path


def upload_dir(directory: Path, s3: S3Settings, bucket: str, prefix: str = "") -> None:
    client = s3_client(s3)
    for path in sorted(directory.glob("*.csv")):
        client.upload_file(str(path), bucket, f"{prefix}{path.name}")


def load(settings: Settings, database_url: str, directory: Path | str, days: list[date],
         **options) -> RunReport:
    if isinstance(directory, str) and directory.startswith("s3://"):
        bucket, _, prefix = directory.removeprefix("s3://").partition("/")
        source = S3Source(settings.s3, bucket, prefix)
    else:
        source = LocalSource(directory)
    return run(replace(settings, source=str(directory)), database_url, source,
               [USER_DAILY_VISITS], days, RunOptions(**options))


def visits(conn: psycopg.Connection, day: date | None = None) -> list[tuple]:
    """The table's content, in a stable order, timestamps as UTC ISO text."""
    where = sql.SQL("WHERE visit_date = {}").format(sql.Literal(day)) if day else sql.SQL("")
    return conn.execute(sql.SQL(
        "SELECT visit_date::text, user_id, device_id, "
        "to_char(visit_ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), "
        "user_agent, instance, domain, platform, device_type FROM user_daily_visits {} "
        "ORDER BY visit_date, user_id COLLATE \"C\", device_id COLLATE \"C\""
    ).format(where)).fetchall()
