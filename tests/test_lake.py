"""The lake (tchap_stats/lake.py): archive, check, restore and archive again with nothing
lost, a kill in the middle of an archive, the load rule for archived months, status, and
lake-sql. Real processes, the embedded PostgreSQL, the moto S3 server."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from tchap_stats.cli import cli
from tchap_stats.config import ConfigError, Settings
from tchap_stats.lake import Lake, add_months, first_open_month
from tchap_stats.pipeline import EXIT_BUDGET, EXIT_FAILED, EXIT_OK
from tchap_stats.source import s3_client
from tchap_stats.synthetic.generate import Options, generate

from .conftest import load
from .faultkit import CLI_VARIABLES, Child, cli_command, cli_env, kill_when

FIRST, LAST = date(2025, 1, 28), date(2025, 3, 2)  # rows of January, February and March
JANUARY, FEBRUARY, MARCH = date(2025, 1, 1), date(2025, 2, 1), date(2025, 3, 1)
SUMMARIES = ("user_visits_daily", "user_devices_monthly", "user_values_monthly", "user_months",
             "active_daily", "active_monthly", "active_rolling_30d")
PASSWORD = "Hunter2-lake-secret"  # accepted and ignored by the embedded server (trust)


@pytest.fixture
def history(tmp_path: Path, settings: Settings, database_url: str) -> Path:
    """Visits of three months: the files of the days around February's ends, loaded."""
    out = tmp_path / "exports"
    generate(FIRST, LAST, str(out), Options(rows_per_day=80), exports=["user_daily_visits"])
    days = [date(2025, 1, d) for d in (30, 31)] + [date(2025, 2, d) for d in (1, 2, 3, 27, 28)
                                                  ] + [date(2025, 3, 1), date(2025, 3, 2)]
    report = load(settings, database_url, out, days)
    assert report.exit_code == EXIT_OK
    return out


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch) -> Iterator[None]:
    """In a scratch directory; the logging the command reconfigures put back afterwards."""
    monkeypatch.chdir(tmp_path)
    root, ours = logging.getLogger(), logging.getLogger("tchap_stats")
    saved = (root.handlers[:], root.level, ours.level)
    yield
    root.handlers[:], root.level = saved[0], saved[1]
    ours.setLevel(saved[2])


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def tchap_stats(args: list[str], database_url: str, tmp_path: Path, s3=None,
                **env: str) -> Ran:
    """The command line, in this process (a child's start costs a second a command): the
    environment a child would get, PGPASSWORD (which the lake sets) put back after."""
    child = cli_env(database_url, tmp_path / "spill", s3, **env)
    environment: dict[str, str | None] = {
        k: None for k in os.environ if k in CLI_VARIABLES or k.startswith("TCHAP_STATS_")}
    environment.update({k: v for k, v in child.items() if os.environ.get(k) != v},
                       PGPASSWORD=None)
    result = CliRunner().invoke(cli, args, env=environment, catch_exceptions=False)
    return Ran(result.exit_code, result.stdout, result.stderr)


def with_password(url: str) -> str:
    return psycopg.conninfo.make_conninfo(url, password=PASSWORD)


def raw_rows(conn: psycopg.Connection) -> Counter[tuple]:
    return Counter(conn.execute(
        "SELECT user_id, device_id, visit_ts, visit_date, user_agent, instance, domain, "
        "platform, device_type FROM public.user_daily_visits").fetchall())


def summaries(conn: psycopg.Connection) -> dict[str, Counter[tuple]]:
    return {name: Counter(conn.execute(f"SELECT * FROM tchap_stats.{name}").fetchall())
            for name in SUMMARIES}


def archived(conn: psycopg.Connection) -> list[date]:
    return [m for (m,) in conn.execute(
        "SELECT month FROM tchap_stats.archived_months ORDER BY month")]


