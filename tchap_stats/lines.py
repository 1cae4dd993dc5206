"""Line-exact reading: every physical line of a file accounted for, for the files DuckDB's
CSV reader cannot account for line by line.

DuckDB's reader is fast and strict, but a quote that never closes makes it read on,
across line breaks, until some later quote: the lines in between become one value, one
record, or one reject. Staging notices (a value or a reject spanning lines, or a file the
reader refuses whole) and reads the file again here, in Python, one physical line at a
time:

- a line that is a complete CSV record is kept as it is;
- a line whose quote does not close on it is rejected, alone, naming the column where the
  quote opened; the next line is read as a record of its own. Only in a column declared
  `multiline` may a quoted value run over several lines (account_data's JSON content);
- blank lines hold no row and are counted.

The kept records go to a new CSV file, each prefixed with its line number in the original
file, which DuckDB then stages as usual: every row and every reject keeps its own line.
"""

from __future__ import annotations

import csv
import io
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .exports import Export

LINE_COLUMN = "__line"  # the first column of the rewritten file: the record's first line
MAX_RAW_LINE = 10_000  # characters of a rejected line kept in the rejects table
MAX_SPAN_BYTES = 4 << 20  # a multi-line value longer than this is taken for an open quote
BOM = b"\xef\xbb\xbf"

_QUOTED = rb'"(?:[^"]|"")*"'
_UNQUOTED = rb'(?:[^,"\r\n][^,\r\n]*)?'  # a quote may appear inside, never first
_FIELD = rb"(?:" + _QUOTED + rb"|" + _UNQUOTED + rb")"
RECORD = re.compile(_FIELD + rb"(?:," + _FIELD + rb")*")


@dataclass
class LineReport:
    lines: int = 0  # physical lines after the header
    blank: int = 0
    records: int = 0  # records written
    record_lines: int = 0  # physical lines those records span
    rejects: list[tuple[int, str | None, str, str]] = field(default_factory=list)
    first_open_quote: int | None = None  # the first line on which a quote did not close

    @property
    def accounted(self) -> bool:
        return self.lines == self.blank + self.record_lines + len(self.rejects)


class Readable(Protocol):
    """A binary stream, as far as reading it line by line goes: an open file, an S3
    object's body (source.py)."""

    def read(self, size: int = -1, /) -> bytes: ...


def line_ending(head: bytes) -> bytes:
    """The line ending of a file, from its first line: \\r\\n, \\n or (old Mac) \\r."""
    match = re.search(rb"\r\n|\n|\r", head)
    return match[0] if match else b"\n"


def physical_lines(stream: Readable, ending: bytes, chunk: int = 1 << 20) -> Iterator[bytes]:
    pending = b""
    while data := stream.read(chunk):
        parts = (pending + data).split(ending)
        pending = parts.pop()
        yield from parts
    if pending:
        yield pending


def rewrite(stream: Readable, export: Export, out: Path) -> LineReport:
    """Split `stream` into records line by line, writing the records to `out` (a CSV file
    whose first column is each record's first line number) and returning the count of
    every line and the lines rejected here."""
    report = LineReport()
    multiline = {i for i, c in enumerate(export.columns) if c.multiline}
    with out.open("wb") as sink:
        head = stream.read(64 * 1024)
        ending = line_ending(head)
        lines = physical_lines(_Rewound(head, stream), ending)
        header = next(lines, b"").removeprefix(BOM)
        sink.write(LINE_COLUMN.encode() + b"," + header + ending)
        numbered = ((number, line) for number, line in enumerate(lines, start=2))
        for first, record, span in _records(numbered, export, multiline, ending, report):
            sink.write(b"%d," % first + record + ending)
            report.records += 1
            report.record_lines += span
    return report


