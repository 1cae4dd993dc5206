"""Floors under benchmarks/load.py's (b): what no design of the loader can skip.

For the same generated day (default 1,000,000 rows), in one run:
  - DuckDB reading the file through the moto S3 server with no typing at all
    (SELECT count(*) FROM read_csv), with 16 MiB and 32 MiB reads, and from the local file;
  - PostgreSQL ingesting the main day's deduplicated, classified rows (9 columns, as the
    loader streams them) into an empty month partition, from a file, in the COPY text
    format the loader streams and in the binary format (no DuckDB running meanwhile);
  - (a), the ceiling of benchmarks/load.py.
Deduplication needs the whole file before any row is written, and a load is one
transaction on one connection: the best read plus the text ingest is a floor for (b).

    .venv/bin/python benchmarks/load_floors.py --rows 1000000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import date
from pathlib import Path

# Siblings in benchmarks/, on sys.path when this script runs; load.py gives ceiling(),
# cached_day() and DAY.
import legacy
import load as bench_load
import moto_s3
import psycopg
from psycopg import sql

from tchap_stats.config import Settings
from tchap_stats.database import start_embedded
from tchap_stats.exports import USER_DAILY_VISITS
from tchap_stats.load import ensure_partitions, partition_name
from tchap_stats.schema import migrate
from tchap_stats.source import LocalSource, S3Source, s3_client
from tchap_stats.staging import Stager, literal

COLUMNS = "{" + ", ".join(f"'{c}': 'VARCHAR'" for c in USER_DAILY_VISITS.header) + "}"


def best(runs: int, measure) -> float:
    return min(measure() for _ in range(runs))


def read_seconds(stager: Stager, url: str, buffer_mib: int) -> float:
    started = time.perf_counter()
    stager.con.execute(
        f"SELECT count(*) FROM read_csv({literal(url)}, header = true, auto_detect = false, "
        f"delim = ',', quote = '\"', escape = '\"', strict_mode = true, "
        f"buffer_size = {buffer_mib * 2**20}, columns = {COLUMNS})").fetchone()
    return time.perf_counter() - started


def ingest_seconds(url: str, table: str, path: Path, fmt: str) -> float:
    columns = sql.SQL(", ").join(map(sql.Identifier, USER_DAILY_VISITS.table_columns))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(table)))
        conn.execute("CHECKPOINT")
        started = time.perf_counter()
        with conn.transaction():
            statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT {})").format(
                sql.Identifier(table), columns, sql.SQL(fmt))
            legacy.copy_file(conn.cursor(), statement, path)
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    path = bench_load.cached_day(args.rows)
    day: date = bench_load.DAY
    with tempfile.TemporaryDirectory(prefix="tchap-floors-") as tmp:
        work = Path(tmp)
        url = start_embedded(work / "pgdata")
        moto, s3, _ = moto_s3.start_bucket("bench")
        s3_client(s3).upload_file(str(path), "bench", path.name)
        stager = Stager(Settings(database_url=url, s3=s3, source="s3://bench",
                                 spill_dir=work / "spill"))
        s3_source = S3Source(s3, "bench", "")
        s3_file = s3_source.find(path.name)
        assert s3_file is not None
        stager.prepare(s3_source)
        figures: dict[str, float] = {}
        for mib in (16, 32):
            figures[f"read through moto, {mib} MiB reads"] = best(
                args.repeat, lambda mib=mib: read_seconds(stager, s3_file.url, mib))
        figures["read from the local file"] = best(
            args.repeat, lambda: read_seconds(stager, str(path), 16))
        moto.stop()

        local = LocalSource(str(path.parent))
        local_file = local.find(path.name)
        assert local_file is not None
        staged = stager.stage(USER_DAILY_VISITS, local, local_file)
        rows_text = work / "rows.txt"
        with rows_text.open("wb") as out:
            for chunk in stager.stream_day(staged, day):
                out.write(chunk)
        stager.close()

        table = partition_name(USER_DAILY_VISITS, day)
        with psycopg.connect(url, autocommit=True) as conn:
            migrate(conn)
            ensure_partitions(conn, USER_DAILY_VISITS, [day])
        figures["PostgreSQL ingest, text"] = best(
            args.repeat, lambda: ingest_seconds(url, table, rows_text, "text"))
        rows_binary = work / "rows.bin"
        with psycopg.connect(url, autocommit=True) as conn, rows_binary.open("wb") as out:
            query = sql.SQL("COPY {} TO STDOUT (FORMAT binary)").format(sql.Identifier(table))
            with conn.cursor().copy(query) as copy:
                for chunk in copy:
                    out.write(chunk)
        figures["PostgreSQL ingest, binary"] = best(
            args.repeat, lambda: ingest_seconds(url, table, rows_binary, "binary"))
        figures["(a) ceiling"] = best(args.repeat, lambda: bench_load.ceiling(url, path))

    print(f"\n{staged.days[day]:,} rows of {day} (of {staged.rows_read:,} lines), "
          f"best of {args.repeat}:")
    for name, seconds in figures.items():
        print(f"  {name:<40}{seconds:>8.2f} s")
    read = min(figures["read through moto, 16 MiB reads"],
               figures["read through moto, 32 MiB reads"])
    floor = read + figures["PostgreSQL ingest, text"]
    ceiling = figures["(a) ceiling"]
    print(f"\nfloor of (b) before process start, typing, deduplication, classification: "
          f"{floor:.2f} s, so (b)/(a) ≤ {ceiling / floor:.2f} (target 0.6 needs "
          f"{ceiling / 0.6:.2f} s)")


if __name__ == "__main__":
    main()
