"""Every export of the registry: column mapping and types, reruns, its merge rule in both
load orders, rejects with line numbers, and one export failing without stopping the others.
Real PostgreSQL and real files, as everywhere else."""

from __future__ import annotations

import csv
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tchap_stats.exports import EXPORTS, PG_TYPES, Export
from tchap_stats.pipeline import EXIT_FAILED, EXIT_MISSING, EXIT_OK, RunOptions, RunReport, run
from tchap_stats.source import LocalSource

D1, D2 = date(2024, 11, 14), date(2024, 11, 15)
NEW = [name for name in EXPORTS if name != "user_daily_visits"]


def write(directory: Path, export: Export, day: date, rows, header=None) -> None:
    """An export file as the real ones are: RFC 4180, no trailing newline."""
    path = directory / export.file_name(day)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header or export.header)
        for row in rows:
            if isinstance(row, str):
                f.write(row + "\n")
            else:
                writer.writerow(row)
    path.write_bytes(path.read_bytes().rstrip(b"\n"))


def load(settings, database_url: str, directory: Path, exports: list[Export],
         days: list[date], **options) -> RunReport:
    return run(replace(settings, source=str(directory)), database_url, LocalSource(directory),
               exports, days, RunOptions(**{"refresh_summaries": False, **options}))


def content(conn: psycopg.Connection, export: Export) -> list[tuple]:
    """The table's rows as text (timestamps in UTC), in the table's column order, sorted."""
    conn.execute("SET TIME ZONE 'UTC'")
    columns = sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c))
                                 for c in export.table_columns)
    return sorted(conn.execute(sql.SQL("SELECT {} FROM {}").format(
        columns, sql.Identifier(export.table))).fetchall())


@dataclass(frozen=True)
class Case:
    first: list  # the file of D1
    loaded: list[tuple]  # the table after loading it (table column order, as text)
    second: list  # the file of D2, conflicting with the first
    merged: list[tuple]  # the table after both files, whatever the order
    malformed: list[str]  # two lines: the first breaks a typed or required value
    malformed_column: str  # the column the first malformed line is rejected for


