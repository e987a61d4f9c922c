"""The notification worker: claims due deliveries from the outbox, renders them, sends them, marks them.

One ``Worker`` per process (``carnet worker``; ``carnet serve`` in development runs one in a thread,
see ``start_dev_worker``). Its loop:

1. claim a batch (``outbox.claim``: one short transaction, a lease on each row);
2. for each delivery, in order: render it in the recipient's language, send it on its channel, and
   mark it delivered (its own short transaction) — or failed: retried with backoff, or dead-lettered;
3. when nothing is due, sleep ``notify_poll_seconds`` (woken early by ``stop``).

Each turn of the loop also runs the audit trail's scheduled jobs when they are due
(``carnet.audit.jobs.run_due_jobs``: a signed checkpoint every ``CARNET_AUDIT_CHECKPOINT_SECONDS``,
PostgreSQL partition upkeep once a day), at most every ``min(notify_poll_seconds, audit_checkpoint_seconds)``;
a failure there is logged and never stops the deliveries. It also runs the record lifecycle's jobs every
``CARNET_RECORD_JOBS_SECONDS`` (``carnet.records.lifecycle.run_due_jobs``: open the announced records whose
opposition window ended, destroy the closed records whose retention ended), likewise never in the way.

A delivery is marked right after it is sent, so a worker that dies leaves at most one message sent
but unmarked; the rest of its batch was never attempted, and its leases expire after
``notify_lease_seconds`` for another worker (or its own restart) to take them. A stop request (SIGTERM)
lets the message being sent finish, gives the rest of the batch back at once and returns.

Logs carry delivery ids, channels, kinds, counts and error codes: never an address, a name or a text.
"""

from __future__ import annotations

import atexit
import datetime as dt
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from carnet.audit.jobs import JobReport, run_due_jobs
from carnet.audit.trace import CURRENT_REQUEST, Interface, RequestInfo
from carnet.config import Environment, Settings
from carnet.db import unit_of_work, utcnow
from carnet.logging import log
from carnet.notifications import outbox, reset_code
from carnet.notifications.channels import DeliveryFailed, Sender, senders_for
from carnet.notifications.kinds import Channel
from carnet.notifications.messages import render
from carnet.notifications.models import DeliveryStatus
from carnet.records import lifecycle
from carnet.runtime import Runtime


@dataclass
class Tally:
    """What a worker did (since it started, or in one call)."""

    delivered: int = 0
    retried: int = 0
    dead: int = 0
    lost: int = 0  # lease lost before marking (another worker took the delivery over)

    def add(self, other: Tally) -> None:
        self.delivered += other.delivered
        self.retried += other.retried
        self.dead += other.dead
        self.lost += other.lost

    @property
    def handled(self) -> int:
        return self.delivered + self.retried + self.dead + self.lost


