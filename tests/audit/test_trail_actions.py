"""Every traced action, through the real interfaces (FHIR API, patient and professional portals, sign-in
API, SMART token endpoint, the ``carnet`` command line), on both databases: each leaves exactly the traces
expected, and each trace says who (identifier, profession, organisation, software), on whose behalf,
what (record, resource, version), how (interface, access mode, basis), when, from where (the client's
address, or what a trusted proxy forwarded), and the outcome.

Each request carries an ``X-Request-ID`` of its own and comes from an address of its own, so the traces
it left are found wherever they were chained (a record, or a subject's chain) and compared in full.
"""

from __future__ import annotations

import collections
import datetime as dt
import getpass
import io
import json
import random
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx
import orjson
import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher, profiles
from starlette.testclient import TestClient

from carnet.app import create_app
from carnet.audit.models import AuditEntry, chain_for_subject
from carnet.auth import patients, pki, sessions
from carnet.db import utcnow
from carnet.demo.personas import BY_KEY, ORGANIZATIONS, persona_uuid
from carnet.fhirtypes import EXT_IS_ARCHIVED
from carnet.runtime import Runtime
from tests import factories
from tests.api.test_consents import consent
from tests.auth import smart_support as smart
from tests.auth.patient_support import CSRF, OTHER_PASSWORD, activated, new_patient, sign_in
from tests.cli.support import carnet_env, run_carnet
from tests.conftest import Api
from tests.portal import patient_support as portal_patient
from tests.portal.pro_support import (
    CARD_LOGIN,
    PROXY,
    Pro,
    cards_fixture,  # noqa: F401 - fixture
    forwarded,
    pem,
    pro_app_fixture,  # noqa: F401 - fixture
    pro_fixture,  # noqa: F401 - fixture
)
from tests.portal.pro_support import token as pro_csrf

ORGANIZATION = {o.key: o.idnat for o in ORGANIZATIONS}
DOC = "DocumentReference"
# The basis code of a patient's own accesses (docs/audit.md).
PATIENT_BASIS = "own-record"


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2id at its cheapest: these tests check traces, not the cost of hashing."""
    monkeypatch.setattr(patients, "hasher", PasswordHasher.from_parameters(profiles.CHEAPEST))


# ---------------------------------------------------------------------------------------- who
def professional(persona: str) -> dict[str, str]:
    """What a trace says of a demo professional acting themselves (from the personas, not from Carnet)."""
    person = BY_KEY[persona]
    assert person.idnat
    assert person.profession
    assert person.organization
    who = {
        "actor_kind": "professional",
        "actor_key": f"pro:{person.idnat}",
        "professional": person.idnat,
        "profession": person.profession,
        "organization": ORGANIZATION[person.organization],
    }
    if person.specialty:
        who["specialty"] = person.specialty
    return who


def software(persona: str) -> dict[str, str]:
    """Software acting for the professional it names: that professional, plus the client, on their behalf."""
    client = BY_KEY[persona]
    assert client.acts_for
    assert client.client_id
    pro = BY_KEY[client.acts_for]
    return {
        **professional(client.acts_for),
        "actor_kind": "software",
        "actor_key": f"client:{client.client_id}",
        "client_id": client.client_id,
        "on_behalf_of": f"pro:{pro.idnat}",
    }


def account(account_id: uuid.UUID | str, kind: str = "patient") -> dict[str, str]:
    return {"actor_kind": kind, "actor_key": f"account:{account_id}"}


def operator(persona: str = "ops_admin") -> dict[str, str]:
    return {"actor_kind": "operator", "actor_key": f"account:{persona_uuid(persona)}"}


# ---------------------------------------------------------------------------------------- requests
def new_address() -> str:
    """A client address of this test's own (in the 100.64/10 shared address space, which no other test uses)."""
    return f"100.{random.randint(64, 127)}.{random.randint(0, 255)}.{random.randint(1, 254)}"


@dataclass
class Caller:
    """A client of its own (address, cookie jar) on the real app; each request gets its own request id."""

    api: Api
    client: TestClient
    address: str

    def call(
        self,
        method: str,
        url: str,
        *,
        persona: str | None = None,
        token: str | None = None,
        body: Any = None,
        content_type: str = "application/fhir+json",
        headers: dict[str, str] | None = None,
    ) -> tuple[httpx.Response, str]:
        request_id = f"t-{uuid.uuid4().hex}"
        sent = {"Accept": "application/fhir+json", "X-Request-ID": request_id, **(headers or {})}
        bearer = token or (self.api.token(persona) if persona else None)
        if bearer:
            sent["Authorization"] = f"Bearer {bearer}"
        content = None
        if body is not None:
            content = body if isinstance(body, bytes) else orjson.dumps(body)
            sent["Content-Type"] = content_type
        return self.client.request(method, url, content=content, headers=sent), request_id


def caller_on(api: Api, app: Any = None, *, peer: str | None = None) -> Caller:
    address = peer or new_address()
    return Caller(
        api, TestClient(app or api.client.app, base_url="http://testserver", client=(address, 50000)), address
    )


@pytest.fixture
def caller(api: Api) -> Caller:
    return caller_on(api)


# ---------------------------------------------------------------------------------------- the trail
def traces_since(runtime: Runtime, since: dt.datetime, **match: Any) -> list[dict[str, Any]]:
    """Traces written since ``since`` whose payload has these values, wherever they were chained, in chain
    order (each with its ``chain`` and ``seq``)."""
    with runtime.read() as work:
        rows = work.session.execute(
            sa.select(AuditEntry.chain, AuditEntry.seq, AuditEntry.payload)
            .where(AuditEntry.at >= since - dt.timedelta(seconds=1))
            .order_by(AuditEntry.chain, AuditEntry.seq)
        ).all()
    found = [{"chain": chain, "seq": seq, **orjson.loads(payload)} for chain, seq, payload in rows]
    return [t for t in found if all(t.get(k) == v for k, v in match.items())]


