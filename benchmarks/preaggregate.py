"""Daily summaries of a new day: recomputed by PostgreSQL, or pre-aggregated by DuckDB?

When a day is new to the database (the nightly case), its rows of the two daily summaries
(tchap_stats.user_visits_daily and tchap_stats.active_daily) can be
  (PG)     recomputed by PostgreSQL from the freshly loaded partition, as
           tchap_stats.summaries.recompute does it (DELETE + INSERT … SELECT of
           tchap_stats/sql/summaries/{user_visits_daily,active_daily}.sql, work_mem 64MB, one
           transaction); or
  (DuckDB) aggregated by DuckDB from the staged, deduplicated, classified rows of the day
           (benchmarks/sql/preaggregate_*.sql over tchap_stats/sql/staging/loadable_rows.sql), and
           streamed into the same tables with COPY (text format) through a FIFO, as
           tchap_stats/load.py streams the raw rows: no row passes through Python.
Both paths start from the same state: the day loaded by the real pipeline (no summaries),
the summary tables empty, a CHECKPOINT. DuckDB is timed two ways: "split" (aggregate into a
DuckDB table, then COPY that table: shows each part) and "fused" (one COPY (aggregate) TO
the FIFO, the way the loader would do it). Staging is not timed: the nightly load stages the
file anyway. The runs alternate PG / DuckDB split / DuckDB fused, with autovacuum off on the
day's partition so that PG plans without statistics, as a refresh right after the load does
(PG's first run also sets the new rows' hint bits, as that refresh would); then the
partition is ANALYZEd (timed apart) and PG runs again. The best of N counts; the first run
is shown too. The rows written by each path are compared (EXCEPT ALL both ways). Prints a
table and updates benchmarks/results/preaggregate.json (keyed by rows).

    .venv/bin/python benchmarks/preaggregate.py --rows 100000
    .venv/bin/python benchmarks/preaggregate.py --rows 1000000
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import ModuleType

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent


def _bench_load() -> ModuleType:
    """benchmarks/load.py (a script, not a package): its cached_day() and DAY. Importing it
    also puts the project root on sys.path."""
    spec = importlib.util.spec_from_file_location("bench_load", ROOT / "benchmarks" / "load.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench_load = _bench_load()

from tchap_stats.config import SQL_DIR, S3Settings, Settings  # noqa: E402
from tchap_stats.database import connect, start_embedded  # noqa: E402
from tchap_stats.dates import month_bounds  # noqa: E402
from tchap_stats.exports import USER_DAILY_VISITS  # noqa: E402
from tchap_stats.load import copy_rows, partition_name  # noqa: E402
from tchap_stats.pipeline import RunOptions, run  # noqa: E402
from tchap_stats.schema import migrate  # noqa: E402
from tchap_stats.source import LocalSource  # noqa: E402
from tchap_stats.staging import StagedFile, Stager, _render, ident  # noqa: E402

BENCH_SQL = ROOT / "benchmarks" / "sql"
SUMMARIES_SQL = SQL_DIR / "summaries"
EXPORT = USER_DAILY_VISITS


@dataclass(frozen=True)
class Summary:
    """One daily summary: its table in schema tchap_stats, its PostgreSQL recompute
    (sql/summaries/{table}.sql, as tchap_stats.summaries renders it) and its DuckDB twin
    (benchmarks/sql/preaggregate_{table}.sql). Self-contained, so that this benchmark does
    not follow the refresh code's internal API."""

    table: str

    @property
    def identifier(self) -> sql.Identifier:
        return sql.Identifier("tchap_stats", self.table)

    def insert(self) -> sql.Composed:
        text = (SUMMARIES_SQL / f"{self.table}.sql").read_text()
        return sql.SQL(text).format(target=self.identifier)

    def delete(self) -> sql.Composed:
        return sql.SQL("DELETE FROM {} WHERE day = ANY(%(days)s::date[])").format(
            self.identifier)


DAILY = (Summary("user_visits_daily"), Summary("active_daily"))
# Target columns, in the order of the SELECTs of benchmarks/sql/preaggregate_*.sql.
COLUMNS: dict[str, tuple[str, ...]] = {
    "user_visits_daily": ("day", "user_id", "instance", "domain", "visits_count",
                          "web_visits_count", "mobile_visits_count", "other_visits_count"),
    "active_daily": ("day", "dimension", "value", "users", "devices"),
}
# The staged columns the summaries read; platform is derived while rows stream out.
SUMMARY_INPUTS = ("visit_date", "user_id", "instance", "domain", "platform")

Timings = dict[str, float]


