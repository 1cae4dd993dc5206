"""Near misses: files whose names are close to an expected export file's
`{export}_{YYYY-MM-DD}.csv` without being it, so that a missing file can say "found
user_daily_visits_2026-12-01.CSV" rather than only "missing".

A name is a near miss of the expected one when it starts with the same export name and
names the same day once normalised: the extension in any case (.csv, .CSV, .tsv, .txt
or none), compressed (.gz, .zip, ...), the day's parts unpadded or run together
(2026-12-1, 20261201), `-`, `_` or `.` between them and after the export name.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Iterable
from datetime import date
from pathlib import Path

log = logging.getLogger("tchap_stats")

_EXPECTED = re.compile(r"(?P<export>.+)_(?P<day>\d{4}-\d{2}-\d{2})\.csv")
_COMPRESSIONS = (".gz", ".gzip", ".bz2", ".xz", ".zst", ".zstd", ".zip", ".lz4")
_EXTENSIONS = (".csv", ".tsv", ".txt")
_DAY = re.compile(r"[-_. ]?(?:(\d{4})[-_.](\d{1,2})[-_.](\d{1,2})|(\d{4})(\d{2})(\d{2}))")


def export_of(name: str) -> str | None:
    """The export name of an expected file name, None for another name."""
    match = _EXPECTED.fullmatch(name)
    return match["export"] if match else None


def _strip_suffixes(rest: str) -> str:
    rest = rest.lower()
    while rest.endswith(_COMPRESSIONS):
        rest = rest[:rest.rindex(".")]
    for extension in _EXTENSIONS:
        rest = rest.removesuffix(extension)
    return rest


def _day_of(rest: str) -> date | None:
    """The day the part of a name after its export name stands for, or None."""
    match = _DAY.fullmatch(_strip_suffixes(rest))
    if not match:
        return None
    year, month, day = (int(part) for part in match.groups() if part is not None)
    try:
        return date(year, month, day)
    except ValueError:
        return None


def close_names(expected: str, names: Iterable[str]) -> list[str]:
    """The names among `names` that are near misses of the expected file name, sorted."""
    match = _EXPECTED.fullmatch(expected)
    if not match:
        return []
    export, day = match["export"], date.fromisoformat(match["day"])
    return sorted(name for name in names if name != expected and name.startswith(export)
                  and _day_of(name[len(export):]) == day)


def directory_names(directory: Path) -> list[str]:
    """The names of the files directly in `directory` ([] when it cannot be read)."""
    try:
        with os.scandir(directory) as entries:
            return [entry.name for entry in entries if entry.is_file()]
    except OSError as exc:
        log.info("could not list %s to look for near misses of missing files: %s",
                 directory, exc)
        return []


class ListingCache:
    """A source's listings by export name, each made once (the first missing file of an
    export lists its names; the others reuse them), safely across a run's threads. A
    listing that fails, of the errors given, is logged and stands for no names."""

    def __init__(self, description: str, errors: tuple[type[BaseException], ...]):
        self.description = description
        self.errors = errors
        self._names: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    def names(self, export: str, list_names: Callable[[str], list[str]]) -> list[str]:
        with self._lock:
            if export not in self._names:
                self._names[export] = self._list(export, list_names)
            return self._names[export]

    def _list(self, export: str, list_names: Callable[[str], list[str]]) -> list[str]:
        try:
            return list_names(export)
        except self.errors as exc:
            log.info("could not list %s/%s* to look for near misses of missing files: %s",
                     self.description, export, exc)
            return []


def near_miss_note(names: list[str]) -> str | None:
    """What a missing file's outcome says of its near misses (None without any)."""
    if not names:
        return None
    action = "rename it to load it" if len(names) == 1 else "rename the right one to load it"
    if any(name.lower().endswith(_COMPRESSIONS) for name in names):
        action += " (decompressed: runs read plain CSV)"
    return f"found near misses: {', '.join(names)} — {action}"