HOUR = "2024-11-14 10:00:00+01"
CASES: dict[str, Case] = {
    "subscriptions_aggregate": Case(
        first=[("5", "a.gouv.fr", HOUR, "agent_a"),
               ("7", "b.gouv.fr", "2024-11-14 11:00:00 +01:00", "agent_b"),
               # 00:30 in Paris on Nov 1st: November's partition, though October in UTC
               ("2", "a.gouv.fr", "2024-10-31 23:30:00+00", "agent_a")],
        loaded=[("2", "a.gouv.fr", "2024-10-31 23:30:00+00", "agent_a", "2024-11-14"),
                ("5", "a.gouv.fr", "2024-11-14 09:00:00+00", "agent_a", "2024-11-14"),
                ("7", "b.gouv.fr", "2024-11-14 10:00:00+00", "agent_b", "2024-11-14")],
        # the later extraction recounts an hour lower, adds one twice (greatest stays)
        second=[("3", "a.gouv.fr", HOUR, "agent_a"),
                ("8", "c.gouv.fr", HOUR, "agent_c"), ("9", "c.gouv.fr", HOUR, "agent_c")],
        merged=[("2", "a.gouv.fr", "2024-10-31 23:30:00+00", "agent_a", "2024-11-14"),
                ("3", "a.gouv.fr", "2024-11-14 09:00:00+00", "agent_a", "2024-11-15"),
                ("7", "b.gouv.fr", "2024-11-14 10:00:00+00", "agent_b", "2024-11-14"),
                ("9", "c.gouv.fr", "2024-11-14 09:00:00+00", "agent_c", "2024-11-15")],
        malformed=["many,a.gouv.fr,2024-11-14 10:00:00+01,agent_a",
                   "4,a.gouv.fr,2024-11-14 10:00:00+01"],
        malformed_column="subscriptions",
    ),
    "events_roomv9_aggregate": Case(
        first=[("3", "m.room.create", "a.gouv.fr", HOUR, "agent_a"),
               ("8", "m.room.encrypted", "a.gouv.fr", HOUR, "agent_a")],
        loaded=[("3", "a.gouv.fr", "2024-11-14 09:00:00+00", "agent_a", "m.room.create",
                 "2024-11-14"),
                ("8", "a.gouv.fr", "2024-11-14 09:00:00+00", "agent_a", "m.room.encrypted",
                 "2024-11-14")],
        second=[("1", "m.room.create", "a.gouv.fr", HOUR, "agent_a"),
                ("4", "m.room.message", "a.gouv.fr", HOUR, "agent_a")],
        merged=[("1", "a.gouv.fr", "2024-11-14 09:00:00+00", "agent_a", "m.room.create",
                 "2024-11-15"),
                ("4", "a.gouv.fr", "2024-11-14 09:00:00+00", "agent_a", "m.room.message",
                 "2024-11-15"),
                ("8", "a.gouv.fr", "2024-11-14 09:00:00+00", "agent_a", "m.room.encrypted",
                 "2024-11-14")],
        malformed=["3,m.room.create,a.gouv.fr,2024-11-14 10:00:00,agent_a",
                   "3,m.room.create,a.gouv.fr"],
        malformed_column="hour",
    ),
    "account_data": Case(
        first=[("@u1:x", "m.direct", '{"@v:x": ["!r\\1:x"], "n": 1}', "agent_a", "a.gouv.fr"),
               ("@u2:x", "im.vector.setting", "{}", "agent_b", "b.gouv.fr")],
        loaded=[("@u1:x", "m.direct", '{"@v:x": ["!r\\1:x"], "n": 1}', "agent_a", "a.gouv.fr",
                 "2024-11-14"),
                ("@u2:x", "im.vector.setting", "{}", "agent_b", "b.gouv.fr", "2024-11-14")],
        # u1 changes, u2 is absent (kept), u3 appears twice (greatest content stays)
        second=[("@u1:x", "m.direct", '{"n": 2}', "agent_a", "a.gouv.fr"),
                ("@u3:x", "m.direct", "a", "agent_c", "c.gouv.fr"),
                ("@u3:x", "m.direct", "b", "agent_c", "c.gouv.fr")],
        merged=[("@u1:x", "m.direct", '{"n": 2}', "agent_a", "a.gouv.fr", "2024-11-15"),
                ("@u2:x", "im.vector.setting", "{}", "agent_b", "b.gouv.fr", "2024-11-14"),
                ("@u3:x", "m.direct", "b", "agent_c", "c.gouv.fr", "2024-11-15")],
        malformed=[",m.direct,{},agent_a,a.gouv.fr", "@u9:x,m.direct,{},agent_a"],
        malformed_column="user_id",
    ),
    "sso": Case(
        first=[("10", "a.gouv.fr", "agent_a", "6", "3", "1"),
               ("5", "b.gouv.fr", "agent_b", "5", "0", "0")],
        loaded=[("10", "a.gouv.fr", "agent_a", "6", "3", "1", "2024-11-14"),
                ("5", "b.gouv.fr", "agent_b", "5", "0", "0", "2024-11-14")],
        second=[("11", "a.gouv.fr", "agent_a", "6", "3", "2")],
        merged=[("10", "a.gouv.fr", "agent_a", "6", "3", "1", "2024-11-14"),
                ("11", "a.gouv.fr", "agent_a", "6", "3", "2", "2024-11-15"),
                ("5", "b.gouv.fr", "agent_b", "5", "0", "0", "2024-11-14")],
        malformed=["10,a.gouv.fr,agent_a,6,3,1.5", "10,a.gouv.fr,agent_a,6,3"],
        malformed_column="users_proconnect",
    ),
    "crisp_conversation_segments": Case(
        first=[("s1", "resolved", "bug", "2024-11-10 09:00:00", "2024-11-14 10:00:00", "a.fr"),
               ("s2", "pending", "question", "2024-11-12 08:00:00", "2024-11-14 12:00:00",
                "b.fr")],
        loaded=[("s1", "bug", "resolved", "a.fr", "2024-11-10 09:00:00", "2024-11-14 10:00:00"),
                ("s2", "question", "pending", "b.fr", "2024-11-12 08:00:00",
                 "2024-11-14 12:00:00")],
        # s1 updated later (with an offset: Paris wall-clock time); s2's row is older
        second=[("s1", "closed", "bug", "2024-11-10 09:00:00", "2024-11-15 08:30:00+00",
                 "a.fr"),
                ("s2", "open", "question", "2024-11-12 08:00:00", "2024-11-13 12:00:00",
                 "b.fr")],
        merged=[("s1", "bug", "closed", "a.fr", "2024-11-10 09:00:00", "2024-11-15 09:30:00"),
                ("s2", "question", "pending", "b.fr", "2024-11-12 08:00:00",
                 "2024-11-14 12:00:00")],
        malformed=["s9,open,bug,2024-11-10 09:00:00,yesterday,a.fr",
                   "s9,open,bug,2024-11-10 09:00:00"],
        malformed_column="updated_at",
    ),
    "pushers": Case(
        first=[("@u1:x", "DEV1", "fr.gouv.tchap", "http", "true", "agent_a", "a.gouv.fr"),
               ("@u2:x", "", "fr.gouv.tchap.web", "http", "false", "agent_b", "b.gouv.fr")],
        loaded=[("@u1:x", "DEV1", "fr.gouv.tchap", "http", "true", "agent_a", "a.gouv.fr",
                 "2024-11-14"),
                ("@u2:x", "", "fr.gouv.tchap.web", "http", "false", "agent_b", "b.gouv.fr",
                 "2024-11-14")],
        second=[("@u1:x", "DEV1", "fr.gouv.tchap", "http", "false", "agent_a", "a.gouv.fr")],
        merged=[("@u1:x", "DEV1", "fr.gouv.tchap", "http", "false", "agent_a", "a.gouv.fr",
                 "2024-11-15"),
                ("@u1:x", "DEV1", "fr.gouv.tchap", "http", "true", "agent_a", "a.gouv.fr",
                 "2024-11-14"),
                ("@u2:x", "", "fr.gouv.tchap.web", "http", "false", "agent_b", "b.gouv.fr",
                 "2024-11-14")],
        malformed=["@u9:x,DEV9,fr.gouv.tchap,http,maybe,agent_a,a.gouv.fr",
                   "@u9:x,DEV9,fr.gouv.tchap,http,true,agent_a"],
        malformed_column="enabled",
    ),
}


