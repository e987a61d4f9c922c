"""Notifications delivered per second by one worker against a local SMTP server (aiosmtpd).

``notifications_per_second(database_url, n, rounds)``, on a migrated (or migratable) database:

1. **Throughput**, ``rounds`` times: enqueue ``n`` e-mail notifications through the real outbox
   (``outbox.enqueue`` in one unit of work: events of four recipients, as a deposit told to a patient
   and their representatives would be), then time one ``Worker`` draining them: claim in batches,
   render (Jinja2 + Babel), send over one SMTP connection per batch, mark each delivery in its own
   transaction. A round's rate is n / drain time; the result is the median of the rounds. After each
   round the SMTP server must have received exactly ``n`` messages, all distinct, and exactly those
   enqueued (matched by ``Message-ID: <idempotency-key@domain>``): a duplicate, a missing or a
   stray message fails the benchmark.
2. **Latency**: with the worker running (polling every ``LATENCY_POLL_SECONDS``), enqueue notifications
   one at a time, each in its own transaction, and measure from that commit to the SMTP server's
   receipt: ``p50_latency_ms`` / ``p99_latency_ms``. The worker polls, so the latency is about half
   the poll interval plus the send; the production default interval is ``CARNET_NOTIFY_POLL_SECONDS`` (1 s).

The SMTP server runs in a child process, so that it does not share this process's interpreter lock
with the worker it measures; it reports every message it accepts (duplicates included) on a queue.
"""

from __future__ import annotations

import email.parser
import multiprocessing
import multiprocessing.synchronize
import queue
import random
import socket
import statistics
import threading
import time
import uuid
from typing import Any

from aiosmtpd.controller import Controller

from carnet import dbadmin
from carnet.auth.actor import SYSTEM_ACTOR
from carnet.config import EmailBackend, Environment, Settings
from carnet.db import utcnow
from carnet.fhirtypes import CS_IDENTITY_STATUS, EXT_IDENTITY_RELIABILITY
from carnet.identifiers import nir_key
from carnet.logging import configure
from carnet.notifications import outbox
from carnet.notifications.kinds import Channel, Kind, Language, Role
from carnet.notifications.worker import Worker
from carnet.records import service as records
from carnet.runtime import Runtime

RECIPIENTS_PER_EVENT = 4
LATENCY_SAMPLES = 100
LATENCY_POLL_SECONDS = 0.05
BATCH_SIZE = 100
DOMAIN = "bench.carnet"

Arrival = tuple[str, float]  # (Message-ID, wall-clock time of receipt)


# ---------------------------------------------------------------------------------------- the SMTP server
def _smtp_server(
    port: int,
    ready: multiprocessing.synchronize.Event,
    stop: multiprocessing.synchronize.Event,
    arrivals: multiprocessing.Queue[Arrival],
) -> None:
    """Child process: an aiosmtpd server reporting each message it accepts (Message-ID, time)."""
    parser = email.parser.BytesHeaderParser()

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook
            headers = parser.parsebytes(envelope.original_content or envelope.content)
            arrivals.put((str(headers["Message-ID"]), time.time()))
            return "250 OK"

    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    stop.wait()
    controller.stop()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _collect(arrivals: multiprocessing.Queue[Arrival], expected: int, timeout: float) -> list[Arrival]:
    """What the server received: ``expected`` messages, then whatever else comes within a short grace
    period (a duplicate would show there), or less if ``timeout`` passes first."""
    received: list[Arrival] = []
    deadline = time.monotonic() + timeout
    while len(received) < expected and time.monotonic() < deadline:
        try:
            received.append(arrivals.get(timeout=max(0.01, deadline - time.monotonic())))
        except queue.Empty:
            break
    grace = time.monotonic() + 0.5
    while time.monotonic() < grace:
        try:
            received.append(arrivals.get(timeout=0.1))
        except queue.Empty:
            continue
    return received


def _check(received: list[Arrival], expected: set[str]) -> None:
    """Exactly the expected messages arrived, each once."""
    ids = [message_id for message_id, _ in received]
    duplicates = len(ids) - len(set(ids))
    missing = expected - set(ids)
    stray = set(ids) - expected
    if duplicates or missing or stray:
        raise RuntimeError(
            f"SMTP server received {len(ids)} messages for {len(expected)} enqueued: "
            f"{len(missing)} missing, {duplicates} duplicates, {len(stray)} unexpected"
        )


# ---------------------------------------------------------------------------------------- enqueueing
def _record(runtime: Runtime) -> uuid.UUID:
    """A record to hang the benchmark's notifications on (a random test INS)."""
    rng = random.Random()
    body = (
        f"{rng.choice('12')}{rng.randint(30, 99):02d}{rng.randint(1, 12):02d}{rng.randint(1, 95):02d}"
        f"{rng.randint(1, 999):03d}{rng.randint(1, 999):03d}"
    )
    ins = f"{body}{nir_key(body):02d}"
    patient = {
        "resourceType": "Patient",
        "extension": [
            {
                "url": EXT_IDENTITY_RELIABILITY,
                "extension": [{"url": "identityStatus", "valueCoding": {"system": CS_IDENTITY_STATUS, "code": "VALI"}}],
            }
        ],
        "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.10", "value": ins}],
        "name": [{"family": "BENCH", "given": ["Notify"]}],
        "gender": "female",
        "birthDate": "1980-01-01",
    }
    with runtime.work() as work:
        return records.create_record(work, actor=SYSTEM_ACTOR, patient=patient).id


