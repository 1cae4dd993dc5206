"""Faults on real servers on loopback: S3 connections reset or cut by a TCP proxy in front
of the moto server, the real command line killed with SIGKILL at random moments, and a
private PostgreSQL stopped (`pg_ctl stop -m immediate`) in the middle of a COPY. After each,
what the database holds must equal a run without faults, table by table and view by view.

The shared pieces (the proxy, killing, fingerprints) are in tests/faultkit.py, which
benchmarks/faults.py reuses for its long run.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from dataclasses import replace
from datetime import date
from pathlib import Path

import psycopg
import pytest

from tchap_stats.config import S3Settings, Settings
from tchap_stats.database import connect
from tchap_stats.exports import USER_DAILY_VISITS, default_exports
from tchap_stats.pipeline import EXIT_FAILED, EXIT_OK, RunReport
from tchap_stats.schema import migrate
from tchap_stats.synthetic.generate import Options, generate

from .conftest import _names, load, upload_dir
from .faultkit import (
    Child,
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
    kill_when,
    on_key,
    wait_until,
)

DAYS = [date(2024, 11, 14), date(2024, 11, 15), date(2024, 11, 16)]
TODAY = date(2024, 11, 17)  # the dashboards' "today" while comparing: the views hold rows
RUN_TIMEOUT = 180  # seconds any one command line run may take before the test fails


@pytest.fixture
def clean_database_url(server_url: str, migrated_template: str) -> Iterator[str]:
    """A second fresh database, for the run without faults."""
    name = f"tchap_clean_{os.getpid()}_{next(_names)}"
    url = create_database(server_url, name, migrated_template)
    yield url
    drop_database(server_url, name)


@pytest.fixture
def proxy(s3_settings: S3Settings) -> Iterator[FaultProxy]:
    with FaultProxy(s3_settings.endpoint) as running:
        yield running


@pytest.fixture
def visits_files(tmp_path: Path) -> Path:
    directory = tmp_path / "files"
    generate(DAYS[0], DAYS[-1], str(directory), Options(rows_per_day=2_000),
             exports=[USER_DAILY_VISITS.name])
    return directory


@pytest.fixture
def visits_bucket(visits_files: Path, s3_settings: S3Settings, bucket: str) -> str:
    upload_dir(visits_files, s3_settings, bucket)
    return f"s3://{bucket}"


def through(settings: Settings, proxy: FaultProxy) -> Settings:
    """The same settings, reading S3 through the proxy."""
    return replace(settings, s3=replace(settings.s3, endpoint=proxy.endpoint))


def figures(report: RunReport) -> list[tuple]:
    return [(o.name, o.status, o.rows_read, o.rows_loaded, o.rows_duplicate, o.rows_rejected,
             o.days_changed) for o in report.outcomes]


def assert_same_content(expected_url: str, actual_url: str) -> None:
    """Every table and view but the ledger's holds the same rows in both databases."""
    expected, actual = fingerprints_of([expected_url, actual_url], TODAY)
    assert differences(expected, actual) == {}


# ------------------------------------------------------------------- S3 through a proxy


@pytest.mark.parametrize(("method", "client", "where"), [
    ("GET", "duckdb", 0.5),     # DuckDB's read of the whole file, half-way through its body
    ("GET", "botocore", 0.05),  # the header line's ranged GET, inside the body
    ("HEAD", "duckdb", 0.0),    # DuckDB's HEAD, before any response
    ("HEAD", "botocore", 0.0),  # finding the file, before any response
])
def test_a_connection_reset_is_retried_and_the_file_loads(
        settings, proxy, visits_files, visits_bucket, database_url, clean_database_url,
        method, client, where):
    name = USER_DAILY_VISITS.file_name(DAYS[1])
    after = int((visits_files / name).stat().st_size * where)
    fault = proxy.reset(1, after_bytes=after, match=on_key(name, (method,), client))

    report = load(through(settings, proxy), database_url, visits_bucket, DAYS)

    assert fault.fired == 1, proxy.requests
    assert [o.status for o in report.outcomes] == ["loaded"] * 3, [
        o.summary() for o in report.outcomes]
    clean = load(settings, clean_database_url, visits_bucket, DAYS)
    assert figures(report) == figures(clean)
    assert_same_content(clean_database_url, database_url)


@pytest.mark.parametrize(("methods", "client"), [
    ((), None),               # every request for the key: it cannot even be found
    (("GET",), "duckdb"),     # found, its header read, but DuckDB cannot read it
    (("GET",), "botocore"),   # found, but its header line cannot be read
])
def test_a_file_cut_off_for_good_fails_alone(
        settings, proxy, visits_bucket, database_url, clean_database_url, methods, client):
    name = USER_DAILY_VISITS.file_name(DAYS[1])
    fault = proxy.cut(on_key(name, methods, client))

    report = load(through(settings, proxy), database_url, visits_bucket, DAYS)

    assert fault.fired >= 1
    by_name = {o.name: o for o in report.outcomes}
    assert by_name[name].status == "failed" and by_name[name].error
    others = [o for o in report.outcomes if o.name != name]
    assert [o.status for o in others] == ["loaded", "loaded"], [o.summary() for o in others]
    assert report.refresh is not None
    assert report.exit_code == EXIT_FAILED
    clean = load(settings, clean_database_url, visits_bucket, [DAYS[0], DAYS[2]])
    assert figures(clean) == figures(RunReport(others, 0.0))
    assert_same_content(clean_database_url, database_url)


# ------------------------------------------------------------------- SIGKILL, repeatedly


