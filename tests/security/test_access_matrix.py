"""The access matrix, through the HTTP API: every persona × every action × every document flag.

The expectations are written out by hand from the rules (docs/access.md, DESIGN.md §3,
reference/dmp.md §3.6), not computed by the policy under test: ``READS`` says which documents each
persona may read on each stage, ``WRITERS`` who may perform each write action on a document they can
read. The status codes follow from docs/access.md, *What "not found" means*: a caller who may not read
a document gets the 404 of a missing one; one who can read it but may not act on it gets 403.

Two stages, all their documents deposited by dr_lambert (cardiologist at Hôpital Saint-Roch):

* ``adult``: a new adult patient (persona ``patient``, the holder) whose relationships mirror
  Dominique's demo record: dr_medioni is her médecin traitant, dr_roux her administrator professional,
  dr_girard is authorized, dr_noir blocked; dr_lambert, ph_didot (pharmacist), inf_moreau (nurse),
  dent_petit (dentist) and as_leroy (social worker) declared care-team consent; dr_blanc has no
  relationship. The patient allows masked documents in emergencies: dr_haddad (emergency doctor at
  Saint-Roch, the author's organisation) and dr_camparini (biologist at another organisation) break the
  glass, dr_regul (SAMU 44) accesses as the regulation centre. Another patient (jean_patient) and Léa's
  representative marc_parent are outsiders: they may not even learn that the record exists.
* ``minor``: Léa's demo record (14): lea_minor is the patient, dominique_patient (her mother) and
  marc_parent her two legal representatives; dr_medioni her médecin traitant; the demo care team
  (dr_lambert, dr_camparini, ph_didot, inf_moreau) plus dent_petit and as_leroy; her representative
  authorized dr_girard, blocked dr_noir and designated dr_roux. Masked documents stay masked in
  emergencies (the default): dr_haddad still reads them as the author's colleague, dr_regul does not.
  Her secret documents come through dr_lambert's secret connection.

The documents: an ordinary report with each flag (``none``, ``masked`` = MASQUE_PS,
``invisible-patient`` = INVISIBLE_PATIENT, ``invisible-reps`` = INVISIBLE_REPRESENTANTS_LEGAUX set by the
author; on the minor's record the write actions' ``invisible-reps`` documents are deposited through the
secret connection), ``secret`` (minor only: a report deposited through the secret connection, the server
adds the flag), and three types the habilitation matrix treats differently: ``residence``
(ATTEST-RESID), ``psychiatric`` (68599-0), ``social`` (28653-4).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx2 as httpx
import orjson
import pytest
from starlette.testclient import TestClient

from carnet.demo.personas import BY_KEY
from carnet.runtime import Runtime
from tests import factories
from tests.conftest import Api

LEA = ("212054410902154", "urn:oid:1.2.250.1.213.1.4.11")
A05 = "https://mos.esante.gouv.fr/NOS/TRE_A05-TypeDocComplementaire/FHIR/TRE-A05-TypeDocComplementaire"
A00 = "https://mos.esante.gouv.fr/NOS/TRE_A00-ProducteurDocNonPS/FHIR/TRE-A00-ProducteurDocNonPS"
ARCHIVED = "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/pdsm-ext-is-archived"
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
LAMBERT = "810001745206"

REPORT = ("11488-4", factories.LOINC, "10")
# Each document of a stage: ((type, type system, class), flags set by the author).
DOCS: dict[str, tuple[tuple[str, str, str], tuple[str, ...]]] = {
    "none": (REPORT, ()),
    "masked": (REPORT, ("MASQUE_PS",)),
    "invisible-patient": (REPORT, ("INVISIBLE_PATIENT",)),
    "invisible-reps": (REPORT, ("INVISIBLE_REPRESENTANTS_LEGAUX",)),
    "secret": (REPORT, ()),  # deposited through the secret connection (minor only)
    "residence": (("ATTEST-RESID", A05, "95"), ()),
    "psychiatric": (("68599-0", factories.LOINC, "11"), ()),
    "social": (("28653-4", factories.LOINC, "10"), ()),
}
# The flag dimension of every action.
FLAGS = ("none", "masked", "invisible-patient", "invisible-reps")
FLAG_CODES = {"none": (), "masked": ("MASQUE_PS",), "invisible-patient": ("INVISIBLE_PATIENT",)}
FLAG_CODES["invisible-reps"] = ("INVISIBLE_REPRESENTANTS_LEGAUX",)
STAGES = ("adult", "minor")
ADULT = frozenset(DOCS) - {"secret"}
MINOR = frozenset(DOCS)
NONE: frozenset[str] = frozenset()
# The reports not masked: what the care team's pharmacist and nurse read (not the psychiatric synthesis, the
# social report, the residence certificate: the habilitation matrix).
REPORTS = frozenset({"none", "invisible-patient", "invisible-reps", "secret"})

# Which documents each persona may read (read, vread, search and retrieve alike).
READS: dict[str, dict[str, frozenset[str]]] = {
    "adult": {
        "patient": ADULT - {"invisible-patient"},  # the holder: all but what the author keeps until announced
        "dr_medioni": ADULT,  # médecin traitant: everything, masking and the matrix aside (L1111-16)
        "dr_roux": ADULT,  # administrator professional: the same
        "dr_girard": ADULT - {"masked", "residence"},  # authorized doctor: doctors never read the residence cert.
        "dr_blanc": NONE,  # no relationship
        "dr_noir": NONE,  # blocked
        "ph_didot": REPORTS & ADULT,  # care-team pharmacist
        "inf_moreau": REPORTS & ADULT,  # care-team nurse
        "dent_petit": (REPORTS & ADULT) | {"social"},  # care-team dentist: not the psychiatric synthesis
        "as_leroy": frozenset({"social"}),  # care-team social worker: social documents only
        "dr_haddad": ADULT - {"residence"},  # break-glass; masked: the author's colleague, and the patient allows it
        "dr_camparini": ADULT - {"residence"},  # break-glass outside the author's organisation: masked allowed
        "dr_regul": ADULT - {"residence"},  # regulation centre: masked allowed in emergencies
        "dr_lambert": ADULT,  # the author
        "dpi_saint_roch": ADULT,  # software acting for the author
        "cnam_feed": NONE,  # the insurer's feed reads nothing
        "ops_admin": NONE,  # operators never read clinical content
        "jean_patient": NONE,  # another patient
        "marc_parent": NONE,  # represents Léa, not this patient
    },
    "minor": {
        "lea_minor": MINOR - {"invisible-patient"},  # the minor sees her secret documents
        "dominique_patient": MINOR - {"invisible-patient", "invisible-reps", "secret"},  # legal representative
        "marc_parent": MINOR - {"invisible-patient", "invisible-reps", "secret"},  # second legal representative
        "dr_medioni": MINOR,  # médecin traitant
        "dr_roux": MINOR,  # administrator professional
        "dr_girard": MINOR - {"masked", "residence"},  # authorized doctor
        "dr_camparini": MINOR - {"masked", "residence"},  # care-team doctor (biologist)
        "dr_blanc": NONE,  # no relationship
        "dr_noir": NONE,  # blocked
        "ph_didot": REPORTS,
        "inf_moreau": REPORTS,
        "dent_petit": REPORTS | {"social"},
        "as_leroy": frozenset({"social"}),
        "dr_haddad": MINOR - {"residence"},  # break-glass; masked only as the author's colleague
        "dr_regul": MINOR - {"masked", "residence"},  # regulation: masked documents stay masked (the default)
        "dr_lambert": MINOR,  # the author
        "dpi_saint_roch": MINOR,  # software acting for the author
        "cnam_feed": NONE,
        "ops_admin": NONE,
        "jean_patient": NONE,  # another patient
    },
}
CASES = [(stage, persona) for stage in STAGES for persona in READS[stage]]
CASE_IDS = [f"{stage}-{persona}" for stage, persona in CASES]

HOLDER = {"adult": "patient", "minor": "lea_minor"}
REPRESENTATIVES = {"adult": frozenset(), "minor": frozenset({"dominique_patient", "marc_parent"})}
PATIENT_SIDE = {stage: REPRESENTATIVES[stage] | {HOLDER[stage]} for stage in STAGES}
# Patients and representatives of other records: they may not even learn that this record exists.
OUTSIDERS = {
    "adult": frozenset({"jean_patient", "marc_parent"}),
    "minor": frozenset({"jean_patient"}),
}
PROFESSIONALS = frozenset(
    {
        "dr_medioni",
        "dr_roux",
        "dr_girard",
        "dr_camparini",
        "dr_blanc",
        "dr_noir",
        "ph_didot",
        "inf_moreau",
        "dent_petit",
        "as_leroy",
        "dr_haddad",
        "dr_regul",
        "dr_lambert",
        "dpi_saint_roch",
    }
)
# Feeding the record needs no relationship, but a blocked professional cannot deposit.
FEEDERS = PROFESSIONALS - {"dr_noir"}
AUTHOR_SIDE = frozenset({"dr_lambert", "dpi_saint_roch"})
# Who may perform each write action on a document they can read. Replacing and archiving are also open to
# the author's organisation, but dr_haddad, the only colleague, is there in break-glass: read-only.
WRITERS: dict[str, dict[str, frozenset[str]]] = {
    stage: {
        "mask": AUTHOR_SIDE | PATIENT_SIDE[stage],  # MASQUE_PS: the author, the patient and representatives
        "visibility": AUTHOR_SIDE,  # INVISIBLE_PATIENT (set, or lifted after the announcement): the author
        "delete": AUTHOR_SIDE,
        "archive": AUTHOR_SIDE,
        "replace": AUTHOR_SIDE,
    }
    for stage in STAGES
}
WRITE_ACTIONS = tuple(WRITERS["adult"])
# Who changes the patient's decisions (authorizations), and who blocks a professional.
CONSENT_DECIDERS = PATIENT_SIDE
BLOCKERS = {stage: PATIENT_SIDE[stage] | {"dr_roux"} for stage in STAGES}


def refused(stage: str, persona: str) -> int:
    """The status of a refusal about the record itself: 404 for who may not know it exists."""
    return 404 if persona in OUTSIDERS[stage] else 403


def expected_write(stage: str, persona: str, action: str, flag: str) -> int:
    if flag not in READS[stage][persona]:
        return 404  # the document is invisible to them: the same answer as a missing one
    return 200 if persona in WRITERS[stage][action] else 403


@dataclass
class Stage:
    """A record, the persona tokens, its documents and a fresh document for every write attempt."""

    name: str
    api: Api
    patient_id: str
    ins: str
    system: str
    tokens: dict[str, str]
    docs: dict[str, str] = field(default_factory=dict)  # document key → DocumentReference id
    binaries: dict[str, str] = field(default_factory=dict)  # document key → "Binary/<id>"
    targets: dict[tuple[str, str, str], str] = field(default_factory=dict)  # (action, persona, flag) → id

    def call(
        self,
        persona: str,
        method: str,
        url: str,
        body: Any = None,
        *,
        content_type: str = "application/fhir+json",
        accept: str = "application/fhir+json",
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        headers = {"Accept": accept, "Authorization": f"Bearer {self.tokens[persona]}"}
        content = None
        if body is not None:
            headers["Content-Type"] = content_type
            content = orjson.dumps(body)
        return self.api.client.request(method, url, headers=headers, content=content, params=params)


def _idnat(persona: str) -> str:
    """The IdNat_PS a persona signs its documents with (software: the professional it acts for)."""
    person = BY_KEY[persona]
    target = BY_KEY[person.acts_for] if person.acts_for else person
    return target.idnat or LAMBERT


def _report(
    stage: Stage,
    kind: tuple[str, str, str] = REPORT,
    flags: Iterable[str] = (),
    *,
    author: str = LAMBERT,
    data: bytes | None = None,
) -> dict[str, Any]:
    type_code, type_system, class_code = kind
    return factories.docref(
        stage.ins,
        stage.system,
        data=data,
        inline=data is None,
        type_code=type_code,
        type_system=type_system,
        class_code=class_code,
        flags=tuple(flags),
        author_idnat=author,
    )


def _deposit_many(
    stage: Stage, token: str, specs: list[tuple[tuple[str, str, str], tuple[str, ...]]]
) -> list[tuple[str, str]]:
    """Deposit documents in one ITI-65 transaction: (DocumentReference id, "Binary/<id>") of each, in order."""
    entries = []
    for kind, flags in specs:
        data = factories.pdf_bytes()
        entries.append((_report(stage, kind, flags, data=data), data, "application/pdf"))
    response = stage.api.as_token(token, "POST", "/fhir", factories.bundle(stage.ins, stage.system, entries))
    assert response.status_code == 200, response.text
    # The response follows the request: the SubmissionSet, then each DocumentReference and its Binary.
    locations = [str(e["response"]["location"]) for e in response.json()["entry"]]
    docs, binaries = locations[1::2], locations[2::2]
    assert len(docs) == len(specs)
    assert all(d.startswith("DocumentReference/") for d in docs)
    assert all(b.startswith("Binary/") for b in binaries)
    return [(d.split("/")[1], "/".join(b.split("/")[:2])) for d, b in zip(docs, binaries, strict=True)]


def _consent(stage: Stage, persona: str, kind: str, about: str | None = None, **options: Any) -> None:
    idnat = BY_KEY[about].idnat if about else None
    response = stage.call(
        persona, "POST", "/fhir/Consent", factories.consent(stage.patient_id, kind, idnat=idnat, **options)
    )
    assert response.status_code == 201, (persona, kind, response.text)


def _emergency(stage: Stage, persona: str, mode: str) -> None:
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "mode", "valueCode": mode},
            {"name": "reason", "valueString": "patiente inconsciente aux urgences, antécédents inconnus"},
        ],
    }
    response = stage.call(persona, "POST", f"/fhir/Patient/{stage.patient_id}/$emergency-access", body)
    assert response.status_code == 200, (persona, mode, response.text)


def _documents(stage: Stage, secret_token: str | None = None) -> None:
    """The documents read by the matrix, and one fresh document per (write action, persona, flag)."""
    author = stage.tokens["dr_lambert"]
    keys = [k for k in DOCS if k != "secret"]
    for key, (doc_id, binary) in zip(keys, _deposit_many(stage, author, [DOCS[k] for k in keys]), strict=True):
        stage.docs[key], stage.binaries[key] = doc_id, binary
    if secret_token is not None:
        [(doc_id, binary)] = _deposit_many(stage, secret_token, [DOCS["secret"]])
        stage.docs["secret"], stage.binaries["secret"] = doc_id, binary
    slots = [(action, persona) for action in WRITE_ACTIONS for persona in READS[stage.name]]
    for flag in FLAGS:
        # On the minor's record, the write actions' documents hidden from the representatives come through
        # the secret connection (the server sets the flag).
        secret = secret_token is not None and flag == "invisible-reps"
        made = _deposit_many(
            stage,
            secret_token if secret and secret_token else author,
            [(REPORT, () if secret else FLAG_CODES[flag])] * len(slots),
        )
        for (action, persona), (doc_id, _) in zip(slots, made, strict=True):
            stage.targets[(action, persona, flag)] = doc_id
    if secret_token is not None:
        for doc_id in (stage.docs["secret"], stage.targets[("mask", "lea_minor", "invisible-reps")]):
            body = stage.call("dr_lambert", "GET", f"/fhir/DocumentReference/{doc_id}").json()
            labels = {c["code"] for label in body["securityLabel"] for c in label["coding"]}
            assert labels == {"N", "INVISIBLE_REPRESENTANTS_LEGAUX"}, labels


def _adult_stage(api: Api) -> Stage:
    patient_id, ins, system = api.new_patient(
        "dr_medioni", team=("dr_lambert", "ph_didot", "inf_moreau", "dent_petit", "as_leroy")
    )
    tokens = {persona: api.token(persona) for persona in READS["adult"] if persona != "patient"}
    tokens["patient"] = api.patient_token(patient_id)
    stage = Stage("adult", api, patient_id, ins, system, tokens)
    _consent(stage, "dr_medioni", "medecin-traitant", about="dr_medioni")
    _consent(stage, "patient", "authorization", about="dr_girard")
    _consent(stage, "patient", "block", about="dr_noir", provision="deny")
    _consent(stage, "patient", "administrator", about="dr_roux")
    _consent(stage, "patient", "emergency-masked", masked_label=True)  # masked documents visible in emergencies
    _emergency(stage, "dr_haddad", "break-glass")
    _emergency(stage, "dr_camparini", "break-glass")
    _emergency(stage, "dr_regul", "regulation")
    _documents(stage)
    return stage


def _minor_stage(api: Api) -> Stage:
    found = api.get("/fhir/Patient", "dr_medioni", params={"identifier": f"{LEA[1]}|{LEA[0]}"}).json()
    lea_id = str(found["entry"][0]["resource"]["id"])
    tokens = {persona: api.token(persona) for persona in READS["minor"]}
    stage = Stage("minor", api, lea_id, *LEA, tokens)
    # Her mother decides for her; the demo already made dr_medioni her médecin traitant and the care team.
    _consent(stage, "dominique_patient", "authorization", about="dr_girard")
    _consent(stage, "dominique_patient", "block", about="dr_noir", provision="deny")
    _consent(stage, "dominique_patient", "administrator", about="dr_roux")
    _consent(stage, "dent_petit", "care-team", about="dent_petit")
    _consent(stage, "as_leroy", "care-team", about="as_leroy")
    _emergency(stage, "dr_haddad", "break-glass")
    _emergency(stage, "dr_regul", "regulation")
    _documents(stage, secret_token=api.token("dr_lambert", secret_connection=True))
    return stage


@pytest.fixture(scope="module")
def world(app_client: TestClient, runtime: Runtime) -> dict[str, Stage]:
    api = Api(app_client, runtime)
    return {"adult": _adult_stage(api), "minor": _minor_stage(api)}


# ------------------------------------------------------------------------------------------ reading


@pytest.mark.parametrize(("stage", "persona"), CASES, ids=CASE_IDS)
def test_read(world: dict[str, Stage], stage: str, persona: str) -> None:
    s = world[stage]
    observed = {
        key: s.call(persona, "GET", f"/fhir/DocumentReference/{doc_id}").status_code for key, doc_id in s.docs.items()
    }
    expected = {key: 200 if key in READS[stage][persona] else 404 for key in s.docs}
    assert observed == expected


@pytest.mark.parametrize(("stage", "persona"), CASES, ids=CASE_IDS)
def test_search_returns_exactly_the_readable_documents(world: dict[str, Stage], stage: str, persona: str) -> None:
    s = world[stage]
    response = s.call(
        persona, "GET", "/fhir/DocumentReference", params={"patient": s.patient_id, "_id": ",".join(s.docs.values())}
    )
    assert response.status_code == 200, response.text
    bundle = response.json()
    names = {doc_id: key for key, doc_id in s.docs.items()}
    found = {names.get(e["resource"]["id"], e["resource"]["id"]) for e in bundle.get("entry", [])}
    assert found == READS[stage][persona]
    assert bundle["total"] == len(READS[stage][persona])


@pytest.mark.parametrize(("stage", "persona"), CASES, ids=CASE_IDS)
def test_retrieve_bytes(world: dict[str, Stage], stage: str, persona: str) -> None:
    s = world[stage]
    observed = {}
    for key, binary in s.binaries.items():
        response = s.call(persona, "GET", f"/fhir/{binary}", accept="application/pdf")
        observed[key] = response.status_code
        if response.status_code == 200:
            assert response.content.startswith(b"%PDF"), key
    expected = {key: 200 if key in READS[stage][persona] else 404 for key in s.binaries}
    assert observed == expected


# ------------------------------------------------------------------------------------------ writing


@pytest.mark.parametrize(("stage", "persona"), CASES, ids=CASE_IDS)
def test_deposit(world: dict[str, Stage], stage: str, persona: str) -> None:
    """A professional's report, with each flag the author may set at deposit."""
    s = world[stage]
    author = _idnat(persona) if persona in PROFESSIONALS else LAMBERT
    observed = {
        flag: s.call(
            persona, "POST", "/fhir/DocumentReference", _report(s, REPORT, FLAG_CODES[flag], author=author)
        ).status_code
        for flag in FLAGS
    }
    expected = {flag: 201 if persona in FEEDERS else refused(stage, persona) for flag in FLAGS}
    assert observed == expected


