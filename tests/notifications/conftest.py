"""Fixtures for the notification tests: the rules, a real SMTP server, an SMS gateway, and a database of
their own for the worker tests (so a worker drains only what these tests enqueued)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from carnet import dbadmin
from carnet.demo.loader import load_demo_directory_and_people
from carnet.notifications.models import DeliveryStatus, NotificationDelivery
from carnet.notifications.rules import NotificationRules
from carnet.runtime import Runtime
from tests.conftest import drop_pg_database, fresh_database, make_settings
from tests.notifications.support import SmsGateway, SmtpSink, sms_server, smtp_server


@pytest.fixture
def rules(runtime: Runtime) -> NotificationRules:
    """A fresh set of rules (its own memory of known accesses) on the session database."""
    return NotificationRules(runtime.settings)


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    with smtp_server() as sink:
        yield sink


@pytest.fixture
def sms() -> Iterator[SmsGateway]:
    with sms_server() as gateway:
        yield gateway


@pytest.fixture(scope="session")
def outbox_runtime(backend: str, tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Iterator[Runtime]:
    """A database for the worker tests alone, migrated, with the demo directory and people."""
    url, pg_name = fresh_database(backend, tmp_path_factory.mktemp("outbox"), f"n_{worker_id}")
    runtime = Runtime(make_settings(url))
    dbadmin.upgrade(runtime.engine)
    load_demo_directory_and_people(runtime)
    yield runtime
    runtime.dispose()
    if pg_name:
        drop_pg_database(pg_name)


@pytest.fixture
def tmp_cwd(tmp_path: Path) -> Path:
    path = tmp_path / "cwd"
    path.mkdir()
    return path


@pytest.fixture
def outbox(outbox_runtime: Runtime) -> Iterator[Runtime]:
    """The worker tests' database; whatever a test leaves undelivered is dead-lettered after it, so the
    next test's worker finds only its own deliveries."""
    yield outbox_runtime
    with outbox_runtime.work() as work:
        work.session.execute(
            sa.update(NotificationDelivery)
            .where(NotificationDelivery.status.in_([DeliveryStatus.PENDING.value, DeliveryStatus.SENDING.value]))
            .values(status=DeliveryStatus.DEAD.value, last_error="left by a test")
        )
