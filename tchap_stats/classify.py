"""User-agent classification (DESIGN §3): one rules table, rendered for DuckDB and PostgreSQL.

The first matching SQL LIKE pattern wins, so order matters. The rules are data; sqlglot
turns them into a CASE expression in whichever dialect asks, so DuckDB staging and any
PostgreSQL-side classification (legacy migration, checks) can never drift apart.
"""

from __future__ import annotations

from functools import cache

from sqlglot import exp

Rule = tuple[str, str]  # (LIKE pattern, label)

PLATFORM_RULES: tuple[Rule, ...] = (
    ("Mozilla%", "Web"),
    ("Tchap%Android%", "Mobile"),
    ("RiotNSE/2%iOS%", "Mobile"),
    ("RiotSharedExtension/2%iOS%", "Mobile"),
    ("Tchap%iOS%", "Mobile"),
    ("Riot%iOS", "Mobile"),
    ("Riot%Android", "Mobile"),
    ("Element%Android", "Mobile"),
    ("Element%iOS", "Mobile"),
)
PLATFORM_DEFAULT = "Autre"

DEVICE_TYPE_RULES: tuple[Rule, ...] = (
    ("Mozilla%Windows%Firefox%", "Firefox Windows"),
    ("Mozilla%Windows%Chrome%", "Chrome Windows"),
    ("Mozilla%Windows%Trident%", "Internet Explorer Windows"),
    ("Mozilla%Mac OS%Firefox%", "Firefox Mac OS"),
    ("Mozilla%Mac OS%Chrome%", "Chrome Mac OS"),
    ("Mozilla%Mac OS%Safari%", "Safari Mac OS"),
    ("Mozilla%Android%Firefox%", "Firefox Android"),
    ("Mozilla%Android%Chrome%", "Chrome Android"),
    ("Mozilla%Linux%Firefox%", "Firefox Linux"),
    ("Mozilla%Linux%Chrome%", "Chrome Linux"),
    ("Mozilla%CrOS%Chrome%", "Chrome OS"),
    ("Mozilla%Mobile%", "Navigateur Mobile"),
    ("Mozilla%", "Autre Navigateur"),
    ("Tchap%NEO%", "Tchap Android NEO"),
    ("Tchap%Android%", "Tchap Android"),
    ("RiotNSE/2%iOS%", "Tchap iOS"),
    ("RiotSharedExtension/2%iOS%", "Tchap iOS"),
    ("Tchap%iOS%", "Tchap iOS"),
    ("Riot%", "Element"),
    ("Element%", "Element"),
)
DEVICE_TYPE_DEFAULT = "Autre"

CLASSIFIERS: dict[str, tuple[tuple[Rule, ...], str]] = {
    "platform": (PLATFORM_RULES, PLATFORM_DEFAULT),
    "device_type": (DEVICE_TYPE_RULES, DEVICE_TYPE_DEFAULT),
}


def case_expression(rules: tuple[Rule, ...], default: str, column: str) -> exp.Case:
    case = exp.Case()
    for pattern, label in rules:
        case = case.when(
            exp.Like(this=exp.column(column), expression=exp.Literal.string(pattern)),
            exp.Literal.string(label),
        )
    return case.else_(exp.Literal.string(default))


@cache
def classify_sql(classifier: str, column: str, dialect: str) -> str:
    """SQL text of the CASE expression that classifies `column`, in `dialect`."""
    rules, default = CLASSIFIERS[classifier]
    return case_expression(rules, default, column).sql(dialect=dialect)
