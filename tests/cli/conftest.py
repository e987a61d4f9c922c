"""Fixtures for the command-line tests: a working directory and a fresh SQLite database migrated by
``carnet db upgrade``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.support import carnet_env, run_carnet


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """The directory the command runs in (empty: no ``.env`` file to pick up)."""
    path = tmp_path / "cwd"
    path.mkdir()
    return path


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """The URL of a SQLite file that does not exist yet."""
    return f"sqlite:///{tmp_path / 'carnet.db'}"


@pytest.fixture
def migrated_sqlite(sqlite_url: str, workdir: Path) -> str:
    """A SQLite database brought to the head revision by ``carnet db upgrade``."""
    result = run_carnet("db", "upgrade", env=carnet_env(sqlite_url), cwd=workdir)
    assert result.code == 0, result.describe()
    return sqlite_url
