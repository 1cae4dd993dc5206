"""What an operator meets when runs overlap or die, and when a file is misnamed: real
PostgreSQL connections and `tchap-stats` processes, and S3 through the moto server."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import date, timedelta
from pathlib import Path

import psycopg
import pytest

from tchap_stats import ledger
from tchap_stats.config import ConfigError, Settings
from tchap_stats.database import connect
from tchap_stats.exports import EXPORTS, USER_DAILY_VISITS
from tchap_stats.filenames import near_miss_note
from tchap_stats.load import LockTimeout, lock_days
from tchap_stats.source import LocalSource, S3Source, s3_client

from .conftest import write_file

D = date(2024, 11, 14)
UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"


@pytest.fixture
def holder(database_url: str):
    """A second connection, in a transaction of its own (another run's load)."""
    with connect(database_url) as conn:
        yield conn


def _waiting_pids(db: psycopg.Connection) -> list[int]:
    return [pid for (pid,) in db.execute(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")]


# --- lock_days ---------------------------------------------------------------------------


def test_a_load_waiting_for_a_day_says_who_holds_it_and_gives_up(db, holder, caplog):
    lock_days(holder, USER_DAILY_VISITS, [D])
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="tchap_stats"), \
            pytest.raises(LockTimeout) as error, db.transaction():
        lock_days(db, USER_DAILY_VISITS, [D - timedelta(days=1), D], timeout=1)
    assert 0.9 < time.monotonic() - started < 10
    message, pid = str(error.value), holder.info.backend_pid
    assert message.startswith("user_daily_visits 2024-11-14: another load is writing it "
                              f"(held by backend pid {pid}, in a transaction open for ")
    assert "gave up waiting after 1 s (TCHAP_STATS_LOCK_TIMEOUT)" in message
    waiting = [r for r in caplog.records if r.levelno == logging.INFO and "waiting" in r.message]
    assert len(waiting) == 1
    assert waiting[0].message.startswith(
        "user_daily_visits 2024-11-14: waiting for another load to finish writing it (held "
        f"by backend pid {pid}, in a transaction open for ")
    assert waiting[0].message.endswith("; giving up in 1 s (TCHAP_STATS_LOCK_TIMEOUT)")
    # The failed transaction let go of the day it had taken (the 13th) too.
    assert db.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                      "AND pid = pg_backend_pid()").fetchone()[0] == 0
    assert db.execute("SELECT current_setting('lock_timeout')").fetchone()[0] == "0"


def test_the_holder_is_named_by_its_running_load(db, holder):
    file = ledger.SourceFile("user_daily_visits_2024-11-14.csv", "url", "etag", 1)
    ledger.start(holder, "user_daily_visits", file, D, "merge")
    holder.commit()  # as the pipeline does: its loads start outside the write transaction
    lock_days(holder, USER_DAILY_VISITS, [D])
    with pytest.raises(LockTimeout, match=r"the load of user_daily_visits_2024-11-14\.csv"), \
            db.transaction():
        lock_days(db, USER_DAILY_VISITS, [D], timeout=0.2)


def test_a_waiting_load_gets_the_day_as_soon_as_the_other_commits(db, holder):
    lock_days(holder, USER_DAILY_VISITS, [D])
    release = threading.Timer(0.5, holder.commit)
    release.start()
    started = time.monotonic()
    with db.transaction():
        lock_days(db, USER_DAILY_VISITS, [D], timeout=30)
        assert db.execute("SELECT current_setting('lock_timeout')").fetchone()[0] == "0"
    release.join()
    assert 0.4 < time.monotonic() - started < 5


def test_no_wait_at_all_with_a_zero_timeout_and_one_lock_for_a_whole_table(db, holder,
                                                                             caplog):
    account_data = EXPORTS["account_data"]  # unpartitioned
    lock_days(holder, account_data, [D])
    with caplog.at_level(logging.INFO, logger="tchap_stats"), \
            pytest.raises(LockTimeout, match=r"^account_data \(the whole table\): another"), \
            db.transaction():
        lock_days(db, account_data, [D + timedelta(days=3)], timeout=0)
    assert not [r for r in caplog.records if "waiting" in r.message]
    with db.transaction():  # another export's days are free
        lock_days(db, USER_DAILY_VISITS, [D], timeout=0)


@pytest.mark.parametrize(("value", "seconds"), [(None, 600), ("", 600), ("2.5", 2.5),
                                                ("0", 0), (" 30 ", 30)])
def test_the_lock_timeout_comes_from_the_environment(monkeypatch, value, seconds):
    if value is None:
        monkeypatch.delenv("TCHAP_STATS_LOCK_TIMEOUT", raising=False)
    else:
        monkeypatch.setenv("TCHAP_STATS_LOCK_TIMEOUT", value)
    assert Settings.from_env().lock_timeout == seconds


@pytest.mark.parametrize("value", ["ten", "-1", "nan", "inf"])
def test_a_bad_lock_timeout_is_a_config_error_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv("TCHAP_STATS_LOCK_TIMEOUT", value)
    with pytest.raises(ConfigError, match="TCHAP_STATS_LOCK_TIMEOUT"):
        Settings.from_env()


# --- real runs -----------------------------------------------------------------------------


def _environment(database_url: str, tmp_path: Path, **variables: str) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items()
                   if not k.startswith(("S3_", "TCHAP_STATS_", "DATABASE_URL"))}
    environment.update(DATABASE_URL=database_url,
                       TCHAP_STATS_SPILL_DIR=str(tmp_path / "spill"), **variables)
    return environment


