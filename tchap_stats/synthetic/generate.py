"""Synthetic exports that look like the real ones, deterministic for a seed.

A fixed population of users (Matrix ids over many instances and domains, one to three
devices each, a user agent per device) visits on each day. The file of day D holds D's
visits, a few percent of D-1's again (the exports overlap), a few late rows for earlier
days, some in-file duplicates with differing attributes, and, on demand, malformed lines.
Every row is a function of (seed, day, position), so any day can be generated alone.

The other exports come from the same population (see `ExportFiles`): hourly counts that
the next file recounts, account data that changes weekly, daily SSO and pushers
snapshots, Crisp conversations updated over a few days.
"""

from __future__ import annotations

import csv
import io
import json
import random
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

from ..config import S3Settings
from ..dates import days_between
from ..exports import EXPORTS, Export
from ..source import s3_client

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


def _utc_offset(moment: datetime) -> timedelta:
    """The offset of an aware time (every time here is in Paris or in UTC)."""
    offset = moment.utcoffset()
    if offset is None:
        raise AssertionError(f"{moment} has no time zone")
    return offset


@lru_cache(maxsize=64)
def _midnight(day: date) -> str:
    local = datetime(day.year, day.month, day.day, tzinfo=PARIS)
    return local.strftime("%Y-%m-%d %H:%M:%S") + f"+{_utc_offset(local).seconds // 3600:02d}"


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
    offset = int(_utc_offset(local).total_seconds() // 3600)
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

    def lines(self, day: date) -> Iterator[tuple[str, ...] | str]:
        """Every line of the file of `day`, header excluded (a malformed one as a string)."""
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
        return write_lines(path, HEADER, self.lines(day))


def write_lines(path: Path, header: tuple[str, ...], lines: Iterator[tuple[str, ...] | str]
                ) -> int:
    count = 0
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        for line in lines:
            if isinstance(line, str):  # a malformed line, written as is
                f.write(line + "\n")
            else:
                writer.writerow(line)
            count += 1
    _strip_final_newline(path)  # like the real exports
    return count


UTC = ZoneInfo("UTC")
EVENT_TYPES = (("m.room.message", 40), ("m.room.encrypted", 120), ("m.room.member", 12),
               ("m.reaction", 9), ("m.room.redaction", 2), ("m.room.create", 1))
ACCOUNT_DATA_TYPES = (("m.direct", 40), ("im.vector.setting.breadcrumbs", 20),
                      ("im.vector.analytics", 10))  # (type, % of users holding it)
CRISP_SEGMENTS = ("bug", "question", "account", "mobile", "proconnect")
CRISP_STATES = ("pending", "unresolved", "resolved")
RECOUNTED_HOURS = 3  # the last hours of the previous day, recounted by the next file


def _hours(day: date) -> list[datetime]:
    """The hours of a Paris day (23, 24 or 25 of them), as Paris times."""
    start = datetime(day.year, day.month, day.day, tzinfo=PARIS).astimezone(UTC)
    following = day + timedelta(days=1)
    end = datetime(following.year, following.month, following.day, tzinfo=PARIS)
    count = int((end.astimezone(UTC) - start).total_seconds() // 3600)
    return [(start + timedelta(hours=k)).astimezone(PARIS) for k in range(count)]


def _hour_stamp(moment: datetime, salt: int) -> str:
    offset = int(_utc_offset(moment).total_seconds() // 3600)
    spelled = f"+{offset:02d}" if salt % 2 else f" +{offset:02d}:00"  # both exports' ways
    return moment.strftime("%Y-%m-%d %H:%M:%S") + spelled


def _malformed_line(export: Export, row: tuple[str, ...], salt: int) -> str:
    """One of the ways a line goes wrong: a bad typed value, a missing field, an empty
    required value, a stray quote."""
    fields = list(row)
    kind = salt % 4
    typed = [i for i, c in enumerate(export.columns) if c.type != "text"]
    if kind == 0 and typed:
        fields[typed[0]] = "n/a"
    elif kind == 1:
        fields = fields[:-1]
    elif kind == 2 or not typed:
        fields[0] = ""
    line = io.StringIO()
    csv.writer(line, lineterminator="").writerow(fields)
    if kind == 3 and typed:
        return f'"{row[0]}"junk,' + line.getvalue().split(",", 1)[1]
    return line.getvalue()


class ExportFiles:
    """The lines of every export's file of a day, from one population."""

    def __init__(self, options: Options):
        self.options = options
        self.visits = Generator(options)
        self.population = self.visits.population
        pairs = sorted({(u[1], u[2]) for u in self.population.users})
        self.pairs = pairs or list(MINISTRIES)
        self.users_per_pair = {pair: 0 for pair in self.pairs}
        for user in self.population.users:
            self.users_per_pair[(user[1], user[2])] += 1

    def lines(self, export: Export, day: date) -> Iterator[tuple[str, ...] | str]:
        if export.name == "user_daily_visits":
            yield from self.visits.lines(day)
            return
        o = self.options
        rows = getattr(self, export.name)(day)
        for i, row in enumerate(rows):
            salt = _mix(o.seed, day.toordinal(), i, 23, len(export.name))
            if (salt % 1_000_000) / 1_000_000 < o.malformed:
                yield _malformed_line(export, row, salt >> 20)
            else:
                yield row

    def write(self, export: Export, day: date, path: Path) -> int:
        return write_lines(path, export.header, self.lines(export, day))

    def _hourly(self, day: date) -> Iterator[tuple[datetime, int, str, str, bool]]:
        """(hour, pair index, instance, domain, recount) of a file: the day's hours, then
        the previous day's last hours again (the export recounts them)."""
        recounted = _hours(day - timedelta(days=1))[-RECOUNTED_HOURS:]
        for hours, recount in ((_hours(day), False), (recounted, True)):
            for hour in hours:
                for p, (instance, domain) in enumerate(self.pairs):
                    yield hour, p, instance, domain, recount

    def subscriptions_aggregate(self, day: date) -> Iterator[tuple[str, ...]]:
        seed = self.options.seed
        for hour, p, instance, domain, recount in self._hourly(day):
            stamp = int(hour.timestamp())
            count = 1 + self.users_per_pair[self.pairs[p]] * (_mix(seed, stamp, p) % 40) // 100
            count += (_mix(seed, stamp, p, 1) % 5) if recount else 0
            yield (str(count), domain, _hour_stamp(hour, _mix(seed, stamp)), instance)

    def events_roomv9_aggregate(self, day: date) -> Iterator[tuple[str, ...]]:
        seed = self.options.seed
        for hour, p, instance, domain, recount in self._hourly(day):
            stamp = int(hour.timestamp())
            active = self.users_per_pair[self.pairs[p]] * (_mix(seed, stamp, p) % 40) // 100
            for t, (event_type, per_user) in enumerate(EVENT_TYPES):
                count = active * per_user * (50 + _mix(seed, stamp, p, t) % 100) // 1000
                count += (_mix(seed, stamp, p, t, 1) % 3) if recount else 0
                if count:
                    yield (str(count), event_type, domain, _hour_stamp(hour, _mix(seed, stamp)),
                           instance)

    def account_data(self, day: date) -> Iterator[tuple[str, ...]]:
        seed, users = self.options.seed, self.population.users
        for u, (user_id, instance, domain, _devices) in enumerate(users):
            for t, (data_type, share) in enumerate(ACCOUNT_DATA_TYPES):
                if _mix(seed, u, t) % 100 >= share:
                    continue
                if _mix(seed, u, t, day.toordinal()) % 50 == 0:
                    continue  # absent from this file: the table keeps the last content
                week = (day.toordinal() + u) // 7
                other = users[_mix(seed, u, t, week) % len(users)][0]
                room = f"!{_mix(seed, u, week) % 16**12:012x}:{user_id.split(':', 1)[-1]}"
                content = {"m.direct": {other: [room]},
                           "im.vector.setting.breadcrumbs": {"recent_rooms": [room]},
                           "im.vector.analytics": {"pseudonymousAnalyticsOptIn": week % 3 > 0},
                           }[data_type]
                yield (user_id, data_type, json.dumps(content), instance, domain)

    def sso(self, day: date) -> Iterator[tuple[str, ...]]:
        seed = self.options.seed
        for p, (instance, domain) in enumerate(self.pairs):
            total = self.users_per_pair[(instance, domain)]
            # ProConnect takes over slowly, at its own pace per domain.
            pro = total * min(90, (day.toordinal() // 7 + _mix(seed, p)) % 60) // 100
            both = (total - pro) * (_mix(seed, p, 1) % 20) // 100
            yield (str(total), domain, instance, str(total - pro - both), str(both), str(pro))

    def crisp_conversation_segments(self, day: date) -> Iterator[tuple[str, ...]]:
        """Conversations updated on `day`: those opened that day, and some of the last
        four days' again, further along."""
        seed = self.options.seed
        per_day = max(3, self.options.rows_per_day // 400)
        for back in range(5):
            opened = day - timedelta(days=back)
            for k in range(per_day):
                salt = _mix(seed, opened.toordinal(), k)
                if back and _mix(seed, opened.toordinal(), k, day.toordinal()) % 3:
                    continue
                session = f"session_{salt:016x}-{_mix(salt, 1) % 16**8:08x}"
                created = datetime(opened.year, opened.month, opened.day) + timedelta(
                    seconds=28_800 + salt % 36_000)
                updated = max(created + timedelta(minutes=5),
                              datetime(day.year, day.month, day.day)
                              + timedelta(seconds=28_800 + (salt >> 16) % 43_000))
                state = CRISP_STATES[min(back, 2)] if back else "pending"
                domain = self.pairs[salt % len(self.pairs)][1]
                for s in range(1 + salt % 3):
                    segment = CRISP_SEGMENTS[(salt >> 8) % len(CRISP_SEGMENTS) - s]
                    yield (session, state, segment, f"{created:%Y-%m-%d %H:%M:%S}",
                           f"{updated:%Y-%m-%d %H:%M:%S}", domain)

    def pushers(self, day: date) -> Iterator[tuple[str, ...]]:
        seed = self.options.seed
        for u, (user_id, instance, domain, devices) in enumerate(self.population.users):
            for d, (device_id, agent) in enumerate(devices):
                if _mix(seed, u, d, 3) % 10 >= 6:
                    continue
                app_id = ("fr.gouv.tchap.android" if "Android" in agent else
                          "fr.gouv.tchap.ios" if "iOS" in agent else "fr.gouv.tchap.web")
                enabled = _mix(seed, u, d, (day.toordinal() + u) // 10) % 10 != 0
                yield (user_id, device_id, app_id, "http", "true" if enabled else "false",
                       instance, domain)
            if _mix(seed, u, 5) % 20 == 0:  # e-mail notifications: no device
                yield (user_id, "", "m.email", "email", "true", instance, domain)


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
             s3: S3Settings | None = None, exports: list[str] | None = None
             ) -> list[tuple[str, int]]:
    """Write one file per export (default: all of them) and day into a directory or
    s3://bucket/prefix."""
    files = ExportFiles(options)
    chosen = [EXPORTS[name] for name in (exports or list(EXPORTS))]
    written = []
    days = days_between(first, last)
    if out.startswith("s3://"):
        bucket, _, prefix = out.removeprefix("s3://").partition("/")
        client = s3_client(s3 or S3Settings.from_env())
        with tempfile.TemporaryDirectory() as tmp:
            for day in days:
                for export in chosen:
                    name = export.file_name(day)
                    path = Path(tmp) / name
                    lines = files.write(export, day, path)
                    key = f"{prefix.strip('/')}/{name}" if prefix.strip("/") else name
                    client.upload_file(str(path), bucket, key)
                    path.unlink()
                    written.append((f"s3://{bucket}/{key}", lines))
        return written
    directory = Path(out)
    directory.mkdir(parents=True, exist_ok=True)
    for day in days:
        for export in chosen:
            path = directory / export.file_name(day)
            written.append((str(path), files.write(export, day, path)))
    return written
