"""User-agent classification (DESIGN §3), checked against an explicit table of real agents.

The expected labels below are written out by hand from DESIGN §3, not derived from the
code's rules table: each agent is one the exports really contain (or could), and the
comment names the DESIGN rule that must classify it (first match wins).
"""

from __future__ import annotations

from datetime import date

import duckdb
import pytest
from psycopg import sql

from tchap_stats.classify import classify_sql
from tchap_stats.pipeline import EXIT_OK
from tchap_stats.sqltext import identifier, literal
from tchap_stats.synthetic.generate import USER_AGENTS

from .conftest import load, write_file

W, M, A = "Web", "Mobile", "Autre"

# (user agent, platform, device_type)
EXPECTED: list[tuple[str, str, str]] = [
    # Mozilla%Windows%Firefox%
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0",
     W, "Firefox Windows"),
    # Mozilla%Windows%Chrome% (Chrome says "Safari" too; Edge says "Chrome" too)
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/126.0.0.0 Safari/537.36", W, "Chrome Windows"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/126.0.0.0 Safari/537.36 Edg/126.0.2592.87", W, "Chrome Windows"),
    # Mozilla%Windows%Trident%
    ("Mozilla/5.0 (Windows NT 10.0; WOW64; Trident/7.0; rv:11.0) like Gecko",
     W, "Internet Explorer Windows"),
    # Mozilla%Mac OS%Firefox%
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:128.0) Gecko/20100101 Firefox/128.0",
     W, "Firefox Mac OS"),
    # Mozilla%Mac OS%Chrome%: contains "Safari" as well, and must not be Safari
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/126.0.0.0 Safari/537.36", W, "Chrome Mac OS"),
    # Mozilla%Mac OS%Safari%
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.5 Safari/605.1.15", W, "Safari Mac OS"),
    # ... and, as DESIGN's order has it, iPhone Safari ("like Mac OS X ... Safari") too
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
     "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1", W, "Safari Mac OS"),
    # Mozilla%Android%Firefox%: says "Mobile" too, which comes later
    ("Mozilla/5.0 (Android 14; Mobile; rv:128.0) Gecko/128.0 Firefox/128.0",
     W, "Firefox Android"),
    # Mozilla%Android%Chrome%: says "Linux" and "Mobile" too, which come later
    ("Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/126.0.0.0 Mobile Safari/537.36", W, "Chrome Android"),
    # Mozilla%Linux%Firefox%
    ("Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
     W, "Firefox Linux"),
    # Mozilla%Linux%Chrome%
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/126.0.0.0 Safari/537.36", W, "Chrome Linux"),
    # Mozilla%CrOS%Chrome%
    ("Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/126.0.0.0 Safari/537.36", W, "Chrome OS"),
    # Mozilla%Mobile%
    ("Mozilla/5.0 (Mobile; rv:48.0) Gecko/48.0 Firefox/48.0 KAIOS/2.5",
     W, "Navigateur Mobile"),
    # Mozilla% (anything else a browser says)
    ("Mozilla/5.0 (compatible; Konqueror/4.5; FreeBSD) KHTML/4.5.4 (like Gecko)",
     W, "Autre Navigateur"),
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
     W, "Autre Navigateur"),
    # Tchap%NEO% (before Tchap%Android%, which it also matches)
    ("Tchap/4.3.2 (Android 14; SM-A546B; NEO)", M, "Tchap Android NEO"),
    # Tchap%Android%
    ("Tchap/2.10.4 (Linux; U; Android 13; SM-G991B Build/TP1A.220624.014)",
     M, "Tchap Android"),
    # RiotNSE/2%iOS%
    ("RiotNSE/2.4.5 (iPhone; iOS 17.5.1; Scale/3.00)", M, "Tchap iOS"),
    # RiotSharedExtension/2%iOS%
    ("RiotSharedExtension/2.4.5 (iPhone; iOS 17.5.1; Scale/3.00)", M, "Tchap iOS"),
    # Tchap%iOS%
    ("Tchap/2.4.5 (iPad (9th generation); iOS 16.4.1; Scale/2.00)", M, "Tchap iOS"),
    # Riot%iOS: the agent must END with iOS to be Mobile; any Riot% is Element
    ("Riot/1.11.2 (iPhone) iOS", M, "Element"),
    ("Riot/1.11.2 (iPhone; iOS 17.0; Scale/3.00)", A, "Element"),
    ("RiotNSE/1.9.0 (iPhone; iOS 15.0; Scale/3.00)", A, "Element"),  # not version 2
    # Riot%Android
    ("Riot/1.4.0 (Linux; Android 9) Android", M, "Element"),
    ("Riot.im/0.9.12 (Linux; U; Android 9; Pixel 3 Build/PQ3A)", A, "Element"),
    # Element%Android
    ("Element/1.6.10 (Linux; Android 14) Android", M, "Element"),
    ("Element/1.6.10 (Linux; U; Android 14; Pixel 7; Flavour GooglePlay; MatrixAndroidSdk2)",
     A, "Element"),
    # Element%iOS
    ("Element/1.11.0 (iPhone; iOS 17.0) iOS", M, "Element"),
    ("Element/1.11.0 (iPhone; iOS 17.0; Scale/3.00)", A, "Element"),
    # anything else → Autre (LIKE is case-sensitive: "mozilla" is not "Mozilla")
    ("synapse-admin/0.8.7", A, "Autre"),
    ("python-requests/2.31.0", A, "Autre"),
    ("curl/8.5.0", A, "Autre"),
    ("mozilla/5.0 (windows nt 10.0) firefox/128.0", A, "Autre"),
    ("Tchap/4.8.0 (Electron; Windows 10)", A, "Autre"),
    ("", A, "Autre"),
]