PATIENT_CASES = [(stage, p) for stage in STAGES for p in READS[stage] if p in PATIENT_SIDE[stage] | OUTSIDERS[stage]]


@pytest.mark.parametrize(("stage", "persona"), PATIENT_CASES, ids=[f"{s}-{p}" for s, p in PATIENT_CASES])
def test_deposit_a_patient_document(world: dict[str, Stage], stage: str, persona: str) -> None:
    """Patients and representatives deposit patient-expression documents, never one hidden from themselves."""
    s = world[stage]
    observed = {}
    for flag in FLAGS:
        doc = _report(s, ("DOCPAT03", A05, "10"), FLAG_CODES[flag])
        doc["context"]["facilityType"] = {"coding": [{"system": A00, "code": "EXP_PATIENT"}]}
        doc["context"]["practiceSetting"] = {"coding": [{"system": A00, "code": "EXP_PATIENT"}]}
        observed[flag] = s.call(persona, "POST", "/fhir/DocumentReference", doc).status_code
    hidden = {"invisible-patient"} | ({"invisible-reps"} if persona in REPRESENTATIVES[stage] else set())
    expected = {flag: 404 if persona in OUTSIDERS[stage] else (403 if flag in hidden else 201) for flag in FLAGS}
    assert observed == expected


def _labels(codes: Iterable[str]) -> list[dict[str, Any]]:
    return [{"coding": [{"system": CONFIDENTIALITY, "code": "N"}]}] + [
        {"coding": [{"system": factories.A07, "code": code}]} for code in sorted(codes)
    ]


