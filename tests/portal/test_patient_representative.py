"""A legal representative in the patient portal: switching between their own record and their children's,
never seeing ``INVISIBLE_REPRESENTANTS_LEGAUX`` documents, and no way into a record that is not theirs (the
same answer as a record that does not exist)."""

from __future__ import annotations

import io
import re
import uuid
import zipfile

import orjson

from carnet.demo.pdf import make_pdf
from carnet.notifications import centre
from carnet.notifications.kinds import Language
from tests.conftest import Api
from tests.portal.patient_support import (
    body,
    cheap_hashing,  # noqa: F401 - autouse fixture
    deposit_pdf,
    new_patient,
    new_representative,
    patient_documents,
    post,
    represent,
    signed_in,
    upload,
)

HIDDEN_FROM_PARENTS = "INVISIBLE_REPRESENTANTS_LEGAUX"


def _switcher(html: str) -> list[tuple[str, str]]:
    """The record bar: (address, label) of each record offered."""
    bar = re.search(r'<nav class="record-bar".*?</nav>', html, re.S)
    assert bar is not None
    return [
        (href, " ".join(label.split()))
        for href, label in re.findall(r'<li><a href="([^"]+)"[^>]*>(.*?)</a></li>', bar.group(0), re.S)
    ]


def test_a_parent_switches_between_their_record_and_their_childrens(api: Api) -> None:
    parent = new_patient(api, given="Claire")
    child = new_patient(api, birth_date="2015-05-05", given="Léa")
    second = new_patient(api, birth_date="2018-08-08", given="Hugo")
    represent(parent, child, second)
    client = signed_in(parent)
    landing = client.get("/patient", follow_redirects=False)
    assert landing.headers["location"] == parent.base
    own = client.get(parent.base)
    assert own.status_code == 200
    assert "Bonjour" in body(own)
    offered = _switcher(body(own))
    assert [href for href, _ in offered] == [parent.base, *sorted([child.base, second.base])]
    assert offered[0][1] == "Mon dossier"
    labels = dict(offered)
    assert "Léa" in labels[child.base]
    assert "(représenté·e)" in labels[child.base]
    assert "Hugo" in labels[second.base]
    childs_home = client.get(child.base)
    assert childs_home.status_code == 200
    assert "Dossier de Léa" in body(childs_home)
    assert re.search(rf'href="{child.base}" aria-current="page"', childs_home.text)
    # Each record shows its own documents.
    mine = deposit_pdf(api, parent, persona="dr_medioni", title="Pour la mère")
    theirs = deposit_pdf(api, child, persona="dr_medioni", title="Pour l'enfant")
    own_docs = client.get(f"{parent.base}/documents").text
    child_docs = client.get(f"{child.base}/documents").text
    assert f"documents/{mine}" in own_docs
    assert f"documents/{theirs}" not in own_docs
    assert f"documents/{theirs}" in child_docs
    assert f"documents/{mine}" not in child_docs
    # The parent's action on the child's record lands on the child's record only.
    sent = upload(client, child, make_pdf("Carnet de vaccination", ["copie"]), title="Vaccins", category="DEPISTAG")
    assert sent.status_code == 303, sent.text
    assert "Vaccins" in [d["content"][0]["attachment"]["title"] for d in patient_documents(child)]
    assert "Vaccins" not in [d["content"][0]["attachment"]["title"] for d in patient_documents(parent)]


def test_a_representative_without_a_record_lands_on_the_first_child(api: Api) -> None:
    child = new_patient(api, birth_date="2016-06-06", given="Nina")
    parent = new_representative(api, child)
    client = signed_in(parent)
    landing = client.get("/patient", follow_redirects=False)
    assert landing.headers["location"] == child.base
    page = client.get(child.base)
    assert page.status_code == 200
    assert "Dossier de Nina" in body(page)
    assert 'class="record-bar"' not in page.text  # one record: nothing to switch
    # The child's notices reach the representative's centre, named after the child.
    deposit_pdf(api, child, persona="dr_medioni", title="Certificat de vaccination")
    notices = client.get("/patient/notifications")
    assert notices.status_code == 200
    assert "Non lues : 0" not in body(notices)
    assert "Nina" in body(notices)