def traces_of(runtime: Runtime, request_id: str, since: dt.datetime) -> list[dict[str, Any]]:
    """Every trace the request left (the command line's have no request id: see ``traces_since``)."""
    return traces_since(runtime, since, request_id=request_id)


def same(trace: dict[str, Any], expected: dict[str, Any], *, since: dt.datetime, chain: uuid.UUID) -> None:
    """The trace is exactly ``expected`` (every field, nothing more), stamped between ``since`` and now, and
    chained where it belongs."""
    at = dt.datetime.fromisoformat(trace["at"])
    assert since - dt.timedelta(seconds=1) <= at <= utcnow() + dt.timedelta(seconds=1)
    assert trace["chain"] == chain
    assert {k: v for k, v in trace.items() if k not in ("at", "chain", "seq")} == expected


def http(caller: Caller, request_id: str, interface: str = "fhir", *, source: str | None = None) -> dict[str, str]:
    """The "how" and "from where" of a request: its interface, the client's address and the request id."""
    return {"interface": interface, "source": source or caller.address, "request_id": request_id}


def deposit(api: Api, ins: str, system: str, persona: str = "dr_lambert", **kwargs: Any) -> str:
    response = api.publish(persona, factories.docref(ins, system, author_idnat="810001745206", **kwargs))
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def location_of(bundle: dict[str, Any], resource_type: str) -> str:
    return next(
        str(e["response"]["location"]).split("/")[1]
        for e in bundle["entry"]
        if e["response"]["location"].startswith(f"{resource_type}/")
    )


# ---------------------------------------------------------------------------------------- documents
def test_an_iti65_replacement_by_software_is_traced_once_naming_what_it_replaces(api: Api, caller: Caller) -> None:
    patient_id, ins, system = api.new_patient()
    record = uuid.UUID(patient_id)
    first = factories.pdf_bytes("v1")
    original = factories.docref(ins, system, data=first, inline=False, author_idnat="810001745206")
    created = api.post("/fhir", "dpi_saint_roch", factories.bundle(ins, system, [(original, first, "application/pdf")]))
    assert created.status_code == 200, created.text
    old_id = location_of(created.json(), DOC)

    second = factories.pdf_bytes("v2")
    replacement = factories.docref(ins, system, data=second, inline=False, author_idnat="810001745206")
    replacement["relatesTo"] = [{"code": "replaces", "target": {"reference": f"DocumentReference/{old_id}"}}]
    since = utcnow()
    response, rid = caller.call(
        "POST",
        "/fhir",
        persona="dpi_saint_roch",
        body=factories.bundle(ins, system, [(replacement, second, "application/pdf")]),
    )
    assert response.status_code == 200, response.text
    new_id = location_of(response.json(), DOC)
    (trace,) = traces_of(api.runtime, rid, since)
    same(
        trace,
        {
            "action": "document.replace",
            **software("dpi_saint_roch"),
            "record_id": patient_id,
            "resource_type": DOC,
            "resource_id": new_id,
            "resource_version": 1,
            "detail": f"replaces:{old_id}",
            "access_mode": "normal",
            "basis": "deposit",
            "outcome": "success",
            **http(caller, rid),
        },
        since=since,
        chain=record,
    )
    # The replaced document is now superseded (its version 2): what the trace's detail names.
    old = api.get(f"/fhir/DocumentReference/{old_id}", "dr_lambert").json()
    assert (old["status"], old["meta"]["versionId"]) == ("superseded", "2")


def test_archiving_and_unarchiving_by_patch_are_traced_with_the_version_they_made(api: Api, caller: Caller) -> None:
    patient_id, ins, system = api.new_patient()
    doc_id = deposit(api, ins, system)
    for value, detail, version in ((True, "archived", 2), (False, "unarchived", 3)):
        patch = [{"op": "add", "path": "/extension", "value": [{"url": EXT_IS_ARCHIVED, "valueBoolean": value}]}]
        since = utcnow()
        response, rid = caller.call(
            "PATCH",
            f"/fhir/DocumentReference/{doc_id}",
            persona="dr_lambert",
            body=patch,
            content_type="application/json-patch+json",
        )
        assert response.status_code == 200, response.text
        assert response.json()["meta"]["versionId"] == str(version)
        (trace,) = traces_of(api.runtime, rid, since)
        same(
            trace,
            {
                "action": "document.update",
                **professional("dr_lambert"),
                "record_id": patient_id,
                "resource_type": DOC,
                "resource_id": doc_id,
                "resource_version": version,
                "detail": detail,
                "access_mode": "normal",
                "basis": "author-organisation",  # archiving is the author's or their organisation's
                "outcome": "success",
                **http(caller, rid),
            },
            since=since,
            chain=uuid.UUID(patient_id),
        )


def test_a_refused_archiving_is_traced_as_denied(api: Api, caller: Caller) -> None:
    patient_id, ins, system = api.new_patient()
    doc_id = deposit(api, ins, system)
    patch = [{"op": "add", "path": "/extension", "value": [{"url": EXT_IS_ARCHIVED, "valueBoolean": True}]}]
    since = utcnow()
    response, rid = caller.call(
        "PATCH",
        f"/fhir/DocumentReference/{doc_id}",
        persona="ph_didot",
        body=patch,
        content_type="application/json-patch+json",
    )
    assert response.status_code == 403, response.text
    (trace,) = traces_of(api.runtime, rid, since)
    assert trace["detail"]  # the refusal's reason, as the policy gave it
    same(
        trace,
        {
            "action": "document.update",
            **professional("ph_didot"),
            "record_id": patient_id,
            "detail": trace["detail"],
            "outcome": "denied",
            **http(caller, rid),
        },
        since=since,
        chain=uuid.UUID(patient_id),
    )


# ---------------------------------------------------------------------------------------- consents
def _idnat(persona: str) -> str:
    value = BY_KEY[persona].idnat
    assert value is not None
    return value


