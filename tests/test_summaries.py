"""Summaries: incremental = full, the dashboard views, check, refresh."""

from __future__ import annotations

import dataclasses
import math
import threading
from datetime import date, timedelta

import psycopg
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tchap_stats import summaries
from tchap_stats.cli import cli
from tchap_stats.schema import DASHBOARD_NAMES
from tchap_stats.summaries import (
    STALE_STATISTICS_TARGET,
    SUMMARIES,
    check,
    refresh_changed,
    refresh_range,
)
from tchap_stats.synthetic.generate import Options, generate

from .conftest import load, write_file

FIRST, LAST = date(2024, 10, 27), date(2024, 11, 3)  # across a DST change and a month end
DAYS = [FIRST + timedelta(days=i) for i in range((LAST - FIRST).days + 1)]


@pytest.fixture(params=[(True, 0.0, math.inf), (False, math.inf, 0.0)],
                ids=["preaggregated-by-duckdb,monthly-by-lookup,late-rows-folded",
                     "recomputed-by-postgresql,monthly-by-hash,grown-days-re-read-daily"])
def both_paths(request, settings, monkeypatch):
    """The invariant tests run twice: with a new day's active_daily pre-aggregated by DuckDB
    while staging (the default), and recomputed by PostgreSQL; with the monthly
    summaries' new tuples found by looking each day tuple up, then by hashing the month's
    (which the size of the month chooses in production: summaries.LOOKUP_ABOVE); and with
    the rows loads add to days already summarised folded into user_visits_daily and
    active_daily, then their days re-read whole there (which their share of the day
    chooses: summaries.LATE_SHARE; the rolling window folds them in either way)."""
    preaggregate, lookup_above, late_share = request.param
    monkeypatch.setattr(summaries, "LOOKUP_ABOVE", lookup_above)
    monkeypatch.setattr(summaries, "LATE_SHARE", late_share)
    return dataclasses.replace(settings, preaggregate=preaggregate)


def summary_rows(conn: psycopg.Connection) -> dict[str, list[tuple]]:
    return {s.table: sorted(conn.execute(f"SELECT * FROM tchap_stats.{s.table}").fetchall())
            for s in SUMMARIES}


def reset(conn: psycopg.Connection) -> None:
    """Empty the raw table, every summary and the ledger."""
    tables = ", ".join(f"tchap_stats.{s.table}" for s in SUMMARIES)
    conn.execute(f"TRUNCATE user_daily_visits, tchap_stats.changed_days, {tables}, "
                 "tchap_stats.summary_queue, "
                 "tchap_stats.rolling_last_active; TRUNCATE tchap_stats.loads CASCADE; "
                 "UPDATE tchap_stats.rolling_state SET through_day = NULL")


def test_incremental_summaries_equal_a_full_recompute(both_paths, database_url, db,
                                                      exports_dir):
    generate(FIRST, LAST, str(exports_dir),
             Options(rows_per_day=400, seed=5, overlap=0.1, late=0.05, malformed=0.002))
    report = load(both_paths, database_url, exports_dir, DAYS)
    assert report.refresh is not None and report.refresh.days
    differences, sample = check(db, FIRST - timedelta(days=10), LAST)
    assert (differences, sample) == (0, [])
    incremental = summary_rows(db)
    assert all(incremental.values())
    refresh_range(db, FIRST - timedelta(days=10), LAST)
    assert summary_rows(db) == incremental