def test_every_export_has_a_case_and_a_table_with_its_declared_types(db):
    assert sorted(CASES) == sorted(NEW)
    for export in EXPORTS.values():
        columns = db.execute(
            "SELECT column_name, udt_name::regtype::text FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position",
            (export.table,)).fetchall()
        expected = [(c, db.execute(sql.SQL("SELECT {}::regtype::text").format(
            sql.Literal(PG_TYPES[export.column_type(c)]))).fetchone()[0])
            for c in export.table_columns]
        assert columns == expected, export.name


@pytest.mark.parametrize("name", NEW)
def test_a_file_loads_mapped_and_typed_and_a_rerun_changes_nothing(
        name, settings, database_url, db, exports_dir):
    export, case = EXPORTS[name], CASES[name]
    write(exports_dir, export, D1, case.first)
    report = load(settings, database_url, exports_dir, [export], [D1])
    assert report.exit_code == EXIT_OK, report.outcomes[0].error
    assert content(db, export) == sorted(case.loaded)
    before = db.execute("SELECT count(*) FROM tchap_stats.changed_days").fetchone()[0]
    again = load(settings, database_url, exports_dir, [export], [D1], force=True).outcomes[0]
    assert (again.status, again.rows_loaded, again.days_changed) == ("loaded", 0, [])
    assert again.rows_duplicate == again.rows_read == len(case.first)
    assert content(db, export) == sorted(case.loaded)
    assert db.execute("SELECT count(*) FROM tchap_stats.changed_days").fetchone()[0] == before


@pytest.mark.parametrize("name", NEW)
def test_the_merge_rule_holds_whatever_the_load_order(name, settings, database_url, db,
                                                      exports_dir):
    export, case = EXPORTS[name], CASES[name]
    write(exports_dir, export, D1, case.first)
    write(exports_dir, export, D2, case.second)
    results = []
    for days in ([D1, D2], [D2, D1]):
        db.execute(sql.SQL("TRUNCATE {}; TRUNCATE tchap_stats.loads CASCADE").format(
            sql.Identifier(export.table)))
        report = load(settings, database_url, exports_dir, [export], days)
        assert report.exit_code == EXIT_OK, [o.error for o in report.outcomes]
        results.append(content(db, export))
        for o in report.outcomes:  # nothing lost, nothing invented
            assert o.rows_read == o.rows_loaded + o.rows_duplicate + o.rows_rejected
    assert results == [sorted(case.merged)] * 2


