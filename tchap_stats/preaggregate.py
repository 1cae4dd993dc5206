"""Pre-aggregation: between staging and load, DuckDB computes a new day's rows of the
summaries in PREAGGREGATED from the staged rows, and the load copies them in its own
transaction, sparing the refresh that recompute (docs/design.md, "DuckDB pre-aggregation";
benchmarks/README.md measures it).

The summary's one SQL file (tchap_stats/sql/summaries/) is translated to DuckDB's dialect
by sqlglot: there is no second copy to drift from it.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date
from functools import cache

import psycopg

from .load import copy_rows
from .staging import StagedFile, Stager
from .summaries import EXPORT, PREAGGREGATED, SUMMARIES_SQL, Summary

# Up to this many rows a day. At 100,000 DuckDB's aggregate takes 0.2 s and spares the
# refresh 0.8 s; at a million it spills under the 128 MB cap, takes 3.5 s inside the load's
# transaction and spares the refresh 4.5 s (benchmarks/README.md, "Pre-aggregating a new
# day's daily summaries").
PREAGGREGATE_MAX_ROWS = 250_000


def preaggregate_sql(summary: Summary) -> tuple[str, tuple[str, ...]]:
    """The summary's own statement (sql/summaries/{table}.sql), as DuckDB runs it over the
    staged rows of a day (relation `day_rows`, parameter $days), and the columns it fills."""
    return _translation(summary).result()


@cache
def _translation(summary: Summary) -> Future[tuple[str, tuple[str, ...]]]:
    """preaggregate_sql's translation, on a thread of its own. Importing sqlglot takes
    0.15 s of Python: Preaggregation.translate_ahead starts it when staging starts, while
    DuckDB reads the file and leaves the interpreter free. Later, it would hold the
    interpreter against the load's COPY loop, which would wait for it at each chunk
    (docs/design.md, "The nightly path's start")."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="translate")
    future = pool.submit(_translate, summary)
    pool.shutdown(wait=False)
    return future


def _translate(summary: Summary) -> tuple[str, tuple[str, ...]]:
    import sqlglot
    from sqlglot import exp

    text = (SUMMARIES_SQL / f"{summary.table}.sql").read_text().replace("{target}", "target")
    insert = sqlglot.parse_one(text, read="postgres")
    assert isinstance(insert, exp.Insert) and isinstance(insert.this, exp.Schema)
    columns = tuple(column.name for column in insert.this.expressions)

    def staged_rows(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Table) and (node.db, node.name) == ("public", EXPORT):
            return exp.to_table("day_rows", alias=node.alias or None)
        return node

    select = insert.expression.transform(staged_rows)
    return select.sql(dialect="duckdb"), columns


def _rows_of_day(stager: Stager, staged: StagedFile, day: date, summary: Summary,
                 load_id: int) -> bytes:
    query = f"SELECT $load_id, * FROM ({preaggregate_sql(summary)[0]})"
    return b"".join(stager.stream_over_day(staged, day, query,
                                           {"days": [day], "load_id": load_id}))


class Preaggregation:
    """The pre-aggregated summaries of a load's days, computed by DuckDB from the staged
    rows on a thread of their own while PostgreSQL writes the rows (0.2 s a night off the
    load: benchmarks/README.md), then copied in the load's transaction for the days the
    load found empty: the file's rows of such a day are the whole day. Days of more than
    PREAGGREGATE_MAX_ROWS rows are left to the refresh. Use as a context manager: leaving
    waits for the thread.
    A day found not empty wastes its aggregate (an overlap day's 2,000 rows: milliseconds)."""

    def __init__(self, stager: Stager, staged: StagedFile, load_id: int, enabled: bool = True):
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="preaggregate")
        self._results: dict[tuple[Summary, date], Future[bytes]] = {}
        if not enabled or staged.export.name != EXPORT:
            return
        days = [day for day, rows in sorted(staged.days.items())
                if rows <= PREAGGREGATE_MAX_ROWS]
        for summary in PREAGGREGATED:
            for day in days:
                self._results[summary, day] = self._pool.submit(
                    _rows_of_day, stager, staged, day, summary, load_id)

    @staticmethod
    def translate_ahead(export: str, enabled: bool = True) -> None:
        """Start translating the pre-aggregated summaries' SQL for DuckDB, before a load of
        `export` stages its file (see _translation)."""
        if enabled and export == EXPORT:
            for summary in PREAGGREGATED:
                _translation(summary)

    def copy(self, conn: psycopg.Connection, empty_days: Iterable[date]) -> None:
        """Into the staging tables, the rows of the days the load found empty."""
        for day in sorted(empty_days):
            for summary in PREAGGREGATED:
                if (summary, day) in self._results:
                    rows = self._results[summary, day].result()
                    copy_rows(conn, summary.staging_identifier,
                              ("load_id", *preaggregate_sql(summary)[1]), [rows])

    def __enter__(self) -> Preaggregation:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