def test_nightly_days_are_added_and_late_or_conflicting_rows_recomputed(
        both_paths, database_url, db, exports_dir, tmp_path):
    """The nightly case adds to the monthly and rolling summaries without re-reading them;
    a late row is folded into them too (its day is not re-read); a duplicate that wins
    re-reads its month. After each run the summaries equal a full recompute."""
    generate(FIRST, LAST, str(exports_dir), Options(rows_per_day=300, seed=11, overlap=0.1,
                                                     late=0.0, malformed=0.0))
    for day in DAYS:
        refresh = load(both_paths, database_url, exports_dir, [day]).refresh
        # (the first file's overlap rows open the day before it: fresh too; a month gaining
        # several days, at least as many as it held, is recomputed rather than added to)
        assert (refresh.days[-1], refresh.recomputed_months, refresh.rolling_append) == (
            day, [FIRST.replace(day=1)] if day == FIRST else [], True), day
        assert refresh.preaggregated_days == (refresh.days if both_paths.preaggregate else [])
        assert check(db, FIRST, LAST)[0] == 0

    def run(day: date, rows: list[tuple], again: str = ""):
        directory = tmp_path / f"{day}{again}"
        directory.mkdir()
        write_file(directory, day, rows)
        report = load(both_paths, database_url, directory, [day])
        assert report.refresh_error is None, report.refresh_error
        return report.refresh

    web = "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"
    late_day, next_day = FIRST + timedelta(days=1), LAST + timedelta(days=1)
    late = run(next_day, [("@late", "L1", f"{late_day} 10:00:00+02", web, "i", "d.fr"),
                          ("@n", "N1", f"{next_day} 10:00:00+01", web, "i", "d.fr")])
    assert (late.days, late.recomputed_months, late.rolling_append) == (
        [late_day, next_day], [], True)
    # The late row joins a day that held rows: only next_day came whole from its file.
    assert late.preaggregated_days == ([next_day] if both_paths.preaggregate else [])
    assert check(db, FIRST, next_day)[0] == 0
    # An earlier visit of the same device, the same where the summaries look: added to.
    sooner = run(next_day, [("@late", "L1", f"{late_day} 09:30:00+02", web, "i", "d.fr")],
                 again="-again")
    assert (sooner.days, sooner.recomputed_months) == ([late_day], [])
    assert check(db, FIRST, next_day)[0] == 0
    earlier = run(next_day + timedelta(days=1),
                  [("@late", "L1", f"{late_day} 09:00:00+02", "Tchap/2.0 (Android 13)",
                    "j", "e.fr")])
    assert (earlier.days, earlier.recomputed_months) == ([late_day], [late_day.replace(day=1)])
    assert check(db, FIRST, next_day)[0] == 0
    nightly = run(next_day + timedelta(days=2),
                  [("@n", "N1", f"{next_day + timedelta(days=2)} 10:00:00+01", web, "i", "d.fr")])
    assert nightly.rolling_append and check(db, FIRST, next_day + timedelta(days=2))[0] == 0


def test_late_rows_are_folded_into_days_months_and_the_rolling_window(
        both_paths, database_url, db, tmp_path):
    """A night's file holding late rows for days already summarised (as every production
    file does, for the 7 days before it), on days around a month's end: users gaining a
    value on a late day, with activity before it, after it, on two late days, or already
    there that day; an earlier visit replacing a stored one. Each night's summaries equal a
    full recompute, and the night after folds in as usual."""
    web, mobile = "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0", "Tchap/2.0 (Android 13)"
    start = date(2024, 10, 20)

    def at(offset: int, hour: str = "10:00:00+01") -> str:
        return f"{start + timedelta(days=offset)} {hour}"

    def night(offset: int, rows: list[tuple]):
        directory = tmp_path / f"night{offset}"
        directory.mkdir()
        write_file(directory, start + timedelta(days=offset), rows)
        report = load(both_paths, database_url, directory, [start + timedelta(days=offset)])
        assert report.refresh_error is None, report.refresh_error
        return report.refresh

    history = {0: [("@a", "A1", at(0), web, "i1", "d.fr"),
                   ("@z", "Z1", at(0), mobile, "i2", "e.fr")],
               2: [("@a", "A1", at(2), web, "i1", "d.fr")],
               5: [("@c", "C1", at(5), web, "i1", "d.fr")]}
    for offset in range(13):
        rows = history.get(offset, []) + [("@x", "X1", at(offset), web, "i1", "d.fr")]
        night(offset, rows)
    last = start + timedelta(days=12)
    assert check(db, start, last)[0] == 0
    late = night(13, [
        ("@x", "X1", at(13), web, "i1", "d.fr"),  # the night's own day
        ("@a", "A2", at(4), web, "i1", "d.fr"),  # covered by day 2 already
        ("@b", "B1", at(3), mobile, "i2", "e.fr"),  # new user, on two late days
        ("@b", "B1", at(9), mobile, "i2", "e.fr"),
        ("@c", "C2", at(4), mobile, "i1", "d.fr"),  # new platform; active the day after
        ("@x", "X2", at(11), web, "i1", "d.fr"),  # one more device, nothing else new
        ("@x", "X1", at(9, "08:00:00+01"), web, "i1", "d.fr"),  # an earlier visit
        ("@n", "N1", at(12), mobile, "i3", "f.fr"),  # a new user the latest day held
    ])
    grown = sorted(start + timedelta(days=o) for o in (3, 4, 9, 11, 12))
    assert late.days == [*grown, start + timedelta(days=13)]
    assert (late.recomputed_months, late.rolling_append) == ([], True)
    assert check(db, start, start + timedelta(days=13))[0] == 0
    assert db.execute("SELECT count(*) FROM tchap_stats.late_rows").fetchone()[0] == 0
    after = night(14, [("@x", "X1", at(14), web, "i1", "d.fr"),
                       ("@b", "B1", at(14), web, "i2", "e.fr")])
    assert after.rolling_append
    assert check(db, start, start + timedelta(days=14))[0] == 0


