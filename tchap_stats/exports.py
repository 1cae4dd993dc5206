"""The exports, declared once as data (DESIGN §2).

Each declaration says what the file holds (columns in file order, with types), where it
goes (table, column names there, derived columns), how rows are identified (key), how the
table is partitioned, and how a row seen twice is merged. Staging, loading and the ledger
read these declarations; no export has a pipeline of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from .classify import classify_sql

# File column types, and the PostgreSQL type each becomes.
PG_TYPES = {
    "text": "varchar",
    "timestamptz": "timestamptz",
    "int": "integer",
    "date": "date",
}


@dataclass(frozen=True)
class Column:
    name: str  # as spelled in the file header
    type: str = "text"  # a key of PG_TYPES
    required: bool = True  # an empty value rejects the line
    target: str | None = None  # the table's column name, when it differs from the file's

    @property
    def table_name(self) -> str:
        return self.target or self.name


@dataclass(frozen=True)
class Derived:
    """A column computed in staging (DuckDB SQL over the typed file columns)."""

    name: str
    type: str
    duckdb_sql: str


@dataclass(frozen=True)
class KeepLeast:
    """Rows sharing a key merge into the one whose `order` columns sort first.

    Comparison is by value for timestamps and byte-wise for text (COLLATE "C" in
    PostgreSQL, DuckDB's default), so the survivor is the same whatever the load order:
    merging is a minimum, which is associative and commutative.
    """

    order: tuple[str, ...]


MergeRule = KeepLeast


@dataclass(frozen=True)
class Export:
    name: str  # file prefix: {name}_{YYYY-MM-DD}.csv
    table: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]  # table column names
    partition_column: str  # a date column: range partitions by month, days tracked
    merge: MergeRule
    derived: tuple[Derived, ...] = ()
    enabled_by_default: bool = True
    description: str = ""
    table_order: tuple[str, ...] = field(default=())  # table column order, when not file order

    def file_name(self, day: date) -> str:
        return f"{self.name}_{day.isoformat()}.csv"

    @property
    def header(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def table_columns(self) -> tuple[str, ...]:
        names = [c.table_name for c in self.columns] + [d.name for d in self.derived]
        if self.table_order:
            assert sorted(self.table_order) == sorted(names), self.name
            return self.table_order
        return tuple(names)

    def column_type(self, table_column: str) -> str:
        for c in self.columns:
            if c.table_name == table_column:
                return c.type
        for d in self.derived:
            if d.name == table_column:
                return d.type
        raise KeyError(table_column)


USER_DAILY_VISITS = Export(
    name="user_daily_visits",
    table="user_daily_visits",
    description="one row per user, device and day (Europe/Paris calendar day)",
    columns=(
        Column("user_id"),
        Column("device_id"),
        Column("visit_ts", "timestamptz"),
        Column("user_agent", required=False),
        Column("instance", required=False),
        Column("domain", required=False),
    ),
    derived=(
        # DuckDB's session TimeZone is the configured one (Europe/Paris by default), so the
        # cast gives the local calendar day, not the UTC one.
        Derived("visit_date", "date", "CAST(visit_ts AS DATE)"),
        Derived("platform", "text", classify_sql("platform", "user_agent", "duckdb")),
        Derived("device_type", "text", classify_sql("device_type", "user_agent", "duckdb")),
    ),
    table_order=(
        "user_id", "device_id", "visit_ts", "visit_date", "user_agent",
        "instance", "domain", "platform", "device_type",
    ),
    key=("visit_date", "user_id", "device_id"),
    partition_column="visit_date",
    # The earliest visit of the day wins; ties broken by user agent, instance, domain.
    merge=KeepLeast(order=("visit_ts", "user_agent", "instance", "domain")),
)

EXPORTS: dict[str, Export] = {e.name: e for e in (USER_DAILY_VISITS,)}


def default_exports(enabled: tuple[str, ...] = ()) -> list[Export]:
    names = enabled or tuple(n for n, e in EXPORTS.items() if e.enabled_by_default)
    return [EXPORTS[n] for n in names]


def parse_only(value: str) -> list[Export]:
    """`--only a,b`: the named exports, or ValueError listing the valid names."""
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in EXPORTS]
    if unknown or not names:
        raise ValueError(
            f"unknown export(s): {', '.join(unknown) or '(none given)'}; "
            f"valid: {', '.join(EXPORTS)}"
        )
    return [EXPORTS[n] for n in names]