@dataclass
class Runs:
    """The timings of each run of one path; the fastest run (by total) counts."""

    runs: list[Timings] = field(default_factory=list)

    @property
    def best(self) -> Timings:
        return min(self.runs, key=lambda t: t["total"])

    @property
    def first(self) -> Timings:
        return self.runs[0]


# --- PostgreSQL -----------------------------------------------------------------------------

def empty_summaries(url: str) -> None:
    """The two daily summary tables emptied, and no dirty buffers or WAL left over."""
    with connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("TRUNCATE {}").format(
            sql.SQL(", ").join(s.identifier for s in DAILY)))
        conn.execute("CHECKPOINT")


def pg_recompute(url: str, day: date) -> Timings:
    """The daily part of summaries.recompute for `day`: DELETE + INSERT … SELECT of each
    summary from the raw table, in one transaction (total includes the commit)."""
    # The parameters summaries.recompute passes (the daily files read only `days`).
    month = day.replace(day=1)
    params = {"days": [day], "months": [month], "first": month, "end": month_bounds(month)[1]}
    timings: Timings = {}
    with connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        with conn.transaction():
            conn.execute("SET LOCAL work_mem = '64MB'")
            for summary in DAILY:
                mark = time.perf_counter()
                conn.execute(summary.delete(), params)
                conn.execute(summary.insert(), params)
                timings[summary.table] = time.perf_counter() - mark
        timings["total"] = time.perf_counter() - started
    return timings


# --- DuckDB ---------------------------------------------------------------------------------

def loadable_rows_sql(staged: StagedFile) -> str:
    """sql/staging/loadable_rows.sql (rows of day $day, deduplicated, not rejected), with
    only the columns the summaries read, platform classified as when streaming out."""
    derived = {d.name: d.duckdb_sql for d in EXPORT.derived}
    late = {d.name for d in EXPORT.derived} - {EXPORT.partition_column}
    columns = ", ".join(f"{derived[c]} AS {ident(c)}" if c in late else ident(c)
                        for c in SUMMARY_INPUTS)
    return _render("loadable_rows.sql", checked=ident(staged.checked),
                   losers=ident(staged.losers), day_column=ident(EXPORT.partition_column),
                   table_columns=columns)


def aggregate_sql(summary: Summary, staged: StagedFile) -> str:
    text = (BENCH_SQL / f"preaggregate_{summary.table}.sql").read_text()
    return text.format(loadable_rows=loadable_rows_sql(staged))


def copy_into(conn: psycopg.Connection, stager: Stager, summary: Summary, query: str,
              params: dict[str, object]) -> None:
    """Stream `query`'s rows into the summary's table, as DayWriter._copy_day does."""
    copy_rows(conn, summary.identifier, COLUMNS[summary.table],
              stager.stream_rows(query, params))


def duckdb_split(url: str, stager: Stager, staged: StagedFile, day: date) -> Timings:
    """Per summary: aggregate into a DuckDB table (timed), then COPY it (timed)."""
    timings: Timings = {}
    con = stager.con
    with connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        with conn.transaction():
            for summary in DAILY:
                table = ident(f"preaggregate_{summary.table}")
                mark = time.perf_counter()
                con.execute(f"CREATE OR REPLACE TABLE {table} AS "
                            f"{aggregate_sql(summary, staged)}", {"day": day})
                aggregated = time.perf_counter()
                copy_into(conn, stager, summary, f"SELECT * FROM {table}", {})
                copied = time.perf_counter()
                con.execute(f"DROP TABLE {table}")
                timings[f"{summary.table}.aggregate"] = aggregated - mark
                timings[f"{summary.table}.copy"] = copied - aggregated
                timings[summary.table] = copied - mark
        timings["total"] = time.perf_counter() - started
    return timings


def duckdb_fused(url: str, stager: Stager, staged: StagedFile, day: date) -> Timings:
    """Per summary: one COPY (aggregate) TO the FIFO, streamed into PostgreSQL."""
    timings: Timings = {}
    with connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        with conn.transaction():
            for summary in DAILY:
                mark = time.perf_counter()
                copy_into(conn, stager, summary, aggregate_sql(summary, staged), {"day": day})
                timings[summary.table] = time.perf_counter() - mark
        timings["total"] = time.perf_counter() - started
    return timings


# --- Comparison -----------------------------------------------------------------------------

def snapshot(url: str, prefix: str) -> None:
    """Copy the summary tables' contents to public.{prefix}_{table}."""
    with connect(url, autocommit=True) as conn:
        for summary in DAILY:
            copy = sql.Identifier(f"{prefix}_{summary.table}")
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(copy))
            conn.execute(sql.SQL("CREATE TABLE {} AS SELECT * FROM {}").format(
                copy, summary.identifier))


