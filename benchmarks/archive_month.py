"""One month at the issue's size, archived step by step against a plain `COPY … TO`.

Issue 17 asks that archiving be at least as fast as a plain `COPY … TO` of the same
month. This splits `archive` of one month into its steps and measures each beside the
copy, in one run, on one embedded PostgreSQL (pgserver) under a temporary directory, the
lake a local directory:

  copy to nothing      COPY (SELECT * FROM partition) TO STDOUT, read and discarded by
                       psycopg: the floor of anything reading the month out;
  copy to a file       the same COPY written to a local CSV file: the plain export;
  DuckDB to Parquet    DuckDB's postgres extension reading the partition into one Parquet
                       file (no lake, no catalog): the move's own floor;
  write to the lake    Lake.write_month: the same into the DuckLake (partitioned by month,
                       its catalog in PostgreSQL), what `archive` runs;
  checksum, PostgreSQL postgres_sums: count and md5 sum of the partition's rows;
  checksum, lake       Lake.sums: the same of the lake's rows (read back from Parquet);
  archive              lake.archive_month: all of it, then the record and the detach and
                       drop of the partition;
  restore              lake.restore, which puts the month back for the next round.

Each step but the first two and restore runs on a DuckDB connection opened before it (its
setup, about 0.3 s, is not counted). Each round measures them all in this order;
--rounds rounds (the fastest counts: these machines are noisy), at each DuckDB memory cap
of --memory (TCHAP_STATS_DUCKDB_MEMORY).
The month (--rows-per-day rows for each day of --month) is generated inside PostgreSQL
(benchmarks/sql/history.sql, the `stable` shape of benchmarks/refresh.py). Writes
benchmarks/results/archive_month.json.

    .venv/bin/python benchmarks/archive_month.py                         # 3.1 M rows, ~6 min
    .venv/bin/python benchmarks/archive_month.py --rows-per-day 10000 --rounds 1   # a look
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from refresh import Population, generated_rows, quiet, stop_server  # noqa: E402

from tchap_stats import lake  # noqa: E402
from tchap_stats.config import Settings  # noqa: E402
from tchap_stats.database import start_embedded  # noqa: E402
from tchap_stats.dates import days_between, month_bounds  # noqa: E402
from tchap_stats.exports import USER_DAILY_VISITS  # noqa: E402
from tchap_stats.load import ensure_partitions, partition_name  # noqa: E402
from tchap_stats.schema import migrate  # noqa: E402
from tchap_stats.sqltext import identifier, literal  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def generate_month(url: str, month: date, rows_per_day: int) -> int:
    """The month's rows in the raw table, then VACUUM ANALYZE. Returns the rows."""
    days = days_between(month, month_bounds(month)[1] - timedelta(days=1))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute((ROOT / "benchmarks" / "sql" / "history.sql").read_text())
        migrate(conn)
        ensure_partitions(conn, USER_DAILY_VISITS, days)
        conn.execute(sql.SQL(
            "INSERT INTO public.user_daily_visits (user_id, device_id, visit_ts, user_agent, "
            "instance, domain, platform, device_type, visit_date) {}").format(
                generated_rows(Population(rows_per_day), days[0], days[-1])))
        conn.execute("VACUUM ANALYZE public.user_daily_visits")
        return conn.execute("SELECT count(*) FROM public.user_daily_visits").fetchone()[0]


def copy_out(url: str, table: sql.Composable, to: Path | None) -> None:
    with psycopg.connect(url) as conn, conn.cursor().copy(
            sql.SQL("COPY (SELECT * FROM {}) TO STDOUT").format(table)) as copy:
        if to is None:
            for _ in copy:
                pass
        else:
            with to.open("wb") as f:
                for block in copy:
                    f.write(block)


def duckdb_to_parquet(only_postgres: lake.Lake, partition: str, to: Path) -> None:
    only_postgres.con.execute(
        f"COPY (SELECT * FROM {lake.POSTGRES}.public.{identifier(partition)}) "
        f"TO {literal(str(to))} (FORMAT parquet)")


