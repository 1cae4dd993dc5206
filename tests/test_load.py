"""The core loader: user_daily_visits files → DuckDB → partitioned PostgreSQL."""

from __future__ import annotations

import csv
from datetime import date

import pytest

from tchap_stats import load as load_module
from tchap_stats.exports import USER_DAILY_VISITS
from tchap_stats.pipeline import EXIT_FAILED, EXIT_MISSING, EXIT_OK

from .conftest import DATA, load, upload_dir, visits, write_file

D = date(2024, 11, 14)
UA_FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"
UA_TCHAP = "Tchap/2.10.4 (Linux; U; Android 13; SM-G991B Build/TP1A.220624.014)"


def row(user="@a:agent.x", device="DEV", ts="2024-11-14 00:00:00+01", ua=UA_FIREFOX,
        instance="agent_x", domain="x.gouv.fr"):
    return (user, device, ts, ua, instance, domain)


def test_visit_day_is_the_paris_calendar_day(settings, database_url, db, exports_dir):
    write_file(exports_dir, D, [
        row(user="@midnight", ts="2024-11-14 00:00:00+01"),   # 23:00 UTC on the 13th
        row(user="@late-utc", ts="2024-11-13 23:30:00+00"),   # 00:30 in Paris on the 14th
        row(user="@summer", ts="2024-07-01 23:30:00+00"),     # 01:30 in Paris (+02)
        row(user="@spaced", ts="2024-11-14 13:00:00 +02:00"),  # the subscriptions spelling
        row(user="@before", ts="2024-11-13 22:59:59+00"),     # 23:59:59 in Paris, the 13th
    ])
    report = load(settings, database_url, exports_dir, [D])
    assert report.exit_code == EXIT_OK
    days = dict(db.execute("SELECT user_id, visit_date::text FROM user_daily_visits"))
    assert days == {"@midnight": "2024-11-14", "@late-utc": "2024-11-14",
                    "@summer": "2024-07-02", "@spaced": "2024-11-14", "@before": "2024-11-13"}


def test_identifiers_with_backslashes_and_quoted_commas_survive(settings, database_url, db,
                                                                exports_dir):
    ua = 'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit (KHTML, like "Gecko")'
    write_file(exports_dir, D, [row(user="\\aaaa", device="\\sqdqsd", ua=ua)])
    load(settings, database_url, exports_dir, [D])
    assert db.execute("SELECT user_id, device_id, user_agent FROM user_daily_visits"
                      ).fetchall() == [("\\aaaa", "\\sqdqsd", ua)]


# Line breaks are refused in these columns (test_hostile.py); account_data's content keeps
# them through the same COPY text format (test_hostile.py too).
ODD_VALUES = ["\\aaaa", "tab\there", "\\N", "\\t not a tab", "ends with \\", "é ü 中 🙂",
              'a "quoted" word']


def test_values_reach_postgresql_unaltered_through_the_copy_text_format(
        settings, database_url, db, exports_dir):
    """Rows stream to PostgreSQL in COPY's text format, whose escapes (backslash, tab,
    \\N for NULL) must leave every value as the file has it: through the COPY into an
    empty day, and through the merge's into a day that has rows."""
    write_file(exports_dir, D, [row(user=f"@{i}", device=value, ua=value)
                                for i, value in enumerate(ODD_VALUES)], quoting=csv.QUOTE_ALL)
    expected = {(f"@{i}", value, value) for i, value in enumerate(ODD_VALUES)}
    for force in (False, True):  # the second load merges into the day the first wrote
        report = load(settings, database_url, exports_dir, [D], force=force)
        assert report.outcomes[0].status == "loaded", report.outcomes[0].error
        assert set(db.execute("SELECT user_id, device_id, user_agent FROM user_daily_visits"
                              ).fetchall()) == expected
        assert db.execute("SELECT count(*) FROM user_daily_visits").fetchone()[0] == len(
            ODD_VALUES)


