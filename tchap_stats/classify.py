"""User-agent classification (DESIGN §3): one rules table, one CASE expression.

The first matching SQL LIKE pattern wins, so order matters. The rules are data, rendered
as one CASE expression in the SQL that DuckDB and PostgreSQL read alike: DuckDB staging
and any PostgreSQL-side classification (legacy migration, benchmarks) run the same text
and can never drift apart (tests/test_classify.py runs it in both engines).
"""

from __future__ import annotations

from functools import cache

from .sqltext import identifier, literal

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


@cache
def classify_sql(classifier: str, column: str) -> str:
    """SQL text of the CASE expression that classifies `column`, for DuckDB and PostgreSQL."""
    rules, default = CLASSIFIERS[classifier]
    whens = " ".join(f"WHEN {identifier(column)} LIKE {literal(pattern)} THEN {literal(label)}"
                     for pattern, label in rules)
    return f"CASE {whens} ELSE {literal(default)} END"
