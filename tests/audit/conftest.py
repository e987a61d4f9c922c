"""Fixtures for the audit tests that need a trail of their own: tampering, checkpoints, partitions.

``trail`` is a fresh database per test, cloned from a template migrated and loaded with the demo
directory once per session (PostgreSQL: ``CREATE DATABASE … TEMPLATE``; SQLite: a file copy), with
the real app in front of it. Tests that only read their own patients' traces use the shared ``api``.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from starlette.testclient import TestClient

from carnet import dbadmin
from carnet.app import create_app
from carnet.demo.loader import load_demo_directory_and_people
from carnet.runtime import Runtime
from tests.conftest import PG_URL, Api, drop_pg_database, fresh_database, make_settings


@dataclass(frozen=True)
class Template:
    backend: str
    url: str
    pg_name: str | None
    path: Path | None


@pytest.fixture(scope="session")
def trail_template(backend: str, tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Iterator[Template]:
    directory = tmp_path_factory.mktemp("trail")
    url, pg_name = fresh_database(backend, directory, f"tpl_{worker_id}")
    runtime = Runtime(make_settings(url))
    dbadmin.upgrade(runtime.engine)
    load_demo_directory_and_people(runtime)
    runtime.dispose()
    yield Template(backend, url, pg_name, directory / f"tpl_{worker_id}.db" if pg_name is None else None)
    if pg_name:
        drop_pg_database(pg_name)


@dataclass
class Trail:
    """A database of the test's own, with the app in front of it."""

    runtime: Runtime
    api: Api
    url: str
    backend: str

    @property
    def postgresql(self) -> bool:
        return self.backend == "postgresql"


def clone(template: Template, tmp_path: Path, **settings: Any) -> tuple[str, str | None]:
    if template.pg_name is None:
        assert template.path is not None
        target = tmp_path / f"trail-{uuid.uuid4().hex[:8]}.db"
        shutil.copyfile(template.path, target)
        return f"sqlite:///{target}", None
    assert PG_URL is not None
    name = f"carnet_t_trail_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template.pg_name}"')
    base, _, _ = PG_URL.rpartition("/")
    return f"{base}/{name}", name


@pytest.fixture
def trail_settings() -> dict[str, Any]:
    """Settings of the ``trail`` database's runtime (a test overrides them by redefining this fixture)."""
    return {}


@pytest.fixture
def trail(trail_template: Template, tmp_path: Path, trail_settings: dict[str, Any]) -> Iterator[Trail]:
    url, pg_name = clone(trail_template, tmp_path)
    runtime = Runtime(make_settings(url, **trail_settings))
    try:
        with TestClient(create_app(runtime.settings, runtime), base_url="http://testserver") as client:
            yield Trail(runtime, Api(client, runtime), url, trail_template.backend)
    finally:
        runtime.dispose()
        if pg_name:
            drop_pg_database(pg_name)
