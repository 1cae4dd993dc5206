"""The exports, declared once as data (DESIGN §2).

Each declaration says what the file holds (columns in file order, with types), where it
goes (table, column names there, derived columns), how rows are identified (key), how the
table is partitioned, and how a row seen twice is merged. Staging, loading and the ledger
read these declarations; no export has a pipeline of its own.

Adding an export: one declaration here, its table in a migration, and (when no existing
merge rule fits) a merge rule with its SQL in sql/load/.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date

from .classify import classify_sql

# File column types, and the PostgreSQL type each becomes.
PG_TYPES = {
    "text": "varchar",
    "timestamptz": "timestamptz",
    "timestamp": "timestamp",
    "int": "integer",
    "date": "date",
    "bool": "boolean",
}

# The SQL of a derived column holding the file's extraction date (from its name): staging
# binds it as a parameter.
FILE_DATE = "$file_date"


# The longest text value accepted by default, in bytes: ids, domains and instances are
# short, and five such values (the widest key or summary index) stay under the 2,704 bytes
# a PostgreSQL b-tree entry may hold.
MAX_TEXT_BYTES = 500


@dataclass(frozen=True)
class Column:
    name: str  # as spelled in the file header
    type: str = "text"  # a key of PG_TYPES
    required: bool = True  # an empty value rejects the line
    target: str | None = None  # the table's column name, when it differs from the file's
    max_bytes: int | None = MAX_TEXT_BYTES  # a longer text value rejects the line
    multiline: bool = False  # a quoted value may hold a line break (else: a rejected line)

    @property
    def table_name(self) -> str:
        return self.target or self.name


@dataclass(frozen=True)
class Derived:
    """A column computed in staging (DuckDB SQL over the typed file columns, or FILE_DATE)."""

    name: str
    type: str
    duckdb_sql: str


@dataclass(frozen=True)
class ByMonth:
    """Range partitions by month of a date or timestamptz column, created on demand.

    Months and days are calendar months and days in the configured time zone: a
    timestamptz partition runs from the zone's midnight of the 1st to the next 1st's."""

    column: str

    def describe(self) -> str:
        return f"by month of {self.column}"


@dataclass(frozen=True)
class KeepLeast:
    """Rows sharing a key merge into the one whose `order` columns sort first.

    Comparison is by value for numbers and timestamps and byte-wise for text (COLLATE "C"
    in PostgreSQL, DuckDB's default), so the survivor is the same whatever the load order:
    merging is a minimum, which is associative and commutative.
    """

    order: tuple[str, ...]
    descending = False
    sql_files = ("merge_delete_beaten.sql", "merge_insert_missing_keys.sql")

    def describe(self) -> str:
        return f"keep least ({', '.join(self.order)})"


@dataclass(frozen=True)
class KeepGreatest:
    """As KeepLeast, the row whose `order` columns sort last stays (a maximum)."""

    order: tuple[str, ...]
    descending = True
    sql_files = KeepLeast.sql_files

    def describe(self) -> str:
        return f"keep greatest ({', '.join(self.order)})"


@dataclass(frozen=True)
class LatestExtraction:
    """A key takes the row of the file with the latest extraction date (stored per row in
    `column`), whatever the load order; within one file, the greatest `then` wins.

    A maximum over (column, *then), hence load-order independent like KeepGreatest."""

    column: str
    then: tuple[str, ...]
    descending = True
    sql_files = KeepLeast.sql_files

    @property
    def order(self) -> tuple[str, ...]:
        return (self.column, *self.then)

    def describe(self) -> str:
        return (f"latest extraction ({self.column}) wins; "
                f"in a file, greatest ({', '.join(self.then)})")


@dataclass(frozen=True)
class SnapshotPerFile:
    """Each file is the whole snapshot of its day: loading it leaves that day holding
    exactly its rows (stored rows it changed are replaced, rows it lacks removed), so a
    reload replaces the day and never duplicates it. Within one file, the row whose `order`
    columns sort first stays."""

    order: tuple[str, ...]
    descending = False
    sql_files = ("merge_delete_beaten.sql", "snapshot_delete_absent_keys.sql",
                 "merge_insert_missing_keys.sql")

    def describe(self) -> str:
        return f"snapshot per file day; in a file, least ({', '.join(self.order)})"


MergeRule = KeepLeast | KeepGreatest | LatestExtraction | SnapshotPerFile


@dataclass(frozen=True)
class Export:
    name: str  # file prefix: {name}_{YYYY-MM-DD}.csv
    table: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]  # table column names
    partition: ByMonth | None  # None: one table, a file's rows all count for its day
    merge: MergeRule
    derived: tuple[Derived, ...] = ()
    enabled_by_default: bool = True
    description: str = ""
    table_order: tuple[str, ...] = field(default=())  # table column order, when not file order
    # The file column whose calendar day must fall within the file's acceptance window
    # (Settings.accept_days_before/after around its extraction date), if any.
    dated_by: str | None = None
    # The columns the summaries read besides the key and a KeepLeast order's first column:
    # a stored row replaced by one equal on these only moved to an earlier time, which the
    # summaries' additive path folds in; otherwise its day counts as rewritten (its month
    # re-read). None: every replacement counts (no summaries read the export).
    summarised: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        columns = self.table_columns
        named = {*self.key, *self.merge.order}
        if self.partition:
            named.add(self.partition.column)
        unknown = named - set(columns)
        if unknown:
            raise ValueError(f"{self.name}: unknown column(s) {sorted(unknown)}")
        if self.dated_by and self.dated_by not in self.header:
            raise ValueError(f"{self.name}: dated_by {self.dated_by!r} is not a file column")
        # A row's stored columns are all in its key or its merge order (or follow from
        # them): two rows that tie on both are the same row, so no load order can matter.
        classifiers = {d.name for d in self.derived if d.duckdb_sql != FILE_DATE}
        loose = set(columns) - named - classifiers
        if loose:
            raise ValueError(f"{self.name}: neither key nor merge order: {sorted(loose)}")

    def file_name(self, day: date) -> str:
        return f"{self.name}_{day.isoformat()}.csv"

    def file_date(self, key: str) -> date | None:
        """The extraction date in a file's name (or key), if it is one of this export's."""
        match = re.search(rf"(?:^|/){re.escape(self.name)}_(\d{{4}}-\d{{2}}-\d{{2}})\.csv$", key)
        return date.fromisoformat(match[1]) if match else None

    @property
    def partition_column(self) -> str | None:
        return self.partition.column if self.partition else None

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

    def describe_partition(self) -> str:
        return self.partition.describe() if self.partition else "none"


def _file_date(name: str) -> Derived:
    return Derived(name, "date", FILE_DATE)


USER_DAILY_VISITS = Export(
    name="user_daily_visits",
    table="user_daily_visits",
    description="one row per user, device and day (Europe/Paris calendar day)",
    columns=(
        Column("user_id"),
        Column("device_id"),
        Column("visit_ts", "timestamptz"),
        Column("user_agent", required=False, max_bytes=16_384),
        Column("instance", required=False),
        Column("domain", required=False),
    ),
    dated_by="visit_ts",
    derived=(
        # DuckDB's session TimeZone is the configured one (Europe/Paris by default), so the
        # cast gives the local calendar day, not the UTC one.
        Derived("visit_date", "date", "CAST(visit_ts AS DATE)"),
        Derived("platform", "text", classify_sql("platform", "user_agent")),
        Derived("device_type", "text", classify_sql("device_type", "user_agent")),
    ),
    table_order=(
        "user_id", "device_id", "visit_ts", "visit_date", "user_agent",
        "instance", "domain", "platform", "device_type",
    ),
    key=("visit_date", "user_id", "device_id"),
    partition=ByMonth("visit_date"),
    # The earliest visit of the day wins; ties broken by user agent, instance, domain.
    merge=KeepLeast(order=("visit_ts", "user_agent", "instance", "domain")),
    summarised=("instance", "domain", "platform", "device_type"),
)

SUBSCRIPTIONS_AGGREGATE = Export(
    name="subscriptions_aggregate",
    table="subscriptions_aggregate",
    description="subscriptions per hour, domain and instance",
    columns=(
        Column("subscriptions", "int"),
        Column("domain", required=False),
        Column("hour", "timestamptz"),
        Column("instance", required=False),
    ),
    dated_by="hour",
    derived=(_file_date("extracted_on"),),
    key=("hour", "domain", "instance"),
    partition=ByMonth("hour"),
    # The export recounts recent hours: the latest extraction is the truth for a key.
    merge=LatestExtraction("extracted_on", then=("subscriptions",)),
)

EVENTS_AGGREGATE = Export(
    name="events_roomv9_aggregate",
    table="events_aggregate",
    description="events per hour, event type, domain and instance",
    columns=(
        Column("events", "int"),
        Column("type"),
        Column("domain", required=False),
        Column("hour", "timestamptz"),
        Column("instance", required=False),
    ),
    dated_by="hour",
    derived=(_file_date("extracted_on"),),
    table_order=("events", "domain", "hour", "instance", "type", "extracted_on"),
    key=("hour", "domain", "instance", "type"),
    partition=ByMonth("hour"),
    merge=LatestExtraction("extracted_on", then=("events",)),
)

ACCOUNT_DATA = Export(
    name="account_data",
    table="account_data_aggregate",
    description="current account data per user and type (a key absent from a file is kept)",
    columns=(
        Column("user_id"),
        Column("account_data_type"),
        # JSON of any size, pretty-printed over several lines at times.
        Column("content", required=False, max_bytes=None, multiline=True),
        Column("instance", required=False),
        Column("domain", required=False),
    ),
    derived=(_file_date("extracted_on"),),
    key=("user_id", "account_data_type"),
    partition=None,
    merge=LatestExtraction("extracted_on", then=("content", "instance", "domain")),
)

SSO = Export(
    name="sso",
    table="sso_aggregate",
    description="users by authentication method per domain and instance, one snapshot a day",
    columns=(
        Column("total_users", "int"),
        Column("domain", required=False),
        Column("instance", required=False),
        Column("users_legacy", "int", target="only_pwd"),
        Column("users_both_authentication", "int", target="pwd_and_prococonnect"),  # sic
        Column("users_proconnect", "int", target="only_proconnect"),
    ),
    derived=(_file_date("added_date"),),
    key=("added_date", "domain", "instance"),
    partition=ByMonth("added_date"),
    merge=SnapshotPerFile(order=("total_users", "only_pwd", "pwd_and_prococonnect",
                                 "only_proconnect")),
)

CRISP_CONVERSATION_SEGMENTS = Export(
    name="crisp_conversation_segments",
    table="crisp_conversation_segments",
    description="support conversations' segments (Crisp), last state of each",
    columns=(
        Column("session_id"),
        Column("state", required=False),
        Column("segment"),
        Column("created_at", "timestamp"),
        Column("updated_at", "timestamp"),
        Column("domain", required=False),
    ),
    table_order=("session_id", "segment", "state", "domain", "created_at", "updated_at"),
    key=("session_id", "segment"),
    partition=None,
    # The newer update wins; ties by the later creation, then state and domain (greatest).
    merge=KeepGreatest(order=("updated_at", "created_at", "state", "domain")),
)

PUSHERS = Export(
    name="pushers",
    table="pushers_aggregate",
    description="push notification registrations, one snapshot a day (large: off by default)",
    columns=(
        Column("user_name"),
        Column("device_id", required=False),
        Column("app_id"),
        Column("kind"),
        Column("enabled", "bool", target="is_enabled"),
        Column("instance", required=False),
        Column("domain", required=False),
    ),
    derived=(_file_date("added_date"),),
    # The old table's unique key plus user_name: device ids are unique per user only, and
    # e-mail pushers have none (the old table let those through as NULLs).
    key=("added_date", "kind", "app_id", "device_id", "user_name"),
    partition=ByMonth("added_date"),
    merge=SnapshotPerFile(order=("is_enabled", "instance", "domain")),
    enabled_by_default=False,
)

EXPORTS: dict[str, Export] = {e.name: e for e in (
    USER_DAILY_VISITS, SUBSCRIPTIONS_AGGREGATE, EVENTS_AGGREGATE, ACCOUNT_DATA, SSO,
    CRISP_CONVERSATION_SEGMENTS, PUSHERS,
)}
DEFAULT = "default"  # in a list of names: the exports enabled by default


def default_exports(enabled: tuple[str, ...] = ()) -> list[Export]:
    """The exports a run loads when not told: TCHAP_STATS_EXPORTS, else those enabled by
    default. ValueError on an unknown name."""
    return parse_only(",".join(enabled)) if enabled else [
        e for e in EXPORTS.values() if e.enabled_by_default]


def parse_only(value: str) -> list[Export]:
    """`--only a,b` (or TCHAP_STATS_EXPORTS): the named exports in registry order, `default`
    standing for the exports enabled by default; ValueError listing the valid names."""
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in EXPORTS and n != DEFAULT]
    if unknown or not names:
        raise ValueError(
            f"unknown export(s): {', '.join(unknown) or '(none given)'}; "
            f"valid: {', '.join(EXPORTS)} (or {DEFAULT}: the exports enabled by default)"
        )
    wanted = set(names)
    return [e for e in EXPORTS.values()
            if e.name in wanted or (DEFAULT in wanted and e.enabled_by_default)]