def _write(s: Stage, persona: str, action: str, flag: str) -> httpx.Response:
    doc_id = s.targets[(action, persona, flag)]
    url = f"/fhir/DocumentReference/{doc_id}"
    patch = "application/json-patch+json"
    if action in ("mask", "visibility"):  # toggle the flag: set it, or lift it where the document carries it
        toggled = set(FLAG_CODES[flag]) ^ {"MASQUE_PS" if action == "mask" else "INVISIBLE_PATIENT"}
        return s.call(
            persona,
            "PATCH",
            url,
            [{"op": "replace", "path": "/securityLabel", "value": _labels(toggled)}],
            content_type=patch,
        )
    if action == "archive":
        extension = [{"url": ARCHIVED, "valueBoolean": True}]
        return s.call(
            persona, "PATCH", url, [{"op": "add", "path": "/extension", "value": extension}], content_type=patch
        )
    if action == "delete":
        return s.call(persona, "DELETE", url)
    replacement = _report(s, author=_idnat(persona) if persona in PROFESSIONALS else LAMBERT)
    replacement["relatesTo"] = [{"code": "replaces", "target": {"reference": f"DocumentReference/{doc_id}"}}]
    return s.call(persona, "POST", "/fhir/DocumentReference", replacement)


def expected_replace(stage: str, persona: str, flag: str) -> int:
    if persona not in FEEDERS:
        return refused(stage, persona)  # may not deposit at all
    if flag not in READS[stage][persona]:
        return 422  # "the document to replace does not exist in this record", as for a missing one
    return 201 if persona in WRITERS[stage]["replace"] else 403