def test_the_sample_file_loads(settings, database_url, db, exports_dir):
    """The public sample export (tests/data), warts included: no trailing newline,
    backslashes in ids, and a visit a month after the file's date (accepted here: the
    fixture's acceptance window is wide)."""
    sample = (DATA / "user_daily_visits_sample.csv").read_bytes()
    (exports_dir / "user_daily_visits_2023-05-17.csv").write_bytes(sample)
    report = load(settings, database_url, exports_dir, [date(2023, 5, 17)])
    assert report.outcomes[0].rows_loaded == 2
    assert db.execute("SELECT user_id, visit_date::text, platform, device_type "
                      "FROM user_daily_visits ORDER BY 1").fetchall() == [
        ("\\aaaa", "2023-05-17", "Web", "Safari Mac OS"),
        ("\\aaaaaaa", "2023-06-14", "Mobile", "Tchap iOS"),
    ]


def test_duplicates_merge_to_the_earliest_visit_whatever_the_order(
        settings, database_url, db, exports_dir, tmp_path):
    first = [row(ts="2024-11-14 09:00:00+01", ua=UA_TCHAP, instance="i1"),
             row(ts="2024-11-14 08:00:00+01", ua=UA_FIREFOX, instance="i2"),  # in-file dup
             row(user="@b", ts="2024-11-14 10:00:00+01", ua="Zed")]
    second = [row(ts="2024-11-14 08:00:00+01", ua="Aardvark", instance="i3"),  # ties on ts
              row(user="@b", ts="2024-11-14 11:00:00+01", ua="Alpha")]         # later: loses
    d1, d2 = date(2024, 11, 14), date(2024, 11, 15)
    write_file(exports_dir, d1, first)
    write_file(exports_dir, d2, second)
    forward = load(settings, database_url, exports_dir, [d1, d2])
    assert forward.exit_code == EXIT_OK
    expected = visits(db)
    assert [(r[1], r[4], r[5]) for r in expected] == [
        ("@a:agent.x", "Aardvark", "i3"), ("@b", "Zed", "agent_x")]
    # The other order, into a fresh table: the same result, row for row.
    db.execute("TRUNCATE user_daily_visits; TRUNCATE tchap_stats.loads CASCADE")
    backward = load(settings, database_url, exports_dir, [d2, d1])
    assert backward.exit_code == EXIT_OK
    assert visits(db) == expected
    o1, o2 = backward.outcomes
    assert (o1.rows_loaded, o1.rows_duplicate) == (2, 0)
    assert (o2.rows_read, o2.rows_loaded, o2.rows_duplicate) == (3, 1, 2)


def test_rerunning_a_file_changes_nothing(settings, database_url, db, exports_dir):
    write_file(exports_dir, D, [row(user=f"@u{i}") for i in range(50)])
    load(settings, database_url, exports_dir, [D])
    before = visits(db)
    again = load(settings, database_url, exports_dir, [D])
    assert again.outcomes[0].status == "skipped"
    forced = load(settings, database_url, exports_dir, [D], force=True)
    outcome = forced.outcomes[0]
    assert (outcome.status, outcome.rows_loaded, outcome.rows_duplicate) == ("loaded", 0, 50)
    assert outcome.days_changed == []
    assert visits(db) == before


def test_replace_leaves_exactly_the_files_rows(settings, database_url, db, exports_dir):
    write_file(exports_dir, D, [row(user="@old1"), row(user="@old2"),
                                row(user="@other-day", ts="2024-11-10 12:00:00+01")])
    load(settings, database_url, exports_dir, [D])
    write_file(exports_dir, D, [row(user="@new", ts="2024-11-14 12:00:00+01")])
    report = load(settings, database_url, exports_dir, [D], replace=True)
    assert report.exit_code == EXIT_OK
    assert [r[1] for r in visits(db, D)] == ["@new"]
    assert [r[1] for r in visits(db, date(2024, 11, 10))] == ["@other-day"]  # untouched
    removed = db.execute("SELECT rows_removed FROM tchap_stats.load_days ORDER BY load_id DESC"
                         " LIMIT 1").fetchone()[0]
    assert removed == 2