PLATFORM_LABELS = {"Web", "Mobile", "Autre"}
DEVICE_TYPE_LABELS = {
    "Firefox Windows", "Chrome Windows", "Internet Explorer Windows", "Firefox Mac OS",
    "Chrome Mac OS", "Safari Mac OS", "Firefox Android", "Chrome Android", "Firefox Linux",
    "Chrome Linux", "Chrome OS", "Navigateur Mobile", "Autre Navigateur", "Tchap Android NEO",
    "Tchap Android", "Tchap iOS", "Element", "Autre",
}


def test_the_table_exercises_every_label():
    # A guard on this file's own table: dropping a row must not silently drop a rule.
    assert {p for _, p, _ in EXPECTED} == PLATFORM_LABELS
    assert {d for _, _, d in EXPECTED} == DEVICE_TYPE_LABELS
    assert len({ua for ua, _, _ in EXPECTED}) == len(EXPECTED)


def _query(values: str) -> str:
    return (f"SELECT i, user_agent, {classify_sql('platform', 'user_agent')}, "
            f"{classify_sql('device_type', 'user_agent')} "
            f"FROM (VALUES {values}) AS t(i, user_agent) ORDER BY i")


def _params() -> list:
    return [value for i, (ua, _, _) in enumerate(EXPECTED) for value in (i, ua)]


def _pg_values(conn) -> str:
    # Literals, not parameters: the LIKE patterns' % would read as placeholders.
    return ", ".join(f"({i}, CAST({sql.Literal(ua).as_string(conn)} AS VARCHAR))"
                     for i, (ua, _, _) in enumerate(EXPECTED))


def test_duckdb_classifies_every_rule():
    with duckdb.connect() as con:
        values = ", ".join("(?, CAST(? AS VARCHAR))" for _ in EXPECTED)
        got = con.execute(_query(values), _params()).fetchall()
    assert [(ua, p, d) for _, ua, p, d in got] == EXPECTED


def test_postgresql_classifies_every_rule(db):
    got = db.execute(_query(_pg_values(db))).fetchall()
    assert [(ua, p, d) for _, ua, p, d in got] == EXPECTED


@pytest.mark.parametrize("dialect", ["duckdb", "postgres"])
def test_a_null_agent_is_autre(dialect, db):
    query = (f"SELECT {classify_sql('platform', 'user_agent')}, "
             f"{classify_sql('device_type', 'user_agent')} "
             f"FROM (SELECT CAST(NULL AS VARCHAR) AS user_agent) AS t")
    if dialect == "duckdb":
        with duckdb.connect() as con:
            got = con.execute(query).fetchone()
    else:
        got = db.execute(query).fetchone()
    assert tuple(got) == ("Autre", "Autre")


def test_loaded_rows_are_classified_by_every_rule(settings, database_url, db, exports_dir):
    day = date(2024, 11, 14)
    rows = [(f"@u{i}:agent.x.tchap.gouv.fr", "DEV", "2024-11-14 10:00:00+01", ua, "agent_x",
             "x.gouv.fr") for i, (ua, _, _) in enumerate(EXPECTED)]
    write_file(exports_dir, day, rows)
    report = load(settings, database_url, exports_dir, [day])
    assert report.exit_code == EXIT_OK, [o.error for o in report.outcomes]
    got = db.execute("SELECT substr(split_part(user_id, ':', 1), 3)::int, user_agent, platform, "
                     "device_type FROM user_daily_visits ORDER BY 1").fetchall()
    assert [(ua, p, d) for _, ua, p, d in got] == EXPECTED


def test_the_generator_uses_every_label():
    agents = [ua for _, ua in USER_AGENTS]
    params = [value for i, ua in enumerate(agents) for value in (i, ua)]
    values = ", ".join("(?, CAST(? AS VARCHAR))" for _ in agents)
    with duckdb.connect() as con:
        got = con.execute(
            f"SELECT {classify_sql('platform', 'user_agent')}, "
            f"{classify_sql('device_type', 'user_agent')} "
            f"FROM (VALUES {values}) AS t(i, user_agent)", params).fetchall()
    assert {p for p, _ in got} == PLATFORM_LABELS
    assert {d for _, d in got} == DEVICE_TYPE_LABELS
    # The generator's agents that this file also lists must be classified the same way.
    expected = {ua: (p, d) for ua, p, d in EXPECTED}
    shared = [(ua, tuple(g)) for ua, g in zip(agents, got, strict=True) if ua in expected]
    assert len(shared) >= 15
    assert all(expected[ua] == g for ua, g in shared)


ODD_TEXT = ["it's", 'say "hi"', "back\\slash", "\\'", "''", "% _", "é 中", ""]


@pytest.mark.parametrize("engine", ["duckdb", "postgres"])
def test_quoted_names_and_strings_read_back_unchanged_in_both_engines(engine, db):
    # The classification CASE and DuckDB's staging statements are SQL text that no driver
    # composes: their quoting must mean the same to both engines.
    columns = ", ".join(f"{literal(v)} AS {identifier(v or 'empty')}" for v in ODD_TEXT)
    if engine == "duckdb":
        with duckdb.connect() as con:
            cursor = con.execute(f"SELECT {columns}")
            got, names = cursor.fetchone(), [d[0] for d in cursor.description]
    else:
        cursor = db.execute(f"SELECT {columns}")
        got, names = cursor.fetchone(), [d.name for d in cursor.description]
    assert list(got) == ODD_TEXT
    assert names == [v or "empty" for v in ODD_TEXT]