@pytest.mark.parametrize("action", WRITE_ACTIONS)
@pytest.mark.parametrize(("stage", "persona"), CASES, ids=CASE_IDS)
def test_write(world: dict[str, Stage], stage: str, persona: str, action: str) -> None:
    s = world[stage]
    responses = {flag: _write(s, persona, action, flag) for flag in FLAGS}
    observed = {flag: r.status_code for flag, r in responses.items()}
    if action == "replace":
        expected = {flag: expected_replace(stage, persona, flag) for flag in FLAGS}
    else:
        expected = {flag: expected_write(stage, persona, action, flag) for flag in FLAGS}
    assert observed == expected
    for flag, response in responses.items():
        if response.status_code == 422:
            assert "does not exist" in response.text, (flag, response.text)


def _random_idnat() -> str:
    return "8" + str(uuid.uuid4().int)[:11]


@pytest.mark.parametrize(("stage", "persona"), CASES, ids=CASE_IDS)
def test_change_consent(world: dict[str, Stage], stage: str, persona: str) -> None:
    """Authorizing a professional (the patient's decision) and blocking one (also an administrator's)."""
    s = world[stage]
    authorize = factories.consent(s.patient_id, "authorization", idnat=_random_idnat())
    block = factories.consent(s.patient_id, "block", provision="deny", idnat=_random_idnat())
    observed = {
        "authorization": s.call(persona, "POST", "/fhir/Consent", authorize).status_code,
        "block": s.call(persona, "POST", "/fhir/Consent", block).status_code,
    }
    expected = {
        "authorization": 201 if persona in CONSENT_DECIDERS[stage] else refused(stage, persona),
        "block": 201 if persona in BLOCKERS[stage] else refused(stage, persona),
    }
    assert observed == expected


@pytest.mark.parametrize("persona", ["dr_girard", "ph_didot", "dr_haddad"])
def test_a_patch_changing_no_flag_is_still_a_write(world: dict[str, Stage], persona: str) -> None:
    s = world["adult"]
    created = s.call("dr_lambert", "POST", "/fhir/DocumentReference", _report(s, flags=("INVISIBLE_PATIENT",)))
    assert created.status_code == 201, created.text
    url = f"/fhir/DocumentReference/{created.json()['id']}"
    assert s.call(persona, "GET", url).status_code == 200  # they read it, so a refusal is a 403
    repeated = {"coding": [{"system": factories.A07, "code": "INVISIBLE_PATIENT"}]}
    response = s.call(
        persona,
        "PATCH",
        url,
        [{"op": "add", "path": "/securityLabel/-", "value": repeated}],
        content_type="application/json-patch+json",
    )
    versions = s.call("dr_lambert", "GET", f"{url}/_history").json()["total"]
    assert (response.status_code, versions) == (403, 1)
