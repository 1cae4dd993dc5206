"""`tchap-stats migrate-legacy` on a database of the old system: real PostgreSQL, real
`tchap-stats` processes, one of them SIGKILLed in the middle of a month, the old system
writing while the takeover is stopped, then every dashboard name compared before and
after, and a normal sync on top."""

from __future__ import annotations

import random
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest

from benchmarks import legacy as old_system
from tchap_stats.classify import CLASSIFIERS
from tchap_stats.database import connect
from tchap_stats.dates import today
from tchap_stats.synthetic.generate import Options, generate

from .faultkit import cli_command, cli_env

PARIS = ZoneInfo("Europe/Paris")
TODAY = date(2024, 11, 20)  # the dashboards' "today", old and new
FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"
CHROME = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like "
          "Gecko) Chrome/126.0.0.0 Safari/537.36")
AGENTS = [FIREFOX, CHROME, "Tchap/2.12.0 (Android 14; Pixel 8)", "Tchap/2.9.1 (iPhone; iOS 17.5)",
          "RiotNSE/2.1 (iPhone; iOS 17.4)", "curl/8.5.0", "Element/1.11 (Linux; Android 13)"]


def _like(pattern: str, text: str) -> bool:
    return re.fullmatch(".*".join(map(re.escape, pattern.split("%"))), text, re.S) is not None


def label(kind: str, agent: str) -> str:
    """classify.py's rules, read as LIKE patterns (the old batch classification's labels)."""
    rules, default = CLASSIFIERS[kind]
    return next((name for pattern, name in rules if _like(pattern, agent)), default)


@dataclass(frozen=True)
class Visit:
    user: str
    device: str
    ts: datetime  # UTC
    agent: str
    instance: str
    domain: str
    platform: str | None
    device_type: str | None
    visit_date: date | None  # the old system's: the UTC day, or None before its batch

    @property
    def paris_day(self) -> date:
        return self.ts.astimezone(PARIS).date()

    @property
    def utc_day(self) -> date:
        return self.ts.date()

    def classified(self) -> Visit:
        """As the old batch classification left it: labels and the UTC day."""
        return replace(self, platform=label("platform", self.agent),
                       device_type=label("device_type", self.agent), visit_date=self.utc_day)

    def taken_over(self) -> Visit:
        """As the takeover writes it: NULL labels classified, the day of the zone."""
        return replace(self, platform=self.platform or label("platform", self.agent),
                       device_type=self.device_type or label("device_type", self.agent),
                       visit_date=self.paris_day)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def visit(user: str, device: str, ts: str, agent: str = FIREFOX, classified: bool = True,
          instance: str = "agent", domain: str = "x.gouv.fr") -> Visit:
    row = Visit(user, device, at(ts), agent, instance, domain, None, None, None)
    return row.classified() if classified else row


def base_visits() -> list[Visit]:
    """Users on days of August to November, between 06:00 and 20:00 UTC (the same day in
    Paris and in UTC), none from 16 to 24 October (the edges of the old and new 30-day
    windows, a UTC instant and a Paris day)."""
    rng = random.Random(7)
    days = [d for d in (date(2024, 8, 1) + timedelta(n) for n in range(112))
            if not date(2024, 10, 16) <= d <= date(2024, 10, 24) and d <= TODAY - timedelta(1)]
    rows = []
    for u in range(12):
        user = f"@user{u}-x.gouv.fr:agent.tchap.gouv.fr"
        instance, domain = (("agent", "x.gouv.fr") if u % 3 else ("education", "ac-paris.fr"))
        for device in ("DEV1", "DEV2"):
            agent = rng.choice(AGENTS)
            for day in sorted(rng.sample(days, 14)):
                ts = f"{day} {rng.randint(6, 19):02d}:{rng.randint(0, 59):02d}:00"
                rows.append(visit(user, device, ts, agent, rng.random() > 0.1, instance, domain))
    return rows