def test_a_recompute_leaves_no_late_rows_for_a_later_refresh(settings, database_url, db,
                                                              tmp_path):
    """Late rows loaded with --no-refresh, then `refresh --from/--to` over their day: the
    recompute saw them, so they must not be folded in again when the day next grows."""
    web = "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"
    day = date(2024, 11, 10)

    def night(name: str, file_day: date, rows: list[tuple], **options):
        directory = tmp_path / name
        directory.mkdir()
        write_file(directory, file_day, rows)
        return load(settings, database_url, directory, [file_day], **options)

    night("1", day, [("@a", "A1", f"{day} 10:00:00+01", web, "i", "d.fr")])
    after = day + timedelta(days=1)
    night("2", after, [("@b", "B1", f"{day} 11:00:00+01", web, "i", "d.fr")],
          refresh_summaries=False)
    assert db.execute("SELECT count(*) FROM tchap_stats.late_rows").fetchone()[0] == 1
    refresh_range(db, day, day)
    assert db.execute("SELECT count(*) FROM tchap_stats.late_rows").fetchone()[0] == 0
    night("3", after, [("@c", "C1", f"{day} 12:00:00+01", web, "i", "d.fr")], force=True)
    assert check(db, day, after)[0] == 0


def test_two_load_orders_give_the_same_summaries(both_paths, database_url, db, exports_dir):
    generate(FIRST, LAST, str(exports_dir),
             Options(rows_per_day=300, seed=9, overlap=0.2, late=0.05))
    load(both_paths, database_url, exports_dir, DAYS)
    forward = summary_rows(db)
    reset(db)
    load(both_paths, database_url, exports_dir, list(reversed(DAYS)))
    assert summary_rows(db) == forward


def test_check_finds_a_summary_row_changed_by_hand(settings, database_url, db, exports_dir):
    generate(FIRST, FIRST + timedelta(days=2), str(exports_dir), Options(rows_per_day=200))
    load(settings, database_url, exports_dir, DAYS[:3])
    db.execute("UPDATE tchap_stats.user_visits_daily SET visits_count = visits_count + 1 "
               "WHERE ctid = (SELECT min(ctid) FROM tchap_stats.user_visits_daily)")
    count, sample = check(db, FIRST, FIRST + timedelta(days=2))
    assert count == 2  # the tampered row is extra, the true one missing
    assert {d.side for d in sample} == {"missing", "extra"}
    result = CliRunner().invoke(cli, ["check", "--from", str(FIRST), "--to", str(FIRST)],
                                env={"DATABASE_URL": database_url})
    assert result.exit_code == 1, result.output
    assert "2 row(s) differ" in result.output and "user_visits_daily" in result.output
    repaired = CliRunner().invoke(cli, ["refresh", "--from", str(FIRST), "--to", str(FIRST)],
                                  env={"DATABASE_URL": database_url})
    assert repaired.exit_code == 0, repaired.output
    assert check(db, FIRST, FIRST + timedelta(days=2))[0] == 0


