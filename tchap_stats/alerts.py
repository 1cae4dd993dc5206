"""Failure notices: one JSON message POSTed to TCHAP_STATS_ALERT_WEBHOOK when a run fails or
an export's data is older than TCHAP_STATS_ALERT_STALE_DAYS.

The body is `{"text": …, "username": "tchap-stats"}`, which Mattermost's and Slack's
incoming webhooks and Matrix's hookshot accept as is. It holds no secret: every text
passes through the run's masking. A notice that cannot be delivered is logged, and changes
nothing else: the run's exit code says the same.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable

from .config import Settings, mask
from .runs import Freshness

log = logging.getLogger("tchap_stats")
TIMEOUT = 10  # seconds: a notice never holds a run for long


def stale(rows: Iterable[Freshness], exports: Iterable[str], after_days: int) -> list[str]:
    """Lines naming the exports (of those the runs load) whose last loaded day is more than
    `after_days` days old, or that were never loaded."""
    known = {row.export: row for row in rows}
    lines = []
    for export in exports:
        row = known.get(export)
        if row is None or row.last_day_loaded is None:
            lines.append(f"{export}: never loaded")
        elif row.days_behind is not None and row.days_behind > after_days:
            lines.append(f"{export}: last day loaded {row.last_day_loaded} "
                         f"({row.days_behind} days ago)")
    return lines


def message(command: str, exit_code: int, error: str | None, stale_lines: list[str]) -> str:
    parts = []
    if exit_code not in (0, 3):
        parts.append(f"tchap-stats {command} failed (exit {exit_code})"
                     + (f": {error}" if error else ""))
    if stale_lines:
        parts.append("data older than expected:\n" + "\n".join(f"- {s}" for s in stale_lines))
    return "\n".join(parts)


def notify(settings: Settings, text: str) -> bool:
    """POST the notice; True when the hook accepted it."""
    url = settings.alert_webhook
    if not url or not text:
        return False
    import urllib.error  # only when a notice is due: urllib's import is a tenth of a second
    import urllib.request
    body = json.dumps({"text": mask(text, settings.secrets()), "username": "tchap-stats"})
    request = urllib.request.Request(url, data=body.encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            ok = 200 <= response.status < 300
    except (urllib.error.URLError, OSError) as exc:
        log.warning("the alert webhook could not be reached: %s",
                    mask(str(exc), settings.secrets()))
        return False
    if not ok:
        log.warning("the alert webhook answered %s", response.status)
    return ok
