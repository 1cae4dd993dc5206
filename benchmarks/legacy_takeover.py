"""The legacy takeover's speed (`tchap-stats migrate-legacy`) beside a COPY ceiling.

Builds a database in the old system's layout (benchmarks/legacy.py, in schema public): N
rows of user_daily_visits over M months, generated inside PostgreSQL by
benchmarks/sql/history.sql's population, with what the takeover meets in production: the old
UTC visit_date, 5 % of rows not classified yet (no platform, device type nor visit_date),
2 % second rows of a device's day (an hour later), the old indexes, the two materialized
views and user_monthly_visits_lite, and a few thousand rows in the other exports' old
tables. Then, in the same run on the same server:
  ceiling   COPY of the same rows (the new table's nine columns, text format) from a server
            file into an UNLOGGED table without indexes: what PostgreSQL ingests at best;
  takeover  the whole takeover, as `tchap-stats migrate-legacy` runs it: the plan's count,
            each month converted, deduplicated, checked on both sides and summarised, the
            export tables, the switch.
Prints both rates, their ratio, the takeover's time per step, and the time for 68 million
and 68 billion rows at the measured rate. Writes benchmarks/results/legacy_takeover.json.

    .venv/bin/python benchmarks/legacy_takeover.py                   # 3,000,000 rows, 3 months
    .venv/bin/python benchmarks/legacy_takeover.py --rows 1000000 --months 6
"""

from __future__ import annotations

import argparse
import json
import logging
import math
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

import legacy  # noqa: E402

from tchap_stats import legacy as takeover  # noqa: E402
from tchap_stats.classify import classify_sql  # noqa: E402
from tchap_stats.database import connect, start_embedded  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
FIRST_DAY = date(2024, 1, 1)
TZ = "Europe/Paris"


