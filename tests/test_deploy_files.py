"""The deployment files say what the code does: scalingo.json describes every environment
variable the package reads, the README's configuration table too, and the cron job runs
within the Scheduler's 15 minutes."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def variables_read() -> set[str]:
    names = set()
    for path in (ROOT / "tchap_stats").rglob("*.py"):
        names |= set(re.findall(r'"((?:TCHAP_STATS|S3)_[A-Z_]+|DATABASE_URL)"',
                                path.read_text()))
    return names


def test_scalingo_json_describes_every_variable():
    env = json.loads((ROOT / "scalingo.json").read_text())["env"]
    assert set(env) == variables_read()
    assert all(spec["description"] for spec in env.values())


def test_the_readme_documents_every_variable():
    readme = (ROOT / "README.md").read_text()
    assert {name for name in variables_read() if f"`{name}`" not in readme} == set()


def test_the_cron_job_catches_up_within_the_schedulers_limit():
    (job,) = json.loads((ROOT / "cron.json").read_text())["jobs"]
    minutes = float(re.search(r"--max-minutes (\d+(?:\.\d+)?)", job["command"])[1])
    assert "tchap-stats sync" in job["command"] and "--date" not in job["command"]
    assert minutes <= 12  # a one-off container is killed at 15 minutes
