"""The nightly run against the size of history: tchap-stats against the legacy path.

Builds a history of user_daily_visits that grows forward (30, then 120, then 365 days by
default, at --rows-per-day rows a day), and at each size measures, in the same run and
on the same PostgreSQL, the nightly work of both systems for the next day's file:
  legacy       DESIGN §8: temp COPY, INSERT … ON CONFLICT into the unpartitioned indexed
               table, classification UPDATEs, REFRESH of the two materialized views, the
               monthly-lite insert (benchmarks/legacy.py; schema `legacy`);
  tchap-stats  `tchap-stats sync --date D --only user_daily_visits` as its own process,
               reading the file from S3 (a moto server on loopback): load + summaries.
The nightly days fall on month ends (2025-01-30, 04-30, 12-31), the worst case for work
that re-reads a month. Each system's night follows its own history build (tchap-stats':
build, night; then the legacy's: build, night), so neither finds its data evicted by the
other's build. Each night starts on a quiet server (no autovacuum worker at work, then a
CHECKPOINT) and runs with autovacuum paused (resumed after it). The legacy path runs
inside this process; tchap-stats' sync follows a warm-up process (a sync of a day with no
file, which touches no data), so that both start with their program files in the page
cache, and with tchap-stats' bytecode compiled, as a deployed one has it (this script
first runs bin/post_compile; the libraries' bytecode is pip's). History is
generated inside PostgreSQL (benchmarks/sql/history.sql, the same rows for both systems);
tchap-stats' summaries of it are built by its own incremental refresh, a week at a time.
Prints a table, writes benchmarks/results/refresh.json and, with matplotlib (the `bench`
extra), benchmarks/results/refresh.png.

    .venv/bin/python benchmarks/refresh.py                      # 100,000 rows a day
    .venv/bin/python benchmarks/refresh.py --rows-per-day 20000 --histories 30,120
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import legacy  # noqa: E402
import moto_s3  # noqa: E402

from tchap_stats.classify import classify_sql  # noqa: E402
from tchap_stats.database import start_embedded  # noqa: E402
from tchap_stats.dates import days_between  # noqa: E402
from tchap_stats.exports import USER_DAILY_VISITS  # noqa: E402
from tchap_stats.load import ensure_partitions  # noqa: E402
from tchap_stats.schema import migrate  # noqa: E402
from tchap_stats.source import s3_client  # noqa: E402
from tchap_stats.summaries import refresh_changed  # noqa: E402

HISTORY_START = date(2024, 12, 31)
OVERLAP = 0.02  # share of a file's rows repeating the previous day's (identical) rows
RESULTS = ROOT / "benchmarks" / "results"


class Population:
    """Parameters of bench.visits: devices, and a stride that visits them without repeat."""

    def __init__(self, rows_per_day: int):
        self.rows = rows_per_day
        self.devices = rows_per_day * 8 // 5
        self.stride = 1_000_003
        while math.gcd(self.stride, self.devices) != 1:
            self.stride += 2

    def visits(self, day: date | sql.Composable, first_row: int = 0,
               rows: int | None = None) -> sql.Composed:
        return sql.SQL("bench.visits({}, {}, {}, {}, {})").format(
            day if isinstance(day, sql.Composable) else sql.Literal(day),
            sql.Literal(first_row), sql.Literal(rows or self.rows),
            sql.Literal(self.devices), sql.Literal(self.stride))


def tune(url: str) -> None:
    """Checkpoints spaced out for bulk history building (the same for both systems)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET max_wal_size = '8GB'")
        conn.execute("ALTER SYSTEM SET checkpoint_timeout = '30min'")
        conn.execute("ALTER SYSTEM SET maintenance_work_mem = '512MB'")
        conn.execute("SELECT pg_reload_conf()")