def test_consent_changes_through_the_consent_api_are_traced(api: Api, caller: Caller) -> None:
    """Authorizing, blocking, an emergency preference, and withdrawing each: one trace, by the patient."""
    patient_id, _, _ = api.new_patient()
    record = uuid.UUID(patient_id)
    token = api.patient_token(patient_id)
    decisions = [
        (consent(patient_id, "authorization", idnat=_idnat("dr_blanc")), f"authorization permit {_idnat('dr_blanc')}"),
        (consent(patient_id, "block", provision="deny", idnat=_idnat("dr_noir")), f"block deny {_idnat('dr_noir')}"),
        (consent(patient_id, "emergency-break-glass", provision="deny"), "emergency-break-glass deny"),
        (consent(patient_id, "emergency-regulation", provision="deny"), "emergency-regulation deny"),
    ]
    me = f"account:{_account_of(api, patient_id)}"
    for resource, detail in decisions:
        since = utcnow()
        created, rid = caller.call("POST", "/fhir/Consent", token=token, body=resource)
        assert created.status_code == 201, created.text
        consent_id = created.json()["id"]
        (trace,) = traces_of(api.runtime, rid, since)
        same(
            trace,
            {
                "action": "consent.create",
                "actor_kind": "patient",
                "actor_key": me,
                "record_id": patient_id,
                "resource_type": "Consent",
                "resource_id": consent_id,
                "resource_version": 1,
                "detail": detail,
                "access_mode": "normal",
                "basis": PATIENT_BASIS,
                "outcome": "success",
                **http(caller, rid),
            },
            since=since,
            chain=record,
        )
        since = utcnow()
        revoked, rid = caller.call("DELETE", f"/fhir/Consent/{consent_id}", token=token)
        assert revoked.status_code == 200, revoked.text
        assert revoked.json()["status"] == "inactive"
        (trace,) = traces_of(api.runtime, rid, since)
        same(
            trace,
            {
                "action": "consent.revoke",
                "actor_kind": "patient",
                "actor_key": me,
                "record_id": patient_id,
                "resource_type": "Consent",
                "resource_id": consent_id,
                "resource_version": 2,
                "detail": detail,
                "access_mode": "normal",
                "basis": PATIENT_BASIS,
                "outcome": "success",
                **http(caller, rid),
            },
            since=since,
            chain=record,
        )
        # Withdrawing what is already withdrawn changes nothing, and traces nothing.
        again, rid = caller.call("DELETE", f"/fhir/Consent/{consent_id}", token=token)
        assert again.status_code == 200
        assert traces_of(api.runtime, rid, since) == []


def _account_of(api: Api, patient_id: str) -> uuid.UUID:
    from carnet.accounts.models import Account

    with api.runtime.read() as work:
        found = work.session.scalar(sa.select(Account.id).where(Account.record_id == uuid.UUID(patient_id)))
    assert found is not None
    return found


def test_a_representatives_consent_is_traced_on_behalf_of_the_child(api: Api, caller: Caller) -> None:
    from tests.portal.pro_support import representative_token

    patient_id, _, _ = api.new_patient()
    token = representative_token(api, patient_id)
    from carnet.auth import tokens

    subject = tokens.verify(api.settings, token)["sub"]
    since = utcnow()
    created, rid = caller.call(
        "POST", "/fhir/Consent", token=token, body=consent(patient_id, "authorization", idnat=_idnat("dr_girard"))
    )
    assert created.status_code == 201, created.text
    (trace,) = traces_of(api.runtime, rid, since)
    same(
        trace,
        {
            "action": "consent.create",
            "actor_kind": "legal-representative",
            "actor_key": subject,
            "on_behalf_of": f"record:{patient_id}",
            "record_id": patient_id,
            "resource_type": "Consent",
            "resource_id": created.json()["id"],
            "resource_version": 1,
            "detail": f"authorization permit {_idnat('dr_girard')}",
            "access_mode": "normal",
            "basis": PATIENT_BASIS,
            "outcome": "success",
            **http(caller, rid),
        },
        since=since,
        chain=uuid.UUID(patient_id),
    )


def test_a_professionals_declaration_is_traced_with_who_they_are(api: Api, caller: Caller) -> None:
    patient_id, _, _ = api.new_patient(team=())
    declaration = consent(patient_id, "care-team", idnat=_idnat("dr_camparini"))
    since = utcnow()
    created, rid = caller.call("POST", "/fhir/Consent", persona="dr_camparini", body=declaration)
    assert created.status_code == 201, created.text
    (trace,) = traces_of(api.runtime, rid, since)
    same(
        trace,
        {
            "action": "consent.create",
            **professional("dr_camparini"),
            "record_id": patient_id,
            "resource_type": "Consent",
            "resource_id": created.json()["id"],
            "resource_version": 1,
            "detail": f"care-team permit {_idnat('dr_camparini')}",
            "access_mode": "normal",
            "basis": "declaration",
            "outcome": "success",
            **http(caller, rid),
        },
        since=since,
        chain=uuid.UUID(patient_id),
    )


# ---------------------------------------------------------------------------------------- the record
def test_closing_and_reopening_are_traced_with_the_patient_version_they_made(api: Api, caller: Caller) -> None:
    patient_id, _, _ = api.new_patient()
    record = uuid.UUID(patient_id)
    body = {"resourceType": "Parameters", "parameter": [{"name": "reason", "valueCode": "DECES"}]}
    steps = [("$close", body, "record.close", "DECES", 2), ("$reopen", None, "record.reopen", None, 3)]
    for operation, payload, action, detail, version in steps:
        since = utcnow()
        response, rid = caller.call(
            "POST", f"/fhir/Patient/{patient_id}/{operation}", persona="ops_admin", body=payload
        )
        assert response.status_code == 200, response.text
        change, answer = traces_of(api.runtime, rid, since)
        patient = {"record_id": patient_id, "resource_type": "Patient", "resource_id": patient_id}
        same(
            change,
            {
                "action": action,
                **operator(),
                **patient,
                "resource_version": version,
                **({"detail": detail} if detail else {}),
                "access_mode": "normal",
                "basis": "operator",
                "outcome": "success",
                **http(caller, rid),
            },
            since=since,
            chain=record,
        )
        # The Patient returned in the answer: what the operator may see of it (no identity traits).
        same(
            answer,
            {
                "action": "record.lookup",
                **operator(),
                **patient,
                "resource_version": version,
                "access_mode": "normal",
                "basis": "operator",
                "outcome": "success",
                **http(caller, rid),
            },
            since=since,
            chain=record,
        )


