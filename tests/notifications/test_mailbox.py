"""The development mailbox page: what the outbox sent or would have sent, in development and test only."""

from __future__ import annotations

import html
import re
import uuid

from starlette.testclient import TestClient

from carnet.app import create_app
from carnet.audit.trace import TraceAction
from carnet.config import Environment
from carnet.notifications.rules import NotificationRules
from carnet.notifications.worker import Worker
from carnet.runtime import Runtime
from tests.cli.support import production_keys
from tests.conftest import Api
from tests.notifications.support import apply, holder, pro_trace, unique_email


def test_the_mailbox_shows_what_would_have_been_sent(api: Api) -> None:
    patient_id, _, _ = api.new_patient(team=())
    address = unique_email("mailbox")
    holder(api.runtime, patient_id, email=address, phone="0611223344", channels={"sms": True})
    apply(
        api.runtime,
        NotificationRules(api.settings),
        pro_trace(TraceAction.EMERGENCY_ACCESS, uuid.UUID(patient_id), "dr_haddad", access_mode="break-glass"),
    )
    page = api.client.get("/dev/mailbox")
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert "style-src 'unsafe-inline'" in page.headers["content-security-policy"]
    text = html.unescape(page.text)
    assert address in text
    assert "+33611223344" in text
    assert "Accès en urgence à votre dossier" in text
    assert re.search(r"<carnet-[0-9a-f]{32}@testserver>", text)  # the e-mail's Message-ID
    assert re.search(r"carnet-[0-9a-f]{32}</dd>", page.text)  # the SMS's Idempotency-Key
    assert "pending" in text
    Worker(api.runtime).drain()  # null channels: delivered, without leaving
    assert "delivered" in html.unescape(api.client.get("/dev/mailbox?limit=500").text)


def test_the_mailbox_does_not_exist_outside_development(runtime: Runtime) -> None:
    settings = runtime.settings.model_copy(
        update={"env": Environment.STAGING, **_keys()},
    )
    staging = Runtime(settings, engine=runtime.engine)
    with TestClient(create_app(settings, staging), base_url="https://carnet.example") as client:
        assert client.get("/dev/mailbox").status_code == 404


def _keys() -> dict[str, object]:
    from pydantic import SecretStr

    keys = production_keys()
    return {
        "kek": SecretStr(keys["kek"]),
        "index_key": SecretStr(keys["index_key"]),
        "signing_keys": SecretStr(keys["signing_keys"]),
        "base_url": keys["base_url"],
    }