def test_a_deleted_summary_row_is_found_too(settings, database_url, db, exports_dir):
    generate(FIRST, FIRST, str(exports_dir), Options(rows_per_day=200))
    load(settings, database_url, exports_dir, [FIRST])
    db.execute("DELETE FROM tchap_stats.user_months "
               "WHERE ctid = (SELECT min(ctid) FROM tchap_stats.user_months)")
    count, sample = check(db, FIRST, FIRST)
    assert count == 1 and sample[0].side == "missing" and sample[0].summary == "user_months"


def test_the_users_month_takes_its_earliest_visit_and_late_data_corrects_it(
        settings, database_url, db, exports_dir):
    ua = "Tchap/2.10.4 (Linux; U; Android 13)"
    d1, d2 = date(2024, 11, 10), date(2024, 11, 12)
    write_file(exports_dir, d2, [("@u", "A", "2024-11-12 09:00:00+01", ua, "inst_b", "b.fr")])
    load(settings, database_url, exports_dir, [d2])
    assert db.execute("SELECT instance, domain, month FROM tchap_stats.user_months"
                      ).fetchall() == [("inst_b", "b.fr", date(2024, 11, 1))]
    # A late file brings an earlier visit that month: the month now takes its attributes.
    write_file(exports_dir, d1, [("@u", "B", "2024-11-03 09:00:00+01", ua, "inst_a", "a.fr"),
                                 ("@u", "C", "2024-11-02 09:00:00+01", "curl/8", "x", "x.fr")])
    load(settings, database_url, exports_dir, [d1])
    # The curl visit is earlier but its device type is 'Autre': it does not count.
    assert db.execute("SELECT user_id, visit_date, instance, domain FROM user_monthly_visits_lite"
                      ).fetchall() == [("@u", date(2024, 11, 1), "inst_a", "a.fr")]
    assert check(db, d1, d2)[0] == 0


EXPECTED_COLUMNS = {
    "user_daily_visits_agg_30d_v2": [
        ("day", "timestamp with time zone"), ("user_id", "character varying"),
        ("instance", "character varying"), ("domain", "character varying"),
        ("visits_count", "bigint"), ("web_visits_count", "bigint"),
        ("mobile_visits_count", "bigint"), ("other_visits_count", "bigint")],
    "user_daily_visits_by_month_1y_v3": [
        ("user_id", "character varying"), ("month", "timestamp with time zone"),
        ("device_id", "character varying"), ("instance", "character varying"),
        ("domain", "character varying"), ("device_type", "character varying"),
        ("platform", "character varying")],
    "user_monthly_visits_lite": [
        ("user_id", "character varying"), ("visit_date", "date"),
        ("instance", "character varying"), ("domain", "character varying")],
}
SAME_AS = {"user_daily_visits_agg_30d": "user_daily_visits_agg_30d_v2",
           "user_daily_visits_agg_120d": "user_daily_visits_agg_30d_v2",
           "user_daily_visits_agg_1y": "user_daily_visits_agg_30d_v2",
           "user_daily_visits_by_month_1y": "user_daily_visits_by_month_1y_v3",
           "user_daily_visits_by_month_18m": "user_daily_visits_by_month_1y_v3"}


def test_every_dashboard_name_has_the_documented_columns_and_types(db):
    for name in DASHBOARD_NAMES:
        columns = db.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position",
            (name,)).fetchall()
        assert columns == EXPECTED_COLUMNS[SAME_AS.get(name, name)], name