def test_a_failure_mid_load_leaves_every_day_as_before(settings, database_url, db, exports_dir,
                                                       monkeypatch):
    d0, d1 = date(2024, 11, 13), date(2024, 11, 14)
    write_file(exports_dir, d0, [row(user="@kept", ts="2024-11-13 10:00:00+01")])
    load(settings, database_url, exports_dir, [d0])
    before = visits(db)
    write_file(exports_dir, d1, [row(user="@kept", ts="2024-11-13 09:00:00+01"),  # beats it
                                 row(user="@new", ts="2024-11-14 10:00:00+01")])
    original = load_module.DayWriter.write
    calls = []

    def crash_on_second_day(self, day, replace):
        result = original(self, day, replace)  # the first day is written...
        calls.append(day)
        if len(calls) == 2:
            raise OSError("disk on fire (injected)")  # ...and the second one crashes
        return result

    monkeypatch.setattr(load_module.DayWriter, "write", crash_on_second_day)
    failed = load(settings, database_url, exports_dir, [d1])
    assert failed.exit_code == EXIT_FAILED
    assert "disk on fire" in failed.outcomes[0].error
    assert visits(db) == before
    assert db.execute("SELECT count(*) FROM tchap_stats.changed_days WHERE day = %s",
                      (d1,)).fetchone()[0] == 0
    status = db.execute("SELECT status FROM tchap_stats.loads ORDER BY load_id DESC LIMIT 1")
    assert status.fetchone()[0] == "failed"

    monkeypatch.setattr(load_module.DayWriter, "write", original)
    done = load(settings, database_url, exports_dir, [d1])
    assert done.exit_code == EXIT_OK
    assert [(r[0], r[1], r[3]) for r in visits(db)] == [
        ("2024-11-13", "@kept", "2024-11-13 08:00:00.000000"),
        ("2024-11-14", "@new", "2024-11-14 09:00:00.000000")]


def test_malformed_lines_are_rejected_with_their_line_numbers(settings, database_url, db,
                                                             exports_dir):
    good = [row(user=f"@u{i}") for i in range(400)]
    lines = good[:100] + [
        "@bad-ts,DEV,yesterday,UA,agent_x,x.gouv.fr",          # line 102
        "@no-offset,DEV,2024-11-14 10:00:00,UA,agent_x,x.gouv.fr",  # line 103
        "@short,DEV,2024-11-14 10:00:00+01,UA,agent_x",         # line 104
    ] + good[100:200] + [
        ',DEV,2024-11-14 10:00:00+01,UA,agent_x,x.gouv.fr',    # line 205: empty user_id
        '@quote,DEV,2024-11-14 10:00:00+01,"UA"junk,agent_x,x.gouv.fr',  # line 206
    ] + good[200:]
    write_file(exports_dir, D, lines)
    report = load(settings, database_url, exports_dir, [D],)
    outcome = report.outcomes[0]
    # 5 of 405 lines is above the default 1 % threshold: the file fails, nothing loaded.
    assert outcome.status == "failed" and "threshold" in outcome.error
    assert db.execute("SELECT count(*) FROM user_daily_visits").fetchone()[0] == 0
    rejects = db.execute("SELECT line, column_name, reason, raw_line FROM tchap_stats.rejects "
                         "ORDER BY line").fetchall()
    assert [(r[0], r[1]) for r in rejects] == [
        (102, "visit_ts"), (103, "visit_ts"), (104, "domain"), (205, "user_id"),
        (206, "user_agent")]
    assert "not a timestamp with a UTC offset (within ±14:00): yesterday" in rejects[0][2]
    assert rejects[2][3] == "@short,DEV,2024-11-14 10:00:00+01,UA,agent_x"
    # Under the threshold, the good lines load and the rejects are kept with the load.
    relaxed = load(settings.__class__(**{**settings.__dict__, "reject_threshold": 0.05}),
                   database_url, exports_dir, [D], force=True)
    outcome = relaxed.outcomes[0]
    assert (outcome.status, outcome.rows_read, outcome.rows_loaded, outcome.rows_rejected) == (
        "loaded", 405, 400, 5)
    assert db.execute("SELECT count(*) FROM user_daily_visits").fetchone()[0] == 400


def test_a_header_with_a_missing_column_fails_that_file_before_anything_is_written(
        settings, database_url, db, exports_dir):
    header = ("user_id", "device_id", "user_agent", "instance", "domain")
    write_file(exports_dir, D, [("@a", "DEV", "UA", "i", "d")], header=header)
    report = load(settings, database_url, exports_dir, [D])
    assert report.exit_code == EXIT_FAILED
    error = report.outcomes[0].error
    assert "user_daily_visits_2024-11-14.csv" in error
    assert "missing column(s): visit_ts" in error
    assert db.execute("SELECT count(*) FROM user_daily_visits").fetchone()[0] == 0


