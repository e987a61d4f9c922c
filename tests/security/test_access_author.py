"""The author of a document always keeps access to it (R1111-49 CSP; DESIGN.md §3 rule 6), through the API.

docs/access.md decides the cases the rule leaves open: the author needs no relationship with the record
(depositing needs none, and reading what one deposited needs none either); the habilitation matrix does
not apply to one's own documents; a document the patient masked stays readable by its author; a
*blocked* author still reads what they deposited ("only what P deposited") but may deposit nothing more,
replacements included. The author's organisation is no relationship by itself: it only opens masked
documents to colleagues who have one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx2 as httpx
import pytest

from carnet.demo.personas import BY_KEY
from tests import factories
from tests.conftest import Api, match_ids

ARCHIVED = "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/pdsm-ext-is-archived"
PSYCHIATRIC = {"type_code": "68599-0", "class_code": "11"}


@dataclass
class Deposit:
    id: str
    binary: str


def _deposit(api: Api, persona: str, ins: str, system: str, **options: Any) -> Deposit:
    idnat = BY_KEY[BY_KEY[persona].acts_for or persona].idnat or ""
    response = api.publish(persona, factories.docref(ins, system, author_idnat=idnat, **options))
    assert response.status_code == 201, response.text
    body = response.json()
    return Deposit(str(body["id"]), "Binary/" + str(body["content"][0]["attachment"]["url"]).rsplit("/", 1)[1])


def _reads(api: Api, persona: str, patient_id: str, doc: Deposit) -> dict[str, Any]:
    """What the persona gets of a document: read, vread, history, bytes, and whether a search finds it."""
    pdf = api.get(f"/fhir/{doc.binary}", persona, headers={"Accept": "application/pdf"})
    found = api.search(persona, patient=patient_id, _id=doc.id)
    return {
        "read": api.get(f"/fhir/DocumentReference/{doc.id}", persona).status_code,
        "vread": api.get(f"/fhir/DocumentReference/{doc.id}/_history/1", persona).status_code,
        "history": api.get(f"/fhir/DocumentReference/{doc.id}/_history", persona).status_code,
        "retrieve": pdf.status_code,
        "search": doc.id in match_ids(found),
    }


READABLE = {"read": 200, "vread": 200, "history": 200, "retrieve": 200, "search": True}
HIDDEN = {"read": 404, "vread": 404, "history": 404, "retrieve": 404, "search": False}


def _mask(api: Api, token: str, doc_id: str) -> httpx.Response:
    labels = [
        {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "N"}]},
        {"coding": [{"system": factories.A07, "code": "MASQUE_PS"}]},
    ]
    return api.as_token(
        token,
        "PATCH",
        f"/fhir/DocumentReference/{doc_id}",
        [{"op": "replace", "path": "/securityLabel", "value": labels}],
        headers={"Content-Type": "application/json-patch+json"},
    )


@pytest.mark.parametrize(
    ("author", "options"),
    [
        ("dr_blanc", {}),  # a doctor with no relationship at all
        ("ph_didot", PSYCHIATRIC),  # a pharmacist: the matrix keeps psychiatric syntheses from pharmacists
        ("as_leroy", {}),  # a social worker: the matrix keeps ordinary reports from social workers
        ("dpi_saint_roch", {"flags": ("INVISIBLE_PATIENT",)}),  # software for dr_lambert, no relationship
    ],
)
def test_an_author_without_relationship_keeps_their_documents_and_only_them(
    api: Api, author: str, options: dict[str, Any]
) -> None:
    patient_id, ins, system = api.new_patient("dr_medioni", team=())  # nobody but dr_medioni
    mine = _deposit(api, author, ins, system, **options)
    theirs = _deposit(api, "dr_medioni", ins, system, **options)
    assert _reads(api, author, patient_id, mine) == READABLE
    assert _reads(api, author, patient_id, theirs) == HIDDEN
    # Masked by the patient, still the author's (R1111-49: "even if the patient masked it").
    token = api.patient_token(patient_id)
    hidden_from_patient = "INVISIBLE_PATIENT" in options.get("flags", ())
    assert _mask(api, token, mine.id).status_code == (404 if hidden_from_patient else 200)
    assert _reads(api, author, patient_id, mine) == READABLE
    # The author acts on it: archive, then delete.
    archive = [{"op": "add", "path": "/extension", "value": [{"url": ARCHIVED, "valueBoolean": True}]}]
    assert api.patch(f"/fhir/DocumentReference/{mine.id}", author, archive).status_code == 200
    assert api.delete(f"/fhir/DocumentReference/{mine.id}", author).status_code == 200
    assert _reads(api, author, patient_id, mine) == HIDDEN  # deleted documents are visible to nobody


def test_a_blocked_author_reads_what_they_deposited_and_deposits_nothing_more(api: Api) -> None:
    patient_id, ins, system = api.new_patient("dr_medioni", team=("dr_lambert",))
    token = api.patient_token(patient_id)
    mine = _deposit(api, "dr_lambert", ins, system)
    masked = _deposit(api, "dr_lambert", ins, system, flags=("MASQUE_PS",))
    theirs = _deposit(api, "dr_medioni", ins, system)
    assert _reads(api, "dr_lambert", patient_id, theirs) == READABLE  # care team, before the block
    block = factories.consent(patient_id, "block", provision="deny", idnat=BY_KEY["dr_lambert"].idnat)
    assert api.as_token(token, "POST", "/fhir/Consent", block).status_code == 201
    for persona in ("dr_lambert", "dpi_saint_roch"):  # and the software acting for the blocked author
        assert _reads(api, persona, patient_id, mine) == READABLE, persona
        assert _reads(api, persona, patient_id, masked) == READABLE, persona
        assert _reads(api, persona, patient_id, theirs) == HIDDEN, persona
        found = api.search(persona, patient=patient_id)
        assert set(match_ids(found)) == {mine.id, masked.id}, persona
        # No more deposits, replacements included.
        refused = api.publish(persona, factories.docref(ins, system, author_idnat=BY_KEY["dr_lambert"].idnat or ""))
        assert refused.status_code == 403, refused.text
        replacement = factories.docref(ins, system, author_idnat=BY_KEY["dr_lambert"].idnat or "")
        replacement["relatesTo"] = [{"code": "replaces", "target": {"reference": f"DocumentReference/{mine.id}"}}]
        assert api.publish(persona, replacement).status_code == 403
    assert api.get(f"/fhir/DocumentReference/{mine.id}", "dr_medioni").json()["status"] == "current"


def test_the_authors_organisation_is_no_relationship_by_itself(api: Api) -> None:
    patient_id, ins, system = api.new_patient("dr_medioni", team=("dr_lambert",))
    ordinary = _deposit(api, "dr_lambert", ins, system)
    masked = _deposit(api, "dr_lambert", ins, system, flags=("MASQUE_PS",))
    # dr_haddad works at Saint-Roch with dr_lambert but has no relationship with the patient.
    assert _reads(api, "dr_haddad", patient_id, ordinary) == HIDDEN
    assert _reads(api, "dr_haddad", patient_id, masked) == HIDDEN
    api.declare("dr_haddad", patient_id, "care-team")
    assert _reads(api, "dr_haddad", patient_id, ordinary) == READABLE
    assert _reads(api, "dr_haddad", patient_id, masked) == READABLE  # masked: open to the author's organisation
    # ... where a care-team doctor of another organisation does not read it.
    api.declare("dr_girard", patient_id, "care-team")
    assert _reads(api, "dr_girard", patient_id, masked) == HIDDEN