def test_a_closure_refused_to_a_professional_is_traced_as_denied(api: Api, caller: Caller) -> None:
    patient_id, _, _ = api.new_patient()
    since = utcnow()
    response, rid = caller.call("POST", f"/fhir/Patient/{patient_id}/$close", persona="dr_medioni")
    assert response.status_code == 403
    (trace,) = traces_of(api.runtime, rid, since)
    same(
        trace,
        {
            "action": "record.close",
            **professional("dr_medioni"),
            "record_id": patient_id,
            "detail": trace["detail"],
            "outcome": "denied",
            **http(caller, rid),
        },
        since=since,
        chain=uuid.UUID(patient_id),
    )


def test_lookups_by_ins_are_traced_as_lookups_or_reads_without_the_ins(api: Api, caller: Caller) -> None:
    patient_id, ins, system = api.new_patient()
    expected = {
        # No relationship with the record: learns only that it exists.
        "dr_blanc": ("record.lookup", "record-status"),
        # In the care team: reads the Patient.
        "dr_medioni": ("record.read", "care-team"),
    }
    for persona, (action, basis) in expected.items():
        since = utcnow()
        response, rid = caller.call("GET", f"/fhir/Patient?identifier={system}|{ins}", persona=persona)
        assert response.status_code == 200, response.text
        assert response.json()["total"] == 1
        (trace,) = traces_of(api.runtime, rid, since)
        same(
            trace,
            {
                "action": action,
                **professional(persona),
                "record_id": patient_id,
                "resource_type": "Patient",
                "resource_id": patient_id,
                "resource_version": 1,
                "detail": "ins",
                "access_mode": "normal",
                "basis": basis,
                "outcome": "success",
                **http(caller, rid),
            },
            since=since,
            chain=uuid.UUID(patient_id),
        )
        assert ins not in orjson.dumps(trace).decode()


def test_list_searches_and_reads_are_traced(api: Api, caller: Caller) -> None:
    patient_id, ins, system = api.new_patient()
    record = uuid.UUID(patient_id)
    deposit(api, ins, system)
    deposit(api, ins, system)
    since = utcnow()
    found, rid = caller.call(
        "GET", f"/fhir/List?patient={patient_id}&code=submissionset&status=current", persona="dr_camparini"
    )
    assert found.status_code == 200, found.text
    lists = [e["resource"]["id"] for e in found.json()["entry"] if e["resource"]["resourceType"] == "List"]
    assert len(lists) == 2
    how = {"access_mode": "normal", "basis": "care-team", "outcome": "success", **http(caller, rid)}
    query, *reads = traces_of(api.runtime, rid, since)
    same(
        query,
        {
            "action": "list.search",
            **professional("dr_camparini"),
            "record_id": patient_id,
            "query": "codes=submissionset&statuses=current",
            "detail": "total:2",
            **how,
        },
        since=since,
        chain=record,
    )
    assert sorted(r["resource_id"] for r in reads) == sorted(lists)
    for read in reads:
        same(
            read,
            {
                "action": "list.read",
                **professional("dr_camparini"),
                "record_id": patient_id,
                "resource_type": "List",
                "resource_id": read["resource_id"],
                "detail": "search",
                **how,
            },
            since=since,
            chain=record,
        )

    since = utcnow()
    one, rid = caller.call("GET", f"/fhir/List/{lists[0]}", persona="dr_camparini")
    assert one.status_code == 200, one.text
    (read,) = traces_of(api.runtime, rid, since)
    same(
        read,
        {
            "action": "list.read",
            **professional("dr_camparini"),
            "record_id": patient_id,
            "resource_type": "List",
            "resource_id": lists[0],
            "resource_version": 1,
            "access_mode": "normal",
            "basis": "care-team",
            "outcome": "success",
            **http(caller, rid),
        },
        since=since,
        chain=record,
    )


def test_the_full_export_through_the_patient_portal_is_traced_with_what_it_holds(api: Api) -> None:
    person = portal_patient.new_patient(api)
    assert person.record_id is not None
    for _ in range(2):
        portal_patient.deposit_pdf(api, person)
    browser = caller_on(api)
    with api.runtime.work() as work:
        browser.client.cookies.set(sessions.COOKIE, sessions.create_session(work, person.account_id, user_agent="t"))
    csrf = portal_patient.token(browser.client)
    since = utcnow()
    rid = f"t-{uuid.uuid4().hex}"
    response = browser.client.post(
        f"{person.base}/export", data={"csrf": csrf}, headers={"X-Request-ID": rid}, follow_redirects=False
    )
    assert response.status_code == 200, response.text
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    bundle = json.loads(archive.read("bundle.json"))
    index = json.loads(archive.read("index.json"))["documents"]
    counts = collections.Counter(e["resource"]["resourceType"] for e in bundle["entry"])
    assert (counts["DocumentReference"], len(index)) == (2, 2)

    traces = traces_of(api.runtime, rid, since)
    me = account(person.account_id)
    # Everything the export read was traced as such, by the patient, through the portal.
    assert all({k: t.get(k) for k in me} == me for t in traces)
    assert all((t["interface"], t["source"], t["outcome"]) == ("portal", browser.address, "success") for t in traces)
    assert collections.Counter(t["action"] for t in traces) == {
        "record.read": 2,  # the portal's space (whose record it is) and the export's Patient
        "document.search": 1,
        "document.read": 2,
        "list.search": 1,
        "list.read": counts["List"],
        "consent.read": 1,
        "document.retrieve": 2,
        "record.export": 1,
    }
    retrieved = {t["resource_id"] for t in traces if t["action"] == "document.retrieve"}
    assert retrieved == {
        str(e["resource"]["content"][0]["attachment"]["url"]).rsplit("/", 1)[1]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == DOC
    }
    (export,) = [t for t in traces if t["action"] == "record.export"]
    same(
        export,
        {
            "action": "record.export",
            **me,
            "record_id": person.record_id,
            "resource_type": "Patient",
            "resource_id": person.record_id,
            "access_mode": "normal",
            "basis": PATIENT_BASIS,
            "detail": f"documents:2 lists:{counts['List']} consents:{counts['Consent']}",
            "outcome": "success",
            "interface": "portal",
            "source": browser.address,
            "request_id": rid,
        },
        since=since,
        chain=uuid.UUID(person.record_id),
    )


