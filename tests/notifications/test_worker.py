"""The worker and the outbox: retries with backoff and jitter, dead letters, leases, concurrent workers."""

from __future__ import annotations

import datetime as dt
import random
import threading
import uuid

import sqlalchemy as sa

from carnet.audit.trace import TraceAction
from carnet.db import unit_of_work
from carnet.notifications import outbox as queue
from carnet.notifications.kinds import Channel
from carnet.notifications.messages import Message
from carnet.notifications.models import DeliveryStatus, NotificationDelivery
from carnet.notifications.rules import NotificationRules
from carnet.notifications.worker import Worker
from carnet.runtime import Runtime
from tests.notifications.support import (
    Clock,
    SmtpSink,
    apply,
    holder,
    new_record,
    pro_trace,
    representative,
    smtp_settings,
    unique_email,
    variant,
)


def _enqueue(outbox: Runtime, recipients: int = 1) -> tuple[str, list[str]]:
    """A record whose patient (and ``recipients - 1`` representatives) get an e-mail each."""
    patient_id = new_record(outbox)
    addresses = [unique_email(f"r{i}") for i in range(recipients)]
    holder(outbox, patient_id, email=addresses[0])
    for address in addresses[1:]:
        representative(outbox, patient_id, email=address)
    apply(outbox, NotificationRules(outbox.settings), pro_trace(TraceAction.RECORD_READ, uuid.UUID(patient_id)))
    return patient_id, addresses


def _rows(outbox: Runtime, patient_id: str) -> list[NotificationDelivery]:
    with outbox.work() as work:
        rows = list(
            work.session.scalars(
                sa.select(NotificationDelivery)
                .where(NotificationDelivery.record_id == uuid.UUID(patient_id))
                .order_by(NotificationDelivery.created_at, NotificationDelivery.id)
            )
        )
        work.session.expunge_all()
    return rows


def test_backoff_grows_exponentially_with_jitter_and_a_cap(outbox: Runtime) -> None:
    settings = outbox.settings.model_copy(update={"notify_backoff_base_seconds": 10, "notify_backoff_max_seconds": 300})
    rng = random.Random(7)
    for attempt, ceiling in [(1, 10), (2, 20), (3, 40), (4, 80), (5, 160), (6, 300), (12, 300)]:
        waits = [queue.backoff(settings, attempt, rng).total_seconds() for _ in range(200)]
        assert all(ceiling / 2 <= w <= ceiling for w in waits), (attempt, min(waits), max(waits))
        assert max(waits) - min(waits) > ceiling / 4  # jittered: retries do not come in lockstep


def test_transient_failures_are_retried_with_backoff_then_dead_lettered(outbox: Runtime, smtp: SmtpSink) -> None:
    patient_id, [address] = _enqueue(outbox)
    smtp.fail_always = "451 4.3.0 mailbox busy"
    clock = Clock()
    sending = variant(
        outbox,
        **smtp_settings(smtp),
        notify_max_attempts=4,
        notify_backoff_base_seconds=60,
        notify_backoff_max_seconds=3600,
    )
    worker = Worker(sending, clock=clock, rng=random.Random(1))
    waits = []
    for attempt in range(1, 5):
        tally = worker.drain()
        [row] = _rows(outbox, patient_id)
        assert row.attempts == attempt
        assert row.last_error == "smtp-451"
        if attempt < 4:
            assert (tally.retried, row.status) == (1, "pending")
            wait = (row.next_attempt_at - clock.now).total_seconds()
            assert 60 * 2 ** (attempt - 1) / 2 <= wait <= 60 * 2 ** (attempt - 1)
            waits.append(wait)
            assert worker.drain().handled == 0  # not due before its time
            clock.advance(wait + 1)
        else:
            assert (tally.dead, row.status) == (1, "dead")  # the fourth attempt was the last
    assert waits == sorted(waits)
    assert smtp.to(address) == []
    # An operator fixes the relay and requeues the dead letters: delivered, once.
    smtp.fail_always = None
    with unit_of_work(outbox.sessions) as session:
        assert queue.requeue_dead(session, now=clock.now) >= 1
    worker.drain()
    [row] = _rows(outbox, patient_id)
    assert (row.status, row.attempts) == ("delivered", 1)
    assert len(smtp.to(address)) == 1


def test_a_server_that_recovers_gets_every_message_once(outbox: Runtime, smtp: SmtpSink) -> None:
    patient_id, addresses = _enqueue(outbox, recipients=3)
    smtp.failures.extend(["421 4.7.0 try again later", "452 4.3.1 insufficient storage"])
    clock = Clock()
    worker = Worker(variant(outbox, **smtp_settings(smtp), notify_backoff_base_seconds=1), clock=clock)
    first = worker.drain()
    assert (first.delivered, first.retried) == (1, 2)
    clock.advance(5)
    assert worker.drain().delivered == 2
    assert all(len(smtp.to(a)) == 1 for a in addresses)
    assert {r.status for r in _rows(outbox, patient_id)} == {"delivered"}