# The rows the documented corrections reach, each for a reason of its own.
SPECIAL = [
    # visit_date, the old UTC day, corrected to the Paris day (and to another month).
    visit("@a:agent.tchap.gouv.fr", "A1", "2024-10-31 23:30:00"),
    visit("@b:agent.tchap.gouv.fr", "B1", "2024-11-15 23:10:00", CHROME),
    visit("@c:agent.tchap.gouv.fr", "C1", "2024-08-10 22:30:00"),  # summer: UTC+2
    # Not classified yet (no platform, device type nor visit_date); one near midnight.
    visit("@d:agent.tchap.gouv.fr", "D1", "2024-11-05 23:20:00", classified=False),
    visit("@d:agent.tchap.gouv.fr", "D2", "2024-11-06 10:00:00", "Tchap/2.0 (iOS 17)",
          classified=False),
    visit("@e:agent.tchap.gouv.fr", "E1", "2024-08-14 12:00:00", CHROME, classified=False),
    # Two rows of one user, device and day: the earliest stays.
    visit("@f:agent.tchap.gouv.fr", "F1", "2024-11-10 08:00:00", FIREFOX),
    visit("@f:agent.tchap.gouv.fr", "F1", "2024-11-10 14:00:00", CHROME),
    # Two UTC days, one Paris day: merged (the 23:30 UTC one is the earlier).
    visit("@g:agent.tchap.gouv.fr", "G1", "2024-11-12 23:30:00"),
    visit("@g:agent.tchap.gouv.fr", "G1", "2024-11-13 09:00:00", CHROME, instance="other"),
    # One UTC day, two Paris days: two rows still.
    visit("@h:agent.tchap.gouv.fr", "H1", "2024-11-12 22:30:00"),
    visit("@h:agent.tchap.gouv.fr", "H1", "2024-11-12 23:30:00"),
]
# What the old system writes while the takeover is stopped: a visit in a month already
# moved, and its batch classification reaching E1 (also in August).
LATE_VISIT = visit("@late:agent.tchap.gouv.fr", "L1", "2024-08-20 10:00:00", CHROME)


def merged(rows: Iterable[Visit]) -> tuple[list[Visit], list[Visit]]:
    """KeepLeast over (Paris day, user, device): the kept rows and the merged ones."""
    keep: dict[tuple, Visit] = {}
    losers = []

    def order(v: Visit) -> tuple:
        return v.ts, v.agent.encode(), v.instance.encode(), v.domain.encode()

    for row in (r.taken_over() for r in rows):
        key = (row.paris_day, row.user, row.device)
        if key in keep and order(keep[key]) <= order(row):
            losers.append(row)
        else:
            if key in keep:
                losers.append(keep[key])
            keep[key] = row
    return list(keep.values()), losers


# --- the old system's database -----------------------------------------------------------

VISIT_COLUMNS = ("user_id, device_id, visit_ts, user_agent, instance, domain, platform, "
                 "device_type, visit_date")
OLD_EXPORTS = {
    "subscriptions_aggregate": [(12, "x.gouv.fr", at("2024-11-19 22:00:00"), "agent"),
                                (3, None, at("2024-11-19 10:00:00"), "agent")],
    "events_aggregate": [(40, "x.gouv.fr", at("2024-11-19 10:00:00"), "agent", "m.room.message"),
                         (None, "x.gouv.fr", at("2024-11-19 11:00:00"), "agent", "m.reaction")],
    "account_data_aggregate": [("@a:agent", "im.vector.setting", '{"x": 1}', "agent", "x.gouv.fr"),
                               ("@b:agent", "m.direct", "{}", None, "x.gouv.fr")],
    # Reruns of one day: twice the same row; two versions of another (the least stays).
    "sso_aggregate": [(30, "x.gouv.fr", "agent", 20, 5, 5, date(2024, 11, 19)),
                      (30, "x.gouv.fr", "agent", 20, 5, 5, date(2024, 11, 19)),
                      (12, "y.gouv.fr", "agent", 10, 1, 1, date(2024, 11, 19)),
                      (11, "y.gouv.fr", "agent", 9, 1, 1, date(2024, 11, 19)),
                      (31, "x.gouv.fr", "agent", 21, 5, 5, date(2024, 11, 20))],
    "crisp_conversation_segments": [
        ("s1", "bug", "resolved", "x.gouv.fr", datetime(2024, 11, 1, 9), datetime(2024, 11, 3, 9)),
        ("s2", "question", "open", None, datetime(2024, 11, 18, 9), datetime(2024, 11, 18, 10))],
    "pushers_aggregate": [("@a:agent", "DEV1", "fr.gouv.tchap", "http", True, "agent",
                           "x.gouv.fr", date(2024, 11, 19)),
                          ("@a:agent", None, "m.email", "email", True, "agent", "x.gouv.fr",
                           date(2024, 11, 19))],
}
LATE_SSO = (29, "x.gouv.fr", "agent", 19, 5, 5, date(2024, 11, 20))


