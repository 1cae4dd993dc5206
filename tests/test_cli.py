"""The `tchap-stats` command line, run in-process with click's CliRunner against the real
PostgreSQL of the tests and the moto S3 server."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner, Result

from tchap_stats import ledger
from tchap_stats.cli import cli
from tchap_stats.config import S3Settings
from tchap_stats.exports import EXPORTS
from tchap_stats.source import s3_client

from .conftest import upload_dir, write_file

D = date(2024, 11, 14)
UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"
COMMANDS = ["migrate", "sync", "backfill", "refresh", "check", "status", "generate", "demo",
            "exports", "migrate-legacy", "archive", "restore", "lake-sql"]

# Variables the command reads; every invocation starts from none of them set.
READ_VARIABLES = [
    "DATABASE_URL", "S3_BUCKET_NAME", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY", "S3_ENDPOINT",
    "S3_REGION", "S3_URL_STYLE", "S3_USE_SSL", "TCHAP_STATS_SOURCE", "TCHAP_STATS_TZ",
    "TCHAP_STATS_EXPORTS", "TCHAP_STATS_REJECT_THRESHOLD", "TCHAP_STATS_DUCKDB_MEMORY",
    "TCHAP_STATS_SPILL_DIR", "TCHAP_STATS_LOCK_TIMEOUT", "TCHAP_STATS_ACCEPT_DAYS_BEFORE",
    "TCHAP_STATS_ACCEPT_DAYS_AFTER", "TCHAP_STATS_PREAGGREGATE", "TCHAP_STATS_LOOKBACK_DAYS",
    "TCHAP_STATS_ALERT_WEBHOOK", "TCHAP_STATS_ALERT_STALE_DAYS", "TCHAP_STATS_LAKE_PATH",
    "TCHAP_STATS_KEEP_MONTHS",
]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch) -> Iterator[None]:
    """Run in a scratch directory, and put back the logging the command reconfigures."""
    monkeypatch.chdir(tmp_path)
    root = logging.getLogger()
    ours = logging.getLogger("tchap_stats")
    saved = (root.handlers[:], root.level, ours.level)
    yield
    root.handlers[:], root.level = saved[0], saved[1]
    ours.setLevel(saved[2])


def invoke(args: list[str], tmp_path: Path, **env: str) -> Result:
    environment: dict[str, str | None] = dict.fromkeys(READ_VARIABLES)
    environment["TCHAP_STATS_SPILL_DIR"] = str(tmp_path / "spill")
    environment.update(env)
    return CliRunner().invoke(cli, args, env=environment, catch_exceptions=False)


def s3_env(s3: S3Settings) -> dict[str, str]:
    return {"S3_ENDPOINT": s3.endpoint_url, "S3_URL_STYLE": s3.url_style,
            "S3_ACCESS_KEY_ID": s3.access_key_id, "S3_SECRET_ACCESS_KEY": s3.secret_access_key,
            "S3_REGION": s3.region}


def row(user: str, ts: str = "2024-11-14 10:00:00+01") -> tuple[str, ...]:
    return (user, "DEV", ts, UA, "agent_x", "x.gouv.fr")


def test_the_command_list_is_complete():
    assert sorted(cli.commands) == sorted(COMMANDS)


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_every_help_shows_an_example(command, tmp_path):
    args = ["--help"] if command is None else [command, "--help"]
    result = invoke(args, tmp_path)
    assert result.exit_code == 0, result.output
    assert "Example" in result.output
    if command is None:
        assert all(c in result.output for c in COMMANDS)


def test_backfill_names_the_missing_file_loads_the_other_and_exits_3(
        database_url, db, exports_dir, tmp_path):
    write_file(exports_dir, D, [row("@a"), row("@b")])
    result = invoke(["--source", str(exports_dir), "backfill", "--from", "2024-11-13",
                     "--to", "2024-11-14", "--only", "user_daily_visits"], tmp_path,
                    DATABASE_URL=database_url)
    assert result.exit_code == 3, result.output
    assert "user_daily_visits_2024-11-13.csv" in result.output
    assert "user_daily_visits_2024-11-14.csv" in result.output  # its own outcome line
    assert "1 missing" in result.output
    assert db.execute("SELECT user_id FROM user_daily_visits ORDER BY 1").fetchall() == [
        ("@a",), ("@b",)]


def test_an_unknown_export_is_bad_usage_listing_the_valid_ones(database_url, db, exports_dir,
                                                                 tmp_path):
    write_file(exports_dir, D, [row("@a")])
    result = invoke(["--source", str(exports_dir), "backfill", "--only", "nope",
                     "--from", "2024-11-14", "--to", "2024-11-14"], tmp_path,
                    DATABASE_URL=database_url)
    assert result.exit_code == 2
    assert "nope" in result.output
    assert "user_daily_visits" in result.output.split("valid", 1)[1]
    assert db.execute("SELECT count(*) FROM tchap_stats.loads").fetchone()[0] == 0


def test_a_reversed_range_is_bad_usage(database_url, db, exports_dir, tmp_path):
    write_file(exports_dir, D, [row("@a")])
    result = invoke(["--source", str(exports_dir), "backfill", "--from", "2024-11-14",
                     "--to", "2024-11-13"], tmp_path, DATABASE_URL=database_url)
    assert result.exit_code == 2
    assert "--to" in result.output
    assert db.execute("SELECT count(*) FROM tchap_stats.loads").fetchone()[0] == 0


def test_a_malformed_date_is_bad_usage(database_url, exports_dir, tmp_path):
    result = invoke(["--source", str(exports_dir), "sync", "--date", "14/11/2024"], tmp_path,
                    DATABASE_URL=database_url)
    assert result.exit_code == 2
    assert "14/11/2024" in result.output


def test_sync_loads_the_day_then_skips_it(database_url, db, exports_dir, tmp_path):
    write_file(exports_dir, D, [row("@a"), row("@late", ts="2024-11-12 09:00:00+01")])
    write_file(exports_dir, date(2024, 11, 13), [row("@other-file")])  # not asked for
    args = ["--source", str(exports_dir), "sync", "--date", "2024-11-14",
            "--only", "user_daily_visits"]
    first = invoke(args, tmp_path, DATABASE_URL=database_url)
    assert first.exit_code == 0, first.output
    assert "1 loaded" in first.output
    assert db.execute("SELECT user_id, visit_date::text FROM user_daily_visits ORDER BY 1"
                      ).fetchall() == [("@a", "2024-11-14"), ("@late", "2024-11-12")]
    again = invoke(args, tmp_path, DATABASE_URL=database_url)
    assert again.exit_code == 0, again.output
    assert "skipped" in again.output
    assert db.execute("SELECT count(*) FROM tchap_stats.loads").fetchone()[0] == 1


def test_a_missing_header_column_fails_naming_file_and_column(database_url, db, exports_dir,
                                                             tmp_path):
    header = ("user_id", "device_id", "visit_ts", "user_agent", "domain")
    write_file(exports_dir, D, [("@a", "DEV", "2024-11-14 10:00:00+01", UA, "x.gouv.fr")],
               header=header)
    result = invoke(["--source", str(exports_dir), "sync", "--date", "2024-11-14"], tmp_path,
                    DATABASE_URL=database_url)
    assert result.exit_code == 1, result.output
    failure = [line for line in result.stderr.splitlines() if "FAILED" in line]
    assert len(failure) == 1, result.output
    assert "user_daily_visits_2024-11-14.csv" in failure[0]
    assert "instance" in failure[0].split("missing", 1)[1]
    assert db.execute("SELECT count(*) FROM user_daily_visits").fetchone()[0] == 0


GENERATE = ["generate", "--from", "2024-01-01", "--to", "2024-01-02", "--rows-per-day", "200"]


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_generate_is_deterministic_for_a_seed(tmp_path):
    outputs = {}
    for name, seed in (("a", "5"), ("b", "5"), ("c", "6")):
        result = invoke([*GENERATE, "--out", str(tmp_path / name), "--seed", seed], tmp_path)
        assert result.exit_code == 0, result.output
        outputs[name] = _files(tmp_path / name)
    assert sorted(outputs["a"]) == sorted(e.file_name(date(2024, 1, d))
                                          for e in EXPORTS.values() for d in (1, 2))
    assert all(len(content.splitlines()) > 150 for name, content in outputs["a"].items()
               if name.startswith("user_daily_visits"))
    assert outputs["a"] == outputs["b"]
    assert sorted(outputs["c"]) == sorted(outputs["a"])
    for name in outputs["a"]:
        assert outputs["c"][name] != outputs["a"][name]


def test_generate_writes_to_s3(s3_settings, bucket, tmp_path):
    only = ["--only", "user_daily_visits,sso"]
    result = invoke([*GENERATE, *only, "--out", f"s3://{bucket}/p", "--seed", "5"], tmp_path,
                    **s3_env(s3_settings))
    assert result.exit_code == 0, result.output
    client = s3_client(s3_settings)
    listed = client.list_objects_v2(Bucket=bucket)["Contents"]
    assert sorted(o["Key"] for o in listed) == [
        "p/sso_2024-01-01.csv", "p/sso_2024-01-02.csv",
        "p/user_daily_visits_2024-01-01.csv", "p/user_daily_visits_2024-01-02.csv"]
    local = invoke([*GENERATE, *only, "--out", str(tmp_path / "local"), "--seed", "5"],
                   tmp_path)
    assert local.exit_code == 0
    remote = client.get_object(Bucket=bucket, Key="p/user_daily_visits_2024-01-01.csv")
    assert remote["Body"].read() == (tmp_path / "local" /
                                     "user_daily_visits_2024-01-01.csv").read_bytes()


def test_sync_from_s3_loads_and_reports_a_missing_file(s3_settings, bucket, database_url, db,
                                                       exports_dir, tmp_path):
    write_file(exports_dir, D, [row("@from-s3")])
    upload_dir(exports_dir, s3_settings, bucket, prefix="daily/")
    env = {**s3_env(s3_settings), "DATABASE_URL": database_url}
    loaded = invoke(["--source", f"s3://{bucket}/daily", "sync", "--date", "2024-11-14",
                     "--only", "user_daily_visits"], tmp_path, **env)
    assert loaded.exit_code == 0, loaded.output
    assert db.execute("SELECT user_id FROM user_daily_visits").fetchall() == [("@from-s3",)]
    missing = invoke(["-v", "--source", f"s3://{bucket}/daily", "sync", "--date", "2024-11-15",
                      "--only", "user_daily_visits"], tmp_path, **env)
    assert missing.exit_code == 3, missing.output
    assert "user_daily_visits_2024-11-15.csv" in missing.output
    for result in (loaded, missing):
        assert s3_settings.secret_access_key not in result.output
        assert s3_settings.secret_access_key not in result.stderr


def test_secrets_never_appear_when_the_database_is_unreachable(exports_dir, tmp_path):
    write_file(exports_dir, D, [row("@a")])
    for verbose in ([], ["-v"]):
        result = invoke([*verbose, "--source", str(exports_dir), "backfill",
                         "--from", "2024-11-13", "--to", "2024-11-14"], tmp_path,
                        DATABASE_URL="postgresql://u:SuperSecret42@127.0.0.1:1/db",
                        S3_ACCESS_KEY_ID="AKIAEXAMPLE", S3_SECRET_ACCESS_KEY="AnotherSecret99")
        assert result.exit_code == 1, result.output
        assert "error:" in result.stderr  # it did say why
        for text in (result.output, result.stdout, result.stderr):
            assert "SuperSecret42" not in text
            assert "AnotherSecret99" not in text


def test_a_secret_echoed_by_the_driver_is_masked_in_the_error(exports_dir, tmp_path):
    # libpq quotes the offending password back: "unexpected spaces found in ...".
    result = invoke(["--source", str(exports_dir), "sync", "--date", "2024-11-14"], tmp_path,
                    DATABASE_URL="postgresql://u:Super Secret42@127.0.0.1:1/db")
    assert result.exit_code == 1, result.output
    assert "unexpected spaces" in result.stderr  # the driver's message is kept...
    assert "Secret42" not in result.output  # ...without the password
    verbose = invoke(["-v", "--source", str(exports_dir), "sync", "--date", "2024-11-14"],
                     tmp_path, DATABASE_URL="postgresql://u:Super Secret42@127.0.0.1:1/db")
    assert verbose.exit_code == 1
    assert "Traceback" in verbose.stderr  # -v logs the trace, masked too
    assert "Secret42" not in verbose.output


def test_migrate_applies_then_is_up_to_date(empty_database_url, tmp_path):
    first = invoke(["migrate"], tmp_path, DATABASE_URL=empty_database_url)
    assert first.exit_code == 0, first.output
    assert "applied now" in first.output and "001_core" in first.output
    second = invoke(["migrate"], tmp_path, DATABASE_URL=empty_database_url)
    assert second.exit_code == 0, second.output
    assert "already up to date" in second.output
    with psycopg.connect(empty_database_url) as conn:
        assert conn.execute("SELECT to_regclass('public.user_daily_visits')").fetchone()[0]


def test_loading_before_migrate_fails_and_says_to_migrate(empty_database_url, exports_dir,
                                                          tmp_path):
    write_file(exports_dir, D, [row("@a")])
    result = invoke(["--source", str(exports_dir), "sync", "--date", "2024-11-14"], tmp_path,
                    DATABASE_URL=empty_database_url)
    assert result.exit_code == 1
    assert "tchap-stats migrate" in result.stderr


@pytest.mark.parametrize("command", [["refresh"], ["check"], ["status"]])
def test_other_commands_before_migrate_fail_in_one_line(empty_database_url, tmp_path, command):
    result = invoke(command, tmp_path, DATABASE_URL=empty_database_url)
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "tchap-stats migrate" in result.stderr and "Traceback" not in result.stderr


def test_status_shows_the_last_loads_and_the_days_waiting(database_url, exports_dir, tmp_path):
    write_file(exports_dir, D, [row("@a"), row("@b")])
    loaded = invoke(["--source", str(exports_dir), "sync", "--date", "2024-11-14",
                     "--no-refresh"], tmp_path, DATABASE_URL=database_url,
                    TCHAP_STATS_EXPORTS="user_daily_visits")
    assert loaded.exit_code == 0, loaded.output
    result = invoke(["status", "--limit", "3"], tmp_path, DATABASE_URL=database_url)
    assert result.exit_code == 0, result.output
    assert "user_daily_visits_2024-11-14.csv: loaded (read 2 · loaded 2" in result.output
    assert "days waiting for a summary refresh: 1 (2024-11-14..2024-11-14)" in result.output


def test_exports_lists_every_export_and_what_runs_load(tmp_path):
    listed = invoke(["exports"], tmp_path)
    assert listed.exit_code == 0, listed.output
    for export in EXPORTS.values():
        assert f"{export.name}: " in listed.output
        assert f"  table     {export.table} (" in listed.output
    assert "users_legacy → only_pwd" in listed.output
    assert "partition by month of hour (months and days in Europe/Paris)" in listed.output
    pushers = listed.output.split("pushers: ", 1)[1]
    assert "enabled   no (by default: no)" in pushers
    enabled = invoke(["exports"], tmp_path, TCHAP_STATS_EXPORTS="default,pushers")
    assert "enabled   yes (by default: no)" in enabled.output.split("pushers: ", 1)[1]


def test_a_bad_export_list_in_the_environment_is_bad_usage(database_url, exports_dir, tmp_path):
    result = invoke(["--source", str(exports_dir), "sync", "--date", "2024-11-14"], tmp_path,
                    DATABASE_URL=database_url, TCHAP_STATS_EXPORTS="user_daily_visits,pusher")
    assert result.exit_code == 2, result.output
    assert "TCHAP_STATS_EXPORTS" in result.stderr and "pusher" in result.stderr
    assert "valid: user_daily_visits" in result.stderr


def test_only_takes_a_list_and_the_run_ends_with_a_line_per_export(database_url, db,
                                                                  exports_dir, tmp_path):
    write_file(exports_dir, D, [row("@a")])
    (exports_dir / f"sso_{D}.csv").write_text("total_users,domain,instance,users_legacy,"
                                              "users_both_authentication,users_proconnect\n"
                                              "10,a.gouv.fr,agent_a,6,3,1")
    result = invoke(["--source", str(exports_dir), "sync", "--date", str(D), "--only",
                     "sso, user_daily_visits,crisp_conversation_segments", "--no-refresh"],
                    tmp_path, DATABASE_URL=database_url)
    assert result.exit_code == 3, result.output
    by_export = result.output.split("by export:\n", 1)[1].splitlines()
    assert [line.split(":")[0].strip() for line in by_export] == [
        "user_daily_visits", "sso", "crisp_conversation_segments"]
    assert by_export[0].strip().startswith("user_daily_visits: ok (exit 0) · 1 file(s): 1 loaded")
    assert by_export[2].strip().startswith("crisp_conversation_segments: MISSING FILES (exit 3)")
    assert db.execute("SELECT only_pwd, added_date::text FROM sso_aggregate").fetchall() == [
        (6, str(D))]


# A process that starts a load the way Loader.load does (ledger.start on its own
# connection), says so, then waits to be killed.
_START_A_LOAD = """
import sys, time
from datetime import date
from tchap_stats import ledger
from tchap_stats.database import connect
from tchap_stats.source import SourceFile
conn = connect(sys.argv[1], autocommit=True)
name = "user_daily_visits_2024-11-14.csv"
ledger.start(conn, "user_daily_visits", SourceFile(name, name, "etag", 1),
             date(2024, 11, 14), "merge")
