"""The package as users install it: a wheel built from the checkout, installed into a fresh
virtual environment outside it, migrates a database and syncs a day from there."""

from __future__ import annotations

import os
import site
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build_wheel(out: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "-q", "-w", str(out), str(ROOT)],
                   check=True, cwd=out)
    (wheel,) = out.glob("tchap_stats-*.whl")
    return wheel


def fresh_environment(where: Path, wheel: Path) -> Path:
    """A new virtual environment holding the wheel; its dependencies are this one's (the
    libraries, read through a path file: no download, and no editable install of the
    checkout, whose own path files are not read from there)."""
    venv.create(where, with_pip=False)
    python = where / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; "
                              "print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    libraries = {sysconfig.get_paths()["purelib"], *site.getsitepackages()}
    Path(purelib, "dependencies.pth").write_text("\n".join(sorted(libraries)) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                    "--no-deps", "--disable-pip-version-check", "-q", str(wheel)], check=True)
    return where / "bin"


def test_a_wheel_installed_outside_the_checkout_migrates_and_syncs(tmp_path, empty_database_url):
    wheel = build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    assert "tchap_stats/sql/migrations/001_core.sql" in names
    assert "tchap_stats/sql/staging/typed_rows.sql" in names and "tchap_stats/py.typed" in names
    bin_dir = fresh_environment(tmp_path / "venv", wheel)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TCHAP_STATS_", "S3_", "PYTHON"))}
    env["DATABASE_URL"] = empty_database_url

    def tchap_stats(*args: str) -> str:
        done = subprocess.run([str(bin_dir / "tchap-stats"), *args], cwd=work, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    where = subprocess.run([str(bin_dir / "python"), "-c",
                            "import tchap_stats; print(tchap_stats.__file__)"],
                           cwd=work, env=env, capture_output=True, text=True, check=True)
    assert where.stdout.startswith(str(tmp_path / "venv")), where.stdout
    assert "applied now" in tchap_stats("migrate")
    tchap_stats("generate", "--from", "2026-11-14", "--to", "2026-11-14", "--rows-per-day",
                "300", "--out", "exports", "--only", "user_daily_visits")
    synced = tchap_stats("--source", "exports", "sync", "--date", "2026-11-14",
                         "--only", "user_daily_visits")
    assert "user_daily_visits: ok (exit 0)" in synced and "summaries:" in synced