def build_tchap_stats_history(conn: psycopg.Connection, url: str, population: Population,
                              days: list[date]) -> float:
    """Append `days` to tchap-stats' raw table and its summaries (its own incremental
    refresh, a week of new days at a time, as a backfill does). Returns the seconds."""
    platform = sql.SQL(classify_sql("platform", "user_agent"))
    device_type = sql.SQL(classify_sql("device_type", "user_agent"))
    ensure_partitions(conn, USER_DAILY_VISITS, days)
    started = time.perf_counter()
    # Weeks of new days through the nightly path (a full recompute of the same months, a
    # month at a time, took 200 to 250 s a month: the rolling window's sort dominates).
    for week in range(0, len(days), 7):
        chunk = days[week:week + 7]
        with conn.transaction():
            conn.execute(sql.SQL(
                "INSERT INTO public.user_daily_visits SELECT user_id, device_id, visit_ts, "
                "(visit_ts AT TIME ZONE 'Europe/Paris')::date, user_agent, instance, domain, "
                "{}, {} FROM generate_series({}::date, {}::date, '1 day') AS days(day) "
                "CROSS JOIN LATERAL {}").format(  # literals: the classification has LIKE '%…'
                    platform, device_type, sql.Literal(chunk[0]), sql.Literal(chunk[-1]),
                    population.visits(sql.SQL("days.day::date"))))
            conn.execute("INSERT INTO tchap_stats.changed_days "
                         "(export, day, last_load_id, fresh, rewritten) "
                         "SELECT 'user_daily_visits', day, 0, true, false "
                         "FROM unnest(%s::date[]) AS day", (chunk,))
        report = refresh_changed(conn, url)
        print(f"    {report.summary()} · {time.perf_counter() - started:.0f} s so far",
              flush=True)
    conn.execute("VACUUM ANALYZE public.user_daily_visits")
    return time.perf_counter() - started


def build_legacy_history(conn: psycopg.Connection, days: list[date],
                         first_build: bool) -> float:
    """Append `days` (copied from tchap-stats' raw table) to the legacy table, its indexes
    and views. Returns the seconds."""
    started = time.perf_counter()
    with conn.transaction():
        for name in legacy.INDEX_NAMES:  # a bulk insert, then the indexes built once
            conn.execute(sql.SQL("DROP INDEX IF EXISTS legacy.{}").format(sql.Identifier(name)))
        conn.execute("INSERT INTO legacy.user_daily_visits SELECT user_id, device_id, "
                     "visit_ts, user_agent, instance, domain, platform, device_type, visit_date "
                     "FROM public.user_daily_visits WHERE visit_date BETWEEN %s AND %s",
                     (days[0], days[-1]))
        conn.execute(legacy.INDEXES)
        if first_build:
            conn.execute(f"SET LOCAL legacy.today = '{days[-1] + timedelta(days=1)}'")
            conn.execute(legacy.VIEWS)
    conn.execute("VACUUM ANALYZE legacy.user_daily_visits")
    return time.perf_counter() - started


def write_nightly_file(conn: psycopg.Connection, population: Population, day: date,
                       path: Path) -> int:
    """The day's file as the exports are: the day's rows, a few rows of the day before
    (identical to what that day holds), timestamps with their Paris offset."""
    overlap = int(population.rows * OVERLAP)
    query = sql.SQL(
        "COPY (SELECT user_id, device_id, visit_ts, user_agent, instance, domain FROM {} "
        "UNION ALL SELECT user_id, device_id, visit_ts, user_agent, instance, domain FROM {}) "
        "TO STDOUT (FORMAT csv, HEADER true)").format(
            population.visits(day), population.visits(day - timedelta(days=1), 0, overlap))
    conn.execute("SET TimeZone = 'Europe/Paris'")
    with path.open("wb") as f, conn.cursor().copy(query) as copy:
        for chunk in copy:
            f.write(chunk)
    conn.execute("RESET TimeZone")
    return population.rows + overlap


def quiet(url: str, timeout: float = 300.0) -> float:
    """Wait until no autovacuum worker runs, then CHECKPOINT: each system's night starts
    on a quiet server, not beside the other's leftovers (autovacuum analyzing the legacy
    views its REFRESH just rewrote). Returns the seconds waited."""
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        while time.perf_counter() - started < timeout and conn.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE backend_type = 'autovacuum worker'").fetchone()[0]:
            time.sleep(0.5)
        conn.execute("CHECKPOINT")
    return time.perf_counter() - started


@contextmanager
def autovacuum_paused(url: str) -> Iterator[None]:
    """No autovacuum worker starts during a measured night, either system's: on 2 cores, a
    worker on the history build's tables takes a core from a 5-second night. (In the run
    before this pause, the 30- and 120-day nights took 6.4 and 7.6 s, their statements
    twice as slow as the 365-day night's, which took 5.2 s.) Resumed after the night."""
    def autovacuum(value: str) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"ALTER SYSTEM SET autovacuum = {value}")
            conn.execute("SELECT pg_reload_conf()")

    autovacuum("off")
    try:
        yield
    finally:
        autovacuum("on")


