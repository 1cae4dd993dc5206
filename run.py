#!/usr/bin/env python3
"""Bootstrap for a fresh machine with only Python 3.11: creates .venv, installs the
project into it (again only when pyproject.toml changed), then runs what was asked.

    python3 run.py demo     # synthetic exports → embedded PostgreSQL, printing what it did
    python3 run.py test     # the whole test suite (what .ci/run runs)
    python3 run.py bench    # benchmarks/load.py
    python3 run.py -- ARGS  # any tchap-stats command, e.g. python3 run.py -- backfill --help
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
EXTRAS = {"demo": "embedded", "test": "embedded,test", "bench": "embedded,test,bench"}


def ensure_environment(extras: str) -> None:
    if not (BIN / "python").exists():
        print(f"creating {VENV}", file=sys.stderr)
        venv.EnvBuilder(with_pip=True).create(VENV)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extras.encode()).hexdigest()
    stamp = VENV / f".installed-{digest[:16]}"
    if stamp.exists():
        return
    print(f"installing tchap-stats[{extras}] into {VENV}", file=sys.stderr)
    pip = [str(BIN / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "-e", f"{ROOT}[{extras}]"], check=True)
    for old in VENV.glob(".installed-*"):
        old.unlink()
    stamp.touch()


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 11):  # noqa: UP036 (this file may run on an older python3)
        print(f"Python 3.11 or newer is needed (this is {sys.version.split()[0]})")
        return 1
    command = argv[0] if argv else "demo"
    if command == "--":
        ensure_environment(EXTRAS["demo"])
        return subprocess.call([str(BIN / "tchap-stats"), *argv[1:]])
    if command not in EXTRAS:
        print(__doc__, file=sys.stderr)
        return 2
    ensure_environment(EXTRAS[command])
    if command == "demo":
        return subprocess.call([str(BIN / "tchap-stats"), "demo", *argv[1:]], cwd=ROOT)
    if command == "test":
        return subprocess.call([str(BIN / "python"), "-m", "pytest", *argv[1:]], cwd=ROOT)
    return subprocess.call([str(BIN / "python"), "benchmarks/load.py", *argv[1:]], cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
