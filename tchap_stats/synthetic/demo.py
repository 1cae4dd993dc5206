"""`tchap-stats demo`: the whole job on synthetic exports and the embedded PostgreSQL."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import click
from psycopg import sql

from ..config import Settings
from ..database import EMBEDDED_DIR, connect, start_embedded
from ..dates import days_between, yesterday
from ..exports import Export, default_exports
from ..pipeline import RunOptions, run
from ..schema import migrate
from ..source import LocalSource
from .generate import Options, generate

SEED = 42
MALFORMED = 0.002
# Exports whose daily files hold a few dozen lines: one malformed line there is above the
# 1 % reject threshold and fails the file (by design); the demo shows rejects in the others.
SMALL_FILES = {"sso", "crisp_conversation_segments"}


def _ensure_exports(directory: Path, first, last, rows_per_day: int,
                    exports: list[Export]) -> None:
    """Generate the files unless the same ones are already there (they are deterministic)."""
    marker = directory / "generated.json"
    names = [e.name for e in exports]
    wanted = {"first": str(first), "last": str(last), "rows_per_day": rows_per_day,
              "seed": SEED, "malformed": MALFORMED, "exports": names}
    if marker.exists() and json.loads(marker.read_text()) == wanted:
        click.echo(f"exports: reusing {directory} ({first} .. {last})")
        return
    started = time.monotonic()
    for old in directory.glob("*.csv"):
        old.unlink()
    files = []
    for chosen, malformed in (([n for n in names if n not in SMALL_FILES], MALFORMED),
                              ([n for n in names if n in SMALL_FILES], 0.0)):
        if chosen:
            files += generate(first, last, str(directory),
                              Options(rows_per_day=rows_per_day, seed=SEED, malformed=malformed),
                              exports=chosen)
    marker.write_text(json.dumps(wanted))
    click.echo(f"exports: generated {len(files)} files, {sum(n for _, n in files):,} lines, "
               f"in {directory} ({time.monotonic() - started:.1f} s)")


def _show(conn, title: str, query: str | sql.Composable) -> None:
    cur = conn.execute(query)
    names = [c.name for c in cur.description]
    rows = [[("" if v is None else str(v)) for v in row] for row in cur.fetchall()]
    widths = [min(60, max([len(n)] + [len(r[i]) for r in rows])) for i, n in enumerate(names)]
    click.echo(f"\n{title}")
    click.echo("  " + "  ".join(n.ljust(w) for n, w in zip(names, widths, strict=True)))
    for row in rows:
        click.echo("  " + "  ".join(v[:w].ljust(w) for v, w in zip(row, widths, strict=True)))


def run_demo(settings: Settings, directory: Path, days: int, rows_per_day: int) -> int:
    last = yesterday(settings.timezone)
    first = last - timedelta(days=days - 1)
    exports = default_exports(settings.enabled_exports)
    _ensure_exports(directory, first, last, rows_per_day, exports)
    url = start_embedded(EMBEDDED_DIR / "pgdata")
    click.echo(f"database: embedded PostgreSQL in {EMBEDDED_DIR / 'pgdata'}")
    with connect(url, autocommit=True) as conn:
        applied = migrate(conn, settings.timezone)
    click.echo(f"schema: {', '.join(applied) + ' applied' if applied else 'up to date'}")
    settings = replace(settings, source=str(directory))
    report = run(settings, url, LocalSource(directory), exports, days_between(first, last),
                 RunOptions(on_outcome=lambda o: click.echo(o.summary())))
    click.echo("\n" + report.totals())
    if report.refresh:
        click.echo(report.refresh.summary())
    click.echo("by export:")
    for line in report.by_export():
        click.echo(f"  {line}")
    with connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("SET TIME ZONE {}").format(sql.Literal(settings.timezone)))
        _show(conn, "sample rows of user_daily_visits:",
              "SELECT visit_date, user_id, device_id, visit_ts, platform, device_type, instance "
              "FROM user_daily_visits ORDER BY visit_date DESC, user_id LIMIT 5")
        _show(conn, "rows by platform over the loaded days:",
              "SELECT platform, count(*) AS visits, count(DISTINCT user_id) AS users "
              "FROM user_daily_visits GROUP BY 1 ORDER BY 2 DESC")
        _show(conn, "daily active users, last 5 days (view daily_active_users):",
              "SELECT day, users, devices FROM daily_active_users WHERE dimension = 'overall' "
              "ORDER BY day DESC LIMIT 5")
        _show(conn, "what the dashboards read (view user_daily_visits_agg_30d_v2):",
              "SELECT day, user_id, visits_count, web_visits_count, mobile_visits_count "
              "FROM user_daily_visits_agg_30d_v2 ORDER BY day DESC, user_id LIMIT 3")
        _show(conn, "every loaded export's table:", sql.SQL(" UNION ALL ").join(
            sql.SQL("SELECT {} AS export, {} AS table_name, count(*) AS table_rows FROM {}"
                    ).format(sql.Literal(e.name), sql.Literal(e.table), sql.Identifier(e.table))
            for e in exports))
        _show(conn, "the latest hours of events (events_aggregate, from events_roomv9_aggregate):",
              "SELECT hour, type, sum(events) AS events, max(extracted_on) AS extracted_on "
              "FROM events_aggregate GROUP BY 1, 2 ORDER BY 1 DESC, 3 DESC LIMIT 3")
        _show(conn, "the latest SSO snapshot (sso_aggregate):",
              "SELECT added_date, sum(total_users) AS users, sum(only_pwd) AS only_pwd, "
              "sum(pwd_and_prococonnect) AS pwd_and_prococonnect, "
              "sum(only_proconnect) AS only_proconnect FROM sso_aggregate "
              "GROUP BY 1 ORDER BY 1 DESC LIMIT 1")
        _show(conn, "some rejected lines (tchap_stats.rejects):",
              "SELECT file_key, line, reason FROM tchap_stats.rejects ORDER BY load_id, line "
              "LIMIT 3")
        _show(conn, "the ledger's last loads (tchap_stats.loads):",
              "SELECT file_key, status, rows_read, rows_loaded, rows_duplicate, rows_rejected, "
              "days_changed FROM tchap_stats.loads ORDER BY load_id DESC LIMIT 3")
    return report.exit_code