def test_a_renamed_column_is_named(settings, database_url, exports_dir):
    header = ("user_id", "device_id", "visit_time", "user_agent", "instance", "domain")
    write_file(exports_dir, D, [row()], header=header)
    error = load(settings, database_url, exports_dir, [D]).outcomes[0].error
    assert "missing column(s): visit_ts" in error and "unexpected column(s): visit_time" in error


def test_partitions_are_created_for_late_rows_far_outside_the_range(settings, database_url, db,
                                                                    exports_dir):
    write_file(exports_dir, D, [row(user="@today"),
                                row(user="@very-late", ts="2019-02-03 10:00:00+01"),
                                row(user="@new-year", ts="2024-12-31 23:30:00+00")])
    report = load(settings, database_url, exports_dir, [D])
    assert report.outcomes[0].days_changed == [date(2019, 2, 3), D, date(2025, 1, 1)]
    partitions = [r[0] for r in db.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'user_daily_visits'::regclass ORDER BY 1")]
    assert partitions == ["user_daily_visits_p2019_02", "user_daily_visits_p2024_11",
                          "user_daily_visits_p2025_01"]
    located = db.execute("SELECT tableoid::regclass::text, user_id FROM user_daily_visits "
                         "ORDER BY 1").fetchall()
    assert located == [("user_daily_visits_p2019_02", "@very-late"),
                       ("user_daily_visits_p2024_11", "@today"),
                       ("user_daily_visits_p2025_01", "@new-year")]


def test_changed_days_record_only_days_whose_content_changed(settings, database_url, db,
                                                              exports_dir):
    d0 = date(2024, 11, 13)
    write_file(exports_dir, d0, [row(user="@a", ts="2024-11-13 10:00:00+01")])
    load(settings, database_url, exports_dir, [d0], refresh_summaries=False)
    db.execute("DELETE FROM tchap_stats.changed_days")  # as the summaries refresh would
    write_file(exports_dir, D, [row(user="@a", ts="2024-11-13 10:00:00+01"),  # same: no change
                                row(user="@b")])
    load(settings, database_url, exports_dir, [D], refresh_summaries=False)
    assert db.execute("SELECT day FROM tchap_stats.changed_days").fetchall() == [(D,)]
    # The run's summary refresh consumes them.
    report = load(settings, database_url, exports_dir, [D], force=True)
    assert report.refresh.days == [D]
    assert db.execute("SELECT count(*) FROM tchap_stats.changed_days").fetchone()[0] == 0


def test_a_missing_file_is_named_and_the_others_load(settings, database_url, db, exports_dir):
    write_file(exports_dir, D, [row()])
    report = load(settings, database_url, exports_dir, [date(2024, 11, 13), D])
    assert report.exit_code == EXIT_MISSING
    assert [o.name for o in report.missing] == ["user_daily_visits_2024-11-13.csv"]
    assert report.outcomes[1].status == "loaded"


def test_the_same_results_from_a_folder_and_from_s3(settings, database_url, db, exports_dir,
                                                    bucket, server_url):
    from tchap_stats.synthetic.generate import Options, generate

    first, last = date(2024, 3, 29), date(2024, 4, 2)
    generate(first, last, str(exports_dir), Options(rows_per_day=800, seed=7, malformed=0.004),
             exports=["user_daily_visits"])
    days = [date(2024, 3, 29 + i) if i < 3 else date(2024, 4, i - 2) for i in range(5)]
    local = load(settings, database_url, exports_dir, days)
    assert local.exit_code == EXIT_OK, [o.error for o in local.outcomes]
    from_folder = visits(db)
    assert len(from_folder) > 3000
    db.execute("TRUNCATE user_daily_visits; TRUNCATE tchap_stats.loads CASCADE")
    upload_dir(exports_dir, settings.s3, bucket, prefix="daily/")
    remote = load(settings, database_url, f"s3://{bucket}/daily", days, jobs=2)
    assert remote.exit_code == EXIT_OK, [o.error for o in remote.outcomes]
    assert visits(db) == from_folder
    keys = [k for (k,) in db.execute("SELECT file_key FROM tchap_stats.loads ORDER BY 1")]
    assert keys[0] == "daily/user_daily_visits_2024-03-29.csv"
    # Two jobs load the files in another order: which file first brought a row differs,
    # not what each file holds.
    assert [(o.rows_read, o.rows_rejected) for o in remote.outcomes] == [
        (o.rows_read, o.rows_rejected) for o in local.outcomes]
    for o in remote.outcomes:  # nothing lost, nothing invented
        assert o.rows_read == o.rows_loaded + o.rows_duplicate + o.rows_rejected


def test_interrupted_loads_are_marked_and_reloaded(settings, database_url, db, exports_dir):
    write_file(exports_dir, D, [row()])
    db.execute("INSERT INTO tchap_stats.loads (export, file_key, etag, mode, status, backend_pid)"
               " VALUES ('user_daily_visits', 'x.csv', 'e', 'merge', 'running', 0)")
    report = load(settings, database_url, exports_dir, [D])
    assert report.exit_code == EXIT_OK
    assert db.execute("SELECT status FROM tchap_stats.loads WHERE file_key = 'x.csv'"
                      ).fetchone()[0] == "interrupted"


@pytest.mark.parametrize("jobs", [1, 2])
def test_overlapping_files_in_parallel_give_the_serial_result(settings, database_url, db,
                                                              exports_dir, jobs):
    from tchap_stats.synthetic.generate import Options, generate

    generate(date(2024, 5, 1), date(2024, 5, 6), str(exports_dir),
             Options(rows_per_day=500, seed=3, overlap=0.2, late=0.05),
             exports=["user_daily_visits"])
    days = [date(2024, 5, d) for d in range(1, 7)]
    report = load(settings, database_url, exports_dir, days, jobs=jobs)
    assert report.exit_code == EXIT_OK
    keys = db.execute("SELECT count(*), count(DISTINCT (visit_date, user_id, device_id)) "
                      "FROM user_daily_visits").fetchone()
    assert keys[0] == keys[1] > 2500


def test_line_numbers_hold_in_a_file_read_in_parallel_chunks(settings, database_url, db,
                                                            exports_dir):
    # ~45 MB: DuckDB splits it across threads and buffers; numbering must still follow the file.
    ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) " \
         "Chrome/126.0.0.0 Safari/537.36 " + "x" * 60
    bad_at = {50_000: "not-a-time", 150_001: "2024-11-14 10:00:00", 239_990: "2024-99-14 10:00"}
    lines = []
    for line in range(2, 240_002):  # line 1 is the header
        ts = bad_at.get(line, "2024-11-14 00:00:00+01")
        lines.append(row(user=f"@user{line}:agent.x", ts=ts, ua=ua))
    write_file(exports_dir, D, lines)
    assert (exports_dir / f"user_daily_visits_{D}.csv").stat().st_size > 40_000_000
    report = load(settings, database_url, exports_dir, [D])
    assert report.outcomes[0].rows_rejected == 3
    rejects = db.execute("SELECT line, raw_line FROM tchap_stats.rejects ORDER BY line").fetchall()
    assert [line for line, _ in rejects] == sorted(bad_at)
    for line, raw in rejects:
        assert raw.startswith(f"@user{line}:agent.x,")


