"""The code's own checks run with the tests, so CI runs them too: ruff (style, imports,
bug patterns) and mypy (types) over the package, the tests and the benchmarks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def checker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_ruff_is_clean():
    done = checker("ruff", "check", "--no-cache", ".")
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_is_clean():
    done = checker("mypy", "--cache-dir", "/dev/null", "tchap_stats")
    assert done.returncode == 0, done.stdout + done.stderr
