"""Settings read from the environment (DESIGN §6), and the masking of secrets.

Every variable keeps the name the old scripts used, so a Scalingo app can switch
without touching its environment.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict

DEFAULT_S3_ENDPOINT = "s3.gra.cloud.ovh.net"
DEFAULT_S3_REGION = "gra"
DEFAULT_TZ = "Europe/Paris"
# DuckDB's share of a Scalingo M container (512 MiB): a 1 M-row file peaks at 350-400 MiB for
# the whole process with it (benchmarks/README.md, "Loading one day"); DuckDB spills beyond.
DEFAULT_DUCKDB_MEMORY = "128MB"
DEFAULT_REJECT_THRESHOLD = 0.01
# A file's rows must be dated within its acceptance window: from this many days before its
# extraction date (late rows; the exports carry up to a week) to this many after (a visit
# late in the UTC day is the next Paris day).
DEFAULT_ACCEPT_DAYS_BEFORE = 14
DEFAULT_ACCEPT_DAYS_AFTER = 1
# The extraction days a `sync` without --date looks back over for files not loaded yet.
DEFAULT_LOOKBACK_DAYS = 7
# An export whose last loaded day is older than this many days raises an alert.
DEFAULT_ALERT_STALE_DAYS = 2
# How long a load waits for another run's lock on the same days before giving up.
DEFAULT_LOCK_TIMEOUT = 600.0
# The months of raw rows PostgreSQL keeps before `archive` moves them to the lake, besides
# the current one (tchap_stats/lake.py).
DEFAULT_KEEP_MONTHS = 3

# The SQL files ship inside the package (an installed wheel has them too).
SQL_DIR = resources.files("tchap_stats") / "sql"


class ConfigError(ValueError):
    """A setting is missing or malformed; the message says which and how to fix it."""


def _env_number(name: str, default: float, kind: type = float) -> float:
    """A finite, non-negative number from the environment (its default when unset)."""
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        number = kind(value.strip())
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number < 0:
        kind_word = "a whole number of days" if kind is int else "a number of seconds"
        raise ConfigError(f"{name}={value!r} is not {kind_word} (default {default:g}; "
                          f"0 or more)")
    return number


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name}={value!r} is not a boolean (use true or false)")


@dataclass(frozen=True)
class S3Settings:
    bucket: str | None
    access_key_id: str | None
    secret_access_key: str | None
    endpoint: str = DEFAULT_S3_ENDPOINT  # host[:port], no scheme
    region: str = DEFAULT_S3_REGION
    url_style: str = "vhost"
    use_ssl: bool = True

    @property
    def endpoint_url(self) -> str:
        return f"{'https' if self.use_ssl else 'http'}://{self.endpoint}"

    @classmethod
    def from_env(cls) -> S3Settings:
        endpoint = os.environ.get("S3_ENDPOINT") or DEFAULT_S3_ENDPOINT
        use_ssl = _env_bool("S3_USE_SSL", True)
        scheme, sep, rest = endpoint.partition("://")
        if sep:
            if scheme not in {"http", "https"}:
                raise ConfigError(
                    f"S3_ENDPOINT={endpoint!r}: only http:// or https:// are accepted")
            use_ssl = scheme == "https"
            endpoint = rest
        endpoint = endpoint.rstrip("/")
        url_style = (os.environ.get("S3_URL_STYLE") or "vhost").strip().lower()
        if url_style not in {"vhost", "path"}:
            raise ConfigError(f"S3_URL_STYLE={url_style!r}: use vhost or path")
        return cls(
            bucket=os.environ.get("S3_BUCKET_NAME") or None,
            access_key_id=os.environ.get("S3_ACCESS_KEY_ID") or None,
            secret_access_key=os.environ.get("S3_SECRET_ACCESS_KEY") or None,
            endpoint=endpoint,
            region=os.environ.get("S3_REGION") or DEFAULT_S3_REGION,
            url_style=url_style,
            use_ssl=use_ssl,
        )


@dataclass(frozen=True)
class Settings:
    database_url: str | None
    s3: S3Settings
    source: str | None  # a local directory or s3://bucket/prefix; overrides S3_BUCKET_NAME
    timezone: str = DEFAULT_TZ
    duckdb_memory: str = DEFAULT_DUCKDB_MEMORY
    spill_dir: Path = field(default_factory=lambda: Path(".tchap-stats/spill"))
    reject_threshold: float = DEFAULT_REJECT_THRESHOLD
    enabled_exports: tuple[str, ...] = ()
    # A day new to the database gets its active_daily rows from DuckDB while staging
    # (faster than PostgreSQL's recompute: benchmarks/README.md). Off: the refresh
    # recomputes every day in PostgreSQL; the tests run both ways.
    preaggregate: bool = True
    accept_days_before: int = DEFAULT_ACCEPT_DAYS_BEFORE
    accept_days_after: int = DEFAULT_ACCEPT_DAYS_AFTER
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT  # seconds
    lookback_days: int = DEFAULT_LOOKBACK_DAYS
    alert_webhook: str | None = None
    alert_stale_days: int = DEFAULT_ALERT_STALE_DAYS
    read_roles: tuple[str, ...] = ()  # given what the dashboards read, by every `migrate`
    lake_path: str | None = None  # TCHAP_STATS_LAKE_PATH; see lake_data_path()
    keep_months: int = DEFAULT_KEEP_MONTHS

    @classmethod
    def from_env(cls, source: str | None = None) -> Settings:
        threshold = os.environ.get("TCHAP_STATS_REJECT_THRESHOLD")
        try:
            reject_threshold = float(threshold) if threshold else DEFAULT_REJECT_THRESHOLD
        except ValueError as exc:
            raise ConfigError(
                f"TCHAP_STATS_REJECT_THRESHOLD={threshold!r} is not a fraction like 0.01"
            ) from exc
        enabled = os.environ.get("TCHAP_STATS_EXPORTS", "")
        return cls(
            database_url=os.environ.get("DATABASE_URL") or None,
            s3=S3Settings.from_env(),
            source=source or os.environ.get("TCHAP_STATS_SOURCE") or None,
            timezone=os.environ.get("TCHAP_STATS_TZ") or DEFAULT_TZ,
            duckdb_memory=os.environ.get("TCHAP_STATS_DUCKDB_MEMORY") or DEFAULT_DUCKDB_MEMORY,
            spill_dir=Path(os.environ.get("TCHAP_STATS_SPILL_DIR") or ".tchap-stats/spill"),
            reject_threshold=reject_threshold,
            enabled_exports=tuple(e.strip() for e in enabled.split(",") if e.strip()),
            preaggregate=_env_bool("TCHAP_STATS_PREAGGREGATE", True),
            accept_days_before=int(_env_number("TCHAP_STATS_ACCEPT_DAYS_BEFORE",
                                               DEFAULT_ACCEPT_DAYS_BEFORE, int)),
            accept_days_after=int(_env_number("TCHAP_STATS_ACCEPT_DAYS_AFTER",
                                              DEFAULT_ACCEPT_DAYS_AFTER, int)),
            lock_timeout=_env_number("TCHAP_STATS_LOCK_TIMEOUT", DEFAULT_LOCK_TIMEOUT),
            lookback_days=int(_env_number("TCHAP_STATS_LOOKBACK_DAYS", DEFAULT_LOOKBACK_DAYS,
                                          int)),
            alert_webhook=os.environ.get("TCHAP_STATS_ALERT_WEBHOOK") or None,
            alert_stale_days=int(_env_number("TCHAP_STATS_ALERT_STALE_DAYS",
                                             DEFAULT_ALERT_STALE_DAYS, int)),
            read_roles=tuple(r.strip() for r in
                             os.environ.get("TCHAP_STATS_READ_ROLES", "").split(",")
                             if r.strip()),
            lake_path=os.environ.get("TCHAP_STATS_LAKE_PATH") or None,
            keep_months=int(_env_number("TCHAP_STATS_KEEP_MONTHS", DEFAULT_KEEP_MONTHS, int)),
        )

    def lake_data_path(self) -> str:
        """Where the lake's Parquet files go: TCHAP_STATS_LAKE_PATH, else `lake/` at the
        root of the exports' bucket, or beside the files of a local source."""
        path = self.lake_path
        if not path and self.source and self.source.startswith("s3://"):
            path = f"s3://{urlsplit(self.source).netloc}/lake/"
        elif not path and self.source:
            path = str(Path(self.source) / "lake")
        elif not path and self.s3.bucket:
            path = f"s3://{self.s3.bucket}/lake/"
        if not path:
            raise ConfigError("the lake has no place: set TCHAP_STATS_LAKE_PATH (s3://bucket/"
                              "prefix/ or a directory), S3_BUCKET_NAME or --source")
        # The lake deletes whatever files under its path it does not list (a killed write's):
        # never a bucket's root, nor the exports' own directory.
        if path.startswith("s3://"):
            path = path if path.endswith("/") else path + "/"
            if not urlsplit(path).path.strip("/"):
                raise ConfigError(f"TCHAP_STATS_LAKE_PATH={path!r}: give a prefix of its own, "
                                  "e.g. s3://bucket/lake/, not a bucket's root")
            return path
        resolved = Path(path).resolve()
        if self.source and not self.source.startswith("s3://") and (
                resolved == Path(self.source).resolve()):
            raise ConfigError(f"TCHAP_STATS_LAKE_PATH={path!r} is the exports' directory: "
                              "give the lake a directory of its own")
        return str(resolved) + "/"

    def secrets(self) -> list[str]:
        # A webhook's URL is its secret (Slack's and Mattermost's carry the token).
        found = [self.s3.secret_access_key, self.s3.access_key_id, self.alert_webhook]
        if self.database_url:
            # Not a URL (a key=value DSN, a typo): the spelling patterns of mask() apply.
            with contextlib.suppress(ValueError):
                found.append(urlsplit(self.database_url).password)
            # A key=value DSN's password (libpq's parser; the lake hands it to DuckDB).
            with contextlib.suppress(psycopg.Error):
                password = conninfo_to_dict(self.database_url).get("password")
                found.append(str(password) if password else None)
        return [s for s in found if s]


# user:password@ in any URL-ish string (postgres://, s3 endpoints, DSNs in error messages)
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*):(?P<pw>[^@\s]+)@")
# password=…, PGPASSWORD=…, S3_SECRET_ACCESS_KEY=…, "password": "…", quoted or not.
_KEYWORD_PASSWORD = re.compile(
    r"""(?i)(password|passwd|secret_access_key|secret|key_id)(["']?\s*[=:]\s*)"""
    r"""("[^"]*"|'[^']*'|[^\s'",;&]+)""")


# Known secret values shorter than this are masked only where they stand as a password (a
# URL's, a key=value's): replaced everywhere, a short one garbles the words it also spells
# (a password "tchap" turned `tchap-stats migrate-legacy` into `***-stats migrate-legacy`).
MIN_MASKED_VALUE = 8


def mask(text: str, secrets: list[str] | tuple[str, ...] = ()) -> str:
    """Hide passwords and keys: known secret values, URL passwords and key=value spellings."""
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= MIN_MASKED_VALUE:
            text = text.replace(secret, "***")
    text = _URL_PASSWORD.sub(r"\g<scheme>:***@", text)
    return _KEYWORD_PASSWORD.sub(r"\1\2***", text)
