"""Where the export files are: a local directory or an S3 bucket (OVH Object Storage).

A source finds a file by name and describes it (the URL DuckDB reads, ETag, size); it
also reads a file's first line so the header can be checked before anything is staged.
It never downloads a whole file: DuckDB reads the data itself.
"""

from __future__ import annotations

import hashlib
import re
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

from .config import ConfigError, S3Settings
from .filenames import ListingCache, close_names, directory_names, export_of

HEAD_BYTES = 64 * 1024
READ_ATTEMPTS = 3  # for a response body cut off while being read


class SourceError(RuntimeError):
    pass


@dataclass(frozen=True)
class SourceFile:
    key: str  # name relative to the source, as recorded in the ledger
    url: str  # what DuckDB's read_csv opens
    etag: str
    size: int


class Stream(Protocol):
    """What Source.open returns: a binary stream to read, to close or to use in a `with`
    (an open file, an S3 object's body)."""

    def read(self, size: int = -1, /) -> bytes: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None, /) -> None: ...


class Source(Protocol):
    description: str

    def find(self, name: str) -> SourceFile | None: ...

    def first_line(self, file: SourceFile) -> bytes: ...

    def open(self, file: SourceFile) -> Stream: ...

    @property
    def s3(self) -> S3Settings | None: ...

    def near_misses(self, name: str) -> list[str]: ...


def _client_arguments(settings: S3Settings) -> dict:
    from botocore.config import Config

    return {
        "endpoint_url": settings.endpoint_url,
        "region_name": settings.region,
        "aws_access_key_id": settings.access_key_id,
        "aws_secret_access_key": settings.secret_access_key,
        "config": Config(
            s3={"addressing_style": "path" if settings.url_style == "path" else "virtual"},
            retries={"max_attempts": 5, "mode": "standard"},
        ),
    }


def s3_client(settings: S3Settings):
    """A boto3 client for the configured endpoint (OVH by default, any S3-compatible), with
    boto3's managed uploads (`demo`, tests and benchmarks put files with it)."""
    import boto3

    return boto3.client("s3", **_client_arguments(settings))


def s3_reading_client(settings: S3Settings):
    """The client S3Source reads with: botocore's, the core of boto3, the same requests
    without boto3's transfer manager, which reading never uses and whose import costs every
    run a tenth of a second."""
    import botocore.session

    return botocore.session.get_session().create_client("s3", **_client_arguments(settings))


def _first_line(head: bytes) -> bytes:
    """The header: lines end with \n, \r\n or (old Mac files) \r."""
    return re.split(rb"\r\n|\n|\r", head, maxsplit=1)[0]


class LocalSource:
    def __init__(self, directory: str | Path):
        self.directory = Path(directory).resolve()
        self.description = str(self.directory)
        if not self.directory.is_dir():
            raise ConfigError(f"source directory {self.directory} does not exist")

    @property
    def s3(self) -> None:
        return None

    def find(self, name: str) -> SourceFile | None:
        path = self.directory / name
        if not path.is_file():
            return None
        digest = hashlib.md5(usedforsecurity=False)
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        return SourceFile(key=name, url=str(path), etag=digest.hexdigest(),
                          size=path.stat().st_size)

    def first_line(self, file: SourceFile) -> bytes:
        try:
            with open(file.url, "rb") as f:
                return _first_line(f.read(HEAD_BYTES))
        except OSError as exc:
            raise SourceError(f"{file.key}: {exc.strerror or exc}") from exc

    def open(self, file: SourceFile) -> Stream:
        try:
            return open(file.url, "rb")
        except OSError as exc:
            raise SourceError(f"{file.key}: {exc.strerror or exc}") from exc

    def near_misses(self, name: str) -> list[str]:
        """The directory's files whose names are close to `name`, the expected file's name
        (same export and day, another case, compression or date spelling: filenames.py),
        sorted; listed again each time (a directory is cheap to read)."""
        if export_of(name) is None:
            return []
        return close_names(name, directory_names(self.directory))


