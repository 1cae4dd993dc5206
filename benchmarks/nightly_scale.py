"""A nightly run of every export at production scale, run as Scalingo's cron runs it.

Setup (not timed as the night): an embedded PostgreSQL (pgserver), a moto S3 server on
loopback, the generated files of every export (`tchap-stats generate --only
default,pushers`, `user_daily_visits` at --rows rows, the others as the generator sizes
them; cached under .tchap-stats/bench/nightly-ROWS/), uploaded to its bucket; a database
migrated (`tchap-stats migrate`, the postdeploy step) holding --history-days days before the
night at the same size (`tchap-stats backfill --no-refresh`, then `tchap-stats refresh`);
then a quiet server (no autovacuum worker at work) and a CHECKPOINT.

Measured: `tchap-stats sync --date D --max-minutes 12`, the command of cron.json with the
night's date, as its own process with a production-like environment: S3_* pointing to the
moto bucket (S3_BUCKET_NAME, not --source), DATABASE_URL, TCHAP_STATS_EXPORTS=default,pushers,
every other TCHAP_STATS_* setting at its default (DuckDB's cap of 128MB, the spill directory
under the process's working directory, pre-aggregation on). Its wall time, and its peak RSS:
psutil sums the RSS of the process and all its descendants every 50 ms (the highest sum
counts); the kernel's high-water mark of the sync process itself (VmHWM), read at each
sample, is printed beside it. (resource.getrusage(RUSAGE_CHILDREN).ru_maxrss is not used:
it is the largest child this process ever waited for, here `generate` holding a million
users, and a child started by vfork inherits this process's own high-water mark.)

Prints a table (wall time against the Scheduler's kill at 15 minutes, peak RSS against the
M container's 512 MiB and the S container's 256 MiB, rows loaded per export) and the sync's
own lines, each with the second it appeared and the peak RSS since the line before (files
load one after another: each file's peak); writes benchmarks/results/nightly_scale.json.

    .venv/bin/python benchmarks/nightly_scale.py                  # 1,000,000 rows, 3 days
    .venv/bin/python benchmarks/nightly_scale.py --rows 100000 --history-days 1
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import psutil
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import moto_s3  # noqa: E402
from refresh import quiet  # noqa: E402

from tchap_stats.database import start_embedded  # noqa: E402
from tchap_stats.dates import days_between  # noqa: E402
from tchap_stats.exports import parse_only  # noqa: E402
from tchap_stats.source import s3_client  # noqa: E402

NIGHT = date(2026, 11, 18)  # mid-month: its history days fall in the same month
BUCKET = "tchap-exports"
ENABLED = "default,pushers"
CRON_ARGS = ("sync", "--max-minutes", "12")  # cron.json's command, --date added
KILL_SECONDS = 15 * 60  # Scalingo's Scheduler kills one-off containers at 15 minutes
CONTAINERS_MIB = (("M", 512), ("S", 256))
SAMPLE_SECONDS = 0.05
RESULTS = ROOT / "benchmarks" / "results"
BIN = Path(sys.executable).parent


def generated_files(rows: int, days: list[date]) -> list[Path]:
    """Every enabled export's file of each day, generated once and cached (deterministic,
    slow to make: about a minute a day at a million rows)."""
    cache = ROOT / ".tchap-stats" / "bench" / f"nightly-{rows}"
    exports = parse_only(ENABLED)
    wanted = [cache / e.file_name(d) for d in days for e in exports]
    missing = sorted({d for d in days for e in exports if not (cache / e.file_name(d)).exists()})
    if missing:
        print(f"generating {missing[0]}..{missing[-1]} at {rows:,} rows a day (cached in "
              f"{cache.relative_to(ROOT)}) …", flush=True)
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache, prefix="partial-") as partial:
            started = time.perf_counter()
            subprocess.run([str(BIN / "tchap-stats"), "generate", "--from", str(missing[0]),
                            "--to", str(missing[-1]), "--rows-per-day", str(rows),
                            "--out", partial, "--only", ENABLED], check=True,
                           stdout=subprocess.DEVNULL)
            for path in Path(partial).iterdir():
                path.rename(cache / path.name)
            print(f"    {time.perf_counter() - started:.0f} s", flush=True)
    return wanted


def production_env(url: str, endpoint: str) -> dict[str, str]:
    """What a Scalingo one-off container's process sees, as far as tchap-stats reads it:
    the add-on's DATABASE_URL, the S3 variables of scalingo.json (here the moto bucket),
    TCHAP_STATS_EXPORTS; nothing else of this shell's TCHAP_STATS_* or S3_*."""
    env = {k: v for k, v in os.environ.items()
           if k in ("HOME", "LANG", "LC_ALL", "TMPDIR", "USER", "PYTHONDONTWRITEBYTECODE")}
    env.update({
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "DATABASE_URL": url,
        "S3_BUCKET_NAME": BUCKET,
        "S3_ACCESS_KEY_ID": "bench",
        "S3_SECRET_ACCESS_KEY": "bench",
        "S3_ENDPOINT": endpoint,  # http://127.0.0.1:PORT: the prefix turns TLS off
        "S3_REGION": "us-east-1",
        "S3_URL_STYLE": "path",
        "TCHAP_STATS_EXPORTS": ENABLED,
    })
    return env


