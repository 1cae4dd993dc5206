"""Loading one day of user_daily_visits: tchap-stats against the ceiling and the legacy path.

Generates one day of N rows (default 1,000,000), then, in the same run and on the same
embedded PostgreSQL:
  (a) ceiling: plain COPY of that CSV into a logged, unindexed table;
  (b) tchap-stats: `tchap-stats backfill` of that day from S3 (a moto server on loopback)
      into the partitioned table, as a separate process whose peak RSS is measured;
      (b') the same from a local folder, (b0) the same without pre-aggregating active_daily;
  (c) legacy (DESIGN §8): COPY into a temp table, INSERT … ON CONFLICT DO NOTHING into the
      unpartitioned indexed table, classification UPDATEs in batches of 10,000 rows.
Prints rows/s and ratios, and writes benchmarks/results/load.json.

    python3 run.py bench            # or: .venv/bin/python benchmarks/load.py --rows 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import legacy  # noqa: E402
import moto_s3  # noqa: E402

from tchap_stats.database import start_embedded  # noqa: E402
from tchap_stats.exports import EXPORTS  # noqa: E402
from tchap_stats.schema import migrate  # noqa: E402
from tchap_stats.source import s3_client  # noqa: E402
from tchap_stats.synthetic.generate import Generator, Options  # noqa: E402

DAY = date(2024, 11, 14)
CSV_OPTIONS = legacy.CSV_OPTIONS
CSV_COLUMNS = legacy.CSV_COLUMNS
copy_file = legacy.copy_file


def checkpoint(url: str) -> None:
    """Each measurement starts with no dirty WAL or buffers left by the previous one."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")


def ceiling(url: str, path: Path) -> float:
    checkpoint(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS ceiling; CREATE TABLE ceiling ({CSV_COLUMNS})")
        started = time.perf_counter()
        with conn.transaction():
            copy_file(conn.cursor(), f"COPY ceiling FROM STDIN ({CSV_OPTIONS})", path)
        return time.perf_counter() - started


def reset_loader_tables(url: str) -> None:
    """An empty database for each run of (b): the day is new, as in the nightly case."""
    with psycopg.connect(url, autocommit=True) as conn:
        for table in sorted({export.table for export in EXPORTS.values()}):
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(
                sql.Identifier(table)))
        conn.execute("DROP SCHEMA IF EXISTS tchap_stats CASCADE")
        migrate(conn)


def summaries_refresh(url: str) -> float:
    started = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / "tchap-stats"), "refresh"], check=True,
                   env={**os.environ, "DATABASE_URL": url}, capture_output=True)
    return time.perf_counter() - started


def legacy_load(url: str, path: Path) -> dict[str, float]:
    with psycopg.connect(url, autocommit=True) as conn:
        legacy.create(conn)
        conn.execute("CHECKPOINT")
        started = time.perf_counter()
        steps = legacy.load_day(conn, path)
        steps["total"] = time.perf_counter() - started
        return steps


def tchap_stats_load(url: str, s3_endpoint: str, source: str, workdir: Path,
                     preaggregate: bool = True) -> tuple[float, int]:
    env = {**os.environ, "DATABASE_URL": url, "S3_ENDPOINT": s3_endpoint,
           "S3_URL_STYLE": "path", "S3_ACCESS_KEY_ID": "bench", "S3_SECRET_ACCESS_KEY": "bench",
           "S3_REGION": "us-east-1", "TCHAP_STATS_SPILL_DIR": str(workdir / "spill"),
           "TCHAP_STATS_PREAGGREGATE": "true" if preaggregate else "false"}
    checkpoint(url)
    # ru_maxrss survives fork+exec (this process holds the moto server and the file), so
    # the loader reports its own high-water mark (VmHWM) when it exits.
    wrapper = ("import atexit, sys\n"
               "def hwm():\n"
               "    for line in open('/proc/self/status'):\n"
               "        if line.startswith('VmHWM:'):\n"
               "            print('VMHWM_KIB', line.split()[1], file=sys.stderr)\n"
               "atexit.register(hwm)\n"
               "from tchap_stats.cli import main\n"
               "sys.argv[0] = 'tchap-stats'\n"
               "main()\n")
    # Loading only: the summaries of the changed days are measured apart (refresh below).
    command = [sys.executable, "-c", wrapper, "-v", "--source", source,
               "backfill", "--from", DAY.isoformat(), "--to", DAY.isoformat(), "--no-refresh",
               "--only", "user_daily_visits"]
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"tchap-stats failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    print("   ", result.stdout.strip().splitlines()[0])
    for line in result.stderr.splitlines():
        if "DEBUG" in line and DAY.isoformat() in line:
            print("   ", line.split("DEBUG ", 1)[1])
    peak_kib = int(result.stderr.rsplit("VMHWM_KIB", 1)[1].split()[0])
    return elapsed, peak_kib // 1024


