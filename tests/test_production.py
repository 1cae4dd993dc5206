"""Unattended nightly runs: catching up missed nights, one run at a time, the time budget,
the run log (killed runs included), `status --json`, and the failure notice. Real
processes, the embedded PostgreSQL, and a local HTTP server for the webhook."""

from __future__ import annotations

import gzip
import http.server
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import ClassVar

import psycopg
import pytest

from tchap_stats.dates import yesterday
from tchap_stats.pipeline import EXIT_BUDGET, EXIT_BUSY, EXIT_FAILED, EXIT_MISSING, EXIT_OK
from tchap_stats.synthetic.generate import Options, generate

from .faultkit import cli_command, cli_env, table_fingerprints

YESTERDAY = yesterday("Europe/Paris")


def days_back(count: int) -> list[date]:
    return [YESTERDAY - timedelta(days=n) for n in range(count - 1, -1, -1)]


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """Five nights of visits files, to yesterday."""
    out = tmp_path / "all-files"
    days = days_back(5)
    generate(days[0], days[-1], str(out), Options(rows_per_day=300),
             exports=["user_daily_visits"])
    return out


def tchap_stats(args: list[str], database_url: str, tmp_path: Path,
                **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli_command(*args), env=cli_env(database_url, tmp_path / "spill",
                                                          **env),
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)


def loaded_days(conn: psycopg.Connection) -> list[date]:
    return [d for (d,) in conn.execute(
        "SELECT extraction_date FROM tchap_stats.loads WHERE status = 'loaded' "
        "ORDER BY load_id")]


def test_sync_catches_up_missed_nights_oldest_first(files, tmp_path, database_url, db):
    source = tmp_path / "exports"
    source.mkdir()
    days = days_back(5)
    for day in days[:2]:  # the first two nights' files arrived; the last three did not
        name = f"user_daily_visits_{day}.csv"
        shutil.copy(files / name, source / name)
    args = ["--source", str(source), "sync", "--lookback", "5", "--only", "user_daily_visits"]
    first = tchap_stats(args, database_url, tmp_path)
    assert first.returncode == EXIT_MISSING, first.stdout + first.stderr
    assert loaded_days(db) == days[:2]
    for day in days[2:]:  # they arrive: the next run loads them, the first two untouched
        name = f"user_daily_visits_{day}.csv"
        shutil.copy(files / name, source / name)
    second = tchap_stats(args, database_url, tmp_path)
    assert second.returncode == EXIT_OK, second.stdout + second.stderr
    assert loaded_days(db) == days
    assert second.stdout.count("skipped (already loaded)") == 2
    # With --date, a day's file is looked at again (a new ETag would reload it).
    again = tchap_stats(["--source", str(source), "sync", "--date", str(days[0]),
                         "--only", "user_daily_visits"], database_url, tmp_path)
    assert "skipped (already loaded with the same ETag" in again.stdout


HOLD_THE_LOCK = """
import sys, time
from tchap_stats.runs import RunLog
log = RunLog(sys.argv[1], "backfill", "backfill --from 2026-01-01 --to 2026-01-31")
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
log.finish(0)
"""


def hold_run_lock(database_url: str, seconds: float) -> subprocess.Popen[str]:
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_LOCK, database_url, str(seconds)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
    return holder


def test_one_run_at_a_time(files, tmp_path, database_url, db):
    args = ["--source", str(files), "sync", "--date", str(YESTERDAY),
            "--only", "user_daily_visits"]
    holder = hold_run_lock(database_url, 60)
    try:
        busy = tchap_stats(args, database_url, tmp_path)
        assert busy.returncode == EXIT_BUSY
        assert "another run is under way" in busy.stderr
        assert "backfill --from 2026-01-01 --to 2026-01-31" in busy.stderr
        started = time.monotonic()
        waited = tchap_stats([*args[:3], "--wait=1.5", *args[3:]], database_url, tmp_path)
        assert waited.returncode == EXIT_BUSY and time.monotonic() - started >= 1.5
        assert "after 1.5 s of waiting" in waited.stderr
        assert loaded_days(db) == []
    finally:
        holder.kill()
        holder.wait()
    # The holder was killed: its lock went with its connection, its run reads as killed.
    after = tchap_stats([*args[:3], "--wait=30", *args[3:]], database_url, tmp_path)
    assert after.returncode == EXIT_OK, after.stdout + after.stderr
    outcomes = db.execute("SELECT command, outcome FROM tchap_stats.runs_seen "
                          "ORDER BY run_id").fetchall()
    assert outcomes[0] == ("backfill", "killed") and outcomes[-1] == ("sync", "ok")