def run_to_completion(args: list[str], env: dict[str, str], workdir: Path) -> Finished:
    with Child(args, env, workdir) as child:
        finished = child.wait(RUN_TIMEOUT)
    assert not has_traceback(finished.output), finished.output
    return finished


def kill_plan(rng: random.Random, watcher: Watcher, seconds: float, files: int):
    """When each attempt's process is killed: (name, trigger); a trigger returns whether it
    killed. A random moment of the clean run's duration, after a random number of files
    more (twice), during the refresh (twice: the second run refreshes what the first
    left), then a random moment again (by then, of a run with little left to do)."""

    def after_delay(child: Child) -> bool:
        return kill_at(child, rng.uniform(0.05, 0.5) * seconds)

    def after_files(child: Child) -> bool:
        target = min(watcher.loads() + rng.randint(2, 10), files - 1)
        return kill_when(child, lambda: watcher.loads() >= target, RUN_TIMEOUT,
                         rng.uniform(0.0, 0.2))

    def in_refresh(child: Child) -> bool:
        return kill_when(child, watcher.refreshing, RUN_TIMEOUT, rng.uniform(0.0, 0.1))

    return [("delay", after_delay), ("files", after_files), ("files", after_files),
            ("refresh", in_refresh), ("refresh", in_refresh), ("delay", after_delay)]


def test_sigkills_at_random_moments_lose_nothing(tmp_path, database_url, clean_database_url):
    first, last = date(2024, 11, 10), date(2024, 11, 15)
    files = tmp_path / "exports"
    exports = [e.name for e in default_exports()]
    generate(first, last, str(files), Options(rows_per_day=2_000), exports=exports)
    args = cli_command("--source", str(files), "backfill", "--from", first.isoformat(),
                       "--to", last.isoformat(), "--jobs", "2")
    clean = run_to_completion(args, cli_env(clean_database_url, tmp_path / "spill-clean"),
                              tmp_path / "clean")
    assert clean.returncode == EXIT_OK, clean.output

    env = cli_env(database_url, tmp_path / "spill")
    watcher = Watcher(database_url)
    killed: list[str] = []
    try:
        plan = kill_plan(random.Random(20241114), watcher, clean.seconds,
                         len(exports) * 6)
        for attempt, (name, trigger) in enumerate(plan):
            with Child(args, env, tmp_path / f"attempt-{attempt}") as child:
                watcher.since = child.wall_start
                if trigger(child):
                    killed.append(name)
                finished = child.wait(RUN_TIMEOUT)
            assert finished.killed or finished.returncode == EXIT_OK, finished.output
    finally:
        watcher.close()
    assert len(killed) >= 4 and "refresh" in killed, killed

    final = run_to_completion(args, env, tmp_path / "final")
    assert final.returncode == EXIT_OK, final.output
    assert_same_content(clean_database_url, database_url)
    with connect(database_url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM tchap_stats.loads "
                            "WHERE status = 'running'").fetchone()[0] == 0


# ---------------------------------------------------- PostgreSQL stopped during a COPY

DB_PASSWORD = "pg-password-never-printed-31337"
S3_SECRET = "s3-secret-never-printed-4242"


@pytest.fixture
def private_postgres(tmp_path: Path) -> Iterator[PrivatePostgres]:
    server = PrivatePostgres(tmp_path / "pg" / "pgdata")
    try:
        yield server
    finally:
        server.close()


def migrated_database(server: PrivatePostgres, name: str) -> str:
    """A migrated database on the private server, its URL carrying a password (trust
    authentication ignores it; the output must never show it)."""
    url = create_database(server.url, name)
    with connect(url, autocommit=True) as conn:
        migrate(conn)
    return psycopg.conninfo.make_conninfo(url, password=DB_PASSWORD)


def test_postgresql_stopping_in_the_middle_of_a_copy_loses_nothing(tmp_path,
                                                                   private_postgres):
    day = date(2024, 11, 14)
    files = tmp_path / "exports"
    generate(day, day, str(files), Options(rows_per_day=60_000),
             exports=[USER_DAILY_VISITS.name])
    faulted = migrated_database(private_postgres, "faulted")
    clean = migrated_database(private_postgres, "clean")
    args = cli_command("--source", str(files), "sync", "--date", day.isoformat(), "--only",
                       USER_DAILY_VISITS.name)

    def env(url: str) -> dict[str, str]:
        return cli_env(url, tmp_path / "spill", S3_SECRET_ACCESS_KEY=S3_SECRET,
                       S3_ACCESS_KEY_ID="key-id")

    watcher = Watcher(faulted)
    with Child(args, env(faulted), tmp_path / "stopped") as child:
        watcher.since = child.wall_start
        try:
            copying = wait_until(watcher.copying, RUN_TIMEOUT, child, poll=0.005)
        finally:
            watcher.close()
        assert copying, child.wait(RUN_TIMEOUT).output
        private_postgres.stop_immediate()
        stopped = child.wait(RUN_TIMEOUT)
    private_postgres.start()

    assert stopped.returncode != EXIT_OK
    assert not has_traceback(stopped.output), stopped.output
    for secret in (DB_PASSWORD, S3_SECRET):
        assert secret not in stopped.output
    again = run_to_completion(args, env(faulted), tmp_path / "again")
    assert again.returncode == EXIT_OK, again.output
    reference = run_to_completion(args, env(clean), tmp_path / "clean")
    assert reference.returncode == EXIT_OK, reference.output
    assert_same_content(clean, faulted)


def test_the_proxy_forwards_to_loopback_only():
    with pytest.raises(ValueError, match="loopback"):
        FaultProxy("192.0.2.1:9000")