# ---------------------------------------------------------------------------------------- patients' sign-in
JSON_API = {"Accept": "application/json"}


def _auth(caller: Caller, url: str, body: dict[str, Any], **headers: str) -> tuple[httpx.Response, str]:
    return caller.call("POST", url, body=body, content_type="application/json", headers={**JSON_API, **headers})


def test_activation_is_traced_on_the_patients_record_and_a_wrong_code_as_a_failure(api: Api, caller: Caller) -> None:
    person = new_patient(api)
    assert person.record_id is not None
    assert person.account_id is not None
    record = uuid.UUID(person.record_id)
    me = account(person.account_id)
    someone_elses = new_patient(api).activation_code()
    form = {**person.ident, "birth_date": person.birth_date, "password": person.password}

    since = utcnow()
    refused, rid = _auth(caller, "/auth/patient/activate", {"code": someone_elses, **form})
    assert refused.status_code == 401, refused.text
    (trace,) = traces_of(api.runtime, rid, since)
    same(
        trace,
        {
            "action": "auth.activation",
            **me,
            "record_id": person.record_id,
            "detail": "code",
            "outcome": "failure",
            **http(caller, rid, "auth"),
        },
        since=since,
        chain=record,
    )

    since = utcnow()
    done, rid = _auth(caller, "/auth/patient/activate", {"code": person.activation_code(), **form})
    assert done.status_code == 201, done.text
    (trace,) = traces_of(api.runtime, rid, since)
    same(
        trace,
        {
            "action": "auth.activation",
            **me,
            "record_id": person.record_id,
            "outcome": "success",
            **http(caller, rid, "auth"),
        },
        since=since,
        chain=record,
    )


def test_sign_in_sign_in_failures_and_sign_out_are_traced(api: Api, caller: Caller) -> None:
    person = activated(api, new_patient(api), caller.client)
    assert person.record_id is not None
    assert person.account_id is not None
    record = uuid.UUID(person.record_id)
    me = account(person.account_id)
    assert person.authenticator is not None

    attempts = [
        ({"password": OTHER_PASSWORD, "totp": person.totp()}, 401, "auth.login-failure", "password", "failure"),
        (
            {"password": person.password, "totp": person.authenticator.wrong()},
            401,
            "auth.login-failure",
            "totp",
            "failure",
        ),
        ({"password": person.password, "totp": person.totp()}, 200, "auth.login", "password+totp", "success"),
    ]
    for changes, status, action, detail, outcome in attempts:
        since = utcnow()
        response, rid = _auth(caller, "/auth/patient/login", {**person.ident, **changes})
        assert response.status_code == status, response.text
        (trace,) = traces_of(api.runtime, rid, since)
        same(
            trace,
            {
                "action": action,
                **me,
                "record_id": person.record_id,
                "detail": detail,
                "outcome": outcome,
                **http(caller, rid, "auth"),
            },
            since=since,
            chain=record,
        )

    # Signing out of this session (the cookie the sign-in set), then out of every other one.
    since = utcnow()
    out, rid = _auth(caller, "/auth/patient/logout", {}, **CSRF)
    assert out.status_code == 204, out.text
    (trace,) = traces_of(api.runtime, rid, since)
    same(
        trace,
        {
            "action": "auth.logout",
            **me,
            "record_id": person.record_id,
            "outcome": "success",
            **http(caller, rid, "auth"),
        },
        since=since,
        chain=record,
    )
    access = sign_in(TestClient(api.client.app, client=(new_address(), 1)), person).json()["access_token"]
    since = utcnow()
    everywhere, rid = caller.call("POST", "/auth/patient/logout-all", token=access, headers=JSON_API)
    assert everywhere.status_code == 200, everywhere.text
    (trace,) = traces_of(api.runtime, rid, since)
    same(
        trace,
        {
            "action": "auth.logout",
            **me,
            "record_id": person.record_id,
            "detail": f"everywhere:{everywhere.json()['revoked']}",
            "outcome": "success",
            **http(caller, rid, "auth"),
        },
        since=since,
        chain=record,
    )


def test_a_failed_sign_in_with_an_unknown_ins_is_traced_without_the_ins(api: Api, caller: Caller) -> None:
    stranger, _ = factories.random_ins()
    since = utcnow()
    response, rid = _auth(
        caller, "/auth/patient/login", {"ins": stranger, "password": OTHER_PASSWORD, "totp": "123456"}
    )
    assert response.status_code == 401
    (trace,) = traces_of(api.runtime, rid, since)
    assert trace["actor_key"].startswith("unknown:")
    assert stranger not in orjson.dumps(trace).decode()
    same(
        trace,
        {
            "action": "auth.login-failure",
            "actor_kind": "patient",
            "actor_key": trace["actor_key"],
            "detail": "unknown",
            "outcome": "failure",
            **http(caller, rid, "auth"),
        },
        since=since,
        chain=chain_for_subject(trace["actor_key"]),
    )
    # The same unknown INS lands in the same chain (a digest of what was typed, stable).
    since = utcnow()
    _, again = _auth(caller, "/auth/patient/login", {"ins": stranger, "password": OTHER_PASSWORD, "totp": "123456"})
    assert [t["actor_key"] for t in traces_of(api.runtime, again, since)] == [trace["actor_key"]]