def test_an_expired_lease_is_taken_over(outbox: Runtime, smtp: SmtpSink) -> None:
    """A worker claimed a delivery and died: after its lease, another worker delivers it."""
    patient_id, [address] = _enqueue(outbox)
    clock = Clock()
    sending = variant(outbox, **smtp_settings(smtp), notify_lease_seconds=30)
    with unit_of_work(outbox.sessions) as session:
        [claimed] = queue.claim(session, owner="dead-worker", now=clock.now, limit=10, lease=dt.timedelta(seconds=30))
    worker = Worker(sending, clock=clock)
    assert worker.drain().handled == 0  # leased to the dead worker
    clock.advance(31)
    assert worker.drain().delivered == 1
    [row] = _rows(outbox, patient_id)
    assert (row.status, row.attempts) == ("delivered", 2)  # the crashed attempt counts
    # The dead worker, had it only been slow, finds its lease gone and does not mark anything.
    with unit_of_work(outbox.sessions) as session:
        assert queue.mark_delivered(session, claimed, owner="dead-worker", now=clock.now) is False
    assert len(smtp.to(address)) == 1


def test_concurrent_claims_never_take_the_same_delivery(outbox: Runtime) -> None:
    patient_id, _ = _enqueue(outbox, recipients=12)
    now = dt.datetime.now(dt.UTC)
    claimed: dict[str, list[uuid.UUID]] = {}
    barrier = threading.Barrier(4)

    def claim(owner: str) -> None:
        barrier.wait()
        found: list[uuid.UUID] = []
        while True:
            with unit_of_work(outbox.sessions) as session:
                batch = queue.claim(session, owner=owner, now=now, limit=2, lease=dt.timedelta(minutes=5))
            if not batch:
                break
            found.extend(d.id for d in batch)
        claimed[owner] = found

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    every = [ident for ids in claimed.values() for ident in ids]
    mine = {row.id for row in _rows(outbox, patient_id)}
    assert mine <= set(every)
    assert len(every) == len(set(every))  # nobody claimed a delivery twice


class _StopAfterFirst:
    """A sender that asks the worker to stop while it sends the first message (SIGTERM mid-batch)."""

    def __init__(self) -> None:
        self.worker: Worker | None = None
        self.sent: list[uuid.UUID] = []

    def send(self, delivery: queue.Claimed, destination: str, message: Message) -> None:
        self.sent.append(delivery.id)
        assert self.worker is not None
        self.worker.stop()

    def close(self) -> None:
        return None

    def shutdown(self) -> None:
        return None


def test_stopping_finishes_the_current_message_and_gives_the_rest_back(outbox: Runtime) -> None:
    patient_id, _ = _enqueue(outbox, recipients=4)
    sender = _StopAfterFirst()
    worker = Worker(outbox, senders={Channel.EMAIL: sender, Channel.SMS: sender})
    sender.worker = worker
    worker.run()  # returns once stopped
    rows = _rows(outbox, patient_id)
    assert [r.status for r in rows].count("delivered") == 1
    assert sender.sent == [r.id for r in rows if r.status == "delivered"]
    rest = [r for r in rows if r.status != "delivered"]
    assert {(r.status, r.attempts, r.lease_owner) for r in rest} == {("pending", 0, None)}  # not charged


def test_a_rendering_bug_is_retried_not_lost(outbox: Runtime) -> None:
    patient_id, _ = _enqueue(outbox)
    with outbox.work() as work:
        from carnet.notifications.models import NotificationEvent

        work.session.execute(
            sa.update(NotificationEvent)
            .where(NotificationEvent.record_id == uuid.UUID(patient_id))
            .values(params='{"count": "many"}')
        )
    tally = Worker(outbox).drain()
    assert tally.retried == 1
    [row] = _rows(outbox, patient_id)
    assert (row.status, row.last_error) == ("pending", "error-ValueError")


def test_an_unreadable_destination_is_dead_lettered(outbox: Runtime) -> None:
    """Sealed under a key-encryption key that was removed: no retry can help, an operator must look."""
    patient_id, _ = _enqueue(outbox)
    with outbox.work() as work:
        work.session.execute(
            sa.update(NotificationDelivery)
            .where(NotificationDelivery.record_id == uuid.UUID(patient_id))
            .values(destination=b"\x01\x03old" + bytes(40))
        )
    assert Worker(outbox).drain().dead == 1
    [row] = _rows(outbox, patient_id)
    assert row.last_error == "destination-unreadable"


def test_null_channels_deliver_nothing_but_mark_delivered(outbox: Runtime) -> None:
    patient_id, _ = _enqueue(outbox, recipients=2)
    assert Worker(outbox).drain().delivered == 2  # test settings: e-mail and SMS backends are "null"
    assert {r.status for r in _rows(outbox, patient_id)} == {DeliveryStatus.DELIVERED.value}