def partitions(conn: psycopg.Connection) -> list[str]:
    return [n for (n,) in conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'public.user_daily_visits'::regclass ORDER BY 1")]


def lake_rows(database_url: str, tmp_path: Path, lake_env: dict[str, str], s3=None
              ) -> Counter[tuple]:
    """Every row the lake holds, leftovers included (DuckDB straight on the lake)."""
    done = tchap_stats(["lake-sql", "SELECT user_id, device_id, epoch_us(visit_ts) AS us, "
                        "visit_date FROM lake.user_daily_visits"],
                       database_url, tmp_path, s3, **lake_env)
    assert done.returncode == 0, done.stderr
    return Counter(tuple(row) for row in list(csv.reader(io.StringIO(done.stdout)))[1:])


def month_of(rows: Counter[tuple], month: date) -> Counter[tuple]:
    return Counter({r: n for r, n in rows.items()
                    if r[3] >= month and r[3] < add_months(month, 1)})


def test_archive_check_restore_archive_again_on_s3_loses_nothing(
        history, tmp_path, database_url, db, s3_settings, bucket):
    before_rows, before_summaries = raw_rows(db), summaries(db)
    lake_env = {"TCHAP_STATS_LAKE_PATH": f"s3://{bucket}/lake/"}
    run = lambda *args: tchap_stats(list(args), database_url, tmp_path, s3_settings,  # noqa: E731
                                    **lake_env)

    plan = run("archive", "--before", "2025-03", "--dry-run")
    assert plan.returncode == EXIT_OK, plan.stderr
    assert "2025-01:" in plan.stdout and "2025-02:" in plan.stdout
    assert "2025-03:" not in plan.stdout and archived(db) == []

    done = run("archive", "--before", "2025-03")
    assert done.returncode == EXIT_OK, done.stderr
    assert "2 month(s) archived" in done.stdout
    assert archived(db) == [JANUARY, FEBRUARY]
    assert partitions(db) == ["user_daily_visits_p2025_03"]
    keys = s3_client(s3_settings).list_objects_v2(Bucket=bucket, Prefix="lake/")["Contents"]
    assert all(k["Key"].endswith(".parquet") for k in keys) and keys
    assert raw_rows(db) == month_of(before_rows, MARCH)
    assert summaries(db) == before_summaries  # the dashboards read summaries: unchanged

    checked = run("check", "--from", "2025-01-01", "--to", "2025-03-31")
    assert checked.returncode == EXIT_OK, checked.stdout + checked.stderr
    assert "2 archived month(s) read from the lake: 2025-01, 2025-02" in checked.stderr
    db.execute("DELETE FROM tchap_stats.user_visits_daily WHERE day = '2025-02-03'")
    wrong = run("check", "--from", "2025-02-01", "--to", "2025-02-28")
    assert wrong.returncode == EXIT_FAILED, wrong.stdout  # the lake's rows were compared
    fixed = run("refresh", "--from", "2025-02-01", "--to", "2025-02-28")
    assert fixed.returncode == EXIT_OK, fixed.stderr
    assert summaries(db) == before_summaries

    restored = run("restore", "--month", "2025-02")
    assert restored.returncode == EXIT_OK, restored.stderr
    assert archived(db) == [JANUARY]
    assert raw_rows(db) == month_of(before_rows, FEBRUARY) + month_of(before_rows, MARCH)
    in_lake = lake_rows(database_url, tmp_path, lake_env, s3_settings)
    assert sum(in_lake.values()) == sum(month_of(before_rows, JANUARY).values())

    again = run("archive", "--before", "2025-03")
    assert again.returncode == EXIT_OK, again.stderr
    assert archived(db) == [JANUARY, FEBRUARY]
    everything = run("lake-sql", "SELECT count(*) AS n FROM user_daily_visits")
    assert everything.stdout.splitlines() == ["n", str(sum(before_rows.values()))]

    for month in ("2025-01", "2025-02"):
        assert run("restore", "--month", month).returncode == EXIT_OK
    assert raw_rows(db) == before_rows and archived(db) == []
    assert lake_rows(database_url, tmp_path, lake_env, s3_settings) == Counter()
    assert summaries(db) == before_summaries


def test_an_archive_killed_before_its_commit_leaves_every_row_in_one_place(
        history, tmp_path, database_url, db):
    before_rows = raw_rows(db)
    lake_env = {"TCHAP_STATS_LAKE_PATH": str(tmp_path / "lake")}
    # A reader of February's partition keeps the archive from dropping it: the month is
    # then written to the lake and verified, its record inserted, not committed.
    blocker = psycopg.connect(database_url)
    blocker.execute("SELECT count(*) FROM public.user_daily_visits_p2025_02")
    args = cli_command("archive", "--before", "2025-03")
    with Child(args, cli_env(database_url, tmp_path / "spill", **lake_env),
               tmp_path / "child") as child:
        waiting = ("SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                   "'tchap-stats' AND wait_event_type = 'Lock' AND query LIKE '%DETACH%'")
        assert kill_when(child, lambda: db.execute(waiting).fetchone()[0] == 1, timeout=60)
        child.wait(30)
    blocker.close()
    assert archived(db) == [JANUARY]
    assert "user_daily_visits_p2025_02" in partitions(db)
    assert raw_rows(db) == month_of(before_rows, FEBRUARY) + month_of(before_rows, MARCH)
    # The lake holds February too: a leftover, which status names and nothing reads.
    status = tchap_stats(["status", "--json"], database_url, tmp_path, **lake_env)
    (tier,) = json.loads(status.stdout)["tiers"]
    assert tier["lake"]["months"] == ["2025-01-01"] and tier["leftovers"] == ["2025-02-01"]
    checked = tchap_stats(["check", "--from", "2025-01-01", "--to", "2025-03-31"],
                          database_url, tmp_path, **lake_env)
    assert checked.returncode == EXIT_OK, checked.stdout + checked.stderr
    counted = tchap_stats(["lake-sql", "SELECT count(*) FROM user_daily_visits"],
                          database_url, tmp_path, **lake_env)
    assert counted.stdout.splitlines()[1] == str(sum(before_rows.values()))

    again = tchap_stats(["archive", "--before", "2025-03"], database_url, tmp_path, **lake_env)
    assert again.returncode == EXIT_OK, again.stderr
    assert archived(db) == [JANUARY, FEBRUARY]
    assert raw_rows(db) == month_of(before_rows, MARCH)
    in_lake = lake_rows(database_url, tmp_path, lake_env)
    expected = month_of(before_rows, JANUARY) + month_of(before_rows, FEBRUARY)
    assert sum(in_lake.values()) == sum(expected.values())  # once each: no leftover
    assert max(in_lake.values()) == 1


def test_a_load_rejects_the_rows_of_an_archived_month_and_leaves_it_archived(
        history, tmp_path, settings, database_url, db):
    lake_env = {"TCHAP_STATS_LAKE_PATH": str(tmp_path / "lake")}
    assert tchap_stats(["archive", "--before", "2025-02"], database_url, tmp_path,
                       **lake_env).returncode == EXIT_OK
    assert archived(db) == [JANUARY]
    # February's first files hold late rows of January's last days, and rows of February.
    report = load(replace(settings, reject_threshold=1.0), database_url, history,
                  [date(2025, 2, d) for d in (1, 2, 3)], force=True)
    reasons = [r for (r,) in db.execute("SELECT reason FROM tchap_stats.rejects")]
    assert reasons and sum(o.rows_rejected for o in report.outcomes) == len(reasons)
    assert all("month 2025-01 is archived in the lake (restore it first: tchap-stats "
               "restore --month 2025-01)" in r for r in reasons)
    assert "user_daily_visits_p2025_01" not in partitions(db)
    assert db.execute("SELECT count(*) FROM public.user_daily_visits "
                      "WHERE visit_date < '2025-02-01'").fetchone()[0] == 0


def test_status_shows_both_tiers_and_lake_sql_prints_no_secret(
        history, tmp_path, database_url, db, s3_settings, bucket):
    url = with_password(database_url)
    lake_env = {"TCHAP_STATS_LAKE_PATH": f"s3://{bucket}/lake/"}
    total = str(sum(raw_rows(db).values()))
    before_any_archive = tchap_stats(["lake-sql", "SELECT count(*) AS n FROM user_daily_visits"],
                                     url, tmp_path, s3_settings, **lake_env)
    assert before_any_archive.stdout.splitlines() == ["n", total], before_any_archive.stderr
    assert tchap_stats(["archive", "--before", "2025-02"], url, tmp_path, s3_settings,
                       **lake_env).returncode == EXIT_OK
    status = tchap_stats(["status"], url, tmp_path, s3_settings, **lake_env)
    assert "  lake: 1 month(s) 2025-01..2025-01 · " in status.stdout
    assert "  PostgreSQL: 2 month(s) 2025-02..2025-03 · " in status.stdout
    document = json.loads(tchap_stats(["status", "--json"], url, tmp_path, s3_settings,
                                      **lake_env).stdout)
    (tier,) = document["tiers"]
    assert tier["lake"]["rows"] == db.execute(
        "SELECT rows FROM tchap_stats.archived_months").fetchone()[0] > 0
    assert tier["lake"]["bytes"] > 0 and tier["leftovers"] == []

    prying = ["SELECT * FROM duckdb_databases()", "SELECT * FROM duckdb_secrets()",
              "SELECT * FROM duckdb_settings()", f"SELECT * FROM no_such_{PASSWORD}",
              f"SELECT * FROM {s3_settings.secret_access_key}"]
    for query in prying:
        done = tchap_stats(["lake-sql", query], url, tmp_path, s3_settings, **lake_env)
        output = done.stdout + done.stderr
        assert PASSWORD not in output and s3_settings.secret_access_key not in output
    months = tchap_stats(["lake-sql", "SELECT strftime(visit_date, '%Y-%m') AS month, "
                          "count(*) AS n FROM user_daily_visits GROUP BY 1 ORDER BY 1"],
                         url, tmp_path, s3_settings, **lake_env)
    assert months.returncode == EXIT_OK, months.stderr
    counts = dict(db.execute("SELECT to_char(visit_date, 'YYYY-MM'), count(*)::text "
                             "FROM public.user_daily_visits GROUP BY 1"))
    assert [line.split(",")[0] for line in months.stdout.splitlines()] == [
        "month", "2025-01", "2025-02", "2025-03"]
    assert dict(line.split(",") for line in months.stdout.splitlines()[2:]) == counts


def test_archive_stops_at_its_time_budget_and_refuses_months_waiting_for_a_refresh(
        history, tmp_path, database_url, db):
    lake_env = {"TCHAP_STATS_LAKE_PATH": str(tmp_path / "lake")}
    stopped = tchap_stats(["archive", "--before", "2025-03", "--max-minutes", "0.001"],
                          database_url, tmp_path, **lake_env)
    assert stopped.returncode == EXIT_BUDGET, stopped.stdout + stopped.stderr
    assert "left for the next run: 2025-01, 2025-02" in stopped.stdout
    assert archived(db) == []
    db.execute("INSERT INTO tchap_stats.changed_days (export, day, last_load_id) "
               "VALUES ('user_daily_visits', '2025-01-31', 0)")
    refused = tchap_stats(["archive", "--before", "2025-03"], database_url, tmp_path,
                          **lake_env)
    assert refused.returncode == EXIT_FAILED
    assert "2025-01: 1 day(s) wait for a summary refresh" in refused.stdout
    assert archived(db) == [] and "user_daily_visits_p2025_01" in partitions(db)


@pytest.mark.parametrize(("today", "open_month"), [
    (date(2026, 12, 1), date(2026, 10, 1)),   # September's last late rows came by Oct. 15
    (date(2026, 11, 14), date(2026, 9, 1)),   # ... and a month after that is Nov. 15
    (date(2026, 11, 15), date(2026, 10, 1)),
])
def test_only_months_closed_for_a_month_after_the_late_rows_window_may_move(today, open_month):
    settings = Settings(database_url=None, s3=Settings.from_env().s3, source=None)
    assert settings.accept_days_before == 14
    assert first_open_month(settings, today) == open_month


def test_the_lake_path_follows_the_source_unless_set(tmp_path):
    base = Settings.from_env()
    assert replace(base, source="s3://exports/daily").lake_data_path() == "s3://exports/lake/"
    assert replace(base, source=str(tmp_path)).lake_data_path() == f"{tmp_path}/lake/"
    assert replace(base, lake_path="s3://cold/tchap").lake_data_path() == "s3://cold/tchap/"
    # The lake removes files it does not list under its path: never the exports' place.
    for root in ("s3://exports", "s3://exports/"):
        with pytest.raises(ConfigError, match="not a bucket's root"):
            replace(base, lake_path=root).lake_data_path()
    with pytest.raises(ConfigError, match="the exports' directory"):
        replace(base, source=str(tmp_path), lake_path=str(tmp_path)).lake_data_path()


def test_a_failed_restores_empty_partition_never_overwrites_the_lake(
        history, tmp_path, database_url, db):
    lake_env = {"TCHAP_STATS_LAKE_PATH": str(tmp_path / "lake")}
    # Values the text COPY format escapes, and others, go there and back intact.
    db.execute("INSERT INTO public.user_daily_visits VALUES (%s, %s, '2025-01-30 23:30:00+00', "
               "'2025-01-31', %s, 'agent', 'x.gouv.fr', 'Autre', 'Autre')",
               ("\\@back\\slash\tand tab", "dev,\"quoted\"\nline\rcr", "Ünïcode ✓ \\N"))
    january = month_of(raw_rows(db), JANUARY)
    assert tchap_stats(["archive", "--before", "2025-02"], database_url, tmp_path,
                       **lake_env).returncode == EXIT_OK
    # What a restore leaves when it fails after creating the partition, before its copy.
    db.execute("CREATE TABLE public.user_daily_visits_p2025_01 PARTITION OF "
               "public.user_daily_visits FOR VALUES FROM ('2025-01-01') TO ('2025-02-01')")
    again = tchap_stats(["archive", "--before", "2025-02"], database_url, tmp_path, **lake_env)
    assert again.returncode == EXIT_OK, again.stdout + again.stderr
    assert "2025-01: in the lake already; its empty partition dropped" in again.stdout
    assert archived(db) == [JANUARY] and "user_daily_visits_p2025_01" not in partitions(db)
    assert sum(lake_rows(database_url, tmp_path, lake_env).values()) == sum(january.values())
    restored = tchap_stats(["restore", "--month", "2025-01"], database_url, tmp_path,
                           **lake_env)
    assert restored.returncode == EXIT_OK, restored.stderr
    assert month_of(raw_rows(db), JANUARY) == january


def test_a_lake_file_holding_several_months_stops_the_archive(
        history, tmp_path, settings, database_url, db):
    """The lake's months come from its files' day ranges (one month a file, as every archive
    writes): a file written otherwise, spanning months, is refused, never half counted."""
    lake_env = {"TCHAP_STATS_LAKE_PATH": str(tmp_path / "lake")}
    assert tchap_stats(["archive", "--before", "2025-02"], database_url, tmp_path,
                       **lake_env).returncode == EXIT_OK
    with Lake(replace(settings, lake_path=str(tmp_path / "lake")), database_url) as lake:
        lake.con.execute(
            "INSERT INTO lake.user_daily_visits (user_id, device_id, visit_ts, visit_date, "
            "user_agent, instance, domain, platform, device_type) VALUES "
            "('u1', 'd1', TIMESTAMPTZ '2024-11-30 10:00:00+00', DATE '2024-11-30', 'a', 'i', "
            "'x.gouv.fr', 'Autre', 'Autre'), ('u2', 'd2', TIMESTAMPTZ '2024-12-01 10:00:00+00', "
            "DATE '2024-12-01', 'a', 'i', 'x.gouv.fr', 'Autre', 'Autre')")
    february = month_of(raw_rows(db), FEBRUARY)
    again = tchap_stats(["archive", "--before", "2025-03"], database_url, tmp_path, **lake_env)
    assert again.returncode == EXIT_FAILED
    assert "2024-11: a file of the lake holds rows of other months too" in again.stderr
    assert archived(db) == [JANUARY] and month_of(raw_rows(db), FEBRUARY) == february