def test_window_views_return_exactly_their_window(settings, database_url, db, exports_dir):
    ua = "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0 Safari/537.36"
    today = date(2024, 11, 14)
    # One visit on each of a selection of days around the window edges.
    offsets = [0, 1, 29, 30, 31, 119, 120, 364, 365, 400, 540, 560]
    rows = [(f"@u{o}", "D", f"{today - timedelta(days=o)} 12:00:00+01", ua, "i", "d.fr")
            for o in offsets] + [("@future", "D", "2024-11-20 12:00:00+01", ua, "i", "d.fr")]
    write_file(exports_dir, today, rows)
    load(settings, database_url, exports_dir, [today])
    db.execute("SET tchap_stats.today = '2024-11-14'")

    def users(view: str) -> set[str]:
        return {u for (u,) in db.execute(f"SELECT user_id FROM {view}")}

    def within(days: int) -> set[str]:
        return {f"@u{o}" for o in offsets if o < days}

    assert users("user_daily_visits_agg_30d_v2") == within(30)
    assert users("user_daily_visits_agg_30d") == within(30)
    assert users("user_daily_visits_agg_120d") == within(120)
    assert users("user_daily_visits_agg_1y") == within(365)
    first_month_1y, first_month_18m = date(2023, 12, 1), date(2023, 6, 1)
    month_of = {f"@u{o}": (today - timedelta(days=o)).replace(day=1) for o in offsets}
    month_of["@future"] = date(2024, 11, 1)  # monthly rows cover the current month whole
    assert users("user_daily_visits_by_month_1y_v3") == {
        u for u, m in month_of.items() if m >= first_month_1y}
    assert users("user_daily_visits_by_month_18m") == {
        u for u, m in month_of.items() if m >= first_month_18m}
    day = db.execute("SELECT day FROM user_daily_visits_agg_30d_v2 WHERE user_id = '@u0'")
    assert day.fetchone()[0].isoformat() == "2024-11-13T23:00:00+00:00"  # Paris midnight


# Property: random sequences of loads (reruns, overlaps, late rows, --replace, duplicates
# with differing attributes), in random orders, keep every summary equal to a full
# recompute; and merge-only loads give the same summaries in any order.
AGENTS = ["Mozilla/5.0 (Windows NT 10.0) Firefox/128.0", "Tchap/2.0 (Android 13)",
          "Tchap/2.4 (iPad; iOS 16.4.1)", "curl/8.4"]
visit = st.tuples(
    st.sampled_from(["@a", "@b", "@c"]), st.sampled_from(["D1", "D2"]),
    st.integers(0, 9),  # day offset from 2024-10-25
    st.sampled_from(["00:00:00+02", "23:30:00+00", "12:00:00+01"]),
    st.sampled_from(AGENTS), st.sampled_from(["i1", "i2"]))
load_step = st.tuples(st.integers(0, 3), st.booleans())  # (file number, --replace)


@hypothesis_settings(max_examples=12, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=st.lists(st.lists(visit, min_size=1, max_size=8), min_size=4, max_size=4),
       steps=st.lists(load_step, min_size=1, max_size=6))
def test_property_any_sequence_of_loads_keeps_summaries_exact(
        both_paths, database_url, db, tmp_path_factory, files, steps):
    directory = tmp_path_factory.mktemp("files")
    start = date(2024, 10, 25)
    extraction = [date(2024, 11, 1) + timedelta(days=n) for n in range(4)]
    for n, rows in enumerate(files):
        write_file(directory, extraction[n], [
            (u, d, f"{start + timedelta(days=o)} {t}", ua, i, f"{i}.fr")
            for u, d, o, t, ua, i in rows])
    reset(db)
    for n, replace in steps:
        report = load(both_paths, database_url, directory, [extraction[n]], replace=replace,
                      force=True)
        assert report.exit_code == 0
        assert check(db, start - timedelta(days=1), start + timedelta(days=12))[0] == 0
    if not any(replace for _, replace in steps):
        after = summary_rows(db)
        reset(db)
        for n, _ in reversed(steps):
            load(both_paths, database_url, directory, [extraction[n]], force=True)
        assert summary_rows(db) == after


