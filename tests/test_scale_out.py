"""What docs/design.md ("Scale-out with Citus") claims of the schema, checked: the tables it
would distribute by user_id all have the column, every unique key of theirs contains it, and
each per-user summary is computed per user (its rows grouped or made distinct by user_id),
so that Citus could run each recompute on the shards, next to the raw rows it reads."""

from __future__ import annotations

import re

import pytest
import sqlglot
from sqlglot import exp

from tchap_stats.config import SQL_DIR

DISTRIBUTION_COLUMN = "user_id"
DISTRIBUTED = ("public.user_daily_visits", "public.account_data_aggregate",
               "tchap_stats.user_visits_daily", "tchap_stats.user_devices_monthly",
               "tchap_stats.user_months", "tchap_stats.user_values_monthly",
               "tchap_stats.rolling_last_active")
PER_USER_SQL = ("user_visits_daily", "user_devices_monthly", "user_months",
                "user_values_monthly")


def test_every_distributed_table_has_the_column_in_each_unique_key(db):
    for name in DISTRIBUTED:
        nullable = db.execute(
            "SELECT NOT attnotnull FROM pg_attribute WHERE attrelid = %s::regclass "
            "AND attname = %s", (name, DISTRIBUTION_COLUMN)).fetchone()
        assert nullable == (False,), name
        keys = db.execute(
            "SELECT i.indexrelid::regclass::text, array_agg(a.attname::text) "
            "FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
            "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisunique "
            "GROUP BY 1", (name,)).fetchall()
        for index, columns in keys:
            assert DISTRIBUTION_COLUMN in columns, (name, index)


def _statement(name: str) -> exp.Insert:
    text = (SQL_DIR / "summaries" / f"{name}.sql").read_text()
    text = re.sub(r"\{(\w+)\}", r"\1", text)  # {target}: a table name
    text = re.sub(r"%\((\w+)\)s", r"NULL", text)  # parameters
    (statement,) = [s for s in sqlglot.parse(text, read="postgres") if s is not None]
    assert isinstance(statement, exp.Insert)
    return statement


def _grouped_by(select: exp.Select) -> set[str]:
    """The plain columns a SELECT groups by, or is made distinct by."""
    distinct = select.args.get("distinct")
    group = select.args.get("group")
    if distinct is not None and distinct.args.get("on") is not None:
        expressions = distinct.args["on"].expressions
    elif distinct is not None:
        expressions = select.expressions
    elif group is not None:
        expressions = group.expressions
    else:
        expressions = []
    return {c.name for e in expressions for c in e.find_all(exp.Column)}


@pytest.mark.parametrize("name", PER_USER_SQL)
def test_each_per_user_summary_is_computed_per_user(name):
    select = _statement(name).expression
    assert isinstance(select, exp.Select)
    assert DISTRIBUTION_COLUMN in _grouped_by(select)