def insert_visits(conn: psycopg.Connection, rows: Iterable[Visit]) -> None:
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO public.user_daily_visits ({VISIT_COLUMNS}) "
                        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                        [(v.user, v.device, v.ts, v.agent, v.instance, v.domain, v.platform,
                          v.device_type, v.visit_date) for v in rows])


def insert_export(conn: psycopg.Connection, table: str, rows: list[tuple]) -> None:
    marks = ", ".join(["%s"] * len(rows[0]))
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO public.{table} VALUES ({marks})", rows)


def old_nightly_refresh(conn: psycopg.Connection) -> None:
    """The old system's nightly refresh of its dashboards, as of TODAY; its
    user_monthly_visits_lite as every night of these months left it."""
    conn.execute("SELECT set_config('legacy.today', %s, false)", (TODAY.isoformat(),))
    conn.execute("REFRESH MATERIALIZED VIEW public.user_daily_visits_agg_30d_v2")
    conn.execute("REFRESH MATERIALIZED VIEW public.user_daily_visits_by_month_1y_v3")
    conn.execute(old_system.in_schema(old_system.MONTHLY_LITE, "public").replace(
        "- 30", "- 400"))


def build_old_database(url: str) -> None:
    with connect(url, autocommit=True) as conn:
        old_system.create_old_database(conn, TODAY)
        insert_visits(conn, base_visits() + SPECIAL)
        for table, rows in OLD_EXPORTS.items():
            insert_export(conn, table, rows)
        old_nightly_refresh(conn)


@pytest.fixture
def old_db(empty_database_url: str) -> str:
    build_old_database(empty_database_url)
    return empty_database_url


# --- the dashboards, read and modelled ---------------------------------------------------

def dashboards(conn: psycopg.Connection, zone: str) -> dict[str, Counter]:
    """Every dashboard name's rows, `day` and `month` as the calendar day they stand for in
    `zone` (the old views: UTC midnights; the new ones: Paris midnights)."""
    conn.execute("SET tchap_stats.today = '2024-11-20'")
    read = {
        "user_daily_visits_agg_30d_v2": "SELECT (day AT TIME ZONE %(z)s)::date, user_id, "
        "instance, domain, visits_count, web_visits_count, mobile_visits_count, "
        "other_visits_count FROM user_daily_visits_agg_30d_v2",
        "user_daily_visits_by_month_1y_v3": "SELECT user_id, (month AT TIME ZONE %(z)s)::date, "
        "device_id, instance, domain, device_type, platform FROM user_daily_visits_by_month_1y_v3",
        "user_monthly_visits_lite": "SELECT user_id, visit_date, instance, domain "
        "FROM user_monthly_visits_lite",
    }
    return {name: Counter(conn.execute(query, {"z": zone}).fetchall())
            for name, query in read.items()}


def columns(conn: psycopg.Connection, name: str) -> list[tuple[str, str]]:
    return conn.execute("SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                        "WHERE attrelid = %s::regclass AND attnum > 0 ORDER BY attnum",
                        (f"public.{name}",)).fetchall()


Day = Callable[[Visit], date | None]


def agg(rows: Iterable[Visit], day: Day, since: date) -> Counter:
    """user_daily_visits_agg_30d_v2's definition over `rows`, days from `since`."""
    groups: dict[tuple, list[int]] = {}
    for v in rows:
        d = day(v)
        if d is None or not since <= d <= TODAY:
            continue
        counts = groups.setdefault((d, v.user, v.instance, v.domain), [0, 0, 0, 0])
        counts[0] += 1
        for i, name in enumerate(("Web", "Mobile", "Autre"), 1):
            counts[i] += v.platform == name
    return Counter((*key, *counts) for key, counts in groups.items())


def by_month(rows: Iterable[Visit], day: Day) -> Counter:
    """user_daily_visits_by_month_1y_v3's definition (its window holds every row here)."""
    return Counter({(v.user, d.replace(day=1), v.device, v.instance, v.domain,
                     v.device_type, v.platform)
                    for v in rows if (d := day(v)) is not None
                    and v.device_type not in (None, "Autre")})