def test_a_killed_load_leaves_the_day_untouched_and_the_next_run_completes_it(
        settings, database_url, db, exports_dir, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from tchap_stats.synthetic.generate import Options, generate

    generate(D, D, str(exports_dir), Options(rows_per_day=150_000, seed=11),
             exports=["user_daily_visits"])
    env = {**os.environ, "DATABASE_URL": database_url,
           "TCHAP_STATS_SPILL_DIR": str(tmp_path / "spill")}
    command = [sys.executable, "-m", "tchap_stats", "--source", str(exports_dir), "sync",
               "--date", D.isoformat()]
    loader = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    copied = 0
    while time.monotonic() < deadline and loader.poll() is None:
        progress = db.execute("SELECT tuples_processed FROM pg_stat_progress_copy "
                              "WHERE datname = current_database()").fetchone()
        if progress and progress[0] > 0:
            copied = progress[0]
            break
        time.sleep(0.01)
    assert loader.poll() is None, "the load finished before it could be killed"
    assert copied > 0
    loader.send_signal(signal.SIGKILL)  # no chance to clean up
    loader.wait()
    time.sleep(0.5)  # the server notices the closed connection and rolls back
    assert db.execute("SELECT count(*) FROM user_daily_visits").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM tchap_stats.changed_days").fetchone()[0] == 0
    assert db.execute("SELECT status FROM tchap_stats.loads").fetchall() == [("running",)]

    rerun = load(settings, database_url, exports_dir, [D])
    assert rerun.exit_code == EXIT_OK
    statuses = [s for (s,) in db.execute("SELECT status FROM tchap_stats.loads ORDER BY load_id")]
    assert statuses == ["interrupted", "loaded"]
    loaded = db.execute("SELECT count(*) FROM user_daily_visits").fetchone()[0]
    assert loaded == rerun.outcomes[0].rows_loaded > 140_000


def test_every_file_of_a_run_gets_the_paris_day(settings, database_url, db, exports_dir):
    # Streaming a file out must not change the zone the next file's days are computed in.
    days = [date(2024, 11, 14), date(2024, 11, 15), date(2024, 11, 16)]
    for day in days:
        write_file(exports_dir, day, [row(user=f"@{day}", ts=f"{day} 00:00:00+01")])
    load(settings, database_url, exports_dir, days)
    assert db.execute("SELECT user_id, visit_date::text FROM user_daily_visits ORDER BY 1"
                      ).fetchall() == [(f"@{d}", str(d)) for d in days]


def test_merges_hash_and_leave_the_planner_as_they_found_it(db):
    # Merges switch nested loops off for their own statements only: what the load's
    # transaction runs after them (ledger, other days) plans as configured.
    with db.transaction():
        db.execute("SET LOCAL enable_nestloop = on")
        with load_module.hash_joins(db):
            assert db.execute("SHOW enable_nestloop").fetchone()[0] == "off"
        assert db.execute("SHOW enable_nestloop").fetchone()[0] == "on"
        db.execute("SET LOCAL enable_nestloop = off")
        with load_module.hash_joins(db):
            pass
        assert db.execute("SHOW enable_nestloop").fetchone()[0] == "off"


def test_a_load_leaves_no_brin_range_of_its_month_unsummarized(settings, database_url, db,
                                                               exports_dir):
    # An unsummarized range matches every query: a day's merge or summary would read the
    # whole month. 5,000 rows fill several 32-page ranges.
    write_file(exports_dir, D, [row(user=f"@u{i}:agent.x", device=f"D{i}") for i in range(5000)])
    load(settings, database_url, exports_dir, [D])
    partition = "user_daily_visits_p2024_11"
    assert db.execute("SELECT pg_relation_size(%s) / 8192", (partition,)).fetchone()[0] > 64
    assert db.execute("SELECT brin_summarize_new_values(%s::regclass)",
                      (f"{partition}_visit_date_idx",)).fetchone()[0] == 0


def test_finding_whether_a_day_has_rows_reads_the_day_not_its_month(db):
    # A month partition holds its rows in the order their days were loaded. Once ANALYZE
    # knows the days, the planner's favourite for "does the day have a row?" is a
    # sequential scan, which reads every earlier day of the month before the first match
    # (and the whole month for an empty day).
    export = USER_DAILY_VISITS
    days = [date(2024, 11, d) for d in range(1, 21)]
    load_module.ensure_partitions(db, export, days)
    db.execute("INSERT INTO user_daily_visits SELECT 'u' || i, 'd' || i, day, day, 'ua', "
               "'agent_x', 'x.gouv.fr', 'Web', 'Autre' FROM generate_series("
               "'2024-11-01'::date, '2024-11-20', '1 day') AS day, generate_series(1, 1000) AS i")
    db.execute("ANALYZE user_daily_visits_p2024_11")
    with db.transaction():
        assert load_module.day_has_rows(db, *load_module.day_parts(export, date(2024, 11, 19)))
        assert not load_module.day_has_rows(db, *load_module.day_parts(export, date(2024, 11, 25)))
        # Both through the index (a bitmap heap scan counts in seq_scan too: no help here)
        assert db.execute("SELECT idx_scan FROM pg_stat_xact_user_tables "
                          "WHERE relname = 'user_daily_visits_p2024_11'").fetchone()[0] == 2