def differences(url: str, left: str, right: str | None) -> dict[str, dict[str, int]]:
    """Rows per table, and rows of each side missing from the other (EXCEPT ALL), between
    snapshots `left` and `right` (None: the summary tables themselves)."""
    found: dict[str, dict[str, int]] = {}
    with connect(url, autocommit=True) as conn:
        for summary in DAILY:
            a = sql.Identifier(f"{left}_{summary.table}")
            b = sql.Identifier(f"{right}_{summary.table}") if right else summary.identifier

            def count(query: str, x: sql.Identifier = a, y: sql.Identifier = b) -> int:
                return conn.execute(sql.SQL(query).format(x=x, y=y)).fetchone()[0]

            found[summary.table] = {
                "rows_left": count("SELECT count(*) FROM {x}"),
                "rows_right": count("SELECT count(*) FROM {y}"),
                "only_left": count("SELECT count(*) FROM "
                                   "(SELECT * FROM {x} EXCEPT ALL SELECT * FROM {y}) AS d"),
                "only_right": count("SELECT count(*) FROM "
                                    "(SELECT * FROM {y} EXCEPT ALL SELECT * FROM {x}) AS d"),
            }
    return found


def identical(found: dict[str, dict[str, int]]) -> bool:
    return all(d["rows_left"] == d["rows_right"] > 0 and d["only_left"] == d["only_right"] == 0
               for d in found.values())


# --- Run ------------------------------------------------------------------------------------

def load_day(settings: Settings, url: str, folder: Path, day: date) -> list[date]:
    """The real loader, without summaries. Returns the days it changed."""
    report = run(settings, url, LocalSource(folder), [EXPORT], [day],
                 RunOptions(refresh_summaries=False))
    outcome = report.outcomes[0]
    if outcome.status != "loaded":
        raise SystemExit(f"load failed: {outcome.summary()}")
    print("   ", outcome.summary())
    return outcome.days_changed


def freeze_statistics(url: str, partition: str) -> dict[str, object]:
    """No autovacuum on the day's partition: its statistics stay as the load left them
    (none) until the benchmark ANALYZEs it itself. Returns what the server had done."""
    with connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER TABLE {} SET (autovacuum_enabled = false)").format(
            sql.Identifier(partition)))
        row = conn.execute("SELECT last_autoanalyze, last_analyze FROM pg_stat_user_tables "
                           "WHERE relname = %s", (partition,)).fetchone()
    return {"last_autoanalyze": row[0], "last_analyze": row[1]}


def analyze(url: str, partition: str) -> float:
    with connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(partition)))
        return time.perf_counter() - started


def measure(label: str, runs: Runs, url: str, step: Callable[[], Timings]) -> None:
    empty_summaries(url)
    timings = step()
    runs.runs.append(timings)
    print(f"    {label:<16}" + "  ".join(f"{k} {v:.3f}" for k, v in timings.items()),
          flush=True)


def print_table(rows: int, paths: dict[str, Runs], analyze_seconds: float) -> None:
    uvd, act = (s.table for s in DAILY)
    pg, pga = paths["pg_no_statistics"], paths["pg_analyzed"]
    split, fused = paths["duckdb_split"], paths["duckdb_fused"]
    s = split.best

    def line(label: str, runs: Runs) -> str:
        b = runs.best
        return (f"{label:<38}{b[uvd]:>18.3f}{b[act]:>13.3f}{b['total']:>9.3f}"
                f"{runs.first['total']:>11.3f}")

    print()
    print(f"{rows:,} rows of the day · seconds, best of {len(pg.runs)} (and first run)")
    print(f"{'path':<38}{uvd:>18}{act:>13}{'total':>9}{'first run':>11}")
    print(line("PG recompute, no statistics (as loaded)", pg))
    print(line(f"PG recompute after ANALYZE ({analyze_seconds:.2f} s)", pga))
    print(f"{'DuckDB split: aggregate':<38}{s[uvd + '.aggregate']:>18.3f}"
          f"{s[act + '.aggregate']:>13.3f}")
    print(f"{'              COPY':<38}{s[uvd + '.copy']:>18.3f}{s[act + '.copy']:>13.3f}")
    print(line("              aggregate + COPY", split))
    print(line("DuckDB fused: COPY (aggregate) TO FIFO", fused))
    for name, runs in (("no statistics", pg), ("after ANALYZE", pga)):
        print(f"ratio PG ({name}) / DuckDB: "
              f"split {runs.best['total'] / split.best['total']:.2f}×, "
              f"fused {runs.best['total'] / fused.best['total']:.2f}×")