def lite(rows: Iterable[Visit], day: Day) -> Counter:
    """user_monthly_visits_lite's definition: a user's month, its earliest visit's place."""
    first: dict[tuple, Visit] = {}
    for v in sorted(rows, key=lambda v: v.ts):
        d = day(v)
        if d is not None and v.device_type not in (None, "Autre"):
            first.setdefault((v.user, d.replace(day=1)), v)
    return Counter((user, month, v.instance, v.domain) for (user, month), v in first.items())


def models(rows: list[Visit], day: Day, since: date) -> dict[str, Counter]:
    return {"user_daily_visits_agg_30d_v2": agg(rows, day, since),
            "user_daily_visits_by_month_1y_v3": by_month(rows, day),
            "user_monthly_visits_lite": lite(rows, day)}


def keys_of(name: str, v: Visit, day: date) -> set[tuple]:
    """The keys of a dashboard name's rows that the row `v` (counted on `day`) reaches."""
    if name == "user_daily_visits_agg_30d_v2":
        return {(day, v.user, v.instance, v.domain)}
    if name == "user_daily_visits_by_month_1y_v3":
        return {(v.user, day.replace(day=1), v.device, v.instance, v.domain, v.device_type,
                 v.platform)}
    return {(v.user, day.replace(day=1))}


def key_of(name: str, row: tuple) -> tuple:
    return {"user_daily_visits_agg_30d_v2": row[:4], "user_daily_visits_by_month_1y_v3": row,
            "user_monthly_visits_lite": row[:2]}[name]


# --- running the command ------------------------------------------------------------------

def run_cli(url: str, tmp_path: Path, *args: str, timeout: float = 120
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli_command(*args), env=cli_env(url, tmp_path / "spill"),
                          capture_output=True, text=True, timeout=timeout)


def wait_for(condition: Callable[[], object], what: str, timeout: float = 30) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError(f"gave up waiting for {what}")


def waiting_takeover(conn: psycopg.Connection) -> int | None:
    """The backend of a takeover waiting to record the unit it moved (and checked)."""
    row = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND query LIKE 'DELETE FROM tchap_stats.legacy_units%'").fetchone()
    return row[0] if row else None


def takeover_backends(conn: psycopg.Connection, *ours: psycopg.Connection) -> list[int]:
    return [pid for (pid,) in conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'tchap-stats' "
        "AND pid <> ALL(%s)", ([c.info.backend_pid for c in ours],))]


