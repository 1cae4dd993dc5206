"""Quoting for SQL text that no driver composes: DuckDB's staging statements, and the
classification CASE that DuckDB and PostgreSQL both run. Both engines read standard SQL
quoting the same way: double quotes around names, single quotes around strings, each
doubled inside (backslashes are plain characters: PostgreSQL's standard_conforming_strings,
on by default since 9.1). Statements for PostgreSQL alone are composed with psycopg.sql.
Also: splitting a SQL file of several statements.
"""

from __future__ import annotations

import re


def identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


_TOKENS = re.compile(r"""
    (?P<dollar>\$(?P<tag>[A-Za-z_]\w*)?\$)   # $$ or $tag$: dollar quoting opens
  | '(?:[^']|'')*'                            # a string
  | "(?:[^"]|"")*"                            # a quoted identifier
  | --[^\n]*                                  # a line comment
  | /\*.*?\*/                                  # a block comment
  | (?P<end>;)                                # the end of a statement
""", re.VERBOSE | re.DOTALL)


def statements(script: str) -> list[str]:
    """The statements of a SQL script, split at the semicolons that are not inside a
    string, a quoted name, a comment or a dollar-quoted body; comments-only parts dropped."""
    found, start, position = [], 0, 0
    while match := _TOKENS.search(script, position):
        position = match.end()
        if match["dollar"]:  # skip to the same closing tag
            close = script.find(match["dollar"], position)
            position = len(script) if close < 0 else close + len(match["dollar"])
        elif match["end"]:
            found.append(script[start:match.start()])
            start = position
    found.append(script[start:])
    return [s.strip() for s in found if _has_code(s)]


def _has_code(text: str) -> bool:
    without = re.sub(r"--[^\n]*|/\*.*?\*/", "", text, flags=re.DOTALL)
    return bool(without.strip())