def legacy_nightly(url: str, path: Path, day: date) -> dict[str, float]:
    waited = quiet(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"SET legacy.today = '{day + timedelta(days=1)}'")
        started = time.perf_counter()
        steps = legacy.load_day(conn, path)
        steps.update(legacy.refresh_views(conn))
        steps["total"] = time.perf_counter() - started
        steps["waited_for_quiet"] = waited
        return steps


def tchap_stats_command(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "tchap-stats"), "--source", "s3://bench", *args]


def warm_up(env: dict[str, str], day: date) -> float:
    """A `sync` of a day with no file (exit 3) before the measured one: it reads the same
    program files from disk (Python, DuckDB, psycopg, boto3), and touches no data. The
    legacy path runs inside this warm process; without it, tchap-stats' start pays for
    the page cache the history build just filled (0.6 to 0.8 s, benchmarks/README.md)."""
    command = tchap_stats_command("sync", "--date", day.isoformat(), "--only",
                                  "user_daily_visits", "--no-refresh")
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 3:  # 3: the expected file is missing
        sys.exit(f"warm-up failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return time.perf_counter() - started


def tchap_stats_nightly(url: str, env: dict[str, str], day: date) -> tuple[float, list[str]]:
    env = {**env, "DATABASE_URL": url}
    warmed = warm_up(env, day + timedelta(days=1))
    waited = quiet(url)
    command = tchap_stats_command("-v", "sync", "--date", day.isoformat(), "--only",
                                  "user_daily_visits")
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"tchap-stats failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    # -v, on stderr: when the file was staged and committed, and the summaries' statements
    # with their seconds
    steps = [line for line in result.stderr.splitlines()
             if ": staged " in line or ": written and committed " in line
             or (" s" in line and "→" in line)]
    return elapsed, [f"(warm-up sync finding no file: {warmed:.1f} s; "
                     f"waited {waited:.1f} s for a quiet server)",
                     *result.stdout.strip().splitlines(), *steps]


def same_day(url: str, day: date) -> tuple[int, int]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT (SELECT count(*) FROM public.user_daily_visits WHERE visit_date = %(d)s), "
            "(SELECT count(*) FROM legacy.user_daily_visits "
            " WHERE (visit_ts AT TIME ZONE 'Europe/Paris')::date = %(d)s)",
            {"d": day}).fetchone()