def test_a_password_reset_is_traced(api: Api, caller: Caller, monkeypatch: pytest.MonkeyPatch) -> None:
    person = activated(api, new_patient(api), caller.client)
    assert person.record_id is not None
    assert person.account_id is not None
    monkeypatch.setattr(patients, "new_code", lambda: "RESETCODE7")
    asked, _ = _auth(caller, "/auth/patient/reset/request", {"ins": person.ins, "birth_date": person.birth_date})
    assert asked.status_code == 202
    since = utcnow()
    confirm = {"code": "RESET-CODE7", "ins": person.ins, "new_password": OTHER_PASSWORD, "totp": person.totp()}
    done, rid = _auth(caller, "/auth/patient/reset/confirm", confirm)
    assert done.status_code == 200, done.text
    (trace,) = traces_of(api.runtime, rid, since)
    same(
        trace,
        {
            "action": "auth.password-reset",
            **account(person.account_id),
            "record_id": person.record_id,
            "outcome": "success",
            **http(caller, rid, "auth"),
        },
        since=since,
        chain=uuid.UUID(person.record_id),
    )
    assert "RESETCODE7" not in orjson.dumps(trace).decode()


# ---------------------------------------------------------------------------------------- professionals' portal
def _card_post(
    client: TestClient, url: str, address: str, headers: dict[str, str] | None = None
) -> tuple[httpx.Response, str]:
    """A form POST through the trusted proxy, which forwards the browser's address (and a card, if given)."""
    request_id = f"t-{uuid.uuid4().hex}"
    sent = {"X-Forwarded-For": address, "X-Request-ID": request_id, **(headers or {})}
    response = client.post(url, data={"csrf": pro_csrf(client), "next": ""}, headers=sent, follow_redirects=False)
    return response, request_id


def test_a_card_unknown_to_the_directory_is_a_traced_failure_from_the_forwarded_address(pro: Pro) -> None:
    stranger = pki.issue_professional(pro.cards.directory, idnat="899999999999", name="Dr Inconnu")
    browser, address = pro.browser(), new_address()
    since = utcnow()
    response, rid = _card_post(browser, CARD_LOGIN, address, forwarded(pem(stranger)))
    assert response.status_code == 401
    (trace,) = traces_of(pro.runtime, rid, since)
    same(
        trace,
        {
            "action": "auth.login-failure",
            "actor_kind": "professional",
            "actor_key": "pro:899999999999",
            "detail": "card unknown",
            "outcome": "failure",
            "interface": "portal",
            "source": address,  # the browser's, forwarded by the trusted proxy (not the proxy's own)
            "request_id": rid,
        },
        since=since,
        chain=chain_for_subject("pro:899999999999"),
    )
    assert address != PROXY[0]


def test_a_card_sign_in_and_the_sign_out_are_traced(pro: Pro) -> None:
    browser, address = pro.browser(), new_address()
    chain = chain_for_subject(f"pro:{_idnat('inf_moreau')}")
    since = utcnow()
    response, rid = _card_post(browser, CARD_LOGIN, address, forwarded(pem(pro.cards.card("inf_moreau"))))
    assert response.status_code == 303, response.text
    (trace,) = traces_of(pro.runtime, rid, since)
    portal = {"outcome": "success", "interface": "portal", "source": address}
    same(
        trace,
        {
            "action": "auth.login",
            **professional("inf_moreau"),
            "detail": "portal certificate",
            **portal,
            "request_id": rid,
        },
        since=since,
        chain=chain,
    )
    since = utcnow()
    out, rid = _card_post(browser, "/pro/deconnexion", address)
    assert out.status_code == 303
    (trace,) = traces_of(pro.runtime, rid, since)
    same(
        trace,
        {"action": "auth.logout", **professional("inf_moreau"), "detail": "portal", **portal, "request_id": rid},
        since=since,
        chain=chain,
    )


# ---------------------------------------------------------------------------------------- SMART tokens
def _token(caller: Caller, form: dict[str, str]) -> tuple[httpx.Response, str]:
    request_id = f"t-{uuid.uuid4().hex}"
    response = caller.client.post(smart.TOKEN_URL, data=form, headers={"X-Request-ID": request_id})
    return response, request_id


def test_smart_tokens_issued_and_refused_are_traced_in_the_clients_chain(api: Api, caller: Caller) -> None:
    key = smart.make_key()
    client_id = smart.register(api.runtime, key, scopes="system/DocumentReference.rs")
    client = {"actor_kind": "software", "actor_key": f"client:{client_id}", "client_id": client_id}
    chain = chain_for_subject(f"client:{client_id}")

    since = utcnow()
    issued, rid = _token(caller, smart.token_form(smart.assertion(key, client_id), "system/DocumentReference.rs"))
    assert issued.status_code == 200, issued.text
    (trace,) = traces_of(api.runtime, rid, since)
    same(
        trace,
        {
            "action": "auth.token",
            # Issued to the software for the professional it acts for: both named, as on their requests.
            **{k: v for k, v in professional("dr_lambert").items() if k not in ("actor_kind", "actor_key")},
            **client,
            "on_behalf_of": f"pro:{smart.LAMBERT}",
            "access_mode": "normal",
            "detail": f"pro:{smart.LAMBERT} scope=system/DocumentReference.rs",
            "outcome": "success",
            **http(caller, rid, "auth"),
        },
        since=since,
        chain=chain,
    )

    since = utcnow()
    refused, rid = _token(caller, smart.token_form(smart.assertion(key, client_id), "system/Binary.r"))
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"] == "invalid_scope"
    (trace,) = traces_of(api.runtime, rid, since)
    same(
        trace,
        {
            "action": "auth.token",
            **client,
            "detail": "invalid_scope",
            "outcome": "failure",
            **http(caller, rid, "auth"),
        },
        since=since,
        chain=chain,
    )


# ---------------------------------------------------------------------------------------- the command line
def _luhn(body: str) -> str:
    from carnet.identifiers.professionals import luhn_valid

    return next(body + d for d in "0123456789" if luhn_valid(body + d))