# A new version of D1's snapshot: a changed row, a new row, and the other row gone.
RELOADED = {
    "sso": ([("12", "a.gouv.fr", "agent_a", "6", "3", "3"),
             ("1", "c.gouv.fr", "agent_c", "0", "0", "1")],
            [("12", "a.gouv.fr", "agent_a", "6", "3", "3", "2024-11-14"),
             ("1", "c.gouv.fr", "agent_c", "0", "0", "1", "2024-11-14")]),
    "pushers": ([("@u1:x", "DEV1", "fr.gouv.tchap", "http", "false", "agent_a", "a.gouv.fr"),
                 ("@u3:x", "DEV3", "fr.gouv.tchap", "http", "true", "agent_c", "c.gouv.fr")],
                [("@u1:x", "DEV1", "fr.gouv.tchap", "http", "false", "agent_a", "a.gouv.fr",
                  "2024-11-14"),
                 ("@u3:x", "DEV3", "fr.gouv.tchap", "http", "true", "agent_c", "c.gouv.fr",
                  "2024-11-14")]),
}


@pytest.mark.parametrize("name", sorted(RELOADED))
def test_reloading_a_snapshot_day_replaces_that_day_only(name, settings, database_url, db,
                                                         exports_dir):
    export, case = EXPORTS[name], CASES[name]
    write(exports_dir, export, D1, case.first)
    write(exports_dir, export, D2, case.second)
    load(settings, database_url, exports_dir, [export], [D1, D2])
    rows, expected = RELOADED[name]
    write(exports_dir, export, D1, rows)
    outcome = load(settings, database_url, exports_dir, [export], [D1]).outcomes[0]
    assert (outcome.status, outcome.days_changed) == ("loaded", [D1])
    other_day = [r for r in case.merged if r[-1] == "2024-11-15"]
    assert content(db, export) == sorted(expected + other_day)
    assert db.execute(
        "SELECT rows_replaced, rows_removed, rows_inserted FROM tchap_stats.load_days "
        "ORDER BY load_id DESC LIMIT 1").fetchone() == (1, 1, 1)


@pytest.mark.parametrize("name", NEW)
def test_malformed_lines_go_to_rejects_with_their_line_numbers(name, settings, database_url,
                                                               db, exports_dir):
    export, case = EXPORTS[name], CASES[name]
    write(exports_dir, export, D1, [case.first[0], *case.malformed, *case.first[1:]])
    tolerant = replace(settings, reject_threshold=0.9)
    outcome = load(tolerant, database_url, exports_dir, [export], [D1]).outcomes[0]
    assert outcome.status == "loaded", outcome.error
    assert (outcome.rows_read, outcome.rows_rejected) == (len(case.first) + 2, 2)
    assert content(db, export) == sorted(case.loaded)
    rejects = db.execute("SELECT file_key, line, column_name, raw_line FROM tchap_stats.rejects "
                         "ORDER BY line").fetchall()
    assert [(r[0], r[1]) for r in rejects] == [(export.file_name(D1), 3), (export.file_name(D1), 4)]
    assert rejects[0][2] == case.malformed_column
    assert rejects[1][3] == case.malformed[1]


@pytest.mark.parametrize("name", [*NEW, "user_daily_visits"])
def test_a_header_mismatch_fails_that_export_only(name, settings, database_url, db,
                                                  exports_dir):
    exports = list(EXPORTS.values())
    for export in exports:
        rows = CASES[export.name].first if export.name in CASES else [
            ("@a", "DEV", "2024-11-14 10:00:00+01", "UA", "agent_a", "a.gouv.fr")]
        header = ("renamed", *export.header[1:]) if export.name == name else None
        write(exports_dir, export, D1, rows, header=header)
    report = load(settings, database_url, exports_dir, exports, [D1])
    assert report.exit_code == EXIT_FAILED
    status = {o.export: o.status for o in report.outcomes}
    assert status == {e.name: "failed" if e.name == name else "loaded" for e in exports}
    failed = EXPORTS[name]
    assert "unexpected column(s): renamed" in report.outcomes[exports.index(failed)].error
    assert db.execute(sql.SQL("SELECT count(*) FROM {}").format(
        sql.Identifier(failed.table))).fetchone()[0] == 0
    summaries = report.by_export()
    assert len(summaries) == len(exports)
    assert summaries[exports.index(failed)].startswith(f"{name}: FAILED (exit 1)")


