"""Quoting for SQL text that no driver composes: DuckDB's staging statements, and the
classification CASE that DuckDB and PostgreSQL both run. Both engines read standard SQL
quoting the same way: double quotes around names, single quotes around strings, each
doubled inside (backslashes are plain characters: PostgreSQL's standard_conforming_strings,
on by default since 9.1). Statements for PostgreSQL alone are composed with psycopg.sql.
"""

from __future__ import annotations


def identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