def test_active_users_by_day_and_month(settings, database_url, db, exports_dir):
    web = "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"
    mobile = "Tchap/2.10.4 (Linux; U; Android 13)"
    day = date(2024, 11, 14)
    write_file(exports_dir, day, [
        ("@a", "A1", "2024-11-14 09:00:00+01", web, "agent_x", "x.fr"),
        ("@a", "A2", "2024-11-14 10:00:00+01", mobile, "agent_x", "x.fr"),
        ("@b", "B1", "2024-11-14 11:00:00+01", mobile, "agent_y", "y.fr"),
        ("@b", "B1", "2024-11-02 11:00:00+01", mobile, "agent_y", "y.fr"),
    ])
    load(settings, database_url, exports_dir, [day])
    daily = {(d, v): (u, n) for d, v, u, n in db.execute(
        "SELECT dimension, value, users, devices FROM daily_active_users WHERE day = %s",
        (day,))}
    assert daily == {("overall", ""): (2, 3), ("instance", "agent_x"): (1, 2),
                     ("instance", "agent_y"): (1, 1), ("domain", "x.fr"): (1, 2),
                     ("domain", "y.fr"): (1, 1), ("platform", "Web"): (1, 1),
                     ("platform", "Mobile"): (2, 2)}
    monthly = dict(db.execute(
        "SELECT value, users FROM monthly_active_users WHERE dimension = 'overall'"))
    assert monthly == {"": 2}


def test_rolling_30_day_active_users(settings, database_url, db, exports_dir):
    ua = "Tchap/2.10.4 (Linux; U; Android 13)"
    visits = {"@a": [date(2024, 11, 1), date(2024, 11, 20)], "@b": [date(2024, 11, 10)],
              "@c": [date(2024, 12, 15)]}
    rows = [(u, "D", f"{d} 12:00:00+01", ua, "i", "d.fr") for u, ds in visits.items()
            for d in ds]
    write_file(exports_dir, date(2024, 12, 15), rows)
    load(settings, database_url, exports_dir, [date(2024, 12, 15)])
    db.execute("SET tchap_stats.today = '2025-02-01'")
    rolling = dict(db.execute("SELECT day, users FROM rolling_30d_active_users "
                              "WHERE dimension = 'overall'").fetchall())

    def expected(day: date) -> int:
        return sum(any(timedelta(0) <= day - d < timedelta(days=30) for d in ds)
                   for ds in visits.values())

    for offset in range(0, 80):
        day = date(2024, 10, 25) + timedelta(days=offset)
        assert rolling.get(day, 0) == expected(day), day
    assert check(db, date(2024, 11, 1), date(2024, 12, 31))[0] == 0


def test_no_refresh_leaves_the_changed_days_for_the_next_refresh(settings, database_url, db,
                                                                 exports_dir):
    generate(FIRST, FIRST, str(exports_dir), Options(rows_per_day=100))
    env = {"DATABASE_URL": database_url}
    loaded = CliRunner().invoke(cli, ["--source", str(exports_dir), "sync", "--date",
                                      str(FIRST), "--only", "user_daily_visits",
                                      "--no-refresh"], env=env)
    assert loaded.exit_code == 0, loaded.output
    assert "summaries:" not in loaded.output
    waiting = db.execute("SELECT count(*) FROM tchap_stats.changed_days").fetchone()[0]
    assert waiting > 0
    assert db.execute("SELECT count(*) FROM tchap_stats.user_visits_daily").fetchone()[0] == 0
    refreshed = CliRunner().invoke(cli, ["refresh"], env=env)
    assert refreshed.exit_code == 0, refreshed.output
    assert f"{waiting} day(s)" in refreshed.output
    assert db.execute("SELECT count(*) FROM tchap_stats.changed_days").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM tchap_stats.summary_queue").fetchone()[0] == 0
    assert check(db, FIRST, FIRST)[0] == 0


def test_a_bulk_refresh_vacuums_the_summaries_and_a_nightly_one_does_not(
        settings, database_url, db, exports_dir):
    # After a backfill's refresh the next night must not find millions of rows without
    # hint bits nor a month without statistics: a manual VACUUM (ANALYZE) counts in
    # vacuum_count (autovacuum's in autovacuum_count).
    def vacuums() -> dict[str, int]:
        return dict(db.execute("SELECT relname, vacuum_count FROM pg_stat_user_tables "
                               "WHERE schemaname = 'tchap_stats'").fetchall())

    first = date(2024, 11, 1)
    last = first + timedelta(days=summaries.BULK_DAYS)  # one day more than BULK_DAYS
    generate(first, last + timedelta(days=1), str(exports_dir), Options(rows_per_day=50))
    env = {"DATABASE_URL": database_url}
    backfill = ["--source", str(exports_dir), "backfill", "--from", str(first), "--to",
                str(last), "--only", "user_daily_visits", "--no-refresh"]
    assert CliRunner().invoke(cli, backfill, env=env).exit_code == 0
    before = vacuums()
    refreshed = CliRunner().invoke(cli, ["refresh"], env=env)
    assert refreshed.exit_code == 0, refreshed.output
    after_bulk = vacuums()
    for summary in SUMMARIES:
        assert after_bulk[summary.table] == before.get(summary.table, 0) + 1, summary.table
    night = CliRunner().invoke(cli, ["--source", str(exports_dir), "sync", "--date",
                                     str(last + timedelta(days=1)), "--only",
                                     "user_daily_visits"], env=env)
    assert night.exit_code == 0, night.output
    assert "summaries: " in night.output
    assert vacuums() == after_bulk
    assert check(db, first, last + timedelta(days=1))[0] == 0