def chart(results: list[dict], path: Path) -> bool:
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = [r["history_days"] for r in results]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(history, [r["legacy_seconds"] for r in results], "o-", label="legacy (DESIGN §8)")
    ax.plot(history, [r["tchap_stats_seconds"] for r in results], "o-", label="tchap-stats sync")
    ax.set_yscale("log")
    ax.set_xlabel("days of history")
    ax.set_ylabel("nightly run, seconds (log scale)")
    ax.set_title(f"One new day of {results[0]['rows_per_day']:,} rows")
    for r in results:
        ax.annotate(f"{r['ratio']:.0f}×", (r["history_days"], r["tchap_stats_seconds"]),
                    textcoords="offset points", xytext=(0, -14), ha="center")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows-per-day", type=int, default=100_000)
    parser.add_argument("--histories", default="30,120,365",
                        help="days of history at which to measure, ascending")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="build in DIR and keep it (its PostgreSQL data directory can be "
                             "reused to replay nights); default: a temporary directory")
    args = parser.parse_args()
    histories = [int(h) for h in args.histories.split(",")]
    # The deploy step itself, with this interpreter first on PATH (compileall writes even
    # where PYTHONDONTWRITEBYTECODE is set, as on these machines)
    subprocess.run([str(ROOT / "bin" / "post_compile")], cwd=ROOT, check=True, env={
        **os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"})
    population = Population(args.rows_per_day)
    run_started = time.perf_counter()
    results: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="tchap-bench-refresh-") as tmp:
        workdir = args.keep or Path(tmp)
        url = start_embedded(workdir / "pgdata")
        tune(url)
        moto, s3, endpoint = moto_s3.start_bucket("bench")
        env = {**os.environ, "S3_ENDPOINT": endpoint, "S3_URL_STYLE": "path",
               "S3_ACCESS_KEY_ID": "bench", "S3_SECRET_ACCESS_KEY": "bench",
               "S3_REGION": "us-east-1", "TCHAP_STATS_SPILL_DIR": str(workdir / "spill")}
        with psycopg.connect(url, autocommit=True) as conn:
            migrate(conn)
            conn.execute((ROOT / "benchmarks" / "sql" / "history.sql").read_text())
            legacy.create(conn, indexes=False)
            built_until = HISTORY_START - timedelta(days=1)
            for size in histories:
                nightly = HISTORY_START + timedelta(days=size)
                days = days_between(built_until + timedelta(days=1), nightly - timedelta(days=1))
                print(f"history {HISTORY_START}..{days[-1]} ({size} days): building "
                      f"{len(days)} day(s) …", flush=True)
                # Each system's night follows its own history build: neither finds its
                # working set evicted by the other's build (the legacy build writes 12 GB at
                # 365 days). The legacy night still comes after tchap-stats', whose night
                # reads about 100 MB.
                build = {"tchap_stats_history": build_tchap_stats_history(
                    conn, url, population, days)}
                path = workdir / USER_DAILY_VISITS.file_name(nightly)
                rows = write_nightly_file(conn, population, nightly, path)
                s3_client(s3).upload_file(str(path), "bench", path.name)
                print(f"  nightly {nightly}: tchap-stats sync …", flush=True)
                with autovacuum_paused(url):
                    seconds, output = tchap_stats_nightly(url, env, nightly)
                for line in output:
                    print("     ", line)
                print(f"    building the legacy history of {len(days)} day(s) …", flush=True)
                build["legacy_history"] = build_legacy_history(conn, days,
                                                               first_build=not results)
                print(f"  nightly {nightly}: legacy …", flush=True)
                with autovacuum_paused(url):
                    legacy_steps = legacy_nightly(url, path, nightly)
                loaded = same_day(url, nightly)
                assert loaded[0] == loaded[1] == args.rows_per_day, loaded
                results.append({
                    "history_days": size, "rows_per_day": args.rows_per_day,
                    "history_rows": conn.execute(
                        "SELECT count(*) FROM public.user_daily_visits").fetchone()[0],
                    "nightly_day": nightly.isoformat(), "file_rows": rows,
                    "legacy_seconds": legacy_steps["total"], "legacy_steps": legacy_steps,
                    "tchap_stats_seconds": seconds, "tchap_stats_output": output,
                    "ratio": legacy_steps["total"] / seconds, "build_seconds": build})
                print(f"  legacy {legacy_steps['total']:.1f} s · tchap-stats {seconds:.1f} s",
                      flush=True)
                built_until = nightly
        moto.stop()

    total = time.perf_counter() - run_started
    print()
    print(f"{'history (days)':>14}{'rows':>14}{'legacy s':>11}{'new s':>9}{'ratio':>8}")
    for r in results:
        print(f"{r['history_days']:>14}{r['history_rows']:>14,}{r['legacy_seconds']:>11.1f}"
              f"{r['tchap_stats_seconds']:>9.1f}{r['ratio']:>7.0f}×")
    growth = results[-1]["tchap_stats_seconds"] / results[0]["tchap_stats_seconds"]
    print(f"\nratio at {results[-1]['history_days']} days: {results[-1]['ratio']:.0f}× "
          f"(target ≥ 50×) · tchap-stats growth {results[0]['history_days']} → "
          f"{results[-1]['history_days']} days: {growth:.2f}× (target ≤ 1.5×) · "
          f"whole benchmark {total / 60:.1f} min")
    for r in results:
        print(f"  legacy steps at {r['history_days']} days: " + ", ".join(
            f"{k} {v:.1f}s" for k, v in r["legacy_steps"].items()
            if k not in ("total", "waited_for_quiet")))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "refresh.json").write_text(json.dumps(
        {"results": results, "growth": growth, "cores": os.cpu_count(),
         "benchmark_seconds": total}, indent=2))
    print(f"written {RESULTS / 'refresh.json'}")
    if chart(results, RESULTS / "refresh.png"):
        print(f"written {RESULTS / 'refresh.png'}")


if __name__ == "__main__":
    main()