@pytest.mark.slow
def test_operator_actions_from_the_command_line_are_traced_as_admin(api: Api, tmp_path: Path) -> None:
    """``carnet account client register``, ``carnet import directory``, ``carnet account activation-code`` and
    ``reset-code``, each a process of its own: one ``admin`` trace each, by the operator at the command line."""
    from carnet import audit

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = carnet_env(api.settings.database_url)
    me = audit.operator().key  # cli:<the user running the command>
    assert me == f"cli:{getpass.getuser()}"
    cli = {"actor_kind": "operator", "actor_key": me, "interface": "cli", "source": me, "outcome": "success"}
    operator_chain = chain_for_subject(me)

    def run(*args: str) -> str:
        result = run_carnet(*args, env=env, cwd=cwd)
        assert result.code == 0, result.describe()
        return result.stdout.strip()

    def admin(since: dt.datetime, reason: str) -> dict[str, Any]:
        (trace,) = traces_since(api.runtime, since, action="admin", reason=reason)
        return trace

    # A software client registered.
    client_id = smart.new_client_id("cli")
    (cwd / "keys.jwks").write_text(smart.jwks(smart.make_key()))
    since = utcnow()
    summary = run(
        "account", "client", "register", "--id", client_id, "--name", "LGC test", "--kind", "software",
        "--organization", smart.SAINT_ROCH, "--scopes", "system/DocumentReference.rs", "--jwks", "keys.jwks",
    )  # fmt: skip
    assert client_id in summary
    same(
        admin(since, f"client: {summary}"),
        {"action": "admin", **cli, "reason": f"client: {summary}"},
        since=since,
        chain=operator_chain,
    )

    # A directory extract imported: one trace per line committed.
    idnat = "8" + _luhn(f"1{random.randint(0, 10**9 - 1):09d}")
    extract = cwd / f"annuaire-{uuid.uuid4().hex[:6]}.csv"
    extract.write_text(
        "idnat_ps,family,given,profession_code,specialty_code,organization_idnat,organization_name,facility_type,"
        f"practice_setting\n{idnat},TRACE,Test,10,SM26,17{random.randint(0, 10**8 - 1):08d},Centre de test (trail),SA07,"
        "AMBULATOIRE\n",
        encoding="utf-8",
    )
    since = utcnow()
    run("import", "directory", str(extract))
    reason = f"directory import: {extract.name} line 2"
    same(admin(since, reason), {"action": "admin", **cli, "reason": reason}, since=since, chain=operator_chain)

    # An activation code issued for a patient: traced on their record (it shows in their history).
    patient_id, ins, system = api.new_patient(team=())
    since = utcnow()
    code = run("account", "activation-code", "--ins", ins, "--system", system)
    assert len(code) == 11
    same(
        admin(since, "activation code issued"),
        {"action": "admin", **cli, "record_id": patient_id, "reason": "activation code issued"},
        since=since,
        chain=uuid.UUID(patient_id),
    )

    # A reset code issued for an activated account.
    person = portal_patient.new_patient(api)
    since = utcnow()
    reset = run("account", "reset-code", "--account", str(person.account_id))
    reason = f"password reset code issued for account {person.account_id}"
    trace = admin(since, reason)
    same(trace, {"action": "admin", **cli, "reason": reason}, since=since, chain=operator_chain)
    for secret in (code, code.replace("-", ""), reset, reset.replace("-", "")):
        assert secret not in orjson.dumps(trace).decode()


# ---------------------------------------------------------------------------------------- from where
def test_the_source_is_the_client_or_what_a_trusted_proxy_forwarded(api: Api) -> None:
    patient_id, _, _ = api.new_patient()
    behind_proxy = create_app(api.settings.model_copy(update={"trusted_proxies": ["10.250.0.0/16"]}), api.runtime)
    browser = new_address()
    cases = [
        # A trusted proxy: the right-most address it did not add itself.
        (caller_on(api, behind_proxy, peer="10.250.0.7"), {"X-Forwarded-For": f"{browser}, 10.250.0.9"}, browser),
        # Anyone else: what they claim is ignored, their own address is kept.
        (spoofer := caller_on(api, behind_proxy), {"X-Forwarded-For": browser}, None),
        # Without trusted proxies at all, the header is never read.
        (direct := caller_on(api), {"X-Forwarded-For": browser}, None),
    ]
    for who, headers, expected in cases:
        since = utcnow()
        response, rid = who.call("GET", f"/fhir/Patient/{patient_id}", persona="dr_medioni", headers=headers)
        assert response.status_code == 200, response.text
        (trace,) = traces_of(api.runtime, rid, since)
        assert trace["source"] == (expected or who.address)
    assert spoofer.address != browser
    assert direct.address != browser


# ---------------------------------------------------------------------------------------- notification preferences
def test_a_change_of_notification_preferences_is_traced_and_shows_in_the_history(api: Api, caller: Caller) -> None:
    """MODIF_PARAM_NOTIF (reference/dmp.md §4): through the API, an ``admin`` trace on the patient's record,
    with what changed as codes (never the address), and a line of their history in French and English."""
    patient_id, _, _ = api.new_patient(team=())
    token = api.patient_token(patient_id)
    me = account(_account_of(api, patient_id))
    address = f"prefs.{uuid.uuid4().hex[:10]}@example.org"
    body = {
        "language": "en",
        "email": address,
        "phone": "06 12 34 56 78",
        "topics": {"documents": False, "record": False},
    }
    since = utcnow()
    saved, rid = caller.call(
        "PUT", "/notifications/preferences", token=token, body=body, content_type="application/json", headers=JSON_API
    )
    assert saved.status_code == 200, saved.text
    (trace,) = traces_of(api.runtime, rid, since)
    same(
        trace,
        {
            "action": "admin",
            **me,
            "record_id": patient_id,
            "detail": "notification-preferences lang=en email=on sms=off topics-off=documents,record",
            "outcome": "success",
            **http(caller, rid, "portal"),
        },
        since=since,
        chain=uuid.UUID(patient_id),
    )
    raw = orjson.dumps(trace).decode()
    assert address not in raw
    assert "612345678" not in raw

    # A refused change is not saved, and not traced.
    since = utcnow()
    refused, rid = caller.call(
        "PUT",
        "/notifications/preferences",
        token=token,
        body={"topics": {"emergency-access": False}},
        content_type="application/json",
        headers=JSON_API,
    )
    assert refused.status_code == 422
    assert traces_of(api.runtime, rid, since) == []

    for language, label in (
        ("fr", "Vous avez modifié vos préférences de notification"),
        ("en", "You changed the notification preferences"),
    ):
        shown, _ = caller.call(
            "GET", "/api/patient/history?action=admin", token=token, headers={**JSON_API, "Accept-Language": language}
        )
        assert shown.status_code == 200, shown.text
        (line,) = shown.json()["items"]
        assert (line["label"], line["group"], line["actorType"], line["outcome"]) == (
            label,
            "GENERAL",
            "PATIENT",
            "success",
        )