def compare(url: str, snapshots: list[str]) -> dict[str, dict[str, dict[str, int]]]:
    """The first snapshot against each other one, and against the tables themselves."""
    first, *others = snapshots
    found = {f"{first}_vs_{other}": differences(url, first, other) for other in others}
    found[f"{first}_vs_last_written"] = differences(url, first, None)
    return found


def write_results(rows: int, result: dict[str, object]) -> Path:
    out = ROOT / "benchmarks" / "results" / "preaggregate.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(out.read_text()) if out.exists() else {}
    results[str(rows)] = result
    out.write_text(json.dumps(results, indent=2, default=str))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each path; the fastest counts (the machines are noisy)")
    args = parser.parse_args()
    path = bench_load.cached_day(args.rows)
    day: date = bench_load.DAY
    partition = partition_name(EXPORT, day)

    with tempfile.TemporaryDirectory(prefix="tchap-preaggregate-") as tmp:
        workdir = Path(tmp)
        settings = Settings(database_url=None, s3=S3Settings(None, None, None),
                            source=str(path.parent), spill_dir=workdir / "spill")
        url = start_embedded(workdir / "pgdata")
        with connect(url, autocommit=True) as conn:
            migrate(conn)
            version = conn.execute("SHOW server_version").fetchone()[0]
        print(f"loading {path.name} ({args.rows:,} rows asked) with the real loader …",
              flush=True)
        days = load_day(settings, url, path.parent, day)
        statistics = freeze_statistics(url, partition)

        stager = Stager(settings)
        source = LocalSource(path.parent)
        staged = stager.stage(EXPORT, source, source.find(EXPORT.file_name(day)))
        assert sorted(staged.days) == days, (staged.days, days)
        rows = staged.days[day]  # the file also carries late visits of the days before
        print(f"    rows of {day}: {rows:,}; of the other days: "
              + ", ".join(f"{d:%d/%m} {n:,}" for d, n in sorted(staged.days.items()) if d != day))

        paths = {name: Runs() for name in
                 ("pg_no_statistics", "duckdb_split", "duckdb_fused", "pg_analyzed")}
        # The nightly refresh runs right after the load: the new partition has no
        # statistics (or none covering the new day), and its first reader sets hint bits.
        for _ in range(args.repeat):
            measure("PG (no stats)", paths["pg_no_statistics"], url,
                    lambda: pg_recompute(url, day))
            snapshot(url, "pg")
            measure("DuckDB split", paths["duckdb_split"], url,
                    lambda: duckdb_split(url, stager, staged, day))
            snapshot(url, "split")
            measure("DuckDB fused", paths["duckdb_fused"], url,
                    lambda: duckdb_fused(url, stager, staged, day))
            snapshot(url, "fused")
        # The same recompute once the partition has statistics (ANALYZE, timed apart).
        analyze_seconds = analyze(url, partition)
        for _ in range(args.repeat):
            measure("PG (analyzed)", paths["pg_analyzed"], url, lambda: pg_recompute(url, day))
        comparisons = compare(url, ["pg", "split", "fused"])
        stager.drop(staged)
        stager.close()

    same = all(identical(c) for c in comparisons.values())
    print_table(rows, paths, analyze_seconds)
    for name, found in comparisons.items():
        print(f"{name}: " + "; ".join(
            f"{t} {d['rows_left']:,}/{d['rows_right']:,} rows, "
            f"{d['only_left']}+{d['only_right']} differing" for t, d in found.items()))
    print(f"identical: {'yes' if same else 'no'}")
    out = write_results(args.rows, {
        "rows_of_day": rows, "day": day,
        "rows_per_day_in_file": {str(d): n for d, n in sorted(staged.days.items())},
        "postgresql": version, "cores": os.cpu_count(), "duckdb_memory": settings.duckdb_memory,
        "statistics_before_runs": statistics, "analyze_seconds": analyze_seconds,
        **{name: {"best": runs.best, "first": runs.first, "runs": runs.runs}
           for name, runs in paths.items()},
        "ratio_pg_to_duckdb_fused": {
            "no_statistics": paths["pg_no_statistics"].best["total"]
            / paths["duckdb_fused"].best["total"],
            "analyzed": paths["pg_analyzed"].best["total"] / paths["duckdb_fused"].best["total"]},
        "ratio_pg_to_duckdb_split": {
            "no_statistics": paths["pg_no_statistics"].best["total"]
            / paths["duckdb_split"].best["total"],
            "analyzed": paths["pg_analyzed"].best["total"] / paths["duckdb_split"].best["total"]},
        "identical": same, "comparisons": comparisons,
    })
    print(f"written {out}")


if __name__ == "__main__":
    main()
