"""The crash test: ``carnet worker`` killed (SIGKILL) in the middle of a batch loses nothing, and a
receiving system that deduplicates by Message-ID gets every notification exactly once.

Why raw duplicates can happen, and how many: the worker marks each delivery in the database right after
the SMTP server accepted it. A SIGKILL between the server's ``250`` and that commit leaves one message
sent but still leased; after the lease expires, the restarted worker sends it again — with the same
Message-ID (the delivery's idempotency key), which is what the receiving side deduplicates on. Every
other delivery of the killed batch was either marked (not sent again) or never sent (sent once, later).
So the raw duplicates are exactly the messages received but unmarked at the time of the kill: at most
one per worker process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from carnet import dbadmin
from carnet.db import utcnow
from carnet.notifications import outbox
from carnet.notifications.kinds import Kind, Language, Role
from carnet.notifications.models import DeliveryStatus, NotificationDelivery
from carnet.runtime import Runtime
from tests.cli.support import carnet_command, carnet_env, log_text
from tests.conftest import drop_pg_database, fresh_database, make_settings
from tests.notifications.support import SmtpSink, new_record, smtp_server

N = 200
EVENTS = 50  # four recipients each
DOMAIN = "carnet.test"


def _enqueue(runtime: Runtime) -> dict[str, str]:
    """N pending e-mails (EVENTS events on 10 records); their Message-IDs by idempotency key."""
    records = [uuid.UUID(new_record(runtime)) for _ in range(10)]
    with runtime.work() as work:
        for index in range(EVENTS):
            outbox.enqueue(
                work,
                record_id=records[index % len(records)],
                kind=Kind.DOCUMENT_ADDED,
                occurred_at=utcnow(),
                actor_kind="professional",
                professional=None,
                params={"actor": "professional", "count": 1},
                recipients=[
                    outbox.Recipient(
                        key=f"account:{uuid.uuid4()}",
                        role=Role.HOLDER,
                        language=Language.FR,
                        in_app=False,
                        email=f"crash.{index}.{n}@example.org",
                    )
                    for n in range(N // EVENTS)
                ],
            )
    with runtime.work() as work:
        keys = work.session.scalars(
            sa.select(NotificationDelivery.idempotency_key).where(NotificationDelivery.record_id.in_(records))
        ).all()
    assert len(keys) == N
    return {key: f"<{key}@{DOMAIN}>" for key in keys}


def _statuses(runtime: Runtime) -> dict[str, int]:
    with runtime.work() as work:
        return dict(
            work.session.execute(
                sa.select(NotificationDelivery.status, sa.func.count()).group_by(NotificationDelivery.status)
            ).all()
        )


def _worker(url: str, sink: SmtpSink, cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    env = carnet_env(
        url,
        notify_email_backend="smtp",
        notify_smtp_host="127.0.0.1",
        notify_smtp_port=str(sink.port),
        notify_smtp_starttls="false",
        notify_message_id_domain=DOMAIN,
        notify_lease_seconds="2",
        notify_batch_size="25",
        notify_poll_seconds="0.1",
        log_level="INFO",
    )
    with log.open("ab") as out:
        return subprocess.Popen(  # noqa: S603 - the project's own console script
            [*carnet_command(), "worker"], env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT
        )


def _wait(predicate: object, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}:\n{log_text(log)[-4000:]}")
        time.sleep(0.02)


@pytest.mark.slow
def test_a_killed_worker_loses_nothing_and_duplicates_at_most_its_message_in_flight(
    backend: str, tmp_path: Path
) -> None:
    url, pg_name = fresh_database(backend, tmp_path, "crash")
    runtime = Runtime(make_settings(url))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    log = tmp_path / "worker.log"
    try:
        dbadmin.upgrade(runtime.engine)
        expected = _enqueue(runtime)
        with smtp_server() as sink:
            sink.delay = 0.004  # a server that takes its time: the kill lands mid-batch
            first = _worker(url, sink, cwd, log)
            try:
                _wait(lambda: sink.count() >= N // 3, 60, "a third of the e-mails", log)
                os.kill(first.pid, signal.SIGKILL)
                assert first.wait(timeout=10) == -signal.SIGKILL
            finally:
                if first.poll() is None:
                    first.kill()
            time.sleep(0.3)  # the server finishes any message whose data had fully arrived
            received_at_kill = sink.count()
            at_kill = _statuses(runtime)
            marked_at_kill = at_kill.get(DeliveryStatus.DELIVERED.value, 0)
            assert 0 < received_at_kill < N, "the kill must land in the middle of the work"
            assert at_kill.get(DeliveryStatus.SENDING.value, 0) > 0, "some deliveries were leased when it died"

            second = _worker(url, sink, cwd, log)
            try:
                _wait(
                    lambda: _statuses(runtime).get(DeliveryStatus.DELIVERED.value, 0) == N,
                    90,
                    "every delivery marked delivered",
                    log,
                )
                second.send_signal(signal.SIGTERM)  # graceful stop
                assert second.wait(timeout=20) == 0, log_text(log)
            finally:
                if second.poll() is None:
                    second.kill()

            ids = [r.message_id for r in sink.received]
        unique = set(ids)
        assert unique == set(expected.values()), "every notification delivered (deduplicated by Message-ID)"
        duplicates = len(ids) - len(unique)
        in_flight = received_at_kill - marked_at_kill
        assert duplicates == in_flight, (duplicates, received_at_kill, marked_at_kill)
        assert duplicates <= 1, "one worker sends one message at a time: at most one in flight"
        assert _statuses(runtime) == {DeliveryStatus.DELIVERED.value: N}
        output = log_text(log)
        assert "notification_worker_stopped" in output
        assert "@example.org" not in output  # logs never carry an address
    finally:
        runtime.dispose()
        if pg_name:
            drop_pg_database(pg_name)