def _records(numbered: Iterator[tuple[int, bytes]], export: Export, multiline: set[int],
             ending: bytes, report: LineReport) -> Iterator[tuple[int, bytes, int]]:
    """(first line, record bytes, lines spanned) for each record; rejects go to `report`."""
    pushed_back: deque[tuple[int, bytes]] = deque()

    def next_line() -> tuple[int, bytes] | None:
        if pushed_back:
            return pushed_back.popleft()
        item = next(numbered, None)
        if item is not None:
            report.lines += 1
        return item

    while (item := next_line()) is not None:
        number, line = item
        if line in (b"", b"\r"):
            report.blank += 1
            continue
        if RECORD.fullmatch(line):
            found = _field_count(line)
            if found == len(export.columns):
                yield number, line, 1
            else:
                report.rejects.append((number, None, f"expected {len(export.columns)} values, "
                                       f"found {found}", _text(line)))
            continue
        column, reason = diagnose(line, export)
        if reason.startswith("unbalanced quote"):
            report.first_open_quote = report.first_open_quote or number
            if multiline and column is not None:
                span, complete = _multiline_span(item, next_line, export, multiline, ending)
                if complete:
                    yield number, ending.join(line for _, line in span), len(span)
                    continue
                pushed_back.extendleft(reversed(span[1:]))  # each read again on its own
        report.rejects.append((number, column, reason, _text(line)))


def _text(line: bytes) -> str:
    return line.decode("utf-8", "replace")[:MAX_RAW_LINE]


def _field_count(record: bytes) -> int:
    if b'"' not in record:
        return record.count(b",") + 1
    return len(next(csv.reader([record.decode("utf-8", "replace")])))


def _multiline_span(first: tuple[int, bytes], next_line, export: Export, multiline: set[int],
                    ending: bytes) -> tuple[list[tuple[int, bytes]], bool]:
    """The lines from `first` on, and whether they make one record whose line breaks all
    lie in multiline columns."""
    span = [first]
    size = len(first[1])
    quotes = first[1].count(b'"')
    while size <= MAX_SPAN_BYTES and (item := next_line()) is not None:
        span.append(item)
        size += len(item[1]) + len(ending)
        quotes += item[1].count(b'"')
        if quotes % 2:
            continue
        joined = ending.join(line for _, line in span)
        return span, bool(RECORD.fullmatch(joined)) and _breaks_allowed(joined, export,
                                                                          multiline)
    return span, False


def _breaks_allowed(record: bytes, export: Export, multiline: set[int]) -> bool:
    text = record.decode("utf-8", "replace")
    try:
        fields = next(csv.reader(io.StringIO(text, newline=""), strict=True))
    except (csv.Error, StopIteration):
        return False
    return len(fields) == len(export.columns) and all(
        i in multiline for i, value in enumerate(fields) if "\n" in value or "\r" in value)


def diagnose(line: bytes, export: Export) -> tuple[str | None, str]:
    """Why a line is not a complete CSV record: the column at fault and the reason."""
    text = line.decode("utf-8", "replace")
    names = export.header
    column, position, quoted = 0, 0, False

    def name(index: int) -> str:
        return names[index] if index < len(names) else f"#{index + 1}"

    at_field_start = True
    while position < len(text):
        char = text[position]
        if quoted:
            if char == '"':
                following = text[position + 1:position + 2]
                if following == '"':
                    position += 1
                elif following not in ("", ","):
                    return name(column), (f"text after the closing quote of {name(column)}'s "
                                          "value")
                else:
                    quoted = False
        elif char == ",":
            column += 1
            at_field_start = True
            position += 1
            continue
        elif char == '"' and at_field_start:
            quoted = True
        elif char in "\r\n":
            kind = "carriage return" if char == "\r" else "line feed"
            return name(column), f"a {kind} outside quotes in {name(column)}'s value"
        at_field_start = False
        position += 1
    if quoted:
        return name(column), (f"unbalanced quote: the quoted value of {name(column)} is not "
                              "closed on this line, and this column cannot hold a line break"
                              if not export.columns[min(column, len(names) - 1)].multiline
                              else f"unbalanced quote: the quoted value of {name(column)} "
                              "never closes")
    return None, "not a CSV record"


class _Rewound:
    """A stream with its first bytes, already read, put back in front."""

    def __init__(self, head: bytes, rest: Readable):
        self._head = head
        self._rest = rest

    def read(self, size: int = -1) -> bytes:
        if self._head:
            head, self._head = self._head, b""
            return head
        return self._rest.read(size)
