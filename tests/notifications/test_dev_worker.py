"""The development worker: ``carnet serve`` in development delivers notifications by itself, without a
``carnet worker`` process (``start_dev_worker`` in ``carnet.notifications.worker``, called by the CLI).

Both ways it is started are tested against a real SMTP server: in-process (``start_dev_worker`` on the
worker tests' database, both backends), and as ``carnet serve`` in a subprocess on a free port with a
SQLite database of its own, spoken to over TCP (the wiring is the command's, the same on both databases).
"""

from __future__ import annotations

import html
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx2
import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from carnet import dbadmin
from carnet.app import create_app
from carnet.auth import tokens
from carnet.config import Environment
from carnet.demo.loader import load_demo_directory_and_people
from carnet.demo.personas import BY_KEY, token_claims
from carnet.notifications.models import DeliveryStatus, NotificationDelivery
from carnet.notifications.worker import start_dev_worker
from carnet.runtime import Runtime
from tests import factories
from tests.cli.support import FHIR_JSON, carnet_command, carnet_env, free_port, log_text, wait_ready
from tests.conftest import Api, make_settings
from tests.notifications.support import SmtpSink, smtp_settings, unique_email

THREAD = "carnet-notification-worker"
READY_TIMEOUT = 90.0  # readiness guards, not timings: the machine is shared and busy
DELIVERY_TIMEOUT = 60.0


def _patient_with_email(address: str) -> dict[str, object]:
    """A Patient whose opening is told to its e-mail address (the patient has no account yet)."""
    ins, system = factories.random_ins()
    resource = factories.patient_resource(ins, system)
    resource["telecom"] = [{"system": "email", "value": address}]
    return resource


def _workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD and t.is_alive()]


def _wait(predicate: Callable[[], bool], what: str, timeout: float = DELIVERY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def _statuses(runtime: Runtime, record_id: str) -> list[str]:
    with runtime.read() as work:
        return list(
            work.session.scalars(
                sa.select(NotificationDelivery.status).where(NotificationDelivery.record_id == uuid.UUID(record_id))
            )
        )


def test_no_dev_worker_outside_development(outbox: Runtime) -> None:
    before = len(_workers())
    assert start_dev_worker(outbox.settings) is None  # env test
    switched_off = outbox.settings.model_copy(update={"env": Environment.DEVELOPMENT, "notify_dev_worker": False})
    assert start_dev_worker(switched_off) is None
    assert len(_workers()) == before


def test_the_dev_worker_delivers_in_its_own_thread(outbox: Runtime, smtp: SmtpSink) -> None:
    """Started as ``carnet serve`` starts it: a notice caused through the API reaches the SMTP server and is
    marked delivered, with no worker run by the test; stopping it ends its thread."""
    settings = outbox.settings.model_copy(
        update={"env": Environment.DEVELOPMENT, "notify_poll_seconds": 0.05, **smtp_settings(smtp)}
    )
    before = len(_workers())
    worker = start_dev_worker(settings)
    assert worker is not None
    try:
        assert len(_workers()) == before + 1
        address = unique_email("devworker")
        with TestClient(create_app(outbox.settings, outbox), base_url="http://testserver") as client:
            created = Api(client, outbox).post("/fhir/Patient", "dr_medioni", _patient_with_email(address))
        assert created.status_code == 201, created.text
        smtp.wait_for(lambda: bool(smtp.to(address)), timeout=DELIVERY_TIMEOUT)
        (mail,) = smtp.to(address)
        assert mail.mail["Subject"]
        assert mail.mail["Message-ID"].endswith("@carnet.test>")
        record_id = created.json()["id"]
        _wait(lambda: _statuses(outbox, record_id) == [DeliveryStatus.DELIVERED.value], "the delivered mark")
        _wait(lambda: worker.total.delivered >= 1, "the worker's tally")  # counted once its batch is done
    finally:
        worker.stop()
        _wait(lambda: len(_workers()) == before, "the worker thread to stop", timeout=30)
        worker.runtime.dispose()


@pytest.mark.slow
def test_carnet_serve_in_development_delivers_without_a_separate_worker(tmp_path: Path, smtp: SmtpSink) -> None:
    url = f"sqlite:///{tmp_path / 'devserve.db'}"
    setup = Runtime(make_settings(url))
    try:
        dbadmin.upgrade(setup.engine)
        load_demo_directory_and_people(setup)  # so that dr_medioni's token names a professional
    finally:
        setup.dispose()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = carnet_env(
        url,
        env="development",
        notify_email_backend="smtp",
        notify_smtp_host="127.0.0.1",
        notify_smtp_port=str(smtp.port),
        notify_smtp_starttls="false",
        notify_message_id_domain="carnet.test",
        notify_poll_seconds="0.1",
        log_level="INFO",
    )
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(  # noqa: S603 - the command is this project's own console script
            [*carnet_command(), "serve", "--port", str(port)],
            env=env,
            cwd=workdir,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        subject, claims = token_claims(BY_KEY["dr_medioni"])
        token = tokens.issue_dev(make_settings(url), subject, extra=claims)  # the development keys it shares
        address = unique_email("serve")
        with httpx2.Client(base_url=base, timeout=30) as client:
            wait_ready(client, process, log, READY_TIMEOUT)
            created = client.post(
                "/fhir/Patient",
                json=_patient_with_email(address),
                headers={"Authorization": f"Bearer {token}", "Accept": FHIR_JSON, "Content-Type": FHIR_JSON},
            )
            assert created.status_code == 201, created.text
            deadline = time.monotonic() + DELIVERY_TIMEOUT
            while not smtp.to(address):
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"no e-mail reached the SMTP server:\n{log_text(log)[-4000:]}")
                time.sleep(0.05)
            (mail,) = smtp.to(address)
            assert mail.rcpt == [address]
            # The development mailbox says it was delivered (marked by the server's own worker).
            deadline = time.monotonic() + DELIVERY_TIMEOUT
            while True:
                page = client.get("/dev/mailbox")
                assert page.status_code == 200, page.text
                shown = html.unescape(page.text)
                (article,) = [a for a in shown.split("<article")[1:] if address in a]
                if 'class="status delivered"' in article:
                    break
                if time.monotonic() > deadline:
                    pytest.fail(f"the mailbox never showed the e-mail delivered:\n{shown[-3000:]}")
                time.sleep(0.1)
        assert "notification_worker_started" in log_text(log)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