def tchap_stats(env: dict[str, str], cwd: Path, *args: str) -> tuple[float, str]:
    """A setup step, as its own process; exits on failure."""
    started = time.perf_counter()
    result = subprocess.run([str(BIN / "tchap-stats"), *args], env=env, cwd=cwd,
                            capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"tchap-stats {' '.join(args)} failed ({result.returncode}):\n"
                 f"{result.stdout}\n{result.stderr}")
    return seconds, result.stdout


def vm_hwm_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def measured_sync(env: dict[str, str], cwd: Path, night: date, logs: Path) -> dict:
    """The cron command as its own process, sampled every 50 ms."""
    command = [str(BIN / "tchap-stats"), *CRON_ARGS[:1], "--date", night.isoformat(),
               *CRON_ARGS[1:]]
    stdout_path, stderr_path = logs / "sync.stdout", logs / "sync.stderr"
    peak_tree, peak_hwm, samples, most_processes = 0, 0, 0, 1
    timeline: list[tuple[float, int]] = []  # (seconds, MiB) each time the peak grows
    # Each line of the sync's stdout as it appears (click flushes each; files load one
    # after another), with the highest sample since the line before: the first file's
    # span includes the process's start; the report (totals, summaries, by export) is
    # printed after the refresh, so its first line's span is the refresh.
    lines: list[dict] = []
    pending, span_peak = "", 0
    cpu_before = os.times()
    load_before = os.getloadavg()
    with stdout_path.open("w") as out, stderr_path.open("w") as err, \
            stdout_path.open() as watched:
        started = time.perf_counter()
        process = psutil.Popen(command, env=env, cwd=cwd, stdout=out, stderr=err)

        def new_lines() -> None:
            nonlocal pending, span_peak
            pending += watched.read()
            *complete, pending = pending.split("\n")
            for k, line in enumerate(complete):  # lines read together share one span
                lines.append({"line": line, "at": round(time.perf_counter() - started, 2),
                              "span_peak_mib": None if k else span_peak >> 20})
                span_peak = 0

        while process.poll() is None:
            try:
                tree = [process, *process.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            total = 0
            for each in tree:
                with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                    total += each.memory_info().rss
            peak_hwm = max(peak_hwm, vm_hwm_kib(process.pid))
            samples += 1
            most_processes = max(most_processes, len(tree))
            span_peak = max(span_peak, total)
            if total > peak_tree:
                peak_tree = total
                timeline.append((round(time.perf_counter() - started, 2), total >> 20))
            new_lines()
            time.sleep(SAMPLE_SECONDS)
        code = process.wait()
        seconds = time.perf_counter() - started
        new_lines()
        if pending:
            lines.append({"line": pending, "at": round(seconds, 2),
                          "span_peak_mib": span_peak >> 20})
    cpu_after = os.times()
    return {
        "command": "tchap-stats " + " ".join(command[1:]),
        "exit_code": code, "wall_seconds": seconds,
        "cpu_seconds": (cpu_after.children_user - cpu_before.children_user
                        + cpu_after.children_system - cpu_before.children_system),
        "peak_rss_tree_mib": peak_tree / 2**20, "vm_hwm_mib": peak_hwm / 1024,
        "samples": samples, "most_processes": most_processes,
        "peak_growth": timeline,
        "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "lines": lines, "stdout": stdout_path.read_text(), "stderr": stderr_path.read_text(),
    }


BY_EXPORT = re.compile(r"^\s+(\w+): (.+?) \(exit (\d+)\) · .*?rows loaded ([\d,]+)")


def rows_by_export(stdout: str) -> dict[str, tuple[int, str]]:
    found = {}
    for line in stdout.splitlines():
        match = BY_EXPORT.match(line)
        if match:
            found[match[1]] = (int(match[4].replace(",", "")), match[2])
    return found


def verdict(value: float, limit: float) -> str:
    return f"{value / limit:.0%} of it" + ("  ** EXCEEDED **" if value > limit else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000,
                        help="rows of user_daily_visits a day (default 1,000,000)")
    parser.add_argument("--history-days", type=int, default=3,
                        help="days loaded before the night, at the same size (default 3)")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="build in DIR and keep it (its PostgreSQL data directory, the "
                             "sync's output); default: a temporary directory")
    args = parser.parse_args()
    night = NIGHT
    history = days_between(night - timedelta(days=args.history_days),
                           night - timedelta(days=1)) if args.history_days > 0 else []
    # The deploy step (bin/post_compile), with this interpreter first on PATH: the night
    # runs with tchap-stats' bytecode compiled, as a deployed image has it.
    subprocess.run([str(ROOT / "bin" / "post_compile")], cwd=ROOT, check=True, env={
        **os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"})
    files = generated_files(args.rows, [*history, night])
    run_started = time.perf_counter()
    setup: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="tchap-bench-nightly-") as tmp:
        workdir = (args.keep or Path(tmp)).resolve()
        if args.keep and (workdir / "pgdata").exists():
            sys.exit(f"{workdir}/pgdata exists: --keep wants a new directory")
        app = workdir / "app"  # the process's working directory (/app on Scalingo)
        app.mkdir(parents=True, exist_ok=True)
        url = start_embedded(workdir / "pgdata")
        with psycopg.connect(url, autocommit=True) as conn:
            postgresql = conn.execute("SHOW server_version").fetchone()[0]
        moto, s3, endpoint = moto_s3.start_bucket(BUCKET)
        env = production_env(url, endpoint)

        started = time.perf_counter()
        client = s3_client(s3)
        for path in files:
            client.upload_file(str(path), BUCKET, path.name)
        setup["upload"] = time.perf_counter() - started
        sizes = {p.name: p.stat().st_size for p in files}
        print(f"uploaded {len(files)} files ({sum(sizes.values()) / 2**20:,.0f} MiB) to "
              f"moto in {setup['upload']:.0f} s", flush=True)

        setup["migrate"], _ = tchap_stats(env, app, "migrate")
        if history:
            print(f"history {history[0]}..{history[-1]}: tchap-stats backfill --no-refresh …",
                  flush=True)
            setup["backfill"], out = tchap_stats(
                env, app, "backfill", "--from", str(history[0]), "--to", str(history[-1]),
                "--no-refresh")
            totals = next((line for line in out.splitlines() if " file(s): " in line), "")
            print(f"    {setup['backfill']:.0f} s · {totals}", flush=True)
            print("    tchap-stats refresh …", flush=True)
            setup["refresh"], out = tchap_stats(env, app, "refresh")
            print(f"    {setup['refresh']:.0f} s · {out.strip()}", flush=True)
        setup["quiet_wait"] = quiet(url, timeout=900.0)
        print(f"night {night}: {' '.join(CRON_ARGS[:1])} --date {night} "
              f"{' '.join(CRON_ARGS[1:])} (waited {setup['quiet_wait']:.0f} s for a quiet "
              f"server; load average {os.getloadavg()[0]:.2f}) …", flush=True)
        night_run = measured_sync(env, app, night, workdir)
        moto.stop()

    rows = rows_by_export(night_run["stdout"])
    night_files = {p.name: sizes[p.name] for p in files if str(night) in p.name}
    mib = night_run["peak_rss_tree_mib"]
    width = 34
    print()
    print(f"nightly sync of {night}: user_daily_visits of {args.rows:,} rows, every export "
          f"({ENABLED}), {args.history_days} day(s) of history; PostgreSQL {postgresql}, "
          f"{os.cpu_count()} cores")
    print(f"{'figure':<{width}}{'value':>14}   against")
    print(f"{'wall time (whole process)':<{width}}{night_run['wall_seconds']:>12.1f} s   "
          f"the Scheduler's kill at {KILL_SECONDS} s: "
          f"{verdict(night_run['wall_seconds'], KILL_SECONDS)}; --max-minutes 12 (720 s): "
          f"{verdict(night_run['wall_seconds'], 720)}")
    print(f"{'CPU (user + system)':<{width}}{night_run['cpu_seconds']:>12.1f} s")
    for name, limit in CONTAINERS_MIB:
        label = "peak RSS, process tree (50 ms)" if name == "M" else ""
        value = f"{mib:>10.0f} MiB" if name == "M" else ""
        print(f"{label:<{width}}{value:>14}   {name} container, {limit} MiB: "
              f"{verdict(mib, limit)}")
    print(f"{'VmHWM of the sync process':<{width}}{night_run['vm_hwm_mib']:>10.0f} MiB")
    print(f"{'exit code':<{width}}{night_run['exit_code']:>14}")
    print(f"{'load average before / after':<{width}}"
          f"{night_run['load_average_before'][0]:>9.2f} / {night_run['load_average_after'][0]:.2f}")
    print()
    print(f"{'export':<{width}}{'rows loaded':>14}   outcome · file size")
    for name, (loaded, outcome) in rows.items():
        size = next((s for f, s in night_files.items() if f.startswith(f"{name}_")), 0)
        print(f"{name:<{width}}{loaded:>14,}   {outcome} · {size / 2**20:.1f} MiB")
    print()
    print("the sync's output (seconds since its start when the line appeared · peak RSS "
          "since the line before):")
    for each in night_run["lines"]:
        peak = each["span_peak_mib"]
        print(f"{each['at']:>8.1f} s " + (f"{peak:>5} MiB" if peak is not None else " " * 9)
              + f"  {each['line']}")
    if night_run["stderr"].strip():
        print("its stderr:")
        for line in night_run["stderr"].strip().splitlines()[-20:]:
            print("   ", line)
    print("(peak RSS grew at: " + ", ".join(f"{s} s {m} MiB" for s, m in
                                              night_run["peak_growth"][-8:]) + ")")
    results = {
        "night": str(night), "rows": args.rows, "history_days": args.history_days,
        "exports": ENABLED, "postgresql": postgresql, "cores": os.cpu_count(),
        "setup_seconds": setup, "run_minutes": (time.perf_counter() - run_started) / 60,
        "night_file_bytes": night_files,
        "rows_loaded": {name: loaded for name, (loaded, _) in rows.items()},
        **night_run,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "nightly_scale.json").write_text(json.dumps(results, indent=2))
    print(f"written {RESULTS / 'nightly_scale.json'}")
    if args.keep:
        shutil.copy(RESULTS / "nightly_scale.json", args.keep / "nightly_scale.json")
    if night_run["exit_code"] != 0:
        sys.exit(night_run["exit_code"])


if __name__ == "__main__":
    main()