def _sync(exports_dir: Path) -> list[str]:
    return [sys.executable, "-m", "tchap_stats", "--source", str(exports_dir), "sync",
            "--date", str(D), "--only", "user_daily_visits", "--no-refresh"]


def _row(user: str) -> tuple[str, ...]:
    return (user, "DEV", "2024-11-14 10:00:00+01", UA, "agent_x", "x.gouv.fr")


def test_a_sync_waiting_for_another_runs_day_says_so_then_fails_after_the_timeout(
        database_url, db, holder, exports_dir, tmp_path):
    write_file(exports_dir, D, [_row("@a")])
    lock_days(holder, USER_DAILY_VISITS, [D])
    started = time.monotonic()
    result = subprocess.run(_sync(exports_dir), capture_output=True, text=True, timeout=120,
                            env=_environment(database_url, tmp_path,
                                             TCHAP_STATS_LOCK_TIMEOUT="2"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert time.monotonic() - started > 2
    pid = holder.info.backend_pid
    assert ("INFO user_daily_visits 2024-11-14: waiting for another load to finish writing "
            f"it (held by backend pid {pid}, in a transaction open for ") in result.stderr
    assert "gave up waiting after 2 s (TCHAP_STATS_LOCK_TIMEOUT)" in result.stderr
    assert db.execute("SELECT count(*) FROM user_daily_visits").fetchone()[0] == 0
    assert db.execute("SELECT status FROM tchap_stats.loads").fetchone()[0] == "failed"


def _wait_for(condition, seconds: float = 30):
    deadline = time.monotonic() + seconds
    while not (value := condition()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return value


def test_status_shows_a_sync_killed_while_waiting_as_interrupted(database_url, db, holder,
                                                                   exports_dir, tmp_path):
    write_file(exports_dir, D, [_row("@a")])
    lock_days(holder, USER_DAILY_VISITS, [D])
    environment = _environment(database_url, tmp_path, TCHAP_STATS_LOCK_TIMEOUT="120")
    with (tmp_path / "sync.err").open("w") as stderr:
        process = subprocess.Popen(_sync(exports_dir), stdout=subprocess.DEVNULL,
                                   stderr=stderr, env=environment)
        try:
            pid = _wait_for(lambda: [p for p in _waiting_pids(db) if db.execute(
                "SELECT 1 FROM tchap_stats.loads WHERE status = 'running' "
                "AND backend_pid = %s", (p,)).fetchone()])[0]
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
    holder.commit()  # the killed run's backend gets the lock, finds its client gone, ends
    _wait_for(lambda: not db.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s",
                                     (pid,)).fetchone())
    status = subprocess.run([sys.executable, "-m", "tchap_stats", "status"],
                            capture_output=True, text=True, timeout=60,
                            env=_environment(database_url, tmp_path))
    assert status.returncode == 0, status.stderr
    assert "user_daily_visits_2024-11-14.csv: interrupted (read 0" in status.stdout
    assert "the process running this load stopped before it finished" in status.stdout
    assert ": running" not in status.stdout


def test_a_load_whose_backend_pid_was_reused_is_interrupted(database_url, db):
    """The pid of a killed load's backend, taken since by a newer session (a dashboard's
    pooled connection, say), keeps no load running."""
    with connect(database_url, autocommit=True) as newer:
        db.execute("INSERT INTO tchap_stats.loads (export, file_key, mode, status, "
                   "started_at, backend_pid) VALUES ('user_daily_visits', 'old.csv', "
                   "'merge', 'running', now() - interval '1 hour', %s)",
                   (newer.info.backend_pid,))
        line, = ledger.last_loads(db, 1)
        assert (line.status, line.error) == ("interrupted", ledger.INTERRUPTED)
        assert ledger.mark_interrupted(db) == 1
    ledger.start(db, "user_daily_visits", ledger.SourceFile("new.csv", "u", "e", 1), D,
                 "merge")
    assert ledger.last_loads(db, 1)[0].status == "running"  # this session's own
    assert ledger.mark_interrupted(db) == 0


# --- near misses -----------------------------------------------------------------------------

EXPECTED = "user_daily_visits_2026-12-01.csv"
NEAR = ["user_daily_visits-2026-12-01.csv", "user_daily_visits_2026-12-01.CSV",
        "user_daily_visits_2026-12-01.csv.gz", "user_daily_visits_2026-12-1.csv",
        "user_daily_visits_2026_12_01.Csv", "user_daily_visits_20261201.csv",
        "user_daily_visits_2026-12-01.csv.GZ", "user_daily_visits_2026-12-01"]
FAR = ["user_daily_visits_2026-12-02.CSV", "user_daily_visits_2026-11-01.csv.gz",
       "sso_2026-12-01.CSV", "user_daily_visits_extra_2026-12-01.csv",
       "user_daily_visits_2026-13-01.csv", "user_daily_visits_2026-12-01.csv.bak",
       "USER_DAILY_VISITS_2026-12-01.csv"]


def test_a_local_source_lists_the_near_misses_of_a_missing_file(exports_dir):
    for name in [*NEAR, *FAR]:
        (exports_dir / name).write_text("x")
    (exports_dir / "user_daily_visits_2026-12-01.CSV.d").mkdir()  # not a file
    source = LocalSource(exports_dir)
    assert source.near_misses(EXPECTED) == sorted(NEAR)
    assert source.near_misses("user_daily_visits_2026-12-03.csv") == []
    assert source.near_misses("notes.txt") == []
    (exports_dir / EXPECTED).write_text("x")  # the file itself is no near miss
    (exports_dir / "user_daily_visits_2026-12-01.tsv").write_text("x")
    assert source.near_misses(EXPECTED) == sorted([*NEAR, "user_daily_visits_2026-12-01.tsv"])


def _put(s3_settings, bucket: str, keys: list[str]) -> None:
    client = s3_client(s3_settings)
    for key in keys:
        client.put_object(Bucket=bucket, Key=key, Body=b"x")


def _count_listings(source: S3Source) -> list[str]:
    calls: list[str] = []
    source.client.meta.events.register(
        "before-call.s3.ListObjectsV2", lambda params, **_: calls.append(params["url_path"]))
    return calls


def test_an_s3_source_lists_each_exports_names_once_page_by_page(s3_settings, bucket):
    _put(s3_settings, bucket, [f"daily/{n}" for n in [*NEAR, *FAR]]
         + ["daily/user_daily_visits_2026-12-01/part.csv",  # a "subdirectory"
            "user_daily_visits_2026-12-01.CSV", "other/user_daily_visits_2026-12-01.CSV"])
    source = S3Source(s3_settings, bucket, "daily")
    source.list_page_size = 3
    listings = _count_listings(source)
    assert source.near_misses(EXPECTED) == sorted(NEAR)
    pages = len(listings)
    assert pages == 5  # 13 keys start with daily/user_daily_visits, and a "subdirectory"
    _put(s3_settings, bucket, ["daily/user_daily_visits_2026-12-02.csv.gz"])
    assert source.near_misses("user_daily_visits_2026-12-02.csv") == [
        "user_daily_visits_2026-12-02.CSV"]  # the export's listing of the run
    assert len(listings) == pages
    assert source.near_misses("sso_2026-12-01.csv") == ["sso_2026-12-01.CSV"]
    assert len(listings) == pages + 1
    assert source.near_misses("no_date.csv") == []
    assert len(listings) == pages + 1


def test_an_s3_source_without_a_prefix_finds_near_misses_at_the_top(s3_settings, bucket):
    _put(s3_settings, bucket, ["user_daily_visits_2026-12-01.CSV",
                               "daily/user_daily_visits_2026-12-01.CSV"])
    assert S3Source(s3_settings, bucket).near_misses(EXPECTED) == [
        "user_daily_visits_2026-12-01.CSV"]


def test_a_failing_listing_finds_no_near_miss_and_says_why(s3_settings, caplog):
    source = S3Source(s3_settings, f"no-such-bucket-{os.getpid()}", "daily")
    listings = _count_listings(source)
    with caplog.at_level(logging.INFO, logger="tchap_stats"):
        assert source.near_misses(EXPECTED) == []
        assert source.near_misses("user_daily_visits_2026-12-02.csv") == []
    assert len(listings) == 1  # not tried again for every missing file
    logged, = [r.message for r in caplog.records if "near misses" in r.message]
    assert logged.startswith(f"could not list s3://no-such-bucket-{os.getpid()}/daily/"
                             "user_daily_visits* to look for near misses")
    assert "NoSuchBucket" in logged


def test_the_note_of_a_missing_file_says_what_to_do_with_its_near_misses():
    assert near_miss_note([]) is None
    assert near_miss_note(["user_daily_visits_2026-12-01.CSV"]) == (
        "found near misses: user_daily_visits_2026-12-01.CSV — rename it to load it")
    assert near_miss_note(["a_2026-12-01.CSV", "a_2026-12-01.csv.gz"]) == (
        "found near misses: a_2026-12-01.CSV, a_2026-12-01.csv.gz — rename the right one "
        "to load it (decompressed: runs read plain CSV)")
