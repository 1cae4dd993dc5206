"""Each process spills into a directory of its own: two runs started from one working
directory never share DuckDB's spill files or the load's pipes, and whatever a killed run
left there is removed by the next one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

from tchap_stats.synthetic.generate import Options, generate
from tchap_stats.workdir import ProcessDir, remove_abandoned

D = date(2026, 11, 14)


def cli_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TCHAP_STATS_", "S3_"))}
    return {**env, "DATABASE_URL": database_url, **extra}


def test_two_runs_from_one_directory_both_spill_without_crashing(tmp_path, database_url,
                                                                 empty_database_url):
    """Both stage a file far larger than DuckDB's memory cap at the same time, from the same
    working directory and its default spill directory: one checkout serving two databases
    (the run lock is per database)."""
    generate(D, D, str(tmp_path / "exports"), Options(rows_per_day=150_000),
             exports=["user_daily_visits"])
    subprocess.run([sys.executable, "-m", "tchap_stats.cli", "migrate"], check=True,
                   env=cli_env(empty_database_url), capture_output=True)
    command = [sys.executable, "-m", "tchap_stats.cli", "--source", "exports", "sync",
               "--date", D.isoformat(), "--only", "user_daily_visits", "--no-refresh"]
    runs = [subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, text=True,
                             env=cli_env(url, TCHAP_STATS_DUCKDB_MEMORY="96MB"),
                             stderr=subprocess.STDOUT) for url in (database_url,
                                                                   empty_database_url)]
    outputs = [run.communicate(timeout=240)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    spill = tmp_path / ".tchap-stats" / "spill"
    assert list(spill.iterdir()) == []  # each run removed its own directory


def test_a_killed_process_directory_is_removed_by_the_next_one(tmp_path):
    spill = tmp_path / "spill"
    child = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; from tchap_stats.workdir import ProcessDir;"
         "d = ProcessDir(Path(sys.argv[1])); (d.path / 'duckdb_temp_block').write_bytes(b'x');"
         "print(d.path, flush=True); time.sleep(60)", str(spill)],
        stdout=subprocess.PIPE, text=True)
    left = Path(child.stdout.readline().strip())
    # Alive, its directory is its own: another process leaves it alone.
    assert remove_abandoned(spill) == [] and left.is_dir()
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    # A FIFO directory as killed versions before this one left them, directly under spill.
    old_pipes = spill / "tmpabc123"
    old_pipes.mkdir()
    os.mkfifo(old_pipes / "rows")
    mine = ProcessDir(spill)
    try:
        assert not left.exists() and not old_pipes.exists()
        assert [p.name for p in spill.iterdir()] == [mine.path.name]
    finally:
        mine.close()
    assert list(spill.iterdir()) == []


def test_concurrent_starts_never_remove_each_other(tmp_path):
    spill = tmp_path / "spill"
    dirs = [ProcessDir(spill) for _ in range(5)]
    started = time.monotonic()
    try:
        assert len({d.path for d in dirs}) == 5 and all(d.path.is_dir() for d in dirs)
        assert remove_abandoned(spill) == []
    finally:
        for d in dirs:
            d.close()
    assert time.monotonic() - started < 5