def test_preferences_changed_in_the_portal_or_by_a_representative_are_traced_too(api: Api) -> None:
    # The patient portal's form: the same service, the same trace, through the portal.
    person = portal_patient.new_patient(api)
    assert person.record_id is not None
    browser = caller_on(api)
    with api.runtime.work() as work:
        browser.client.cookies.set(sessions.COOKIE, sessions.create_session(work, person.account_id, user_agent="t"))
    since = utcnow()
    rid = f"t-{uuid.uuid4().hex}"
    form = {"csrf": portal_patient.token(browser.client), "langue": "fr", "theme": ["documents"]}
    saved = browser.client.post(
        "/patient/notifications/preferences", data=form, headers={"X-Request-ID": rid}, follow_redirects=False
    )
    assert saved.status_code == 303, saved.text
    traces = traces_of(api.runtime, rid, since)
    (trace,) = [t for t in traces if t["action"] == "admin"]
    assert {t["action"] for t in traces} == {"admin", "record.read"}  # and the page's space: whose record it is
    assert (trace["action"], trace["actor_key"], trace["record_id"], trace["interface"], trace["source"]) == (
        "admin",
        f"account:{person.account_id}",
        person.record_id,
        "portal",
        browser.address,
    )
    assert trace["detail"].startswith("notification-preferences lang=fr email=off sms=off topics-off=")
    assert "documents" not in trace["detail"].split("topics-off=")[1].split(",")

    # A legal representative's own preferences: their own chain, like their sign-ins (no record of theirs).
    from tests.notifications.support import representative

    patient_id, _, _ = api.new_patient(team=())
    parent = representative(api.runtime, patient_id)
    from carnet.auth import tokens

    caller = caller_on(api)
    since = utcnow()
    saved_rep, rid = caller.call(
        "PUT",
        "/notifications/preferences",
        token=tokens.issue_dev(api.settings, f"account:{parent}"),
        body={"language": "fr"},
        content_type="application/json",
        headers=JSON_API,
    )
    assert saved_rep.status_code == 200, saved_rep.text
    (trace,) = traces_of(api.runtime, rid, since)
    same(
        trace,
        {
            "action": "admin",
            **account(parent, "legal-representative"),
            "detail": "notification-preferences lang=fr email=off sms=off topics-off=-",
            "outcome": "success",
            **http(caller, rid, "portal"),
        },
        since=since,
        chain=chain_for_subject(f"account:{parent}"),
    )


# ---------------------------------------------------------------------------------------- how, on whose behalf
def test_changes_say_how_access_was_allowed(api: Api, caller: Caller) -> None:
    patient_id, ins, system = api.new_patient()
    since = utcnow()
    doc = factories.docref(ins, system, author_idnat="810001745206")
    _, deposit_rid = caller.call("POST", "/fhir/DocumentReference", persona="dr_lambert", body=doc)
    body = {"resourceType": "Parameters", "parameter": [{"name": "reason", "valueCode": "DECES"}]}
    _, close_rid = caller.call("POST", f"/fhir/Patient/{patient_id}/$close", persona="ops_admin", body=body)
    changes = [
        t
        for rid in (deposit_rid, close_rid)
        for t in traces_of(api.runtime, rid, since)
        if t["action"] in ("document.create", "record.close")
    ]
    assert [t["action"] for t in changes] == ["document.create", "record.close"]
    assert all(t.get("access_mode") == "normal" and t.get("basis") for t in changes)


def test_a_withdrawn_consent_names_the_version_it_made(api: Api, caller: Caller) -> None:
    patient_id, _, _ = api.new_patient()
    token = api.patient_token(patient_id)
    created, _ = caller.call(
        "POST", "/fhir/Consent", token=token, body=consent(patient_id, "emergency-masked", provision="deny")
    )
    since = utcnow()
    revoked, rid = caller.call("DELETE", f"/fhir/Consent/{created.json()['id']}", token=token)
    (trace,) = traces_of(api.runtime, rid, since)
    assert trace.get("resource_version") == int(revoked.json()["meta"]["versionId"]) == 2


def test_a_token_issued_to_software_says_on_whose_behalf(api: Api, caller: Caller) -> None:
    key = smart.make_key()
    client_id = smart.register(api.runtime, key)
    since = utcnow()
    issued, rid = _token(caller, smart.token_form(smart.assertion(key, client_id)))
    assert issued.status_code == 200
    (trace,) = traces_of(api.runtime, rid, since)
    assert (trace.get("on_behalf_of"), trace.get("professional")) == (f"pro:{smart.LAMBERT}", smart.LAMBERT)


def test_a_patients_own_accesses_carry_the_documented_basis_code(api: Api, caller: Caller) -> None:
    patient_id, _, _ = api.new_patient()
    since = utcnow()
    _, rid = caller.call("GET", f"/fhir/Patient/{patient_id}", token=api.patient_token(patient_id))
    (trace,) = traces_of(api.runtime, rid, since)
    assert trace["basis"] == "own-record"