print(conn.info.backend_pid, flush=True)
time.sleep(120)
"""


def _wait_until_gone(db: psycopg.Connection, pid: int, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while db.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s",
                     (pid,)).fetchone()[0]:
        assert time.monotonic() < deadline, f"backend {pid} still there"
        time.sleep(0.05)


def test_status_shows_the_load_of_a_killed_process_as_interrupted(database_url, db,
                                                                  tmp_path):
    process = subprocess.Popen([sys.executable, "-c", _START_A_LOAD, database_url],
                               stdout=subprocess.PIPE, text=True)
    try:
        pid = int(process.stdout.readline())
        running = invoke(["status"], tmp_path, DATABASE_URL=database_url)
        assert running.exit_code == 0, running.output
        assert "user_daily_visits_2024-11-14.csv: running (read 0" in running.output
    finally:
        process.kill()
        process.wait()
        process.stdout.close()
    _wait_until_gone(db, pid)
    result = invoke(["status"], tmp_path, DATABASE_URL=database_url)
    assert result.exit_code == 0, result.output
    assert "user_daily_visits_2024-11-14.csv: interrupted (read 0" in result.output
    assert "the process running this load stopped before it finished" in result.output
    assert ": running" not in result.output
    assert "days changed 0) since 20" in running.output  # when, and on which backend
    assert f", PostgreSQL backend pid {pid}\n" in running.output
    # status only reads; the next run records it, as status showed it.
    assert db.execute("SELECT status FROM tchap_stats.loads").fetchone()[0] == "running"
    assert ledger.mark_interrupted(db) == 1
    assert db.execute("SELECT status FROM tchap_stats.loads").fetchone()[0] == "interrupted"


def _sync_without_refresh(database_url: str, exports_dir: Path, tmp_path: Path) -> None:
    write_file(exports_dir, D, [row("@a"), row("@b")])
    loaded = invoke(["--source", str(exports_dir), "sync", "--date", str(D), "--no-refresh",
                     "--only", "user_daily_visits"], tmp_path, DATABASE_URL=database_url)
    assert loaded.exit_code == 0, loaded.output


def test_check_names_the_days_waiting_for_a_refresh_and_exits_4(database_url, db,
                                                               exports_dir, tmp_path):
    _sync_without_refresh(database_url, exports_dir, tmp_path)
    result = invoke(["check", "--from", "2024-11-10", "--to", "2024-11-20"], tmp_path,
                    DATABASE_URL=database_url)
    assert result.exit_code == 4, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(
        "1 day(s) of the months of 2024-11-10..2024-11-20 wait for a summary refresh "
        "(2024-11-14..2024-11-14)")
    assert "differences there are expected" in lines[0]
    assert "row(s) differ from a full recompute" in lines[1]
    assert "Run `tchap-stats refresh`, then `tchap-stats check` again" in lines[-1]
    refreshed = invoke(["refresh"], tmp_path, DATABASE_URL=database_url)
    assert refreshed.exit_code == 0, refreshed.output
    again = invoke(["check", "--from", "2024-11-10", "--to", "2024-11-20"], tmp_path,
                   DATABASE_URL=database_url)
    assert again.exit_code == 0, again.output
    assert again.output.startswith("summaries match a full recompute")


def test_check_counts_the_days_a_summary_group_has_not_consumed(database_url, db,
                                                                exports_dir, tmp_path):
    # The days handed out to the groups' queues, the monthly group's left (it failed).
    _sync_without_refresh(database_url, exports_dir, tmp_path)
    db.execute("WITH handed AS (DELETE FROM tchap_stats.changed_days RETURNING *) "
               "INSERT INTO tchap_stats.summary_queue "
               "(summary_group, day, last_load_id, fresh, rewritten) "
               "SELECT 'monthly', day, last_load_id, fresh, rewritten FROM handed")
    result = invoke(["check", "--from", "2024-11-14", "--to", "2024-11-14"], tmp_path,
                    DATABASE_URL=database_url)
    assert result.exit_code == 4, result.output
    assert "1 day(s) of the months of 2024-11-14..2024-11-14 wait" in result.output
    assert "user_devices_monthly missing" in result.output


def test_check_exits_1_when_rows_differ_and_no_day_waits(database_url, db, exports_dir,
                                                         tmp_path):
    write_file(exports_dir, D, [row("@a"), row("@b")])
    loaded = invoke(["--source", str(exports_dir), "sync", "--date", str(D),
                     "--only", "user_daily_visits"], tmp_path, DATABASE_URL=database_url)
    assert loaded.exit_code == 0, loaded.output
    db.execute("DELETE FROM tchap_stats.active_daily WHERE dimension = 'overall'")
    result = invoke(["check", "--from", str(D), "--to", str(D)], tmp_path,
                    DATABASE_URL=database_url)
    assert result.exit_code == 1, result.output
    assert result.output.startswith("1 row(s) differ from a full recompute")
    assert "active_daily missing: 2024-11-14 | overall |  | 2 | 2" in result.output
    assert "wait for a summary refresh" not in result.output


def test_a_missing_file_names_its_near_misses(database_url, exports_dir, tmp_path):
    write_file(exports_dir, D, [row("@a")]).rename(
        exports_dir / "user_daily_visits_2024-11-14.CSV")
    result = invoke(["--source", str(exports_dir), "sync", "--date", str(D),
                     "--only", "user_daily_visits"], tmp_path, DATABASE_URL=database_url)
    assert result.exit_code == 3, result.output
    note = "found near misses: user_daily_visits_2024-11-14.CSV — rename it to load it"
    assert f"user_daily_visits_2024-11-14.csv: MISSING ({note})" in result.output
    assert f"missing files:\n  user_daily_visits_2024-11-14.csv ({note})" in result.output