def cached_day(rows: int) -> Path:
    """The generated day, kept under .tchap-stats/bench/ (deterministic, slow to make)."""
    path = ROOT / ".tchap-stats" / "bench" / f"{rows}" / f"user_daily_visits_{DAY}.csv"
    if not path.exists():
        print(f"generating one day of ~{rows:,} rows (cached for next runs) …", flush=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        Generator(Options(rows_per_day=rows, seed=2024)).write(DAY, partial)
        partial.rename(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2,
                        help="runs of (a) and (b); the fastest counts (the machines are noisy)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="tchap-bench-") as tmp:
        workdir = Path(tmp)
        path = cached_day(args.rows)
        lines = sum(1 for _ in path.open("rb")) - 1  # records: every line but the header
        print(f"    {lines:,} lines, {path.stat().st_size / 2**20:.0f} MiB")

        url = start_embedded(workdir / "pgdata")
        with psycopg.connect(url, autocommit=True) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]

        moto, s3, endpoint = moto_s3.start_bucket("bench")
        s3_client(s3).upload_file(str(path), "bench", path.name)

        a_runs, b_runs, local_runs, plain_runs = [], [], [], []
        for _ in range(args.repeat):
            print("(a) ceiling: COPY into a logged, unindexed table …", flush=True)
            a_runs.append(ceiling(url, path))
            # The same from the file's folder: what reading through moto costs.
            print("(b') tchap-stats backfill from a local folder …", flush=True)
            reset_loader_tables(url)
            local_runs.append(tchap_stats_load(url, endpoint, str(path.parent), workdir)[0])
            # Loading alone: by default the loader also aggregates active_daily of the days
            # it finds empty, work the refresh then skips (docs/design.md, "DuckDB
            # pre-aggregation").
            print("(b0) the same from S3, without pre-aggregating active_daily …", flush=True)
            reset_loader_tables(url)
            plain_runs.append(tchap_stats_load(url, endpoint, "s3://bench", workdir,
                                               preaggregate=False)[0])
            # Last, so that the refresh below finds (b)'s database.
            print("(b) tchap-stats backfill from S3 into the partitioned table …", flush=True)
            reset_loader_tables(url)
            b_runs.append(tchap_stats_load(url, endpoint, "s3://bench", workdir))
        a = min(a_runs)
        b, rss_mib = min(b_runs)
        local = min(local_runs)
        plain = min(plain_runs)
        print("    then the summaries of the days it changed (tchap-stats refresh) …", flush=True)
        refresh_seconds = summaries_refresh(url)
        print("    and the same after (b0), without pre-aggregation …", flush=True)
        reset_loader_tables(url)
        tchap_stats_load(url, endpoint, "s3://bench", workdir, preaggregate=False)
        refresh_plain_seconds = summaries_refresh(url)
        print("(c) legacy: temp COPY + INSERT ON CONFLICT + batched UPDATEs …", flush=True)
        c = legacy_load(url, path)
        moto.stop()

    rate = {name: lines / seconds for name, seconds in (("a", a), ("b", b), ("c", c["total"]))}
    results = {
        "rows": lines, "postgresql": version, "cores": os.cpu_count(),
        "seconds": {"ceiling": a, "tchap_stats": b, "legacy": c,
                    "tchap_stats_local_folder": local,
                    "tchap_stats_without_preaggregation": plain,
                    "ceiling_runs": a_runs, "tchap_stats_runs": [t for t, _ in b_runs],
                    "tchap_stats_local_folder_runs": local_runs,
                    "tchap_stats_without_preaggregation_runs": plain_runs},
        "rows_per_second": {"ceiling": rate["a"], "tchap_stats": rate["b"], "legacy": rate["c"]},
        "ratio_tchap_stats_to_ceiling": rate["b"] / rate["a"],
        "ratio_tchap_stats_to_legacy": rate["b"] / rate["c"],
        "tchap_stats_peak_rss_mib": rss_mib,
        "summaries_refresh_seconds": refresh_seconds,
        "summaries_refresh_without_preaggregation_seconds": refresh_plain_seconds,
    }
    print()
    print(f"{'path':<44}{'seconds':>10}{'rows/s':>12}")
    print(f"{'(a) ceiling: COPY, logged, no index':<44}{a:>10.2f}{rate['a']:>12,.0f}")
    print(f"{'(b) tchap-stats from S3 (whole process)':<44}{b:>10.2f}{rate['b']:>12,.0f}")
    local_label = "(b') the same from a local folder"
    print(f"{local_label:<44}{local:>10.2f}{lines / local:>12,.0f}")
    plain_label = "(b0) from S3, no active_daily pre-aggregation"
    print(f"{plain_label:<44}{plain:>10.2f}{lines / plain:>12,.0f}")
    print(f"{'(c) legacy path of DESIGN §8':<44}{c['total']:>10.2f}{rate['c']:>12,.0f}")
    print("    legacy steps: " + ", ".join(f"{k} {v:.1f}s" for k, v in c.items() if k != "total"))
    print()
    print(f"(b)/(a) = {results['ratio_tchap_stats_to_ceiling']:.2f}   (target ≥ 0.6)"
          f"   (b')/(a) = {a / local:.2f}   (b0)/(a) = {a / plain:.2f}")
    print(f"(b)/(c) = {results['ratio_tchap_stats_to_legacy']:.1f}   (target ≥ 5)")
    print(f"tchap-stats peak RSS = {rss_mib} MiB   (target ≤ 400)")
    print(f"summaries of the {lines:,} rows' changed days (tchap-stats refresh): "
          f"{refresh_seconds:.1f} s after (b), {refresh_plain_seconds:.1f} s after (b0) "
          f"(not part of (b))")
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "load.json").write_text(json.dumps(results, indent=2))
    print(f"written {out / 'load.json'}")


if __name__ == "__main__":
    main()