def test_a_missing_file_leaves_the_others_loaded_and_exits_3(settings, database_url, db,
                                                            exports_dir):
    exports = [EXPORTS[n] for n in NEW]
    for export in exports[1:]:
        write(exports_dir, export, D1, CASES[export.name].first)
    report = load(settings, database_url, exports_dir, exports, [D1])
    assert report.exit_code == EXIT_MISSING
    assert [o.status for o in report.outcomes] == ["missing"] + ["loaded"] * (len(NEW) - 1)
    for export in exports[1:]:
        assert content(db, export) == sorted(CASES[export.name].loaded)
    lines = report.by_export()
    assert lines[0].startswith(f"{NEW[0]}: MISSING FILES (exit 3)")
    assert all(" ok (exit 0)" in line for line in lines[1:])


def test_hourly_rows_go_to_the_partition_of_their_paris_month(settings, database_url, db,
                                                              exports_dir):
    export = EXPORTS["subscriptions_aggregate"]
    db.execute("SET TIME ZONE 'UTC'")
    write(exports_dir, export, D1, CASES[export.name].first)
    outcome = load(settings, database_url, exports_dir, [export], [D1]).outcomes[0]
    assert outcome.days_changed == [date(2024, 11, 1), D1]
    located = db.execute("SELECT tableoid::regclass::text, subscriptions "
                         "FROM subscriptions_aggregate ORDER BY 2").fetchall()
    assert located == [("subscriptions_aggregate_p2024_11", 2),
                       ("subscriptions_aggregate_p2024_11", 5),
                       ("subscriptions_aggregate_p2024_11", 7)]
    bounds = db.execute("SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_class c "
                        "WHERE c.relname = 'subscriptions_aggregate_p2024_11'").fetchone()[0]
    assert "2024-10-31 23:00:00+00" in bounds and "2024-11-30 23:00:00+00" in bounds


def test_generated_files_of_every_export_load_and_their_malformed_lines_are_rejected(
        settings, database_url, db, exports_dir):
    from tchap_stats.synthetic.generate import Options, generate

    first, last = date(2024, 3, 30), date(2024, 4, 1)  # over a DST change and a month end
    generate(first, last, str(exports_dir), Options(rows_per_day=300, seed=4, malformed=0.03))
    exports = list(EXPORTS.values())
    report = load(replace(settings, reject_threshold=0.5), database_url, exports_dir, exports,
                  [first, date(2024, 3, 31), last], jobs=2)
    assert report.exit_code == EXIT_OK, [o.error for o in report.outcomes]
    for export in exports:
        outcomes = [o for o in report.outcomes if o.export == export.name]
        assert sum(o.rows_loaded for o in outcomes) > 0, export.name
        for o in outcomes:
            assert o.rows_read == o.rows_loaded + o.rows_duplicate + o.rows_rejected
        if sum(o.rows_read for o in outcomes) > 300:
            assert sum(o.rows_rejected for o in outcomes) > 0, export.name
    # The later extraction recounts the previous day's last hours: those rows are its own.
    recounted = db.execute(
        "SELECT count(*) FROM subscriptions_aggregate WHERE extracted_on = '2024-03-31' "
        "AND hour < '2024-03-31 00:00:00+01'").fetchone()[0]
    assert recounted > 0
    keys = db.execute("SELECT count(*), count(DISTINCT (hour, domain, instance)) "
                      "FROM subscriptions_aggregate").fetchone()
    assert keys[0] == keys[1]
    snapshots = db.execute("SELECT added_date::text, count(*) FROM sso_aggregate GROUP BY 1 "
                           "ORDER BY 1").fetchall()
    assert [d for d, _ in snapshots] == ["2024-03-30", "2024-03-31", "2024-04-01"]