def test_documents_hidden_from_legal_representatives_stay_hidden(api: Api) -> None:
    child = new_patient(api, birth_date="2009-09-09", given="Jade")
    parent = new_representative(api, child)
    shown = deposit_pdf(api, child, persona="dr_medioni", title="Vaccination")
    hidden = deposit_pdf(
        api, child, persona="dr_medioni", title="Consultation confidentielle", flags=(HIDDEN_FROM_PARENTS,)
    )
    client = signed_in(parent)
    listing = client.get(f"{child.base}/documents")
    assert f"documents/{shown}" in listing.text
    assert f"documents/{hidden}" not in listing.text
    assert "Consultation confidentielle" not in body(listing)
    missing = str(uuid.uuid4())
    for suffix in ("", "/contenu", "/telecharger"):
        refused = client.get(f"{child.base}/documents/{hidden}{suffix}")
        nowhere = client.get(f"{child.base}/documents/{missing}{suffix}")
        assert refused.status_code == nowhere.status_code == 404, suffix
    assert post(client, f"{child.base}/documents/{hidden}/masquage", {"masquer": "1"}).status_code == 404
    # Searching by text or category does not reveal it either.
    found = post(client, f"{child.base}/documents", {"categorie": "CPT_REND"})
    assert f"documents/{hidden}" not in found.text
    # Nor the home page, the history or the export.
    assert f"documents/{hidden}" not in client.get(child.base).text
    history = client.get(f"{child.base}/historique").text
    assert f"documents/{hidden}" not in history
    assert "Consultation confidentielle" not in body(client.get(f"{child.base}/historique"))
    exported = post(client, f"{child.base}/export")
    assert exported.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(exported.content))
    bundle = orjson.loads(archive.read("bundle.json"))
    ids = {e["resource"]["id"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DocumentReference"}
    assert shown in ids
    for name in archive.namelist():
        assert hidden.encode() not in archive.read(name), name
        assert b"Consultation confidentielle" not in archive.read(name), name
    # Mask all from the parent's side leaves the hidden document as it was (they cannot see it to change it).
    post(client, f"{child.base}/documents/confidentialite", {"action": "tout-masquer"})
    # Notified of the visible document only (a notice would tell that the hidden one exists).
    with api.runtime.read() as work:
        parents = centre.list_notices(work, recipient=f"account:{parent.account_id}", language=Language.FR)
        childs = centre.list_notices(work, recipient=f"account:{child.account_id}", language=Language.FR)
    assert parents.total == 1
    assert childs.total == 2
    # The child, in their own space, sees it.
    own = signed_in(child)
    assert f"documents/{hidden}" in own.get(f"{child.base}/documents").text
    assert own.get(f"{child.base}/documents/{hidden}").status_code == 200


def test_a_record_that_is_not_theirs_answers_like_one_that_does_not_exist(api: Api) -> None:
    child = new_patient(api, birth_date="2014-04-04", given="Tom")
    stranger = new_patient(api, given="Paul")
    stranger_doc = deposit_pdf(api, stranger, persona="dr_medioni")
    parent = new_representative(api, child)
    client = signed_in(parent)
    unknown = str(uuid.uuid4())
    nowhere = f"/patient/dossiers/{unknown}"
    for suffix in (
        "",
        "/documents",
        "/documents/ajout",
        "/professionnels",
        "/historique",
        "/dossier",
        f"/documents/{stranger_doc}",
    ):
        theirs = client.get(f"{stranger.base}{suffix}")
        missing = client.get(f"{nowhere}{suffix}")
        assert theirs.status_code == missing.status_code == 404, suffix
        assert body(theirs) == body(missing).replace(unknown, str(stranger.record_id)), suffix
    garbage = client.get("/patient/dossiers/not-a-record")
    assert garbage.status_code == 404
    for path, data in (
        ("/documents", {"texte": "x"}),
        ("/documents/confidentialite", {"action": "tout-masquer"}),
        ("/professionnels/decision", {"action": "bloquer", "professionnel": "810005123459"}),
        ("/professionnels/urgence", {"regulation": "non"}),
        ("/fermeture", {"confirmation": "oui"}),
        ("/reouverture", {}),
        ("/export", {}),
        (f"/documents/{stranger_doc}/masquage", {"masquer": "1"}),
    ):
        theirs = post(client, f"{stranger.base}{path}", data)
        missing = post(client, f"{nowhere}{path}", data)
        assert theirs.status_code == missing.status_code == 404, path
    refused = upload(client, stranger, make_pdf("x", ["y"]), title="Intrus")
    assert refused.status_code == 404
    assert [d["id"] for d in patient_documents(stranger)] == [stranger_doc]
    assert api.get(f"/fhir/DocumentReference/{stranger_doc}", "dr_lambert").status_code == 200
