"""The hostile-file corpus: every class of bad input gets its defined outcome, and every
physical line of a file is accounted for (loaded, a duplicate, or rejected with its own
line number). docs/faults.md lists the same classes with their outcomes.

Real files on disk, a real PostgreSQL, the real pipeline."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path

import psycopg
import pytest

from tchap_stats.config import DEFAULT_ACCEPT_DAYS_AFTER, DEFAULT_ACCEPT_DAYS_BEFORE
from tchap_stats.exports import ACCOUNT_DATA, CRISP_CONVERSATION_SEGMENTS, USER_DAILY_VISITS
from tchap_stats.pipeline import EXIT_FAILED, EXIT_MISSING, RunOptions, RunReport, run
from tchap_stats.source import LocalSource

D = date(2026, 11, 14)
HEADER = b"user_id,device_id,visit_ts,user_agent,instance,domain"
UA = b'"Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0, like it"'


def good(i: int, ts: bytes = b"2026-11-14 10:00:00+01", ua: bytes = UA,
         user: bytes | None = None) -> bytes:
    return (user or b"@u%d:agent.tchap.gouv.fr" % i) + b",DEV%d," % i + ts + b"," + ua + \
        b",agent,agriculture.gouv.fr"


def lines_with(count: int, bad: dict[int, bytes]) -> list[bytes]:
    """`count` good data lines, those at the given 0-based indexes replaced."""
    return [bad.get(i, good(i)) for i in range(count)]


def write(directory: Path, name: str, data: bytes) -> Path:
    path = directory / name
    path.write_bytes(data)
    return path


def visits_file(directory: Path, lines: list[bytes], *, day: date = D,
                ending: bytes = b"\n") -> Path:
    return write(directory, USER_DAILY_VISITS.file_name(day), ending.join([HEADER, *lines]))


@pytest.fixture
def lenient(settings):
    """The default acceptance window, and a threshold high enough that small files with a
    few bad lines still load (the threshold has its own tests)."""
    return replace(settings, reject_threshold=0.5,
                   accept_days_before=DEFAULT_ACCEPT_DAYS_BEFORE,
                   accept_days_after=DEFAULT_ACCEPT_DAYS_AFTER)


def run_files(settings, database_url: str, directory: Path, exports, days,
              **options) -> RunReport:
    return run(replace(settings, source=str(directory)), database_url, LocalSource(directory),
               exports, days, RunOptions(**options))


def rejects(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute("SELECT line, column_name, reason FROM tchap_stats.rejects "
                        "ORDER BY line").fetchall()


@dataclass(frozen=True)
class Case:
    lines: Callable[[], list[bytes]]
    loaded: int
    rejected: list[tuple[int, str | None, str]]  # (line, column, words of the reason)
    ending: bytes = b"\n"
    prefix: bytes = b""


CASES = {
    # The campaign's example: one user agent opens a quote it never closes.
    "stray quote": Case(lambda: lines_with(400, {200: good(200, ua=b'"Mozilla/5.0 (X11; Linux')}),
                        399, [(202, "user_agent", "unbalanced quote")]),
    # Two stray quotes: DuckDB's reader pairs them up across the ten lines in between.
    "two stray quotes": Case(
        lambda: lines_with(100, {50: good(50, ua=b'"Mozilla'), 60: good(60, ua=b'"Tchap')}),
        98, [(52, "user_agent", "unbalanced quote"), (62, "user_agent", "unbalanced quote")]),
    # A quoted line break in a column that cannot hold one: both lines are rejected.
    "quoted line break": Case(lambda: lines_with(20, {5: good(5, ua=b'"Mozilla\nFirefox"')}),
                              19, [(7, "user_agent", "unbalanced quote"),
                                   (8, None, "expected 6 values, found 3")]),
    "quote in the middle of a value": Case(
        lambda: lines_with(10, {3: good(3, ua=b'Mozilla "Firefox')}), 10, []),
    "lone carriage return outside quotes": Case(
        lambda: lines_with(10, {4: good(4, ua=b"Mozilla\rFirefox")}),
        9, [(6, "user_agent", "carriage return outside quotes")]),
    "CRLF line endings": Case(lambda: lines_with(10, {}), 10, [], ending=b"\r\n"),
    "CR-only line endings": Case(lambda: lines_with(10, {}), 10, [], ending=b"\r"),
    "byte order mark": Case(lambda: lines_with(10, {}), 10, [], prefix=b"\xef\xbb\xbf"),
    "a Latin-1 line": Case(lambda: lines_with(10, {2: good(2, ua=b"Navigateur d\xe9mo")}),
                           9, [(4, "user_agent", "not utf-8")]),
    "NUL byte": Case(lambda: lines_with(10, {6: good(6, ua=b"Mozilla\x00Firefox")}),
                     9, [(8, "user_agent", "NUL character")]),
    "5 KB user id (beyond a b-tree entry)": Case(
        lambda: lines_with(10, {1: good(1, user=b"@" + b"x" * 5000)}),
        9, [(3, "user_id", "longer than 500 bytes")]),
    "1 MB user agent": Case(lambda: lines_with(10, {7: good(7, ua=b"Mozilla" + b"z" * 2**20)}),
                            9, [(9, "user_agent", "longer than 16,384 bytes")]),
    "SQL-shaped values": Case(
        lambda: lines_with(5, {0: good(0, user=b"'); DROP TABLE user_daily_visits; --",
                                       ua=b'"Robert\'); DELETE FROM tchap_stats.loads; --"')}),
        5, []),
    "wrong number of columns": Case(lambda: lines_with(10, {3: b"@short,DEV,2026-11-14"}),
                                    9, [(5, "user_agent", "columns")]),
    "offset beyond +14:00": Case(
        lambda: lines_with(10, {0: good(0, ts=b"2026-11-14 10:00:00+25"),
                                1: good(1, ts=b"2026-11-14 10:00:00+14:00"),
                                2: good(2, ts=b"2026-11-14 10:00:00 -12:00")}),
        9, [(2, "visit_ts", "within ±14:00")]),
    "year 2999 and year 1900": Case(
        lambda: lines_with(10, {0: good(0, ts=b"2999-12-31 10:00:00+01"),
                                1: good(1, ts=b"1900-01-01 10:00:00+01")}),
        8, [(2, "visit_ts", "implausible date"), (3, "visit_ts", "implausible date")]),
    "outside the file's window": Case(
        lambda: lines_with(10, {0: good(0, ts=b"2026-10-01 10:00:00+02"),
                                1: good(1, ts=b"2026-11-16 10:00:00+01"),
                                2: good(2, ts=b"2026-10-31 10:00:00+01"),  # 14 days back
                                3: good(3, ts=b"2026-11-15 10:00:00+01")}),  # a day ahead
        8, [(2, "visit_ts", "outside the file's window (2026-10-31..2026-11-15)"),
            (3, "visit_ts", "outside the file's window")]),
    "blank line": Case(lambda: [*lines_with(3, {}), b"", *lines_with(6, {})[3:]], 6, []),
}


@pytest.mark.parametrize("name", list(CASES))
def test_every_line_of_a_hostile_file_is_accounted_for(name, lenient, database_url, db,
                                                       exports_dir):
    case = CASES[name]
    lines = case.lines()
    path = visits_file(exports_dir, lines, ending=case.ending)
    path.write_bytes(case.prefix + path.read_bytes())
    report = run_files(lenient, database_url, exports_dir, [USER_DAILY_VISITS], [D])
    outcome = report.outcomes[0]
    assert outcome.status == "loaded", outcome.error
    assert (outcome.rows_loaded, outcome.rows_rejected) == (case.loaded, len(case.rejected))
    data_lines = sum(1 for line in case.ending.join(lines).split(case.ending) if line)
    assert outcome.rows_read == data_lines
    assert outcome.rows_loaded + outcome.rows_duplicate + outcome.rows_rejected == data_lines
    assert db.execute("SELECT count(*) FROM user_daily_visits").fetchone()[0] == case.loaded
    found = rejects(db)
    assert [(line, column) for line, column, _ in found] == [
        (line, column) for line, column, _ in case.rejected]
    for (_, _, reason), (_, _, words) in zip(found, case.rejected, strict=True):
        assert words.lower() in reason.lower(), reason


def test_nothing_outside_the_window_creates_a_partition(lenient, database_url, db,
                                                        exports_dir):
    visits_file(exports_dir, lines_with(10, {0: good(0, ts=b"2999-12-31 10:00:00+01"),
                                             1: good(1, ts=b"1900-01-01 10:00:00+01")}))
    run_files(lenient, database_url, exports_dir, [USER_DAILY_VISITS], [D])
    partitions = {r[0] for r in db.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'user_daily_visits'::regclass")}
    assert partitions == {"user_daily_visits_p2026_11"}
    through = db.execute("SELECT max(day) FROM tchap_stats.user_visits_daily").fetchone()[0]
    assert through == D


def test_the_window_is_configurable(lenient, database_url, db, exports_dir):
    visits_file(exports_dir, lines_with(4, {0: good(0, ts=b"2026-10-01 10:00:00+02")}))
    wide = replace(lenient, accept_days_before=60)
    outcome = run_files(wide, database_url, exports_dir, [USER_DAILY_VISITS], [D]).outcomes[0]
    assert (outcome.rows_loaded, outcome.rows_rejected) == (4, 0)


def account_line(user: bytes, content: bytes) -> bytes:
    return user + b",m.direct," + content + b",agent,agriculture.gouv.fr"


def test_multiline_content_loads_and_a_stray_quote_loses_no_line(lenient, database_url, db,
                                                                 exports_dir):
    """account_data's content may hold line breaks, quoted; a quote that never closes
    rejects its own line only, and the lines it would have swallowed load."""
    content = '{\n  "rooms": ["!a:x"],\r\n  "tab": "\t", "back": "\\\\N"\r}'
    quoted = b'"' + content.encode().replace(b'"', b'""') + b'"'
    lines = [account_line(b"@a:x", quoted),
             account_line(b"@b:x", b'"{""never"": closed'),
             account_line(b"@c:x", b"plain"),
             account_line(b"@d:x", quoted),
             b'@e:x,"m.direct,agent,agriculture.gouv.fr',  # a quote in a single-line column
             account_line(b"@f:x", b"last")]
    header = ",".join(ACCOUNT_DATA.header).encode()
    write(exports_dir, ACCOUNT_DATA.file_name(D), b"\n".join([header, *lines]))
    report = run_files(lenient, database_url, exports_dir, [ACCOUNT_DATA], [D],
                       refresh_summaries=False)
    outcome = report.outcomes[0]
    assert outcome.status == "loaded", outcome.error
    stored = dict(db.execute("SELECT user_id, content FROM account_data_aggregate").fetchall())
    assert stored == {"@a:x": content, "@c:x": "plain", "@d:x": content, "@f:x": "last"}
    # @a's value spans lines 2 to 4 (a lone \r is no line break in a file of \n lines).
    # Line 5 opens a quote that never closes; @e's line 10 opens one in account_data_type.
    assert [(line, column) for line, column, _ in rejects(db)] == [
        (5, "content"), (10, "account_data_type")]
    assert (outcome.rows_read, outcome.rows_loaded, outcome.rows_rejected) == (6, 4, 2)


def test_a_multi_megabyte_content_loads(lenient, database_url, db, exports_dir):
    big = "x" * (2**20)
    header = ",".join(ACCOUNT_DATA.header).encode()
    write(exports_dir, ACCOUNT_DATA.file_name(D),
          b"\n".join([header, account_line(b"@a:x", big.encode())]))
    outcome = run_files(lenient, database_url, exports_dir, [ACCOUNT_DATA], [D],
                        refresh_summaries=False).outcomes[0]
    assert outcome.rows_loaded == 1, outcome.error
    assert db.execute("SELECT length(content) FROM account_data_aggregate").fetchone()[0] == \
        2**20


def test_legitimately_old_dates_are_kept_within_sane_bounds(lenient, database_url, db,
                                                            exports_dir):
    """Crisp's segments keep their creation dates, however old, but not before 2018 and
    not beyond a day in the future."""
    header = ",".join(CRISP_CONVERSATION_SEGMENTS.header).encode()
    tomorrow_but_one = date.today() + timedelta(days=3)
    lines = [b"s1,resolved,seg,2019-03-01 10:00:00,2019-03-02 10:00:00,x.gouv.fr",
             b"s4,resolved,seg,2018-01-01 00:00:00,2026-11-14 10:00:00,x.gouv.fr",
             b"s2,resolved,seg,2017-12-31 10:00:00,2019-03-02 10:00:00,x.gouv.fr",
             b"s3,resolved,seg,2019-03-01 10:00:00,%s 10:00:00,x.gouv.fr"
             % tomorrow_but_one.isoformat().encode()]
    write(exports_dir, CRISP_CONVERSATION_SEGMENTS.file_name(D), b"\n".join([header, *lines]))
    outcome = run_files(lenient, database_url, exports_dir, [CRISP_CONVERSATION_SEGMENTS], [D],
                        refresh_summaries=False).outcomes[0]
    assert (outcome.rows_loaded, outcome.rows_rejected) == (2, 2)
    assert [(line, column) for line, column, _ in rejects(db)] == [
        (4, "created_at"), (5, "updated_at")]


FILE_FAILURES = {
    "gzip under a .csv name": (lambda: gzip.compress(HEADER + b"\n" + good(1)),
                               "gzip-compressed"),
    "binary garbage": (lambda: b"\xff\xfe\x00\x01garbage\n\x00\x00", "not a CSV header"),
    "wrong header": (lambda: b"user,device,ts,ua,instance,domain\n" + good(1),
                     "missing column(s): user_id"),
    "reordered header": (lambda: b"device_id,user_id,visit_ts,user_agent,instance,domain\n"
                         + good(1), "columns in another order"),
}


@pytest.mark.parametrize("name", list(FILE_FAILURES))
def test_a_file_that_cannot_be_read_fails_alone_and_the_rest_is_refreshed(
        name, lenient, database_url, db, exports_dir):
    data, words = FILE_FAILURES[name]
    days = [D - timedelta(days=1), D, D + timedelta(days=1)]
    for day in days:
        ts = b"%s 10:00:00+01" % day.isoformat().encode()
        visits_file(exports_dir, [good(i, ts=ts) for i in range(5)], day=day)
    write(exports_dir, USER_DAILY_VISITS.file_name(D), data())
    report = run_files(lenient, database_url, exports_dir, [USER_DAILY_VISITS], days)
    statuses = [o.status for o in report.outcomes]
    assert statuses == ["loaded", "failed", "loaded"]
    failed = report.outcomes[1]
    assert failed.name in failed.error and words in failed.error
    assert f"{failed.name}: FAILED" in failed.summary()
    assert report.refresh is not None and set(report.refresh.days) == {days[0], days[2]}
    assert report.exit_code == EXIT_FAILED
    assert db.execute("SELECT count(*) FROM tchap_stats.user_visits_daily").fetchone()[0] == 10


def test_a_header_only_file_is_reported_empty(lenient, database_url, exports_dir):
    visits_file(exports_dir, [])
    report = run_files(lenient, database_url, exports_dir, [USER_DAILY_VISITS], [D])
    outcome = report.outcomes[0]
    assert outcome.status == "loaded" and outcome.empty
    assert "EMPTY" in outcome.summary() and "no data line" in outcome.summary()
    assert report.exit_code == EXIT_MISSING
    assert "1 loaded (1 empty)" in report.by_export()[0]


def test_a_re_uploaded_file_with_a_new_etag_is_loaded_again(lenient, database_url, db,
                                                            exports_dir):
    visits_file(exports_dir, lines_with(3, {}))
    run_files(lenient, database_url, exports_dir, [USER_DAILY_VISITS], [D])
    visits_file(exports_dir, [*lines_with(3, {}), good(7)])
    again = run_files(lenient, database_url, exports_dir, [USER_DAILY_VISITS], [D]).outcomes[0]
    assert (again.status, again.rows_loaded, again.rows_duplicate) == ("loaded", 1, 3)
    assert db.execute("SELECT count(*) FROM user_daily_visits").fetchone()[0] == 4


@pytest.mark.parametrize("path", ["copy into an empty day", "merge into a day with rows"])
@pytest.mark.parametrize("read", ["by DuckDB's reader", "line by line"])
def test_a_row_postgresql_still_refuses_is_named_by_its_file_line(
        path, read, lenient, database_url, db, exports_dir):
    """Staging checks what it can; a constraint added by hand can still refuse a row. The
    file fails, and the error names the row's line in the file, not in a COPY stream."""
    if path == "merge into a day with rows":
        visits_file(exports_dir, [good(1000)])
        run_files(lenient, database_url, exports_dir, [USER_DAILY_VISITS], [D])
    db.execute("ALTER TABLE user_daily_visits "
               "ADD CONSTRAINT hand_made CHECK (user_id <> '@refused')")
    bad = {36: good(36, user=b"@refused")}  # line 38
    if read == "line by line":
        bad[10] = good(10, ua=b'"Mozilla')  # a stray quote: the file is read line by line
    visits_file(exports_dir, lines_with(50, bad))
    outcome = run_files(lenient, database_url, exports_dir, [USER_DAILY_VISITS], [D],
                        force=True).outcomes[0]
    assert outcome.status == "failed"
    assert "refused the row of line 38" in outcome.error and "hand_made" in outcome.error
    assert db.execute("SELECT count(*) FROM user_daily_visits").fetchone()[0] == (
        1 if path == "merge into a day with rows" else 0)