def test_a_run_stopped_by_its_budget_is_completed_by_the_next(files, tmp_path, database_url,
                                                              clean_database_url, db):
    days = days_back(5)
    args = ["--source", str(files), "backfill", "--from", str(days[0]), "--to", str(days[-1]),
            "--only", "user_daily_visits"]
    # 6 ms, counted from the process's start: gone before the first file ends, whatever
    # the machine's speed (0.3 s let a quiet machine start a second file); a run always
    # starts one file.
    stopped = tchap_stats([*args, "--max-minutes", "0.0001"], database_url, tmp_path)
    assert stopped.returncode == EXIT_BUDGET, stopped.stdout + stopped.stderr
    assert "STOPPED AT THE TIME BUDGET (exit 5)" in stopped.stdout
    assert loaded_days(db) == days[:1]
    left = db.execute("SELECT outcome, exit_code, files_left FROM tchap_stats.runs "
                      "ORDER BY run_id DESC LIMIT 1").fetchone()
    assert left == ("budget", 5, [f"user_daily_visits_{d}.csv" for d in days[1:]])
    resumed = tchap_stats(args, database_url, tmp_path)
    assert resumed.returncode == EXIT_OK, resumed.stdout + resumed.stderr
    reference = tchap_stats(args, clean_database_url, tmp_path)
    assert reference.returncode == EXIT_OK
    assert table_fingerprints(database_url, YESTERDAY) == table_fingerprints(
        clean_database_url, YESTERDAY)


@pytest.fixture
def clean_database_url(server_url: str, migrated_template: str) -> Iterator[str]:
    """A second fresh, migrated database: the uninterrupted run's."""
    from .faultkit import create_database, drop_database

    name = f"{migrated_template}_clean_{time.monotonic_ns()}"
    yield create_database(server_url, name, template=migrated_template)
    drop_database(server_url, name)


def test_status_json_shows_freshness_runs_and_killed_runs(files, tmp_path, database_url):
    tchap_stats(["--source", str(files), "sync", "--lookback", "5", "--only",
                 "user_daily_visits"], database_url, tmp_path)
    holder = hold_run_lock(database_url, 60)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    done = tchap_stats(["status", "--json", "--limit", "5"], database_url, tmp_path)
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    (visits,) = status["freshness"]
    assert visits["export"] == "user_daily_visits"
    assert visits["last_day_loaded"] == str(YESTERDAY) and visits["days_missing_last_7"] == 2
    assert [r["outcome"] for r in status["runs"]] == ["killed", "ok"]
    assert status["runs"][1]["files_loaded"] == 5 and status["runs"][1]["seconds"] > 0
    text = tchap_stats(["status"], database_url, tmp_path).stdout
    assert "user_daily_visits: " + str(YESTERDAY) in text and ": killed (exit None)" in text


class Hook(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        Hook.received.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[str]:
    Hook.received = []
    server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hooks/token-abc123"
    server.shutdown()


def test_a_failed_run_and_stale_data_post_one_notice_without_secrets(files, tmp_path,
                                                                     database_url, webhook):
    name = f"user_daily_visits_{YESTERDAY}.csv"
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / name).write_bytes(gzip.compress((files / name).read_bytes()))
    url = database_url + " password=sekret-pw"  # embedded server trusts: unused, must not leak
    done = tchap_stats(["--source", str(broken), "sync", "--date", str(YESTERDAY),
                        "--only", "user_daily_visits"], url, tmp_path,
                       TCHAP_STATS_ALERT_WEBHOOK=webhook)
    assert done.returncode == EXIT_FAILED
    (notice,) = Hook.received
    assert notice["username"] == "tchap-stats"
    assert "tchap-stats sync failed (exit 1)" in notice["text"]
    assert "gzip-compressed" in notice["text"]
    assert "user_daily_visits: never loaded" in notice["text"]
    body = json.dumps(notice)
    assert "sekret-pw" not in body and "token-abc123" not in body
    # A good night: no notice.
    Hook.received = []
    ok = tchap_stats(["--source", str(files), "sync", "--date", str(YESTERDAY),
                      "--only", "user_daily_visits"], database_url, tmp_path,
                     TCHAP_STATS_ALERT_WEBHOOK=webhook)
    assert ok.returncode == EXIT_OK and Hook.received == []


def test_data_older_than_the_threshold_posts_a_notice(files, tmp_path, database_url, webhook):
    old = days_back(5)[0]
    tchap_stats(["--source", str(files), "sync", "--date", str(old), "--only",
                 "user_daily_visits"], database_url, tmp_path, TCHAP_STATS_ALERT_WEBHOOK=webhook)
    (notice,) = Hook.received
    assert f"user_daily_visits: last day loaded {old} (5 days ago)" in notice["text"]
    assert "failed" not in notice["text"]