def test_generated_files_are_deterministic_for_a_seed(tmp_path):
    from tchap_stats.synthetic.generate import Options, generate

    def files(directory: Path, seed: int) -> dict[str, bytes]:
        generate(D1, D1, str(directory), Options(rows_per_day=200, seed=seed, malformed=0.01))
        return {p.name: p.read_bytes() for p in directory.iterdir()}

    a, b, c = files(tmp_path / "a", 5), files(tmp_path / "b", 5), files(tmp_path / "c", 6)
    assert sorted(a) == sorted(e.file_name(D1) for e in EXPORTS.values())
    assert a == b
    assert all(c[name] != a[name] for name in a if name.startswith(("user", "account", "push")))


def test_replace_on_an_unpartitioned_table_lets_the_file_win_for_its_keys_only(
        settings, database_url, db, exports_dir):
    export, case = EXPORTS["crisp_conversation_segments"], CASES["crisp_conversation_segments"]
    write(exports_dir, export, D1, case.first)
    write(exports_dir, export, D2, case.second)
    load(settings, database_url, exports_dir, [export], [D1, D2])
    older = [("s1", "reopened", "bug", "2024-11-10 09:00:00", "2024-11-11 10:00:00", "a.fr")]
    write(exports_dir, export, D2, older)
    merged = load(settings, database_url, exports_dir, [export], [D2]).outcomes[0]
    assert (merged.rows_loaded, content(db, export)) == (0, sorted(case.merged))  # older: loses
    replaced = load(settings, database_url, exports_dir, [export], [D2], replace=True,
                    force=True)
    assert replaced.outcomes[0].rows_loaded == 1
    assert content(db, export) == sorted([
        ("s1", "bug", "reopened", "a.fr", "2024-11-10 09:00:00", "2024-11-11 10:00:00"),
        case.merged[1]])  # s2, absent from the file, is kept


def test_a_declaration_whose_rows_could_tie_on_key_and_order_is_refused():
    from tchap_stats.exports import ByMonth, Column, KeepLeast

    columns = (Column("a"), Column("b"), Column("day", "date"))
    with pytest.raises(ValueError, match=r"neither key nor merge order: \['b'\]"):
        Export(name="x", table="x", columns=columns, key=("a", "day"),
               partition=ByMonth("day"), merge=KeepLeast(order=("day",)))
    with pytest.raises(ValueError, match="unknown column"):
        Export(name="x", table="x", columns=columns, key=("a", "day"),
               partition=ByMonth("hour"), merge=KeepLeast(order=("b",)))
    Export(name="x", table="x", columns=columns, key=("a", "day"), partition=ByMonth("day"),
           merge=KeepLeast(order=("b",)))


def test_every_merge_rule_names_sql_files_that_exist():
    from tchap_stats.config import SQL_DIR

    for export in EXPORTS.values():
        assert export.merge.sql_files, export.name
        for name in export.merge.sql_files:
            assert (SQL_DIR / "load" / name).is_file(), name


def test_replace_on_an_hourly_table_replaces_the_hours_the_file_holds(
        settings, database_url, db, exports_dir):
    export, case = EXPORTS["subscriptions_aggregate"], CASES["subscriptions_aggregate"]
    write(exports_dir, export, D1, case.first)
    load(settings, database_url, exports_dir, [export], [D1])
    # A corrected file holding only 10:00 on the 14th, with one key of that hour gone.
    write(exports_dir, export, D1, [("4", "z.gouv.fr", HOUR, "agent_z")])
    report = load(settings, database_url, exports_dir, [export], [D1], replace=True)
    assert report.outcomes[0].days_changed == [D1]
    assert content(db, export) == sorted([
        case.loaded[0],  # Nov 1st: a day the file does not hold
        ("4", "z.gouv.fr", "2024-11-14 09:00:00+00", "agent_z", "2024-11-14"),
        case.loaded[2],  # 11:00: an hour the file does not hold
    ])
    assert db.execute("SELECT rows_removed, rows_inserted FROM tchap_stats.load_days "
                      "ORDER BY load_id DESC LIMIT 1").fetchone() == (1, 1)