class Worker:
    """Delivers the outbox. Thread-safe to stop from another thread or a signal handler."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        senders: dict[Channel, Sender] | None = None,
        owner: str | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
        rng: random.Random | None = None,
        audit_jobs: bool = True,
        lifecycle_jobs: bool = True,
    ) -> None:
        self.runtime = runtime
        self.settings: Settings = runtime.settings
        self.senders = senders if senders is not None else senders_for(self.settings)
        self.owner = owner or f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.clock = clock
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self.stopping = threading.Event()
        self.total = Tally()
        self.audit_jobs = audit_jobs
        self._audit_next = 0.0  # time.monotonic() at which the audit jobs are looked at again
        self.lifecycle_jobs = lifecycle_jobs
        self._lifecycle_next = 0.0  # time.monotonic() at which the record lifecycle's jobs run again

    @property
    def lease(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.settings.notify_lease_seconds)

    def stop(self) -> None:
        """Finish the message being sent, give the rest of the batch back, and return from ``run``."""
        self.stopping.set()

    # ------------------------------------------------------------------ loop
    def run(self) -> Tally:
        """Deliver until stopped."""
        log.info(
            "notification_worker_started",
            worker=self.owner,
            email=self.settings.notify_email_backend.value,
            sms=self.settings.notify_sms_backend.value,
            batch=self.settings.notify_batch_size,
        )
        try:
            while not self.stopping.is_set():
                self._audit_if_time()
                self._lifecycle_if_time()
                try:
                    tally = self.run_once()
                except Exception as exc:  # the database went away: log, wait, try again
                    log.error("notification_worker_error", worker=self.owner, error=type(exc).__name__)
                    self.stopping.wait(self.settings.notify_poll_seconds)
                    continue
                if tally.handled == 0:
                    self.stopping.wait(self.settings.notify_poll_seconds)
        finally:
            for sender in self.senders.values():
                sender.shutdown()
            log.info(
                "notification_worker_stopped",
                worker=self.owner,
                delivered=self.total.delivered,
                retried=self.total.retried,
                dead=self.total.dead,
            )
        return self.total

    def audit_pass(self) -> JobReport | None:
        """Run the audit trail's jobs that are due now (a checkpoint, partition upkeep); None if they failed
        or this worker does not run them. Never raises: the deliveries go on."""
        if not self.audit_jobs:
            return None
        try:
            return run_due_jobs(self.runtime, self.clock())
        except Exception as exc:  # the database went away, a bad key …: logged, tried again next time
            log.error("audit_jobs_error", worker=self.owner, error=type(exc).__name__)
            return None

    def _audit_if_time(self) -> None:
        now = time.monotonic()
        if now < self._audit_next:
            return
        self._audit_next = now + min(self.settings.notify_poll_seconds, self.settings.audit_checkpoint_seconds)
        self.audit_pass()

    def lifecycle_pass(self) -> lifecycle.JobReport | None:
        """Run the record lifecycle's jobs now (open what is due, destroy what is due); None if they failed
        or this worker does not run them. Never raises. Their traces say they come from the worker."""
        if not self.lifecycle_jobs:
            return None
        token = CURRENT_REQUEST.set(RequestInfo(interface=Interface.WORKER, source=self.owner[:64]))
        try:
            return lifecycle.run_due_jobs(self.runtime, self.clock())
        except Exception as exc:
            log.error("record_jobs_error", worker=self.owner, error=type(exc).__name__)
            return None
        finally:
            CURRENT_REQUEST.reset(token)

    def _lifecycle_if_time(self) -> None:
        now = time.monotonic()
        if now < self._lifecycle_next:
            return
        self._lifecycle_next = now + self.settings.record_jobs_seconds
        self.lifecycle_pass()

    def drain(self, *, timeout: float = 60.0) -> Tally:
        """Deliver everything due now, then return (tests, ``carnet worker --once``, benchmarks)."""
        deadline = time.monotonic() + timeout
        tally = Tally()
        while not self.stopping.is_set() and time.monotonic() < deadline:
            once = self.run_once()
            tally.add(once)
            if once.handled == 0:
                break
        return tally

    def run_once(self) -> Tally:
        """Claim one batch and deliver it."""
        tally = Tally()
        with unit_of_work(self.runtime.sessions) as session:
            batch = outbox.claim(
                session, owner=self.owner, now=self.clock(), limit=self.settings.notify_batch_size, lease=self.lease
            )
        if not batch:
            return tally
        leased_at = time.monotonic()
        try:
            for index, delivery in enumerate(batch):
                if self.stopping.is_set():
                    self._release(batch[index:])
                    break
                if time.monotonic() - leased_at > self.lease.total_seconds() / 2:
                    # A slow channel: keep the rest of the batch ours rather than let it be sent twice.
                    with unit_of_work(self.runtime.sessions) as session:
                        outbox.renew(session, batch[index:], owner=self.owner, now=self.clock(), lease=self.lease)
                    leased_at = time.monotonic()
                self._deliver(delivery, tally)
        finally:
            for sender in self.senders.values():
                sender.close()
        self.total.add(tally)
        return tally

    def _release(self, rest: list[outbox.Claimed]) -> None:
        with unit_of_work(self.runtime.sessions) as session:
            released = outbox.release(session, rest, owner=self.owner, now=self.clock())
        log.info("notification_batch_released", worker=self.owner, released=released)

    # ------------------------------------------------------------------ one delivery
    def _deliver(self, delivery: outbox.Claimed, tally: Tally) -> None:
        started = self.clock()
        try:
            destination = outbox.open_destination(self.settings, delivery.idempotency_key, delivery.destination)
            if destination is None:
                raise DeliveryFailed("destination-unreadable", permanent=True)  # unknown key: an operator's matter
            try:  # a reset code is sealed in the event: opened here, for this rendering only
                params = reset_code.reveal(
                    self.settings,
                    kind=delivery.kind,
                    event_id=delivery.event_id,
                    recipient=delivery.recipient,
                    params=delivery.params,
                )
            except reset_code.SecretUnreadable:
                raise DeliveryFailed("secret-unreadable", permanent=True) from None
            message = render(
                self.settings,
                kind=delivery.kind,
                language=delivery.language,
                role=delivery.role,
                occurred_at=delivery.occurred_at,
                params=params,
            )
            sender = self.senders.get(delivery.channel)
            if sender is None:
                raise DeliveryFailed(f"no-sender-{delivery.channel.value}", permanent=True)
            sender.send(delivery, destination, message)
        except DeliveryFailed as failure:
            self._failed(delivery, tally, failure.code, failure.permanent, failure.retry_after)
            return
        except Exception as exc:  # a bug (rendering …): retried, then dead-lettered, never lost
            self._failed(delivery, tally, f"error-{type(exc).__name__}", False, None)
            return
        with unit_of_work(self.runtime.sessions) as session:
            marked = outbox.mark_delivered(session, delivery, owner=self.owner, now=self.clock())
        if marked:
            tally.delivered += 1
            log.info(
                "notification_delivered",
                delivery=str(delivery.id),
                channel=delivery.channel.value,
                kind=delivery.kind.value,
                attempt=delivery.attempts,
                ms=round((self.clock() - started).total_seconds() * 1000, 1),
            )
        else:
            tally.lost += 1
            log.warning("notification_lease_lost", delivery=str(delivery.id), channel=delivery.channel.value)

    def _failed(
        self, delivery: outbox.Claimed, tally: Tally, code: str, permanent: bool, retry_after: float | None
    ) -> None:
        with unit_of_work(self.runtime.sessions) as session:
            status = outbox.mark_failed(
                session,
                delivery,
                owner=self.owner,
                now=self.clock(),
                error=code,
                permanent=permanent,
                settings=self.settings,
                rng=self.rng,
                retry_after=retry_after,
            )
        fields = {"delivery": str(delivery.id), "channel": delivery.channel.value, "attempt": delivery.attempts}
        if status is DeliveryStatus.DEAD:
            tally.dead += 1
            log.error("notification_dead_lettered", error=code, **fields)
        elif status is DeliveryStatus.PENDING:
            tally.retried += 1
            log.warning("notification_retry", error=code, **fields)
        else:
            tally.lost += 1
            log.warning("notification_lease_lost", **fields)


# ---------------------------------------------------------------------------------------- development
def start_dev_worker(settings: Settings) -> Worker | None:
    """In development (``CARNET_ENV=development`` and ``CARNET_NOTIFY_DEV_WORKER``, the default), start a
    notification worker in a background thread of this process, stopped gracefully when the process
    exits (``carnet serve``). Elsewhere, do nothing: production runs ``carnet worker`` processes."""
    if settings.env is not Environment.DEVELOPMENT or not settings.notify_dev_worker:
        return None
    runtime = Runtime(settings)
    worker = Worker(runtime)
    thread = threading.Thread(target=worker.run, name="carnet-notification-worker", daemon=True)
    thread.start()

    def stop() -> None:
        worker.stop()
        thread.join(timeout=settings.notify_smtp_timeout_seconds + 5)
        runtime.dispose()

    atexit.register(stop)
    return worker