def build(conn: psycopg.Connection, rows: int, months: int) -> dict[str, float]:
    """The old database; seconds per step."""
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    last = date(FIRST_DAY.year + (FIRST_DAY.month - 1 + months) // 12,
                (FIRST_DAY.month - 1 + months) % 12 + 1, 1) - timedelta(days=1)
    days = (last - FIRST_DAY).days + 1
    per_day = max(1, round(rows / days / 1.02))
    devices = per_day * 8 // 5
    stride = 1_000_003
    while math.gcd(stride, devices) != 1:
        stride += 2
    conn.execute((ROOT / "benchmarks" / "sql" / "history.sql").read_text())
    legacy.create_old_database(conn, last + timedelta(days=1))
    with conn.transaction():
        for name in legacy.INDEX_NAMES:  # the bulk insert first, the indexes once
            conn.execute(sql.SQL("DROP INDEX public.{}").format(sql.Identifier(name)))
        platform = sql.SQL(classify_sql("platform", "user_agent"))
        device_type = sql.SQL(classify_sql("device_type", "user_agent"))
        # 5 % not classified yet; visit_date the UTC day (the old system's); a second row
        # an hour later for the first 2 % of each day's devices.
        conn.execute(sql.SQL(
            """
            INSERT INTO public.user_daily_visits (user_id, device_id, visit_ts, user_agent,
                instance, domain, platform, device_type, visit_date)
            SELECT v.user_id, v.device_id, v.visit_ts + extra.shift, v.user_agent,
                   v.instance, v.domain,
                   CASE WHEN unclassified THEN NULL ELSE {platform} END,
                   CASE WHEN unclassified THEN NULL ELSE {device_type} END,
                   CASE WHEN unclassified THEN NULL
                        ELSE ((v.visit_ts + extra.shift) AT TIME ZONE 'UTC')::date END
            FROM generate_series({first}::date, {last}::date, '1 day') AS days(day)
            CROSS JOIN LATERAL bench.visits(days.day::date, 0, {per_day}, {devices},
                                            {stride}) WITH ORDINALITY AS v
            CROSS JOIN LATERAL (VALUES (interval '0'), (interval '1 hour')) AS extra(shift)
            CROSS JOIN LATERAL (SELECT hashtext(v.device_id || days.day) % 20 = 0
                                AS unclassified) AS u
            WHERE extra.shift = interval '0' OR v.ordinality <= {dups}
            """).format(platform=platform, device_type=device_type,
                        first=sql.Literal(FIRST_DAY), last=sql.Literal(last),
                        per_day=sql.Literal(per_day), devices=sql.Literal(devices),
                        stride=sql.Literal(stride), dups=sql.Literal(per_day // 50)))
        seconds["insert"] = time.perf_counter() - started
        conn.execute(legacy.in_schema(legacy.INDEXES, "public"))
        seconds["indexes"] = time.perf_counter() - started - sum(seconds.values())
    conn.execute("SELECT set_config('legacy.today', %s, false)",
                 ((last + timedelta(days=1)).isoformat(),))
    conn.execute("REFRESH MATERIALIZED VIEW public.user_daily_visits_agg_30d_v2")
    conn.execute("REFRESH MATERIALIZED VIEW public.user_daily_visits_by_month_1y_v3")
    conn.execute(legacy.in_schema(legacy.MONTHLY_LITE, "public"))
    exports(conn, last)
    seconds["views_and_exports"] = time.perf_counter() - started - sum(seconds.values())
    conn.execute("VACUUM ANALYZE")
    conn.execute("CHECKPOINT")
    seconds["vacuum"] = time.perf_counter() - started - sum(seconds.values())
    return seconds


def exports(conn: psycopg.Connection, last: date) -> None:
    """A few thousand rows in each old export table (sso with each day loaded twice)."""
    script = (
        """
        INSERT INTO public.subscriptions_aggregate
        SELECT (extract(hour FROM h)::int * 7 + d) %% 100, 'dom' || d || '.gouv.fr', h,
               'inst' || d %% 7
        FROM generate_series(%(last)s::date - 30, %(last)s::date, '1 hour') AS h,
             generate_series(0, 3) AS d;
        INSERT INTO public.events_aggregate
        SELECT (extract(hour FROM h)::int * 3 + d) %% 1000, 'dom' || d || '.gouv.fr', h,
               'inst' || d %% 7, 'm.room.message'
        FROM generate_series(%(last)s::date - 30, %(last)s::date, '1 hour') AS h,
             generate_series(0, 3) AS d;
        INSERT INTO public.account_data_aggregate
        SELECT '@user' || i, 'im.vector.setting', '{"n": ' || i || '}', 'inst' || i %% 7,
               'dom' || i %% 40 || '.gouv.fr'
        FROM generate_series(1, 5000) AS i;
        INSERT INTO public.sso_aggregate
        SELECT 100 + d, 'dom' || d || '.gouv.fr', 'inst' || d %% 7, 50, 25, 25 + d, day
        FROM generate_series(%(last)s::date - 60, %(last)s::date, '1 day') AS day,
             generate_series(0, 39) AS d, generate_series(1, 2) AS rerun;
        INSERT INTO public.crisp_conversation_segments
        SELECT 's' || i, 'seg' || i %% 3, 'resolved', 'dom' || i %% 40 || '.gouv.fr',
               timestamp '2024-06-01' + i * interval '1 hour',
               timestamp '2024-06-01' + i * interval '1 hour' + interval '2 days'
        FROM generate_series(1, 2000) AS i;
        INSERT INTO public.pushers_aggregate
        SELECT '@user' || i, 'DEV' || i, 'fr.gouv.tchap', 'http', i %% 9 <> 0,
               'inst' || i %% 7, 'dom' || i %% 40 || '.gouv.fr', %(last)s::date
        FROM generate_series(1, 5000) AS i;
        """)
    for statement in filter(str.strip, script.split(";")):
        conn.execute(statement, {"last": last})


def copy_ceiling(conn: psycopg.Connection, directory: Path) -> tuple[int, float]:
    """COPY of the same rows, as the new table holds them, from a server-side file into an
    unlogged table without indexes. Returns (rows, seconds of the COPY alone)."""
    path = directory / "rows.copy"
    conn.execute(sql.SQL(
        "COPY (SELECT user_id, device_id, visit_ts, "
        "coalesce(visit_date, (visit_ts AT TIME ZONE 'Europe/Paris')::date), user_agent, "
        "instance, domain, coalesce(platform, ''), coalesce(device_type, '') "
        "FROM public.user_daily_visits) TO {}").format(sql.Literal(str(path))))
    conn.execute("CREATE UNLOGGED TABLE public.copy_ceiling (user_id varchar, "
                 "device_id varchar, visit_ts timestamptz, visit_date date, "
                 "user_agent varchar, instance varchar, domain varchar, platform varchar, "
                 "device_type varchar)")
    conn.execute("CHECKPOINT")
    started = time.perf_counter()
    rows = conn.execute(sql.SQL("COPY public.copy_ceiling FROM {}").format(
        sql.Literal(str(path)))).rowcount
    seconds = time.perf_counter() - started
    conn.execute("DROP TABLE public.copy_ceiling")
    path.unlink()
    conn.execute("CHECKPOINT")
    return rows, seconds


def tune(conn: psycopg.Connection) -> None:
    """Checkpoints spaced out for bulk work (as benchmarks/refresh.py)."""
    conn.execute("ALTER SYSTEM SET max_wal_size = '8GB'")
    conn.execute("ALTER SYSTEM SET checkpoint_timeout = '30min'")
    conn.execute("ALTER SYSTEM SET maintenance_work_mem = '512MB'")
    conn.execute("SELECT pg_reload_conf()")


def hours(seconds: float) -> str:
    return (f"{seconds / 3600:,.1f} h" if seconds >= 3600 else f"{seconds / 60:,.1f} min"
            if seconds >= 60 else f"{seconds:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3_000_000)
    parser.add_argument("--months", type=int, default=3)
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log every statement of the takeover with its seconds")
    args = parser.parse_args()
    if args.verbose:
        logging.basicConfig(format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
        logging.getLogger("tchap_stats").setLevel(logging.DEBUG)
    with tempfile.TemporaryDirectory(prefix="tchap-bench-takeover-") as tmp:
        directory = Path(tmp)
        directory.chmod(0o777)  # the server writes and reads the COPY file there
        url = start_embedded(directory / "pgdata")
        with connect(url, autocommit=True) as conn:
            tune(conn)
            print(f"building the old database: {args.rows:,} rows over {args.months} "
                  "months ...", flush=True)
            built = build(conn, args.rows, args.months)
            old_rows = conn.execute("SELECT count(*) FROM public.user_daily_visits"
                                    ).fetchone()[0]  # type: ignore[index]
            print(f"  {old_rows:,} old rows in "
                  + ", ".join(f"{k} {v:.1f} s" for k, v in built.items()), flush=True)
            size = conn.execute("SELECT pg_total_relation_size('public.user_daily_visits')"
                                ).fetchone()[0]  # type: ignore[index]

            copied, copy_seconds = copy_ceiling(conn, directory)
            copy_rate = copied / copy_seconds
            print(f"COPY ceiling: {copied:,} rows in {copy_seconds:.1f} s, "
                  f"{copy_rate:,.0f} rows/s", flush=True)

            started = time.perf_counter()
            takeover.dry_run(conn, TZ, lambda line: None)
            plan_seconds = time.perf_counter() - started

            lines: list[tuple[float, str]] = []

            def echo(line: str) -> None:
                lines.append((time.perf_counter(), line))

            started = time.perf_counter()
            outcome = takeover.take_over(conn, url, TZ, 600, None, echo)
            total = time.perf_counter() - started
            assert outcome.exit_code == 0, lines
            switched_at = next(t for t, line in lines if line.startswith("switched"))
            switching = next(t for t, line in lines if line.endswith("switching"))
            last_unit = max(t for t, line in lines if "verified" in line)
            months = [m for m in outcome.moved if m.unit.relation == "user_daily_visits"]
            steps: dict[str, float] = {}
            for moved in months:
                for step, seconds in moved.steps.items():
                    steps[step] = steps.get(step, 0.0) + seconds
            first_unit = min(t for t, line in lines if "verified" in line)
            start_and_plan = first_unit - started - outcome.moved[0].seconds
            summary_seconds = float(conn.execute(
                "SELECT coalesce(sum(seconds), 0) FROM tchap_stats.legacy_refreshes"
                ).fetchone()[0])  # type: ignore[index]
        rate = old_rows / total
        # A long takeover runs at the pace of the slower of its two streams (moves, and the
        # summaries beside them): the last month's summaries, after every move, fade out.
        moves = sum(m.seconds for m in outcome.moved)
        steady = old_rows / max(moves, summary_seconds)
        result = {
            "rows": old_rows, "months": args.months, "old_table_bytes": size,
            "build_seconds": built, "dry_run_seconds": plan_seconds,
            "copy_rows_per_second": copy_rate, "copy_seconds": copy_seconds,
            "takeover_seconds": total, "takeover_rows_per_second": rate,
            "ratio_to_copy": rate / copy_rate,
            "start_and_plan_seconds": start_and_plan,
            "months_seconds": sum(m.seconds for m in months),
            "months_steps_seconds": steps,
            "exports_seconds": sum(m.seconds for m in outcome.moved if m not in months),
            "last_summaries_seconds": switching - last_unit,
            "switch_seconds": switched_at - switching,
            "moves_seconds": moves, "summaries_seconds": summary_seconds,
            "steady_rows_per_second": steady,
            "duplicates_merged": sum(m.duplicates for m in months),
            "days_corrected": sum(m.days_corrected for m in months),
            "classified": sum(m.classified for m in months),
        }
    print(f"takeover: {old_rows:,} rows in {total:.1f} s, {rate:,.0f} rows/s "
          f"({rate / copy_rate:.2f}× the COPY ceiling of {copy_rate:,.0f} rows/s)")
    print(f"  start and plan (one count of the old table) {start_and_plan:.1f} s; "
          f"{len(months)} months {result['months_seconds']:.1f} s ("
          + ", ".join(f"{k} {v:.1f} s" for k, v in steps.items())
          + f"); export tables {result['exports_seconds']:.1f} s; the last month's "
          f"summaries after its move {result['last_summaries_seconds']:.1f} s; switch "
          f"{result['switch_seconds']:.2f} s; dry run {plan_seconds:.1f} s")
    print(f"  {result['duplicates_merged']:,} duplicates merged, visit_date corrected on "
          f"{result['days_corrected']:,} rows, {result['classified']:,} classified")
    print(f"  moves {moves:.1f} s and summaries {summary_seconds:.1f} s in all, side by side: "
          f"steady pace {steady:,.0f} rows/s (the slower stream)")
    for target in (68_000_000, 68_000_000_000):
        print(f"{target:,} rows: {hours(target / rate)} at this run's rate, "
              f"{hours(target / steady)} at the steady pace (COPY ceiling: "
              f"{hours(target / copy_rate)})")
    print("  assumptions: the same 2-core server and settings; time linear in rows (months "
          "of the same size, each sorted and summarised on its own; days of the same size); "
          "the old table read at the same speed. A month of 700 million rows sorts on disk, "
          f"which this run's {old_rows // args.months:,}-row months did not measure")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "legacy_takeover.json").write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