def test_concurrent_refreshes_wait_for_each_other(settings, database_url, db, exports_dir):
    import threading

    generate(FIRST, FIRST + timedelta(days=1), str(exports_dir), Options(rows_per_day=300))
    load(settings, database_url, exports_dir, DAYS[:2], refresh_summaries=False)
    errors = []

    def refresh_whole_month() -> None:
        try:
            with psycopg.connect(database_url, autocommit=True) as conn:
                refresh_range(conn, FIRST, FIRST)
        except psycopg.Error as exc:  # a duplicate key here would mean they interleaved
            errors.append(exc)

    threads = [threading.Thread(target=refresh_whole_month) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert check(db, FIRST, FIRST)[0] == 0


def test_a_preaggregated_day_changed_again_before_the_refresh_is_recomputed(
        settings, database_url, db, exports_dir):
    # The first file finds its day empty (pre-aggregated); the second, in the same run,
    # adds a user to that day: its staged counts are stale, and the refresh must not use them.
    web = "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"
    d1, d2 = date(2024, 11, 14), date(2024, 11, 15)
    write_file(exports_dir, d1, [("@a", "A1", f"{d1} 09:00:00+01", web, "i", "d.fr")])
    write_file(exports_dir, d2, [("@b", "B1", f"{d1} 23:00:00+01", web, "i", "d.fr"),
                                 ("@c", "C1", f"{d2} 09:00:00+01", web, "i", "d.fr")])
    refresh = load(settings, database_url, exports_dir, [d1, d2]).refresh
    assert refresh.preaggregated_days == [d2]
    assert db.execute("SELECT users FROM tchap_stats.active_daily "
                      "WHERE day = %s AND dimension = 'overall'", (d1,)).fetchone()[0] == 2
    assert check(db, d1, d2)[0] == 0
    assert db.execute("SELECT count(*) FROM tchap_stats.active_daily_staged").fetchone()[0] == 0


def test_a_small_new_day_refreshes_only_the_day_column_statistics(settings, database_url, db,
                                                                  exports_dir):
    # The planner must know a new day's size (else it estimates one row), which the day
    # column's statistics tell; the other columns are re-sampled once a fifth changed.
    ua = "Tchap/2.10.4 (Linux; U; Android 13)"
    first = date(2024, 11, 4)
    days = [first + timedelta(days=i) for i in range(6)]
    for day in days:
        write_file(exports_dir, day, [(f"@u{i}", "D", f"{day} 12:00:00+01", ua, "i", "d.fr")
                                      for i in range(300)])
    load(settings, database_url, exports_dir, days)
    # A new partition is stale: analyzed whole, from a small sample (STALE_STATISTICS_TARGET)
    bounds = db.execute("SELECT array_length(histogram_bounds::text::text[], 1) FROM pg_stats "
                        "WHERE tablename = 'user_daily_visits_p2024_11' AND attname = 'user_id'")
    assert 2 <= bounds.fetchone()[0] <= STALE_STATISTICS_TARGET + 1
    small = first + timedelta(days=6)
    write_file(exports_dir, small, [(f"@s{i}", "D", f"{small} 12:00:00+01", ua, "i", "d.fr")
                                    for i in range(20)])
    load(settings, database_url, exports_dir, [small])
    partition = "user_daily_visits_p2024_11"
    assert db.execute("SELECT n_mod_since_analyze FROM pg_stat_user_tables WHERE relname = %s",
                      (partition,)).fetchone()[0] >= 20  # a full ANALYZE would reset it
    # The statistics of the six days of 300 rows alone estimate the new day at one row
    estimate = db.execute("EXPLAIN (FORMAT JSON) SELECT FROM public.user_daily_visits "
                          "WHERE visit_date = %s", (small,)).fetchone()[0][0]["Plan"]
    assert estimate["Plan Rows"] >= 20
    days_seen = db.execute("SELECT n_distinct FROM pg_stats "
                           "WHERE tablename = %s AND attname = 'visit_date'", (partition,))
    assert days_seen.fetchone()[0] >= 6
    assert check(db, first, small)[0] == 0


def test_a_day_above_the_preaggregation_bound_is_recomputed(settings, database_url, db,
                                                            exports_dir, monkeypatch):
    from tchap_stats import preaggregate

    monkeypatch.setattr(preaggregate, "PREAGGREGATE_MAX_ROWS", 2)
    web = "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"
    day, late = date(2024, 11, 14), date(2024, 11, 10)
    write_file(exports_dir, day, [(f"@u{i}", "D", f"{day} 09:00:00+01", web, "i", "d.fr")
                                  for i in range(3)]
               + [("@late", "D", f"{late} 09:00:00+01", web, "i", "d.fr")])
    refresh = load(settings, database_url, exports_dir, [day]).refresh
    assert refresh.preaggregated_days == [late]  # 1 row; the day's 3 rows are above 2
    assert check(db, late, day)[0] == 0


def test_user_months_follows_whichever_group_ends_first_on_its_connection():
    daily_may_end = threading.Event()
    ran: dict[str, str] = {}

    def work(connection: str, group: str) -> str:
        if group == summaries.DAILY:
            assert daily_may_end.wait(10), "user_months waited for the daily group"
        ran[group] = connection
        if group == summaries.MONTHS:
            daily_may_end.set()
        return group

    assert summaries._side_by_side(["one", "two"], work) == list(summaries.GROUPS)
    assert ran[summaries.MONTHS] == ran[summaries.MONTHLY] != ran[summaries.DAILY]


def test_a_group_that_fails_lets_the_others_finish_before_its_error_is_raised():
    ran: list[str] = []

    def work(connection: str, group: str) -> None:
        if group == summaries.MONTHLY:
            raise RuntimeError("monthly failed")
        ran.append(group)

    with pytest.raises(RuntimeError, match="monthly failed"):
        summaries._side_by_side(["one", "two"], work)
    assert sorted(ran) == sorted([summaries.DAILY, summaries.MONTHS])


def test_a_group_that_fails_keeps_its_days_and_the_other_group_commits(
        settings, database_url, db, exports_dir):
    generate(FIRST, FIRST, str(exports_dir), Options(rows_per_day=200))
    db.execute("ALTER TABLE tchap_stats.user_devices_monthly "
               "ADD CONSTRAINT refuse_every_row CHECK (false) NOT VALID")
    failed = load(settings, database_url, exports_dir, [FIRST])
    # The load is reported loaded; the refresh's failure is the run's, and exits 1.
    assert failed.outcomes[0].status == "loaded"
    assert "refuse_every_row" in failed.refresh_error and failed.exit_code == 1
    waiting = db.execute("SELECT DISTINCT summary_group FROM tchap_stats.summary_queue"
                         ).fetchall()
    assert waiting == [("monthly",)]  # the daily group committed its days
    assert db.execute("SELECT count(*) FROM tchap_stats.user_visits_daily").fetchone()[0] > 0
    assert db.execute("SELECT count(*) FROM tchap_stats.user_devices_monthly").fetchone()[0] == 0
    db.execute("ALTER TABLE tchap_stats.user_devices_monthly DROP CONSTRAINT refuse_every_row")
    report = refresh_changed(db, database_url)
    assert FIRST in report.days and report.months == [FIRST.replace(day=1)]
    assert db.execute("SELECT count(*) FROM tchap_stats.summary_queue").fetchone()[0] == 0
    assert check(db, FIRST - timedelta(days=1), FIRST)[0] == 0
