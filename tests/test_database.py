"""The embedded PostgreSQL fallbacks: pgserver, then a system PostgreSQL, then a clear error."""

from __future__ import annotations

import builtins
import glob

import pytest

from tchap_stats import database


def test_without_any_embedded_server_the_error_explains_database_url(monkeypatch, tmp_path):
    real_import = builtins.__import__

    def no_pgserver(name, *args, **kwargs):
        if name == "pgserver":
            raise ImportError("pgserver is not installed")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pgserver)
    monkeypatch.setenv("PATH", str(tmp_path))  # no pg_ctl on PATH
    monkeypatch.setattr(glob, "glob", lambda pattern: [])  # nor under /usr/lib/postgresql
    with pytest.raises(database.DatabaseError) as error:
        database.start_embedded(tmp_path / "pgdata")
    message = str(error.value)
    assert "DATABASE_URL=postgresql://" in message
    assert "tchap-stats[embedded]" in message


def test_database_url_wins_over_the_embedded_server(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = "postgresql://stats@db.example/stats"
    assert database.resolve_database_url(url) == url
    assert not (tmp_path / ".tchap-stats").exists()
