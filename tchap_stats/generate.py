"""Synthetic exports that look like the real ones, deterministic for a seed.

A fixed population of users (Matrix ids over many instances and domains, one to three
devices each, a user agent per device) visits on each day. The file of day D holds D's
visits, a few percent of D-1's again (the exports overlap), a few late rows for earlier
days, some in-file duplicates with differing attributes, and, on demand, malformed lines.
Every row is a function of (seed, day, position), so any day can be generated alone.
"""

from __future__ import annotations

import csv
import random
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

from .config import S3Settings
from .load import days_between
from .source import s3_client

PARIS = ZoneInfo("Europe/Paris")

# (weight, user agent): every classification rule of DESIGN §3, and unknown agents.
USER_AGENTS: tuple[tuple[int, str], ...] = (
    (14, "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"),
    (16, "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
         "Chrome/126.0.0.0 Safari/537.36"),
    (1, "Mozilla/5.0 (Windows NT 10.0; WOW64; Trident/7.0; rv:11.0) like Gecko"),
    (2, "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:128.0) Gecko/20100101 Firefox/128.0"),
    (3, "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/126.0.0.0 Safari/537.36"),
    (3, "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/15.6.1 Safari/605.1.15"),
    (1, "Mozilla/5.0 (Android 14; Mobile; rv:128.0) Gecko/128.0 Firefox/128.0"),
    (2, "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/126.0.0.0 Mobile Safari/537.36"),
    (2, "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"),
    (1, "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/126.0.0.0 Safari/537.36"),
    (1, "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/126.0.0.0 Safari/537.36"),
    (1, "Mozilla/5.0 (Mobile; rv:48.0) Gecko/48.0 Firefox/48.0 KAIOS/2.5"),
    (1, "Mozilla/5.0 (compatible; Konqueror/4.5; FreeBSD) KHTML/4.5.4 (like Gecko)"),
    (3, "Tchap/4.3.2 (Android 14; SM-A546B; NEO)"),
    (14, "Tchap/2.10.4 (Linux; U; Android 13; SM-G991B Build/TP1A.220624.014)"),
    (3, "RiotNSE/2.4.5 (iPhone; iOS 17.5.1; Scale/3.00)"),
    (1, "RiotSharedExtension/2.4.5 (iPhone; iOS 17.5.1; Scale/3.00)"),
    (12, "Tchap/2.4.5 (iPad (9th generation); iOS 16.4.1; Scale/2.00)"),
    (1, "Riot/1.11.2 (iPhone) iOS"),
    (1, "Riot/1.4.0 (Linux; Android 9) Android"),
    (1, "Element/1.6.10 (Linux; Android 14) Android"),
    (1, "Element/1.11.0 (iPhone; iOS 17.0) iOS"),
    (1, "Element/1.11.0 (iPhone; iOS 17.0; Scale/3.00)"),
    (1, "synapse-admin/0.8.7"),
    (1, "python-requests/2.31.0"),
    (1, ""),
)

MINISTRIES = (
    ("agent_social", "social.gouv.fr"), ("agent_social", "sante.gouv.fr"),
    ("agent_finances", "finances.gouv.fr"), ("agent_finances", "dgfip.finances.gouv.fr"),
    ("agent_interieur", "interieur.gouv.fr"), ("agent_interieur", "gendarmerie.interieur.gouv.fr"),
    ("agent_education", "education.gouv.fr"), ("agent_education", "ac-paris.fr"),
    ("agent_agri", "agriculture.gouv.fr"), ("agent_culture", "culture.gouv.fr"),
    ("agent_justice", "justice.fr"), ("agent_diplomatie", "diplomatie.gouv.fr"),
    ("agent_elysee", "elysee.fr"), ("agent_collectivites", "paris.fr"),
    ("agent_dinum", "numerique.gouv.fr"), ("externe", "gmail.com"),
)
FIRST_NAMES = ("jean", "marie", "pierre", "sophie", "luc", "claire", "paul", "anne", "louis",
               "camille", "hugo", "lea", "nicolas", "julie", "thomas", "emma", "karim", "ines")
LAST_NAMES = ("dupont", "martin", "bernard", "durand", "petit", "leroy", "moreau", "simon",
              "laurent", "lefebvre", "michel", "garcia", "david", "bertrand", "roux", "nguyen")