def timed(step: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = step()
    return time.perf_counter() - started, result


def one_round(url: str, settings: Settings, month: date, work: Path) -> dict[str, float]:
    export = USER_DAILY_VISITS
    partition = partition_name(export, month)
    table = sql.Identifier("public", partition)
    seconds: dict[str, float] = {}

    def measure(name: str, step: Callable[[], object]) -> object:
        quiet(url)
        seconds[name], result = timed(step)
        print(f"    {name}: {seconds[name]:.2f} s", flush=True)
        return result

    measure("copy to nothing", lambda: copy_out(url, table, None))
    measure("copy to a file", lambda: copy_out(url, table, work / "month.csv"))
    (work / "month.csv").unlink()
    with lake.Lake(settings, url, postgres=True, lake=False) as only_postgres:
        measure("DuckDB to Parquet", lambda: duckdb_to_parquet(only_postgres, partition,
                                                                work / "month.parquet"))
    (work / "month.parquet").unlink()
    with psycopg.connect(url, autocommit=True) as conn, \
            lake.Lake(settings, url, postgres=True) as the_lake:
        the_lake.ensure_table(export)
        measure("write to the lake", lambda: the_lake.write_month(export, month))
        pg = measure("checksum, PostgreSQL", lambda: lake.postgres_sums(conn, export, month))
        in_lake = measure("checksum, lake", lambda: the_lake.sums(export, month))
        assert pg == in_lake, (pg, in_lake)
        the_lake.delete_months(export, [month])
        the_lake.forget_deleted_files()
        part = next(p for p in lake.partitions(conn, export) if p.month == month)
        record = measure("archive", lambda: lake.archive_month(conn, the_lake, export, part))
        assert record is not None and record.rows == pg.rows
        seconds["partition_bytes"] = record.partition_bytes
        seconds["parquet_bytes"] = record.lake_bytes
    with psycopg.connect(url, autocommit=True) as conn:
        measure("restore", lambda: lake.restore(conn, settings, url, month, lambda _: None))
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows-per-day", type=int, default=100_000)
    parser.add_argument("--month", type=date.fromisoformat, default=date(2025, 1, 1),
                        help="the month's first day (default 2025-01-01)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--memory", default="128MB,512MB",
                        help="DuckDB memory caps to measure, comma-separated")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="archive-month-"))
    try:
        url = start_embedded(work / "pgdata")
        started = time.perf_counter()
        rows = generate_month(url, args.month, args.rows_per_day)
        print(f"{rows:,} rows in {args.month:%Y-%m} ({time.perf_counter() - started:.0f} s)",
              flush=True)
        results: dict[str, object] = {"rows": rows, "month": f"{args.month:%Y-%m}",
                                      "cores": os.cpu_count(), "by_memory": {}}
        for memory in args.memory.split(","):
            os.environ.update(TCHAP_STATS_DUCKDB_MEMORY=memory,
                              TCHAP_STATS_LAKE_PATH=f"{work / 'lake'}/",
                              TCHAP_STATS_SPILL_DIR=str(work / "spill"))
            settings = Settings.from_env()
            rounds = []
            for n in range(args.rounds):
                print(f"  DuckDB memory {memory}, round {n + 1}:", flush=True)
                rounds.append(one_round(url, settings, args.month, work))
            fastest = {k: min(r[k] for r in rounds) for k in rounds[0]}
            results["by_memory"][memory] = {"rounds": rounds, "fastest": fastest}
        print_table(rows, results["by_memory"])
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "archive_month.json").write_text(json.dumps(results, indent=2) + "\n")
        print(f"written {RESULTS / 'archive_month.json'}")
    finally:
        stop_server(work / "pgdata")
        shutil.rmtree(work, ignore_errors=True)


def print_table(rows: int, by_memory: dict[str, dict]) -> None:
    print()
    memories = list(by_memory)
    print(f"{'step (fastest round)':<24}" + "".join(f"{m:>22}" for m in memories))
    steps = [k for k in by_memory[memories[0]]["fastest"] if not k.endswith("_bytes")]
    for step in steps:
        cells = []
        for m in memories:
            s = by_memory[m]["fastest"][step]
            copy = by_memory[m]["fastest"]["copy to nothing"]
            cells.append(f"{s:6.2f} s {rows / s / 1000:5.0f}k/s {copy / s:4.2f}×")
        print(f"{step:<24}" + "".join(f"{c:>22}" for c in cells))
    f = by_memory[memories[0]]["fastest"]
    print(f"(×: the copy to nothing's seconds over the step's; Parquet "
          f"{f['parquet_bytes'] / f['partition_bytes']:.1%} of the partition with its "
          f"indexes, {f['partition_bytes'] / rows:.0f} → {f['parquet_bytes'] / rows:.1f} "
          "bytes a row)")


if __name__ == "__main__":
    main()