class S3Source:
    def __init__(self, settings: S3Settings, bucket: str, prefix: str = ""):
        self.settings = settings
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.description = f"s3://{bucket}/{self.prefix}".rstrip("/")
        # Creating the client takes a third of a second of Python (botocore loads the S3
        # model): it happens on a thread of its own while the run opens its connections and
        # DuckDB loads httpfs, which leave the interpreter free.
        pool = ThreadPoolExecutor(1, thread_name_prefix="s3-client")
        self._client: Future = pool.submit(s3_reading_client, settings)
        pool.shutdown(wait=False)

    @property
    def client(self):
        return self._client.result()

    @property
    def s3(self) -> S3Settings:
        return self.settings

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def find(self, name: str) -> SourceFile | None:
        from botocore.exceptions import BotoCoreError, ClientError

        key = self._key(name)
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise SourceError(f"s3://{self.bucket}/{key}: {exc}") from exc
        except BotoCoreError as exc:  # the connection failed, even after retries
            raise SourceError(f"s3://{self.bucket}/{key}: {exc}") from exc
        return SourceFile(key=key, url=f"s3://{self.bucket}/{key}",
                          etag=head["ETag"].strip('"'), size=head["ContentLength"])

    def _get(self, file: SourceFile, **options: str):
        from botocore.exceptions import BotoCoreError, ClientError

        key = file.url.removeprefix(f"s3://{self.bucket}/")
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key, **options)["Body"]
        except (BotoCoreError, ClientError) as exc:
            raise SourceError(f"{file.url}: {exc}") from exc

    def first_line(self, file: SourceFile) -> bytes:
        from botocore.exceptions import BotoCoreError

        # botocore retries a request that fails, not a body cut off once it has started:
        # the ranged GET is tried again, as DuckDB's reader retries its own reads.
        for attempt in range(1, READ_ATTEMPTS + 1):
            body = self._get(file, Range=f"bytes=0-{HEAD_BYTES - 1}")
            try:
                return _first_line(body.read())
            except (BotoCoreError, OSError) as exc:
                if attempt == READ_ATTEMPTS:
                    raise SourceError(f"{file.url}: {exc}") from exc
        raise AssertionError("unreachable")

    def open(self, file: SourceFile) -> Stream:
        return _Body(self._get(file), file.url)

    list_page_size = 1000  # keys a list_objects_v2 call returns at most (S3's own limit)

    def near_misses(self, name: str) -> list[str]:
        """The source's objects whose names are close to `name`, the expected file's name
        (same export and day, another case, compression or date spelling: filenames.py),
        sorted. One listing of the export's names (one list_objects_v2 call a page)
        serves the whole run; a listing that fails logs why and finds none."""
        export = export_of(name)
        if export is None:
            return []
        return close_names(name, self._listings.names(export, self._export_names))

    @cached_property
    def _listings(self) -> ListingCache:
        from botocore.exceptions import BotoCoreError, ClientError

        return ListingCache(self.description, (BotoCoreError, ClientError))

    def _export_names(self, export: str) -> list[str]:
        """The names, relative to the source, of its objects starting with `export` (not
        those in "subdirectories")."""
        start = f"{self.prefix}/" if self.prefix else ""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._key(export), Delimiter="/",
            PaginationConfig={"PageSize": self.list_page_size})
        return [item["Key"].removeprefix(start)
                for page in pages for item in page.get("Contents", [])]


class _Body:
    """An S3 object's body as a stream whose errors are SourceErrors."""

    def __init__(self, body, url: str):
        self._body = body
        self._url = url

    def read(self, size: int = -1) -> bytes:
        from botocore.exceptions import BotoCoreError

        try:
            return self._body.read(size if size >= 0 else None)
        except (BotoCoreError, OSError) as exc:
            raise SourceError(f"{self._url}: {exc}") from exc

    def close(self) -> None:
        self._body.close()

    def __enter__(self) -> _Body:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def open_source(location: str | None, s3: S3Settings) -> LocalSource | S3Source:
    """--source / TCHAP_STATS_SOURCE when given (a directory or s3://bucket/prefix),
    else the bucket S3_BUCKET_NAME."""
    if location:
        if location.startswith("s3://"):
            bucket, _, prefix = location.removeprefix("s3://").partition("/")
            if not bucket:
                raise ConfigError(f"--source {location!r}: expected s3://bucket[/prefix]")
            return S3Source(s3, bucket, prefix)
        return LocalSource(location)
    if not s3.bucket:
        raise ConfigError(
            "no source: set S3_BUCKET_NAME (with S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY), "
            "or pass --source DIRECTORY_OR_S3_URL"
        )
    return S3Source(s3, s3.bucket)
