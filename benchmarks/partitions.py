"""Day or month partitions for user_daily_visits? Measures what the choice costs.

On the embedded PostgreSQL, builds the same history (default 3 years) twice: one
partition per day, and one per month (each with the BRIN index on visit_date), then
measures, in the same run:
  - planning + execution of a dashboard-style query on a relative window
    (visit_date >= current_date - 30: pruned only at run time, so the planner opens
    and locks every partition), and the number of locks it holds;
  - the same on a constant day (pruned when planning);
  - creating the partition a new day needs.
Writes benchmarks/results/partitions.json.

    .venv/bin/python benchmarks/partitions.py --years 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tchap_stats.database import start_embedded  # noqa: E402
from tchap_stats.dates import month_bounds  # noqa: E402

COLUMNS = ("user_id varchar NOT NULL, device_id varchar NOT NULL, visit_ts timestamptz NOT NULL,"
           " visit_date date NOT NULL, platform varchar NOT NULL")


def build(conn: psycopg.Connection, name: str, bounds: list[tuple[date, date]],
          rows_per_day: int) -> float:
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(sql.Identifier(name)))
    conn.execute(sql.SQL("CREATE TABLE {} ({}) PARTITION BY RANGE (visit_date)").format(
        sql.Identifier(name), sql.SQL(COLUMNS)))
    conn.execute(sql.SQL("CREATE INDEX ON {} USING brin (visit_date)").format(
        sql.Identifier(name)))
    started = time.perf_counter()
    for lower, upper in bounds:
        conn.execute(sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})").format(
            sql.Identifier(f"{name}_{lower:%Y%m%d}"), sql.Identifier(name),
            sql.Literal(lower), sql.Literal(upper)))
    per_partition = (time.perf_counter() - started) / len(bounds)
    first, last = bounds[0][0], bounds[-1][1] - timedelta(days=1)
    conn.execute(sql.SQL(
        "INSERT INTO {} SELECT 'u' || (i % 1000), 'd' || i, d, d, 'Web' "
        "FROM generate_series({}::date, {}::date, '1 day') d, generate_series(1, {}) i"
    ).format(sql.Identifier(name), sql.Literal(first), sql.Literal(last),
             sql.Literal(rows_per_day)))
    conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(name)))
    return per_partition


def timed_query(conn: psycopg.Connection, query: sql.Composed, repeat: int) -> dict[str, float]:
    planning, execution = [], []
    for _ in range(repeat):
        plan = conn.execute(sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) ") + query).fetchone()[0][0]
        planning.append(plan["Planning Time"])
        execution.append(plan["Execution Time"])
    with conn.transaction():
        conn.execute(query)
        locks = conn.execute("SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid()"
                             ).fetchone()[0]
    return {"planning_ms": statistics.median(planning),
            "execution_ms": statistics.median(execution), "locks": locks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--years", type=int, default=3)
    parser.add_argument("--rows-per-day", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    last = date.today()
    first = date(last.year - args.years, last.month, 1)
    days = [(first + timedelta(days=i), first + timedelta(days=i + 1))
            for i in range((last - first).days + 1)]
    months = sorted({month_bounds(d) for d, _ in days})
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="tchap-partitions-") as tmp:
        url = start_embedded(Path(tmp) / "pgdata")
        with psycopg.connect(url, autocommit=True) as conn:
            for name, bounds in (("by_day", days), ("by_month", months)):
                create_ms = build(conn, name, bounds, args.rows_per_day) * 1000
                table = sql.Identifier(name)
                window = timed_query(conn, sql.SQL(
                    "SELECT platform, count(DISTINCT user_id) FROM {} "
                    "WHERE visit_date >= current_date - 30 GROUP BY 1").format(table), args.repeat)
                one_day = timed_query(conn, sql.SQL(
                    "SELECT count(*) FROM {} WHERE visit_date = {}").format(
                        table, sql.Literal(last - timedelta(days=3))), args.repeat)
                results[name] = {"partitions": len(bounds), "create_partition_ms": create_ms,
                                 "last_30_days": window, "one_day": one_day}
    print(f"history: {args.years} years, {args.rows_per_day} rows/day\n")
    print(f"{'':28}{'by day':>14}{'by month':>14}")
    rows = [("partitions", "partitions", "{:>14,}"),
            ("create a partition (ms)", "create_partition_ms", "{:>14.1f}")]
    for label, key, fmt in rows:
        print(f"{label:28}" + "".join(fmt.format(results[n][key]) for n in results))
    for query in ("last_30_days", "one_day"):
        for metric in ("planning_ms", "execution_ms", "locks"):
            label = f"{query}: {metric}"
            values = [results[n][query][metric] for n in results]
            print(f"{label:28}" + "".join(f"{v:>14,.2f}" if isinstance(v, float) else f"{v:>14,}"
                                          for v in values))
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "partitions.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