DEVICE_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

HEADER = ("user_id", "device_id", "visit_ts", "user_agent", "instance", "domain")
ROWS_PER_USER = 1.2  # average rows a visiting user contributes to a day (calibrated)


@dataclass(frozen=True)
class Options:
    rows_per_day: int = 10_000
    seed: int = 1
    overlap: float = 0.03  # share of D-1's rows repeated in D's file
    late: float = 0.005  # share of rows for 2..7 days before D
    conflicting_duplicates: float = 0.01  # same key twice in a file, other attributes
    malformed: float = 0.0  # share of malformed lines


def _mix(*values: int) -> int:
    """A stable 64-bit hash of integers (splitmix64 steps): the same on every run."""
    h = 0x9E3779B97F4A7C15
    for v in values:
        h = (h ^ (v & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h = (h ^ (h >> 31)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
    return h ^ (h >> 29)


class Population:
    """Users with their instance, domain, devices and each device's user agent."""

    def __init__(self, size: int, seed: int):
        rng = random.Random(seed)
        weights = [w for w, _ in USER_AGENTS]
        agents = [ua for _, ua in USER_AGENTS]
        self.users: list[tuple[str, str, str, list[tuple[str, str]]]] = []
        for n in range(size):
            instance, domain = MINISTRIES[rng.randrange(len(MINISTRIES))]
            name = f"{rng.choice(FIRST_NAMES)}.{rng.choice(LAST_NAMES)}{n}"
            host = "agent." + instance.removeprefix("agent_") + ".tchap.gouv.fr"
            user_id = f"@{name}-{domain}:{host}"
            if n % 997 == 0:  # opaque ids with backslashes, as in the real exports
                user_id = "\\" + user_id
            devices = []
            for _ in range(1 + (rng.random() < 0.45) + (rng.random() < 0.15)):
                device_id = "".join(rng.choices(DEVICE_CHARS, k=10))
                devices.append((device_id, rng.choices(agents, weights)[0]))
            self.users.append((user_id, instance, domain, devices))


@lru_cache(maxsize=64)
def _midnight(day: date) -> str:
    local = datetime(day.year, day.month, day.day, tzinfo=PARIS)
    return local.strftime("%Y-%m-%d %H:%M:%S") + f"+{local.utcoffset().seconds // 3600:02d}"


def _timestamp(day: date, salt: int) -> str:
    """A visit stamp on `day` (Europe/Paris), in one of the spellings the exports use."""
    kind = salt % 10
    if kind < 7:  # the exports' usual day stamp: local midnight
        return _midnight(day)
    else:
        seconds = (salt >> 8) % 86400
        local = datetime(day.year, day.month, day.day, tzinfo=PARIS) + timedelta(seconds=seconds)
        local = local.astimezone(PARIS)
    if kind == 9:  # the same instant written in UTC: its UTC date may be the day before
        utc = local.astimezone(ZoneInfo("UTC"))
        return utc.strftime("%Y-%m-%d %H:%M:%S+00")
    offset = int(local.utcoffset().total_seconds() // 3600)
    spelled = f"+{offset:02d}" if kind != 8 else f" +{offset:02d}:00"
    return local.strftime("%Y-%m-%d %H:%M:%S") + spelled


class Generator:
    def __init__(self, options: Options):
        self.options = options
        size = max(10, int(options.rows_per_day / ROWS_PER_USER * 1.3))
        self.population = Population(size, options.seed)

    def _slots(self, day: date) -> Iterator[tuple[int, int, int]]:
        """(user, device, salt) of each visit of `day`: cheap to list, rows built on demand."""
        users = self.population.users
        seed = self.options.seed
        visitors = int(self.options.rows_per_day / ROWS_PER_USER)
        rng = random.Random(_mix(seed, day.toordinal()))
        for u in sorted(rng.sample(range(len(users)), min(visitors, len(users)))):
            for d in range(len(users[u][3])):
                salt = _mix(seed, day.toordinal(), u, d)
                if d == 0 or salt % 4 == 0:  # secondary devices are used less often
                    yield u, d, salt

    def _visit(self, day: date, u: int, d: int, salt: int) -> tuple[str, ...]:
        user_id, instance, domain, devices = self.population.users[u]
        device_id, agent = devices[d]
        return (user_id, device_id, _timestamp(day, salt >> 4), agent, instance, domain)

    def visits(self, day: date) -> Iterator[tuple[str, ...]]:
        """The visits of `day` itself, one row per (user, device)."""
        for slot in self._slots(day):
            yield self._visit(day, *slot)

    def lines(self, day: date) -> Iterator[tuple[str, ...]]:
        """Every line of the file of `day`, header excluded."""
        o = self.options
        seed = o.seed
        for i, row in enumerate(self.visits(day)):
            salt = _mix(seed, day.toordinal(), i, 7)
            fraction = (salt % 1_000_000) / 1_000_000
            if fraction < o.malformed:
                yield _malformed(row, salt)
                continue
            yield row
            if fraction < o.malformed + o.conflicting_duplicates:
                other = USER_AGENTS[(salt >> 20) % len(USER_AGENTS)][1]
                yield (row[0], row[1], _timestamp(day, salt >> 24), other, row[4], row[5])
        previous = day - timedelta(days=1)
        for i, slot in enumerate(self._slots(previous)):
            if (_mix(seed, day.toordinal(), i, 11) % 1_000_000) / 1_000_000 < o.overlap:
                yield self._visit(previous, *slot)
        late_rows = int(o.rows_per_day * o.late)
        for i in range(late_rows):
            back = day - timedelta(days=2 + _mix(seed, day.toordinal(), i, 13) % 6)
            user_id, instance, domain, devices = self.population.users[
                _mix(seed, day.toordinal(), i, 17) % len(self.population.users)]
            device_id, agent = devices[0]
            yield (user_id, device_id, _timestamp(back, _mix(seed, i, 19)), agent, instance,
                   domain)

    def write(self, day: date, path: Path) -> int:
        count = 0
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(HEADER)
            for line in self.lines(day):
                if isinstance(line, str):  # a malformed line, written as is
                    f.write(line + "\n")
                else:
                    writer.writerow(line)
                count += 1
        _strip_final_newline(path)  # like the real exports
        return count


def _malformed(row: tuple[str, ...], salt: int) -> str:
    user_id, device_id, ts, _agent, instance, domain = row
    kind = salt % 5
    if kind == 0:
        return f"{user_id},{device_id},2024-13-45 25:61:00+01,Tchap/2.0 Android,{instance},{domain}"
    if kind == 1:
        return f"{user_id},{device_id},{ts[:19]},Tchap/2.0 Android,{instance},{domain}"
    if kind == 2:
        return f"{user_id},{device_id},{ts},{instance},{domain}"
    if kind == 3:
        return f',{device_id},{ts},"Tchap/2.0 Android",{instance},{domain}'
    return f'{user_id},{device_id},{ts},"Tchap/2.0 (Android)"garbage,{instance},{domain}'


def _strip_final_newline(path: Path) -> None:
    with path.open("rb+") as f:
        f.seek(0, 2)
        if f.tell():
            f.seek(-1, 2)
            if f.read(1) == b"\n":
                f.seek(-1, 2)
                f.truncate()


def generate(first: date, last: date, out: str, options: Options,
             s3: S3Settings | None = None) -> list[tuple[str, int]]:
    """Write one user_daily_visits file per day into a directory or s3://bucket/prefix."""
    generator = Generator(options)
    written = []
    days = days_between(first, last)
    if out.startswith("s3://"):
        bucket, _, prefix = out.removeprefix("s3://").partition("/")
        client = s3_client(s3 or S3Settings.from_env())
        with tempfile.TemporaryDirectory() as tmp:
            for day in days:
                name = f"user_daily_visits_{day.isoformat()}.csv"
                path = Path(tmp) / name
                lines = generator.write(day, path)
                key = f"{prefix.strip('/')}/{name}" if prefix.strip("/") else name
                client.upload_file(str(path), bucket, key)
                path.unlink()
                written.append((f"s3://{bucket}/{key}", lines))
        return written
    directory = Path(out)
    directory.mkdir(parents=True, exist_ok=True)
    for day in days:
        path = directory / f"user_daily_visits_{day.isoformat()}.csv"
        written.append((str(path), generator.write(day, path)))
    return written
