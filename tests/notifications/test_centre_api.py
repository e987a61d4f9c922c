"""The notification centre and the preferences over HTTP: patients, representatives, professionals."""

from __future__ import annotations

import uuid
from typing import Any

import httpx2 as httpx
import sqlalchemy as sa
from starlette.testclient import TestClient

from carnet.app import create_app
from carnet.audit.trace import TraceAction
from carnet.auth import sessions, tokens
from carnet.notifications.models import NotificationPreference
from carnet.notifications.rules import NotificationRules
from tests.conftest import Api
from tests.notifications.support import apply, holder, idnat, pro_trace, representative, unique_email

CSRF = {sessions.CSRF_HEADER: sessions.CSRF_VALUE}


def _call(api: Api, token: str, method: str, url: str, body: Any = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    return api.client.request(method, url, headers=headers, json=body)


def _account_token(api: Api, account_id: uuid.UUID) -> str:
    return tokens.issue_dev(api.settings, f"account:{account_id}")


def _with_notices(api: Api, *professionals: str) -> tuple[str, str, uuid.UUID]:
    """A patient with a token, a representative, and one first-access notice per professional."""
    patient_id, _, _ = api.new_patient(team=())
    token = api.patient_token(patient_id)
    parent = representative(api.runtime, patient_id)
    rules = NotificationRules(api.settings)
    for persona in professionals:
        apply(api.runtime, rules, pro_trace(TraceAction.RECORD_READ, uuid.UUID(patient_id), persona))
    return patient_id, token, parent


# ---------------------------------------------------------------------------------------- the centre
def test_the_patient_lists_reads_and_deletes_their_notices(api: Api) -> None:
    patient_id, token, _ = _with_notices(api, "dr_blanc", "dr_girard", "dr_roux")
    listed = _call(api, token, "GET", "/notifications")
    assert listed.status_code == 200, listed.text
    page = listed.json()
    assert (page["total"], page["unread"]) == (3, 3)
    first = page["notifications"][0]
    assert first["kind"] == "professional-first-access"
    assert first["topic"] == "professional-access"
    assert first["patient"] == patient_id
    assert first["role"] == "holder"
    assert first["read"] is False
    assert first["title"] == "Un professionnel de santé a accédé à votre dossier"
    assert "pour la première fois à votre dossier" in first["text"]
    # In the (signed-in) centre, the professional is named; never in e-mails or SMS.
    names = {n["professional"]["name"] for n in page["notifications"]}
    assert names == {"Marc BLANC", "Paul GIRARD", "Sophie ROUX"}
    assert _call(api, token, "GET", "/notifications/unread-count").json() == {"unread": 3}

    notice_id = first["id"]
    read = _call(api, token, "POST", f"/notifications/{notice_id}/read")
    assert read.status_code == 200, read.text
    assert read.json()["read"] is True
    assert _call(api, token, "GET", "/notifications/unread-count").json() == {"unread": 2}
    unread_only = _call(api, token, "GET", "/notifications?unread=true").json()
    assert (unread_only["total"], len(unread_only["notifications"])) == (2, 2)
    assert notice_id not in {n["id"] for n in unread_only["notifications"]}

    assert _call(api, token, "POST", f"/notifications/{notice_id}/unread").json()["read"] is False
    assert _call(api, token, "POST", "/notifications/read-all").json() == {"updated": 3}
    assert _call(api, token, "GET", "/notifications/unread-count").json() == {"unread": 0}

    assert _call(api, token, "DELETE", f"/notifications/{notice_id}").status_code == 204
    assert _call(api, token, "GET", f"/notifications/{notice_id}").status_code == 404
    assert _call(api, token, "DELETE", f"/notifications/{notice_id}").status_code == 404
    assert _call(api, token, "GET", "/notifications").json()["total"] == 2


def test_paging(api: Api) -> None:
    _, token, _ = _with_notices(api, "dr_blanc", "dr_girard", "dr_roux")
    first = _call(api, token, "GET", "/notifications?limit=2").json()
    second = _call(api, token, "GET", "/notifications?limit=2&offset=2").json()
    assert (len(first["notifications"]), len(second["notifications"]), first["total"]) == (2, 1, 3)
    ids = [n["id"] for n in first["notifications"] + second["notifications"]]
    assert len(set(ids)) == 3
    assert _call(api, token, "GET", "/notifications?limit=1000").status_code == 400


def test_nobody_sees_or_touches_someone_elses_notices(api: Api) -> None:
    _, token, parent = _with_notices(api, "dr_blanc")
    _, stranger, _ = _with_notices(api)
    notice_id = _call(api, token, "GET", "/notifications").json()["notifications"][0]["id"]
    for method, url in [
        ("GET", f"/notifications/{notice_id}"),
        ("POST", f"/notifications/{notice_id}/read"),
        ("DELETE", f"/notifications/{notice_id}"),
    ]:
        assert _call(api, stranger, method, url).status_code == 404, (method, url)
    assert _call(api, stranger, "GET", "/notifications").json()["total"] == 0
    assert _call(api, token, "GET", "/notifications/not-a-uuid").status_code == 404
    # The representative has their own notice of the same event, worded for them.
    theirs = _call(api, _account_token(api, parent), "GET", "/notifications").json()["notifications"]
    assert [(n["role"], n["title"]) for n in theirs] == [
        ("representative", "Un professionnel de santé a accédé au dossier d'une personne que vous représentez")
    ]
    assert theirs[0]["id"] != notice_id


def test_the_medecin_traitant_has_their_own_centre(api: Api) -> None:
    patient_id, _, _ = api.new_patient(team=())
    api.declare("dr_medioni", patient_id, "medecin-traitant")
    holder(api.runtime, patient_id)
    apply(
        api.runtime,
        NotificationRules(api.settings),
        pro_trace(TraceAction.EMERGENCY_ACCESS, uuid.UUID(patient_id), "dr_haddad", access_mode="break-glass"),
    )
    doctor = api.token("dr_medioni")
    page = _call(api, doctor, "GET", "/notifications").json()
    mine = [n for n in page["notifications"] if n["patient"] == patient_id]
    assert [(n["kind"], n["role"]) for n in mine] == [("emergency-access", "medecin-traitant")]
    assert mine[0]["professional"] == {"idnat": idnat("dr_haddad"), "name": "Karim HADDAD"}
    assert "médecin traitant" in mine[0]["text"]
    # Professionals have no preferences here; software and insurers have no centre.
    assert _call(api, doctor, "GET", "/notifications/preferences").status_code == 403
    assert _call(api, api.token("cnam_feed"), "GET", "/notifications").status_code == 403
    assert api.client.get("/notifications").status_code == 401


def test_notices_are_shown_in_the_accounts_language(api: Api) -> None:
    _, token, _ = _with_notices(api, "dr_blanc")
    put = _call(api, token, "PUT", "/notifications/preferences", {"language": "en"})
    assert put.status_code == 200, put.text
    [notice] = _call(api, token, "GET", "/notifications").json()["notifications"]
    assert notice["title"] == "A health professional accessed your record"


# ---------------------------------------------------------------------------------------- preferences
def test_preferences_default_then_replace(api: Api) -> None:
    patient_id, _, _ = api.new_patient(team=())
    token = api.patient_token(patient_id)
    defaults = _call(api, token, "GET", "/notifications/preferences").json()
    assert defaults == {
        "language": "fr",
        "email": None,
        "phone": None,
        "channels": {"in-app": True, "email": False, "sms": False},
        "topics": {
            "professional-access": True,
            "emergency-access": True,
            "documents": True,
            "consents": True,
            "record": True,
            "messages": True,
            "appointments": True,
            "screening": True,
        },
        "mandatory_topics": ["emergency-access"],
    }
    address = unique_email("Camille")
    put = _call(
        api,
        token,
        "PUT",
        "/notifications/preferences",
        {"email": address, "phone": "06 12 34 56 78", "channels": {"sms": True}, "topics": {"documents": False}},
    )
    assert put.status_code == 200, put.text
    saved = _call(api, token, "GET", "/notifications/preferences").json()
    assert saved["email"] == address
    assert saved["phone"] == "+33612345678"
    assert saved["channels"] == {"in-app": True, "email": True, "sms": True}  # e-mail: the default channel
    assert saved["topics"]["documents"] is False
    assert saved["topics"]["emergency-access"] is True
    # At rest, the contacts are sealed.
    with api.runtime.work() as work:
        row = work.session.scalars(sa.select(NotificationPreference)).all()
        stored = [r for r in row if r.email is not None]
    assert stored
    assert all(b"example.org" not in (r.email or b"") and b"612345678" not in (r.phone or b"") for r in stored)
    # PUT replaces: what is omitted returns to its default.
    assert _call(api, token, "PUT", "/notifications/preferences", {}).json()["email"] is None


def test_invalid_preferences_are_refused_with_every_reason(api: Api) -> None:
    patient_id, _, _ = api.new_patient(team=())
    token = api.patient_token(patient_id)
    response = _call(
        api,
        token,
        "PUT",
        "/notifications/preferences",
        {
            "language": "de",
            "email": "not-an-address",
            "phone": "12",
            "channels": {"sms": True, "pigeon": True, "in-app": False},
            "topics": {"emergency-access": False, "gossip": True},
        },
    )
    assert response.status_code == 422, response.text
    issues = {issue["expression"][0]: issue["diagnostics"] for issue in response.json()["issue"]}
    assert set(issues) == {
        "language",
        "email",
        "phone",
        "channels.pigeon",
        "channels.in-app",
        "topics.emergency-access",
        "topics.gossip",
    }
    assert "cannot be turned off" in issues["topics.emergency-access"]
    assert "+33612345678" in issues["phone"]
    required = _call(api, token, "PUT", "/notifications/preferences", {"channels": {"email": True}})
    assert required.status_code == 422
    assert "give an e-mail address" in required.text
    malformed = _call(api, token, "PUT", "/notifications/preferences", {"language": 5, "extra": 1})
    assert malformed.status_code == 400
    # Nothing was written by the refused requests.
    assert _call(api, token, "GET", "/notifications/preferences").json()["language"] == "fr"


def test_session_cookie_changes_need_the_csrf_header(api: Api) -> None:
    patient_id, _, _ = api.new_patient(team=())
    token = api.patient_token(patient_id)
    account_id = uuid.UUID(tokens.verify(api.settings, token)["sub"].split(":", 1)[1])
    with api.runtime.work() as work:
        cookie = sessions.create_session(work, account_id)
    with TestClient(create_app(api.settings, api.runtime), base_url="http://testserver") as browser:
        browser.cookies.set(sessions.COOKIE, cookie)
        assert browser.get("/notifications/preferences").status_code == 200
        body = {"language": "en"}
        refused = browser.put("/notifications/preferences", json=body)
        assert refused.status_code == 403
        accepted = browser.put("/notifications/preferences", json=body, headers=CSRF)
        assert accepted.status_code == 200, accepted.text
        assert browser.post("/notifications/read-all").status_code == 403
        assert browser.post("/notifications/read-all", headers=CSRF).status_code == 200