def moved_units(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute("SELECT relation, month FROM tchap_stats.legacy_units "
                        "WHERE moved_at IS NOT NULL ORDER BY 1, 2").fetchall()


# --- the test -------------------------------------------------------------------------------

def test_takeover_interrupted_then_resumed_keeps_every_dashboard(old_db, tmp_path):
    started = time.monotonic()
    rows = base_visits() + SPECIAL
    with connect(old_db, autocommit=True) as db, connect(old_db, autocommit=True) as holder:
        before = dashboards(db, "UTC")
        old_columns = {name: columns(db, name) for name in before}
        # The old views are what their definitions give over the old rows.
        assert before == models(rows, lambda v: v.utc_day, TODAY - timedelta(30)) | {
            "user_daily_visits_by_month_1y_v3": by_month(rows, lambda v: v.visit_date),
            "user_monthly_visits_lite": lite(rows, lambda v: v.visit_date)}

        db.execute("CREATE VIEW public.sso_by_domain AS SELECT domain, sum(total_users) "
                   "FROM public.sso_aggregate GROUP BY domain")  # an analyst's own view
        plan = run_cli(old_db, tmp_path, "migrate-legacy", "--dry-run")
        assert ("views of yours that read the old tables keep reading them in legacy_old "
                "after the switch (and `--finish` refuses while they do): "
                "public.sso_by_domain") in plan.stdout
        db.execute("DROP VIEW public.sso_by_domain")
        assert plan.returncode == 0, plan.stderr
        assert "takeover not started (dry run: nothing is changed)" in plan.stdout
        august = sum(v.ts.astimezone(PARIS).month == 8 for v in rows)
        assert f"user_daily_visits 2024-08: {august:,} rows · to move" in plan.stdout
        assert "sso_aggregate: 5 rows · to move" in plan.stdout
        assert db.execute("SELECT to_regnamespace('tchap_stats')").fetchone()[0] is None
        deploy = run_cli(old_db, tmp_path, "migrate")
        assert deploy.returncode == 0, deploy.stderr
        assert "(takeover not started)" in deploy.stdout
        assert db.execute("SELECT to_regnamespace('tchap_stats')").fetchone()[0] is None

        # Out of time at once: the new layout created, the plan counted, nothing moved.
        budget = run_cli(old_db, tmp_path, "migrate-legacy", "--max-minutes", "0")
        assert budget.returncode == 5, budget.stdout + budget.stderr
        assert "stopped at the time budget (--max-minutes 0): 10 unit(s) left" in budget.stdout
        assert "run again to continue" in budget.stdout
        assert moved_units(db) == []

        # A takeover SIGKILLed inside a month: its rows written and checked, held where it
        # records the month (the table locked), once the export tables and August moved.
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE tchap_stats.legacy_units IN SHARE MODE")
        process = subprocess.Popen(cli_command("migrate-legacy"),
                                   env=cli_env(old_db, tmp_path / "spill"),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        while True:
            wait_for(lambda: waiting_takeover(db), "the takeover recording a unit")
            if ("user_daily_visits", date(2024, 8, 1)) in moved_units(db):
                break
            holder.execute("COMMIT")  # that unit only: the next one waits in turn
            holder.execute("BEGIN")
            holder.execute("LOCK TABLE tchap_stats.legacy_units IN SHARE MODE")
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        holder.execute("COMMIT")
        wait_for(lambda: not takeover_backends(db, db, holder), "the killed run's backends")
        moved = moved_units(db)
        assert ("user_daily_visits", date(2024, 9, 1)) not in moved  # rolled back whole
        assert db.execute("SELECT count(*) FROM legacy_new.user_daily_visits_p2024_09"
                          ).fetchone()[0] == 0
        assert db.execute("SELECT count(*) FROM tchap_stats.changed_days WHERE day >= "
                          "'2024-09-01'").fetchone()[0] == 0

        # Meanwhile the old names answer with the old data. A deploy's `migrate` changes
        # nothing and exits 0 (a failing postdeploy would fail the deploy); sync refuses.
        assert dashboards(db, "UTC") == before
        deploy = run_cli(old_db, tmp_path, "migrate")
        assert deploy.returncode == 0, deploy.stderr
        assert deploy.stdout.startswith("schema left as it is: this database holds the "
                                        "old system's")
        assert "(takeover in progress: 7 of 10 unit(s) moved)" in deploy.stdout
        assert "tchap-stats migrate-legacy" in deploy.stdout
        sync = run_cli(old_db, tmp_path, "--source", str(tmp_path), "sync")
        assert sync.returncode == 1
        assert ("this database is still in the old system's layout (takeover in progress: "
                "7 of 10 unit(s) moved): nothing is loaded into it until `tchap-stats "
                "migrate-legacy` has taken it over") in sync.stderr

        # The old system still runs: a late visit in August (moved already), its batch
        # classification of E1 (August), an SSO rerun; then its nightly refresh.
        insert_visits(db, [LATE_VISIT])
        db.execute("UPDATE public.user_daily_visits SET platform = %s, device_type = %s, "
                   "visit_date = %s WHERE device_id = 'E1'",
                   (label("platform", CHROME), label("device_type", CHROME),
                    date(2024, 8, 14)))
        insert_export(db, "sso_aggregate", [LATE_SSO])
        old_nightly_refresh(db)
        rows = [r.classified() if r.device == "E1" else r for r in rows] + [LATE_VISIT]
        before = dashboards(db, "UTC")
        old_rows = db.execute("SELECT count(*) FROM public.user_daily_visits").fetchone()[0]
        assert old_rows == len(rows)

        resumed_plan = run_cli(old_db, tmp_path, "migrate-legacy", "--dry-run")
        assert "user_daily_visits 2024-08" in resumed_plan.stdout
        assert ("moved, then written to by the old system: moves again"
                in resumed_plan.stdout)
        done = run_cli(old_db, tmp_path, "migrate-legacy")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "user_daily_visits 2024-08 (again: the old system wrote to it)" in done.stdout
        assert "sso_aggregate (again: the old system wrote to it)" in done.stdout
        assert "switched, in one transaction" in done.stdout

        # Every dashboard name is now a view with the old columns and types.
        after = dashboards(db, "Europe/Paris")
        for name in before:
            assert db.execute("SELECT relkind FROM pg_class WHERE oid = %s::regclass",
                              (f"public.{name}",)).fetchone()[0] == "v"
            assert columns(db, name) == old_columns[name]

        # After: the same definitions over the rows as the takeover wrote them.
        kept, losers = merged(rows)
        assert after == models(kept, lambda v: v.paris_day, TODAY - timedelta(29))
        assert Counter(db.execute(
            "SELECT user_id, device_id, visit_ts, user_agent, instance, domain, platform, "
            "device_type, visit_date FROM public.user_daily_visits").fetchall()) == Counter(
            (v.user, v.device, v.ts, v.agent, v.instance, v.domain, v.platform,
             v.device_type, v.visit_date) for v in kept)

        # Before and after differ only where a documented correction reached, row by row:
        # a day of the zone instead of UTC's, a classification filled, a duplicate merged.
        corrected = [v for v in rows if v.utc_day != v.paris_day]
        classified = [v for v in rows if v.platform is None]
        assert {v.device for v in corrected} == {"A1", "B1", "C1", "D1", "G1", "H1"}
        assert {"D1", "D2"} <= {v.device for v in classified}
        assert [(v.device, v.ts) for v in losers] == [
            ("F1", at("2024-11-10 14:00:00")), ("G1", at("2024-11-13 09:00:00"))]
        for name in before:
            reached: set[tuple] = set()
            for v in {*corrected, *classified, *losers}:
                reached |= keys_of(name, v, v.utc_day) | keys_of(name, v.taken_over(),
                                                                 v.paris_day)
            unreached_before = {r: c for r, c in before[name].items()
                                if key_of(name, r) not in reached}
            unreached_after = {r: c for r, c in after[name].items()
                               if key_of(name, r) not in reached}
            assert unreached_before == unreached_after, name
            assert before[name] != after[name], name  # and the corrections did reach it

        # The report counts them; the old rows all account: kept, merged or left out.
        figures = db.execute(
            "SELECT sum(rows_old), sum(rows_new), sum(duplicates_merged), "
            "sum(days_corrected), sum(days_filled), sum(classified) "
            "FROM tchap_stats.legacy_units WHERE relation = 'user_daily_visits'").fetchone()
        old_days = [v for v in rows if v.visit_date is not None]
        assert figures == (len(rows), len(kept), len(losers),
                           sum(v.visit_date != v.paris_day for v in old_days),
                           len(rows) - len(old_days), len(classified))
        assert (f"visit_date corrected on {figures[3]:,} rows, filled on {figures[4]:,}"
                in done.stdout)

        # The other exports, converted by their rules.
        extracted = {r[0] for r in db.execute(
            "SELECT DISTINCT extracted_on FROM account_data_aggregate")}
        assert len(extracted) == 1
        assert today("Europe/Paris") - timedelta(3) <= extracted.pop() <= today(
            "Europe/Paris") - timedelta(2)
        assert sorted(db.execute("SELECT subscriptions, domain, hour, instance, extracted_on "
                                 "FROM subscriptions_aggregate").fetchall()) == [
            (3, "", at("2024-11-19 10:00:00"), "agent", date(2024, 11, 19)),
            (12, "x.gouv.fr", at("2024-11-19 22:00:00"), "agent", date(2024, 11, 19))]
        assert db.execute("SELECT events, type FROM events_aggregate").fetchall() == [
            (40, "m.room.message")]  # the count-less row is left out, and kept in legacy_old
        assert sorted(db.execute("SELECT total_users, domain, added_date FROM sso_aggregate"
                                 ).fetchall()) == [
            (11, "y.gouv.fr", date(2024, 11, 19)), (29, "x.gouv.fr", date(2024, 11, 20)),
            (30, "x.gouv.fr", date(2024, 11, 19))]
        assert sorted(db.execute("SELECT user_name, device_id, kind FROM pushers_aggregate"
                                 ).fetchall()) == [("@a:agent", "", "email"),
                                                   ("@a:agent", "DEV1", "http")]
        assert sorted(db.execute("SELECT session_id, domain FROM crisp_conversation_segments"
                                 ).fetchall()) == [("s1", "x.gouv.fr"), ("s2", "")]
        skipped = db.execute("SELECT relation, rows_skipped FROM tchap_stats.legacy_units "
                             "WHERE rows_skipped > 0").fetchall()
        assert skipped == [("events_aggregate", 1)]

        # Nothing was deleted from the old tables, kept in legacy_old, unwatched.
        assert db.execute("SELECT count(*) FROM legacy_old.user_daily_visits"
                          ).fetchone()[0] == old_rows
        assert db.execute("SELECT count(*) FROM legacy_old.sso_aggregate").fetchone()[0] == 6
        assert db.execute("SELECT count(*) FROM pg_trigger WHERE tgname LIKE "
                          "'tchap_stats_takeover%'").fetchone()[0] == 0

        # The summaries equal a full recompute; the schema is complete; a sync works on top.
        checked = run_cli(old_db, tmp_path, "check", "--from", "2024-08-01", "--to",
                          "2024-11-30")
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert run_cli(old_db, tmp_path, "migrate").stdout == "schema already up to date\n"
        exports = tmp_path / "exports"
        generate(date(2024, 11, 21), date(2024, 11, 21), str(exports),
                 Options(rows_per_day=300), exports=["user_daily_visits", "sso"])
        synced = run_cli(old_db, tmp_path, "--source", str(exports), "sync", "--date",
                         "2024-11-21", "--only", "user_daily_visits,sso")
        assert synced.returncode == 0, synced.stdout + synced.stderr
        checked = run_cli(old_db, tmp_path, "check", "--from", "2024-11-01", "--to",
                          "2024-11-30")
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert db.execute("SELECT count(*) FROM user_daily_visits WHERE visit_date = "
                          "'2024-11-21'").fetchone()[0] > 0

        again = run_cli(old_db, tmp_path, "migrate-legacy")
        assert again.returncode == 0 and "already taken over" in again.stdout
        finished = run_cli(old_db, tmp_path, "migrate-legacy", "--finish")
        assert finished.returncode == 0, finished.stderr
        assert "dropped schema legacy_old" in finished.stdout
        assert db.execute("SELECT to_regnamespace('legacy_old')").fetchone()[0] is None
    assert time.monotonic() - started < 90


def test_finish_refuses_before_the_switch_and_nothing_to_take_over(database_url, tmp_path):
    early = run_cli(database_url, tmp_path, "migrate-legacy", "--finish")
    assert early.returncode == 1 and "has not switched yet" in early.stderr
    fresh = run_cli(database_url, tmp_path, "migrate-legacy")
    assert fresh.returncode == 0
    assert "nothing to take over" in fresh.stdout


def test_a_write_just_before_the_switch_is_moved_inside_it(old_db, tmp_path):
    """The old system writes between the last move and the switch: the switch moves that
    month again, under its lock, with its summaries, in its one transaction."""
    from tchap_stats import legacy
    from tchap_stats.summaries import check

    late = visit("@last:agent.tchap.gouv.fr", "Z1", "2024-09-03 23:45:00", CHROME)
    lines: list[str] = []

    def echo(line: str) -> None:
        lines.append(line)
        if line.endswith("switching"):  # every unit moved: the old system writes now
            with connect(old_db, autocommit=True) as writer:
                insert_visits(writer, [late])

    with connect(old_db, autocommit=True) as conn:
        outcome = legacy.take_over(conn, old_db, "Europe/Paris", 60, None, echo)
        assert outcome.exit_code == 0, lines
        assert any(line.startswith("user_daily_visits 2024-09 (again: the old system wrote")
                   for line in lines), lines
        assert conn.execute("SELECT visit_date FROM user_daily_visits WHERE device_id = 'Z1'"
                            ).fetchone() == (date(2024, 9, 4),)
        assert conn.execute("SELECT count(*) FROM legacy_old.user_daily_visits").fetchone()[
            0] == len(base_visits() + SPECIAL) + 1
        differing, _ = check(conn, date(2024, 8, 1), date(2024, 11, 30))
        assert differing == 0
        assert conn.execute("SELECT count(*) FROM tchap_stats.changed_days").fetchone()[0] == 0


def test_a_server_restart_mid_takeover_then_the_dashboards_role_reads_the_new_views(tmp_path):
    """The server stops (as a crash: no checkpoint) while the takeover records a month; it
    starts again and the takeover, run again, carries on to the switch. A role that could
    read the old dashboard names (Metabase's) reads the new ones."""
    from .faultkit import PrivatePostgres, create_database

    server = PrivatePostgres(tmp_path / "pg" / "pgdata")
    try:
        url = create_database(server.url, "old")
        build_old_database(url)
        with connect(url, autocommit=True) as db:
            db.execute("CREATE ROLE metabase LOGIN")
            db.execute("GRANT SELECT ON public.user_daily_visits_agg_30d_v2, "
                       "public.user_daily_visits_by_month_1y_v3, "
                       "public.user_monthly_visits_lite, public.user_daily_visits TO metabase")
            old_rows = db.execute("SELECT count(*) FROM user_daily_visits").fetchone()[0]
        holder = connect(url, autocommit=True)  # gone with the server
        process = subprocess.Popen(cli_command("migrate-legacy"), env=cli_env(url, tmp_path),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        with connect(url, autocommit=True) as db:
            wait_for(lambda: db.execute("SELECT to_regclass('tchap_stats.legacy_units')"
                                        ).fetchone()[0], "the takeover's plan")
            holder.execute("BEGIN")
            holder.execute("LOCK TABLE tchap_stats.legacy_units IN SHARE MODE")
            wait_for(lambda: waiting_takeover(db), "the takeover recording a unit")
        server.stop_immediate()
        stopped = process.communicate(timeout=60)
        assert process.returncode == 1, stopped
        assert "Traceback" not in stopped[1]
        server.start()

        done = run_cli(url, tmp_path, "migrate-legacy")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "switched, in one transaction" in done.stdout
        assert ("privileges carried over to the new relations: metabase: SELECT on 4"
                in done.stdout)
        assert ("may read every dashboard name and the freshness card: metabase"
                in done.stdout)
        with connect(url, autocommit=True) as db:
            assert db.execute("SELECT sum(rows_old) FROM tchap_stats.legacy_units "
                              "WHERE relation = 'user_daily_visits'").fetchone()[0] == old_rows
            checked = run_cli(url, tmp_path, "check", "--from", "2024-08-01",
                              "--to", "2024-11-30")
            assert checked.returncode == 0, checked.stdout + checked.stderr
            db.execute("SET ROLE metabase")
            db.execute("SET tchap_stats.today = '2024-11-20'")
            for name in ("user_daily_visits_agg_30d_v2", "user_daily_visits_by_month_1y_v3",
                         "user_monthly_visits_lite", "user_daily_visits",
                         "user_daily_visits_agg_1y", "monthly_active_users"):  # the last
                assert db.execute(f"SELECT count(*) FROM {name}").fetchone()[0] > 0, name
            # two and the freshness card (empty before a load): schema.grant_reading's
            assert db.execute("SELECT * FROM tchap_stats.freshness").fetchall() == []
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                db.execute("SELECT count(*) FROM tchap_stats.runs")
    finally:
        server.close()


def test_a_large_old_table_is_planned_from_its_statistics(old_db, monkeypatch):
    """Above ESTIMATE_ABOVE_ROWS old visits, the plan estimates each month's rows from the
    statistics instead of counting them (a pass over tens of billions of rows), and still
    lists every month from the first visit's to the last one's."""
    from tchap_stats import legacy

    with connect(old_db, autocommit=True) as conn:
        conn.execute("ANALYZE public.user_daily_visits")
        counted = dict(legacy._count_months(conn, "Europe/Paris"))
        monkeypatch.setattr(legacy, "ESTIMATE_ABOVE_ROWS", 1)
        plan = legacy.plan(conn, "Europe/Paris")
        estimated = {u.month: u.rows for u in plan.units if u.relation == "user_daily_visits"}
        assert all(u.estimated for u in plan.units if u.relation == "user_daily_visits")
        assert list(estimated) == legacy.whole_months_between(min(counted), max(counted))
        assert abs(sum(estimated.values()) - sum(counted.values())) <= len(counted)
        for month, rows in counted.items():  # a small table's histogram holds every row
            assert abs(estimated[month] - rows) <= max(2, rows // 4), (month, estimated)
        lines: list[str] = []
        legacy.describe(plan, lines.append)
        assert any(line.startswith("  user_daily_visits 2024-08: ") and
                   line.endswith(" rows (estimated) · to move") for line in lines), lines