def _enqueue(runtime: Runtime, record_id: uuid.UUID, count: int) -> tuple[set[str], float]:
    """``count`` e-mails in one unit of work: their Message-IDs, and when that unit committed."""
    message_ids: set[str] = set()
    with runtime.work() as work:
        for start in range(0, count, RECIPIENTS_PER_EVENT):
            recipients = [
                outbox.Recipient(
                    key=f"account:{uuid.uuid4()}",
                    role=Role.HOLDER,
                    language=Language.FR,
                    in_app=False,
                    email=f"bench.{uuid.uuid4().hex[:10]}@example.org",
                )
                for _ in range(min(RECIPIENTS_PER_EVENT, count - start))
            ]
            event = outbox.enqueue(
                work,
                record_id=record_id,
                kind=Kind.DOCUMENT_ADDED,
                occurred_at=utcnow(),
                actor_kind="professional",
                professional=None,
                params={"actor": "professional", "count": 1},
                recipients=recipients,
            )
            assert event is not None
            for recipient in recipients:
                key = outbox.idempotency_key(outbox.delivery_id(event, recipient.key, Channel.EMAIL))
                message_ids.add(f"<{key}@{DOMAIN}>")
    return message_ids, time.time()


# ---------------------------------------------------------------------------------------- the measure
def notifications_per_second(database_url: str, n: int, rounds: int = 3) -> dict[str, float]:
    """Deliveries per second of one worker draining ``n`` e-mails (median of ``rounds``), and the
    commit → SMTP receipt latency with the worker polling."""
    port = _free_port()
    context = multiprocessing.get_context("spawn")
    ready, stop = context.Event(), context.Event()
    arrivals: multiprocessing.Queue[Arrival] = context.Queue()
    server = context.Process(target=_smtp_server, args=(port, ready, stop, arrivals), daemon=True)
    server.start()
    if not ready.wait(120):  # the child imports this module (and carnet) first: slow on a busy machine
        server.kill()
        raise RuntimeError("the benchmark SMTP server did not start")
    settings = Settings(
        env=Environment.TEST,
        database_url=database_url,
        log_level="WARNING",
        notify_email_backend=EmailBackend.SMTP,
        notify_smtp_host="127.0.0.1",
        notify_smtp_port=port,
        notify_smtp_starttls=False,
        notify_message_id_domain=DOMAIN,
        notify_batch_size=BATCH_SIZE,
        notify_poll_seconds=LATENCY_POLL_SECONDS,
    )
    configure(settings.log_level, json=settings.log_json)
    runtime = Runtime(settings)
    rates: list[float] = []
    try:
        dbadmin.upgrade(runtime.engine)
        record_id = _record(runtime)

        # 1. Throughput on a backlog of n, a few rounds.
        for _ in range(rounds):
            expected, _ = _enqueue(runtime, record_id, n)
            worker = Worker(runtime)
            started = time.perf_counter()
            tally = worker.drain(timeout=3600)
            elapsed = time.perf_counter() - started
            if tally.delivered != n or tally.handled != n:
                raise RuntimeError(f"the worker delivered {tally.delivered} of {n} ({tally})")
            _check(_collect(arrivals, n, timeout=60), expected)
            rates.append(n / elapsed)

        # 2. Latency, one notification at a time, the worker running.
        committed: dict[str, float] = {}
        running = Worker(runtime)
        thread = threading.Thread(target=running.run, daemon=True)
        thread.start()
        try:
            for _ in range(min(n, LATENCY_SAMPLES)):
                [message_id], at = _enqueue(runtime, record_id, 1)
                committed[message_id] = at
                time.sleep(LATENCY_POLL_SECONDS * random.random())
            received = _collect(arrivals, len(committed), timeout=60)
        finally:
            running.stop()
            thread.join(timeout=30)
        _check(received, set(committed))
    finally:
        stop.set()
        server.join(timeout=30)
        runtime.dispose()
    latencies = sorted((at - committed[message_id]) * 1000 for message_id, at in received)
    return {
        "n": n,
        "rounds": rounds,
        "deliveries_per_second": round(statistics.median(rates), 1),
        "min_per_second": round(min(rates), 1),
        "max_per_second": round(max(rates), 1),
        "p50_latency_ms": round(statistics.median(latencies), 1),
        "p99_latency_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 1),
        "poll_seconds": LATENCY_POLL_SECONDS,
    }


if __name__ == "__main__":  # python -m benchmarks.notify postgresql://… [n] [rounds]
    import sys

    print(
        notifications_per_second(
            sys.argv[1],
            int(sys.argv[2]) if len(sys.argv) > 2 else 1000,
            int(sys.argv[3]) if len(sys.argv) > 3 else 3,
        )
    )
