"""The lake, measured side by side in one run (issue 17): archiving closed months against a
plain `COPY … TO`, the Parquet's bytes against the partition's, `check` of an archived
month against the same check in PostgreSQL, a nightly sync before and after archiving, and
every dashboard view's content before and after.

Setup (not timed): an embedded PostgreSQL (pgserver) under a temporary directory,
`tchap-stats generate` of --days days of user_daily_visits ending yesterday at
--rows-per-day rows (cached under .tchap-stats/bench/archive-ROWS/), `tchap-stats migrate`,
`tchap-stats backfill` of every day but the last four, then a quiet server (no autovacuum
worker) and a CHECKPOINT. The lake is a local directory (TCHAP_STATS_LAKE_PATH): S3's own
transfer time is not measured here.

Measured, each as its own `tchap-stats` process where it is a command:
1. `check` of the oldest whole month, in PostgreSQL;
2. a plain `COPY (SELECT * FROM partition) TO STDOUT` of each month the archive moves,
   read and discarded by psycopg (the floor a copy out of PostgreSQL costs);
3. `archive --before M` (M: the first month still open to late rows); its record of each
   month (tchap_stats.archived_months) gives the rows, the seconds (checksum in PostgreSQL,
   write to the lake, checksum in the lake, drop), PostgreSQL's bytes with indexes and the
   Parquet's bytes;
4. the fingerprints (row count and a hash of the rows) of every table and view of schemas
   public and tchap_stats, before 3 and after it, "today" pinned;
5. `check` of the same month, now read from the lake;
6. the night of the last day (`sync --date`), --rounds times on a copy of the database as it
   was before the archive and as many on one of it after, alternating (before, after, then
   after, before, …): the same file into the same state, archived months aside. Each copy
   is a `CREATE DATABASE … TEMPLATE`, dropped after its night; each night starts with
   PostgreSQL restarted and the kernel's page cache dropped when this runs as root (else on
   a quiet server only), as benchmarks/refresh.py does.
Steps 1 to 5 start on a quiet server (no autovacuum worker, after a CHECKPOINT).

    .venv/bin/python benchmarks/archive.py --rows-per-day 20000 --days 120
    .venv/bin/python benchmarks/archive.py --rows-per-day 2000 --days 70 --rounds 1   # a look
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from refresh import (  # noqa: E402
    can_drop_caches,
    cold_start,
    database_url,
    drop_database,
    quiet,
    stop_server,
)

from tchap_stats.config import Settings  # noqa: E402
from tchap_stats.database import start_embedded  # noqa: E402
from tchap_stats.dates import month_bounds, yesterday  # noqa: E402
from tchap_stats.dates import today as local_today  # noqa: E402
from tchap_stats.lake import add_months, first_open_month  # noqa: E402
from tests.faultkit import table_fingerprints  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
BIN = Path(sys.executable).parent


def files(rows: int, first: date, last: date) -> Path:
    cache = ROOT / ".tchap-stats" / "bench" / f"archive-{rows}"
    wanted = cache / f"user_daily_visits_{last}.csv"
    if not (wanted.exists() and (cache / f"user_daily_visits_{first}.csv").exists()):
        cache.mkdir(parents=True, exist_ok=True)
        print(f"generating {first}..{last} at {rows:,} rows a day …", flush=True)
        subprocess.run([str(BIN / "tchap-stats"), "generate", "--from", str(first), "--to",
                        str(last), "--rows-per-day", str(rows), "--out", str(cache),
                        "--only", "user_daily_visits"], check=True, stdout=subprocess.DEVNULL)
    return cache


def tchap_stats(env: dict[str, str], cwd: Path, *args: str, ok: tuple[int, ...] = (0,)
                ) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run([str(BIN / "tchap-stats"), *args], env=env, cwd=cwd,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode not in ok:
        sys.exit(f"tchap-stats {' '.join(args)} failed ({done.returncode}):\n"
                 f"{done.stdout}\n{done.stderr}")
    return seconds, done.stdout + done.stderr


def copy_out(url: str, partition: str) -> tuple[int, float]:
    """A plain COPY … TO of a partition, read and discarded: (bytes, seconds)."""
    size = 0
    started = time.perf_counter()
    with psycopg.connect(url) as conn, conn.cursor().copy(sql.SQL(
            "COPY (SELECT * FROM {}) TO STDOUT").format(
                sql.Identifier("public", partition))) as copy:
        for block in copy:
            size += len(block)
    return size, time.perf_counter() - started


def copy_database(admin: str, source: str, name: str) -> str:
    """A copy of database `source` (no session on it), as `name`. Returns its URL."""
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
            sql.Identifier(name), sql.Identifier(source)))
    return database_url(admin, name)


def night_on_a_copy(admin: str, pgdata: Path, source: str, env: dict[str, str], cwd: Path,
                    night: date) -> float:
    """`sync --date night` on a fresh copy of database `source`, from a cold start when
    this runs as root; its seconds."""
    url = copy_database(admin, source, "night")
    if can_drop_caches():
        cold_start(pgdata)
    quiet(url)
    seconds, _ = tchap_stats({**env, "DATABASE_URL": url}, cwd, "sync", "--date", str(night),
                             "--only", "user_daily_visits")
    drop_database(admin, "night")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows-per-day", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--rounds", type=int, default=3,
                        help="nights measured before the archive, and as many after")
    parser.add_argument("--duckdb-memory", metavar="SIZE",
                        help="TCHAP_STATS_DUCKDB_MEMORY of the archive and the second check "
                             "(default: the setting's own, 128MB)")
    args = parser.parse_args()
    settings = Settings.from_env()
    last = yesterday(settings.timezone)
    first = last - timedelta(days=args.days - 1)
    source = files(args.rows_per_day, first, last)
    work = Path(tempfile.mkdtemp(prefix="archive-bench-"))
    admin = start_embedded(work / "pgdata")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("CREATE DATABASE history")
    url = database_url(admin, "history")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TCHAP_STATS_", "S3_"))}
    env.update(DATABASE_URL=url, TCHAP_STATS_SOURCE=str(source),
               TCHAP_STATS_LAKE_PATH=str(work / "lake"))
    tchap_stats(env, work, "migrate")
    print(f"backfill {first}..{last - timedelta(days=1)} …", flush=True)
    seconds, _ = tchap_stats(env, work, "backfill", "--from", str(first), "--to",
                             str(last - timedelta(days=1)), "--only",
                             "user_daily_visits", "--jobs", "2")
    print(f"    {seconds:.0f} s", flush=True)
    quiet(url)
    today = local_today(settings.timezone)
    before_month = first_open_month(settings, today)
    oldest_whole = add_months(before_month, -1)  # the last month archived, whole
    check_range = ("--from", str(oldest_whole), "--to",
                   str(month_bounds(oldest_whole)[1] - timedelta(days=1)))
    results: dict[str, object] = {"rows_per_day": args.rows_per_day, "days": args.days,
                                  "duckdb_memory": args.duckdb_memory,
                                  "archive_before": f"{before_month:%Y-%m}"}

    quiet(url)
    check_pg, output = tchap_stats(env, work, "check", *check_range)
    assert "summaries match" in output, output
    print(f"    check {oldest_whole:%Y-%m} in PostgreSQL: {check_pg:.1f} s", flush=True)

    months = []
    with psycopg.connect(url) as conn:
        for (name,) in conn.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'public.user_daily_visits'::regclass ORDER BY 1"):
            month = date(int(name[-7:-3]), int(name[-2:]), 1)
            if month < before_month:
                months.append((month, name))
    copies = {}
    for month, name in months:
        size, seconds = copy_out(url, name)
        copies[f"{month:%Y-%m}"] = {"copy_to_s": seconds, "copy_to_bytes": size}
        print(f"    COPY {name} TO STDOUT: {seconds:.2f} s, {size:,} bytes", flush=True)
    before = table_fingerprints(url, today)
    copy_database(admin, "history", "before_archive")
    quiet(url)
    lake_env = {**env, **({"TCHAP_STATS_DUCKDB_MEMORY": args.duckdb_memory}
                          if args.duckdb_memory else {})}
    archive_s, output = tchap_stats(lake_env, work, "-v", "archive", "--before",
                                    f"{before_month:%Y-%m}")
    after = table_fingerprints(url, today)
    print(output, flush=True)
    per_month = []
    with psycopg.connect(url) as conn:
        recorded = conn.execute(
            "SELECT to_char(month, 'YYYY-MM'), rows, seconds, partition_bytes, lake_bytes "
            "FROM tchap_stats.archived_months ORDER BY month").fetchall()
    for month, rows, seconds, pg_bytes, parquet in recorded:
        copy = copies[month]
        per_month.append({
            "month": month, "rows": rows, "archive_s": seconds,
            "archive_rows_per_s": rows / seconds,
            "copy_to_rows_per_s": rows / copy["copy_to_s"], **copy,
            "partition_bytes": pg_bytes, "parquet_bytes": parquet,
            "partition_bytes_per_row": pg_bytes / rows, "parquet_bytes_per_row": parquet / rows,
            "parquet_share": parquet / pg_bytes,
        })
    results.update(archive_command_s=archive_s, months=per_month)
    changed = sorted(k for k in before if before[k] != after.get(k))
    results["relations_compared"] = len(before)
    results["relations_changed"] = changed
    print(f"    fingerprints: {len(before)} relations, changed: {changed}", flush=True)

    check_lake, output = tchap_stats(lake_env, work, "check", *check_range)
    assert "summaries match" in output, output
    print(f"    check {oldest_whole:%Y-%m} from the lake: {check_lake:.1f} s", flush=True)
    results.update(check_postgresql_s=check_pg, check_lake_s=check_lake)
    nights: dict[str, list[float]] = {"before": [], "after": []}
    sources = {"before": "before_archive", "after": "history"}
    for round_ in range(args.rounds):  # before, after; then after, before; …
        for state in ("before", "after") if round_ % 2 == 0 else ("after", "before"):
            nights[state].append(night_on_a_copy(admin, work / "pgdata", sources[state], env,
                                                 work, last))
            print(f"    night {last} on a copy {state} the archive: "
                  f"{nights[state][-1]:.2f} s", flush=True)
    drop_database(admin, "before_archive")
    results.update(nights_before_s=nights["before"], nights_after_s=nights["after"],
                   cold_nights=can_drop_caches())
    print(f"    nights, median: before {statistics.median(nights['before']):.2f} s, "
          f"after {statistics.median(nights['after']):.2f} s", flush=True)
    _, status = tchap_stats(env, work, "status", "--limit", "1")
    print(status)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "archive.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    stop_server(work / "pgdata")
    shutil.rmtree(work, ignore_errors=True)  # its databases and lake (a few GB at 100,000)


if __name__ == "__main__":
    main()
