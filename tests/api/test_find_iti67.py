"""ITI-67 Find Document References: every search parameter (matching and not matching), sorting, paging,
includes, errors, and the access policy applied inside the query (results and totals agree).

Each test opens its own patients or, when the patient's own view is needed, deposits fresh documents into
a persona's record and narrows every search to those documents (by ``_id`` or identifier), since tests
share databases and run in parallel.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx2 as httpx
import pytest

from carnet.demo.personas import BY_KEY
from carnet.fhirtypes import EXT_IS_ARCHIVED, MHD_LIST_TYPES
from tests import factories
from tests.conftest import CARE_TEAM, Api, issue_at, match_ids

JSON = dict[str, Any]
Params = Mapping[str, str] | Sequence[tuple[str, str]]

DOCS = "/fhir/DocumentReference"
SEARCH = "/fhir/DocumentReference/_search"
FORM = "application/x-www-form-urlencoded"
IDNAT_MEDIONI = "801234567897"
IDNAT_LAMBERT = "810001745206"
IDNAT_DIDOT = "807655473259"
IDNAT_STRUCTURE = "urn:oid:1.2.250.1.71.4.2.2"
A05 = "https://mos.esante.gouv.fr/NOS/TRE_A05-TypeDocComplementaire/FHIR/TRE-A05-TypeDocComplementaire"
A08 = "https://mos.esante.gouv.fr/NOS/TRE_A08-HL7Confidentiality/FHIR/TRE-A08-HL7Confidentiality"
IHE_FORMAT = "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode"
PDF_FORMAT = "urn:ihe:iti:xds-sd:pdf:2008"
TEXT_FORMAT = "urn:ihe:iti:xds-sd:text:2008"
RFC3986 = "urn:ietf:rfc:3986"


# ------------------------------------------------------------------------------------------- helpers


def find(api: Api, persona: str, params: Params, **headers: str) -> JSON:
    response = api.get(DOCS, persona, params=params, headers=headers)
    assert response.status_code == 200, response.text
    bundle: JSON = response.json()
    assert bundle["resourceType"] == "Bundle"
    assert bundle["type"] == "searchset"
    return bundle


def find_post(api: Api, persona: str, params: Params, query: str = "") -> JSON:
    url = f"{SEARCH}?{query}" if query else SEARCH
    response = api.post(url, persona, urlencode(params).encode(), content_type=FORM)
    assert response.status_code == 200, response.text
    bundle: JSON = response.json()
    assert bundle["type"] == "searchset"
    return bundle


def assert_found(bundle: JSON, expected: set[str]) -> None:
    """The bundle matches exactly ``expected``: each once, and the total counts them."""
    ids = match_ids(bundle)
    assert len(ids) == len(set(ids)), ids
    assert set(ids) == expected
    assert bundle["total"] == len(expected)


def ids_for(api: Api, persona: str, params: Params) -> set[str]:
    bundle = find(api, persona, params)
    ids = match_ids(bundle)
    assert bundle["total"] == len(ids) == len(set(ids))
    return set(ids)


def publish(api: Api, persona: str, resource: JSON) -> str:
    response = api.publish(persona, resource)
    assert response.status_code == 201, response.text
    doc_id: str = response.json()["id"]
    return doc_id


def bad_request(response: httpx.Response, where: str) -> JSON:
    assert response.status_code == 400, response.text
    outcome: JSON = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert issue_at(outcome, where), outcome
    return outcome


def persona_patient(api: Api, persona: str) -> tuple[str, str, str]:
    """(record id, INS, INS system) of a persona patient, looked up by a professional."""
    p = BY_KEY[persona]
    assert p.ins is not None
    system = f"urn:oid:{p.ins_oid}"
    response = api.get("/fhir/Patient", "dr_medioni", params={"identifier": f"{system}|{p.ins}"})
    assert response.status_code == 200, response.text
    entries = response.json()["entry"]
    assert len(entries) == 1
    return entries[0]["resource"]["id"], p.ins, system


def practitioner_id(api: Api, idnat: str) -> str:
    response = api.get("/fhir/Practitioner", "dr_medioni", params={"identifier": f"{factories.IDNAT_PS}|{idnat}"})
    assert response.status_code == 200, response.text
    entries = response.json()["entry"]
    assert len(entries) == 1
    pid: str = entries[0]["resource"]["id"]
    return pid


def replacing(resource: JSON, old_id: str) -> JSON:
    resource["relatesTo"] = [{"code": "replaces", "target": {"reference": f"DocumentReference/{old_id}"}}]
    return resource


def archive(api: Api, persona: str, doc_id: str) -> httpx.Response:
    return api.patch(
        f"{DOCS}/{doc_id}",
        persona,
        [{"op": "add", "path": "/extension", "value": [{"url": EXT_IS_ARCHIVED, "valueBoolean": True}]}],
    )


@dataclass
class Provided:
    submission_set: str
    documents: list[str]
    folder: str | None


def provide(api: Api, persona: str, ins: str, system: str, resources: list[JSON], *, folder: bool = False) -> Provided:
    """ITI-65: deposit ``resources`` (built with their inline data) as one submission set."""
    docs = []
    for resource in resources:
        attachment = resource["content"][0]["attachment"]
        data = __import__("base64").b64decode(attachment["data"])
        docs.append((resource, data, attachment["contentType"]))
    response = api.post("/fhir", persona, factories.bundle(ins, system, docs, folder=folder))
    assert response.status_code == 200, response.text
    locations = [e["response"].get("location") or "" for e in response.json()["entry"]]
    ids = [loc.split("/")[1] for loc in locations]
    kinds = [loc.split("/")[0] for loc in locations]
    assert kinds[0] == "List"
    doc_ids = [i for k, i in zip(kinds, ids, strict=True) if k == "DocumentReference"]
    return Provided(ids[0], doc_ids, ids[-1] if folder else None)


# ------------------------------------------------------------------------------------------- patient


def test_patient_by_id_reference_and_identifier(api: Api) -> None:
    patient_a, ins_a, system_a = api.new_patient()
    patient_b, ins_b, system_b = api.new_patient()
    a1 = publish(api, "dr_medioni", factories.docref(ins_a, system_a))
    a2 = publish(api, "dr_medioni", factories.docref(ins_a, system_a))
    b1 = publish(api, "dr_medioni", factories.docref(ins_b, system_b))

    assert_found(find(api, "dr_medioni", {"patient": patient_a}), {a1, a2})
    assert_found(find(api, "dr_medioni", {"patient": f"Patient/{patient_a}"}), {a1, a2})
    assert_found(find(api, "dr_medioni", {"patient": f"http://testserver/fhir/Patient/{patient_a}"}), {a1, a2})
    assert_found(find(api, "dr_medioni", {"subject": f"Patient/{patient_b}"}), {b1})
    assert_found(find(api, "dr_medioni", {"patient.identifier": f"{system_a}|{ins_a}"}), {a1, a2})
    assert_found(find(api, "dr_medioni", {"patient.identifier": f"{system_b}|{ins_b}"}), {b1})
    # Each document names its own patient.
    for entry in find(api, "dr_medioni", {"patient": patient_a})["entry"]:
        assert entry["resource"]["subject"]["reference"] == f"Patient/{patient_a}"
        assert entry["fullUrl"] == f"http://testserver/fhir/DocumentReference/{entry['resource']['id']}"

    unknown_ins, unknown_system = factories.random_ins()
    assert_found(find(api, "dr_medioni", {"patient.identifier": f"{unknown_system}|{unknown_ins}"}), set())
    assert_found(find(api, "dr_medioni", {"patient": str(uuid.uuid4())}), set())


def test_unknown_patient_and_patient_not_held_give_the_same_empty_bundle(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    publish(api, "dr_medioni", factories.docref(ins, system))

    def shape(bundle: JSON) -> JSON:
        return {k: v for k, v in bundle.items() if k not in ("id", "meta", "link")}

    not_held = find(api, "jean_patient", {"patient": patient_id})
    unknown = find(api, "jean_patient", {"patient": str(uuid.uuid4())})
    assert not_held["total"] == unknown["total"] == 0
    assert match_ids(not_held) == match_ids(unknown) == []
    assert shape(not_held) == shape(unknown)

    other_ins, other_system = factories.random_ins()
    by_ins = find(api, "jean_patient", {"patient.identifier": f"{system}|{ins}"})
    by_unknown_ins = find(api, "jean_patient", {"patient.identifier": f"{other_system}|{other_ins}"})
    assert shape(by_ins) == shape(by_unknown_ins) == shape(unknown)


def test_patient_and_patient_identifier_together_must_both_match(api: Api) -> None:
    patient_a, ins_a, system_a = api.new_patient()
    _, ins_b, system_b = api.new_patient()
    doc = publish(api, "dr_medioni", factories.docref(ins_a, system_a))
    publish(api, "dr_medioni", factories.docref(ins_b, system_b))
    assert_found(find(api, "dr_medioni", {"patient": patient_a, "patient.identifier": f"{system_a}|{ins_a}"}), {doc})
    # Search parameters are ANDed: a patient id and another patient's INS select no record.
    assert_found(find(api, "dr_medioni", {"patient": patient_a, "patient.identifier": f"{system_b}|{ins_b}"}), set())


# -------------------------------------------------------------------------------------- _id / status


def test_search_by_id(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    other_patient, other_ins, other_system = api.new_patient()
    d1 = publish(api, "dr_medioni", factories.docref(ins, system))
    d2 = publish(api, "dr_medioni", factories.docref(ins, system))
    d3 = publish(api, "dr_medioni", factories.docref(ins, system))
    elsewhere = publish(api, "dr_medioni", factories.docref(other_ins, other_system))

    assert_found(find(api, "dr_medioni", {"patient": patient_id, "_id": d1}), {d1})
    assert_found(find(api, "dr_medioni", {"patient": patient_id, "_id": f"{d1},{d3}"}), {d1, d3})
    assert_found(find(api, "dr_medioni", [("patient", patient_id), ("_id", d2), ("_id", d3)]), {d2, d3})
    # A document of another patient is not found through this patient's record.
    assert_found(find(api, "dr_medioni", {"patient": patient_id, "_id": elsewhere}), set())
    assert_found(find(api, "dr_medioni", {"patient": other_patient, "_id": elsewhere}), {elsewhere})
    assert_found(find(api, "dr_medioni", {"patient": patient_id, "_id": str(uuid.uuid4())}), set())


def test_status_current_and_superseded_after_a_replacement(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    old = publish(api, "dr_medioni", factories.docref(ins, system))
    other = publish(api, "dr_medioni", factories.docref(ins, system))
    new = publish(api, "dr_medioni", replacing(factories.docref(ins, system), old))

    assert_found(find(api, "dr_medioni", {"patient": patient_id, "status": "current"}), {new, other})
    superseded = find(api, "dr_medioni", {"patient": patient_id, "status": "superseded"})
    assert_found(superseded, {old})
    assert superseded["entry"][0]["resource"]["status"] == "superseded"
    assert_found(find(api, "dr_medioni", {"patient": patient_id, "status": "current,superseded"}), {old, new, other})
    assert_found(
        find(api, "dr_medioni", [("patient", patient_id), ("status", "superseded"), ("status", "current")]),
        {old, new, other},
    )
    assert_found(find(api, "dr_medioni", {"patient": patient_id}), {old, new, other})
    assert_found(find(api, "dr_medioni", {"patient": patient_id, "status": "entered-in-error"}), set())
    replacement = find(api, "dr_medioni", {"patient": patient_id, "_id": new})["entry"][0]["resource"]
    assert replacement["relatesTo"] == [{"code": "replaces", "target": {"reference": f"DocumentReference/{old}"}}]


# ----------------------------------------------------------------------------------- coded elements


def test_type(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    report = publish(api, "dr_medioni", factories.docref(ins, system, type_code="11488-4", class_code="10"))
    dispensation = publish(
        api,
        "ph_didot",
        factories.docref(ins, system, type_code="60593-1", class_code="43", facility="SA33", author_idnat=IDNAT_DIDOT),
    )

    def typed(value: str) -> JSON:
        return find(api, "dr_medioni", {"patient": patient_id, "type": value})

    assert_found(typed(f"{factories.LOINC}|11488-4"), {report})
    assert_found(typed("11488-4"), {report})
    assert_found(typed("urn:oid:2.16.840.1.113883.6.1|11488-4"), {report})  # LOINC by its OID
    assert_found(typed(f"{factories.LOINC}|60593-1"), {dispensation})
    assert_found(typed("11488-4,60593-1"), {report, dispensation})
    assert_found(typed(f"{factories.LOINC}|11488-4,{factories.LOINC}|60593-1"), {report, dispensation})
    # A LOINC code under another system matches nothing.
    assert_found(typed(f"{A05}|11488-4"), set())
    assert_found(typed(f"{factories.A03}|11488-4"), set())
    # Codes no document of the patient carries.
    assert_found(typed(f"{factories.LOINC}|34133-9"), set())
    assert_found(typed("99999-9"), set())


def test_category(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    report = publish(api, "dr_medioni", factories.docref(ins, system, type_code="11488-4", class_code="10"))
    dispensation = publish(
        api,
        "ph_didot",
        factories.docref(ins, system, type_code="60593-1", class_code="43", facility="SA33", author_idnat=IDNAT_DIDOT),
    )

    def category(value: str) -> JSON:
        return find(api, "dr_medioni", {"patient": patient_id, "category": value})

    assert_found(category(f"{factories.A03}|10"), {report})
    assert_found(category("10"), {report})
    assert_found(category("urn:oid:1.2.250.1.213.1.1.4.1|43"), {dispensation})
    assert_found(category("10,43"), {report, dispensation})
    assert_found(category(f"{factories.A03}|11"), set())
    assert_found(category(f"{factories.LOINC}|10"), set())


def test_facility_and_setting(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    office = publish(api, "dr_medioni", factories.docref(ins, system, facility="SA07", setting="AMBULATOIRE"))
    hospital = publish(
        api,
        "dr_lambert",
        factories.docref(ins, system, facility="SA01", setting="ETABLISSEMENT", author_idnat=IDNAT_LAMBERT),
    )

    def search(name: str, value: str) -> JSON:
        return find(api, "dr_medioni", {"patient": patient_id, name: value})

    assert_found(search("facility", f"{factories.R02}|SA07"), {office})
    assert_found(search("facility", "SA01"), {hospital})
    assert_found(search("facility", "urn:oid:1.2.250.1.71.4.2.4|SA01"), {hospital})
    assert_found(search("facility", "SA07,SA01"), {office, hospital})
    assert_found(search("facility", "SA33"), set())
    assert_found(search("facility", f"{factories.A01}|SA07"), set())

    assert_found(search("setting", f"{factories.A01}|ETABLISSEMENT"), {hospital})
    assert_found(search("setting", "AMBULATOIRE"), {office})
    assert_found(search("setting", "AMBULATOIRE,ETABLISSEMENT"), {office, hospital})
    assert_found(search("setting", "HAD"), set())
    assert_found(search("setting", f"{factories.R02}|AMBULATOIRE"), set())


def test_format(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    pdf = publish(api, "dr_medioni", factories.docref(ins, system, format_code=PDF_FORMAT))
    text = publish(
        api,
        "dr_medioni",
        factories.docref(
            ins, system, data=b"Compte rendu en texte brut.\n", content_type="text/plain", format_code=TEXT_FORMAT
        ),
    )

    def formatted(value: str) -> JSON:
        return find(api, "dr_medioni", {"patient": patient_id, "format": value})

    assert_found(formatted(f"{factories.A11}|{PDF_FORMAT}"), {pdf})
    assert_found(formatted(PDF_FORMAT), {pdf})
    assert_found(formatted(f"{IHE_FORMAT}|{PDF_FORMAT}"), {pdf})
    assert_found(formatted(TEXT_FORMAT), {text})
    assert_found(formatted(f"{PDF_FORMAT},{TEXT_FORMAT}"), {pdf, text})
    assert_found(formatted("urn:ihe:iti-fr:xds-sd:jpeg:2010"), set())
    assert_found(formatted(f"{factories.LOINC}|{PDF_FORMAT}"), set())


def test_security_label(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    normal = publish(api, "dr_medioni", factories.docref(ins, system))
    masked = publish(api, "dr_medioni", factories.docref(ins, system, flags=("MASQUE_PS",)))
    restricted_resource = factories.docref(ins, system)
    restricted_resource["securityLabel"][0]["coding"][0]["code"] = "R"
    restricted = publish(api, "dr_medioni", restricted_resource)

    def labelled(value: str) -> JSON:
        return find(api, "dr_medioni", {"patient": patient_id, "security-label": value})

    assert_found(labelled("N"), {normal, masked})
    assert_found(labelled(f"{factories.HL7_CONF}|N"), {normal, masked})
    assert_found(labelled(f"{A08}|N"), {normal, masked})
    assert_found(labelled("R"), {restricted})
    assert_found(labelled("MASQUE_PS"), {masked})
    assert_found(labelled(f"{factories.A07}|MASQUE_PS"), {masked})
    assert_found(labelled("R,MASQUE_PS"), {restricted, masked})
    assert_found(labelled("V"), set())
    assert_found(labelled("INVISIBLE_PATIENT"), set())
    assert_found(labelled(f"{factories.HL7_CONF}|MASQUE_PS"), set())
    assert_found(labelled(f"{factories.A07}|N"), set())


# ------------------------------------------------------------------------------------------- dates


def test_date_prefixes_and_precisions(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    september = publish(api, "dr_medioni", factories.docref(ins, system, date="2026-09-15T12:00:00Z"))
    october = publish(api, "dr_medioni", factories.docref(ins, system, date="2026-10-01T10:00:00+02:00"))
    november = publish(api, "dr_medioni", factories.docref(ins, system, date="2026-11-20T12:00:00Z"))

    def dated(*values: str) -> set[str]:
        return ids_for(api, "dr_medioni", [("patient", patient_id), *(("date", v) for v in values)])

    # day precision
    assert dated("2026-10-01") == {october}
    assert dated("eq2026-10-01") == {october}
    assert dated("ge2026-10-01") == {october, november}
    assert dated("gt2026-10-01") == {november}
    assert dated("le2026-10-01") == {september, october}
    assert dated("lt2026-10-01") == {september}
    assert dated("2026-10-02") == set()
    # month precision
    assert dated("2026-10") == {october}
    assert dated("eq2026-09") == {september}
    assert dated("ge2026-10") == {october, november}
    assert dated("gt2026-10") == {november}
    assert dated("le2026-10") == {september, october}
    assert dated("lt2026-10") == {september}
    assert dated("2026-12") == set()
    # two bounds
    assert dated("ge2026-09-16", "le2026-11-19") == {october}
    assert dated("ge2026-09", "lt2026-11") == {september, october}
    # instants (the October document is at 08:00 UTC)
    assert dated("ge2026-10-01T08:00:00Z") == {october, november}
    assert dated("gt2026-10-01T08:00:00Z") == {november}
    assert dated("lt2026-10-01T10:00:00+02:00") == {september}
    assert dated("le2026-10-01T10:00:00+02:00") == {september, october}


def test_period_overlaps_the_service_period(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    spanning = publish(
        api, "dr_medioni", factories.docref(ins, system, period=("2026-09-28T09:00:00Z", "2026-10-02T17:00:00Z"))
    )
    mid_october = publish(
        api, "dr_medioni", factories.docref(ins, system, period=("2026-10-10T09:00:00Z", "2026-10-10T10:00:00Z"))
    )
    november = publish(
        api, "dr_medioni", factories.docref(ins, system, period=("2026-11-05T09:00:00Z", "2026-11-06T10:00:00Z"))
    )
    open_ended_resource = factories.docref(ins, system, period=("2026-12-01T09:00:00Z", "2026-12-01T10:00:00Z"))
    del open_ended_resource["context"]["period"]["end"]
    open_ended = publish(api, "dr_medioni", open_ended_resource)
    no_period = publish(api, "dr_medioni", factories.docref(ins, system, period=None))

    def period(*values: str) -> set[str]:
        return ids_for(api, "dr_medioni", [("patient", patient_id), *(("period", v) for v in values)])

    # The period of care overlaps October.
    assert period("ge2026-10-01", "le2026-10-31") == {spanning, mid_october}
    assert period("ge2026-10", "le2026-10") == {spanning, mid_october}
    # Ends on or after the 3rd of October (an ongoing period has not ended).
    assert period("ge2026-10-03") == {mid_october, november, open_ended}
    # Starts on or before the 30th of September.
    assert period("le2026-09-30") == {spanning}
    assert period("lt2026-09-28") == set()
    assert period("lt2026-09-29") == {spanning}
    # Ends after the 5th of November.
    assert period("gt2026-11-05") == {november, open_ended}
    # Contained in the day / month.
    assert period("2026-10-10") == {mid_october}
    assert period("eq2026-11") == {november}
    assert period("2026-10-02") == set()
    # The document without a period is found by every other search.
    assert ids_for(api, "dr_medioni", {"patient": patient_id}) == {
        spanning,
        mid_october,
        november,
        open_ended,
        no_period,
    }


# ------------------------------------------------------------------------------ author / identifiers


def test_author_and_author_identifier(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    by_medioni = publish(api, "dr_medioni", factories.docref(ins, system, author_idnat=IDNAT_MEDIONI))
    by_lambert = publish(api, "dr_lambert", factories.docref(ins, system, author_idnat=IDNAT_LAMBERT))
    medioni = practitioner_id(api, IDNAT_MEDIONI)
    lambert = practitioner_id(api, IDNAT_LAMBERT)

    def search(name: str, value: str) -> JSON:
        return find(api, "dr_medioni", {"patient": patient_id, name: value})

    assert_found(search("author", f"Practitioner/{medioni}"), {by_medioni})
    assert_found(search("author", f"Practitioner/{lambert}"), {by_lambert})
    assert_found(search("author", f"Practitioner/{medioni},Practitioner/{lambert}"), {by_medioni, by_lambert})
    assert_found(search("author", f"Practitioner/{practitioner_id(api, IDNAT_DIDOT)}"), set())
    assert_found(search("author", f"Practitioner/{uuid.uuid4()}"), set())

    assert_found(search("author.identifier", f"{factories.IDNAT_PS}|{IDNAT_MEDIONI}"), {by_medioni})
    assert_found(search("author.identifier", IDNAT_MEDIONI), {by_medioni})
    assert_found(search("author.identifier", f"{factories.IDNAT_PS}|{IDNAT_LAMBERT}"), {by_lambert})
    assert_found(search("author.identifier", f"{factories.IDNAT_PS}|{IDNAT_DIDOT}"), set())
    # The same value in another identifier system (structure ids) is not the author's IdNat_PS.
    assert_found(search("author.identifier", f"{IDNAT_STRUCTURE}|{IDNAT_MEDIONI}"), set())


def test_author_reference_forms(api: Api) -> None:
    """A reference parameter takes [type]/[id], the bare id, or the absolute URL of the resource (FHIR R4 search)."""
    patient_id, ins, system = api.new_patient()
    doc = publish(api, "dr_medioni", factories.docref(ins, system, author_idnat=IDNAT_MEDIONI))
    medioni = practitioner_id(api, IDNAT_MEDIONI)
    for value in (f"Practitioner/{medioni}", medioni, f"http://testserver/fhir/Practitioner/{medioni}"):
        assert_found(find(api, "dr_medioni", {"patient": patient_id, "author": value}), {doc})


def test_identifier_master_and_business_identifiers(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    unique = f"urn:uuid:{uuid.uuid4()}"
    business = f"ID-{uuid.uuid4().hex}"
    first = publish(
        api,
        "dr_medioni",
        factories.docref(ins, system, unique_id=unique, identifiers=(("urn:oid:1.2.250.1.999.7", business),)),
    )
    second_unique = f"urn:uuid:{uuid.uuid4()}"
    second = publish(api, "dr_medioni", factories.docref(ins, system, unique_id=second_unique))

    def identified(value: str) -> JSON:
        return find(api, "dr_medioni", {"patient": patient_id, "identifier": value})

    assert_found(identified(f"{RFC3986}|{unique}"), {first})
    assert_found(identified(unique), {first})
    assert_found(identified(f"{RFC3986}|{second_unique}"), {second})
    assert_found(identified(f"{unique},{second_unique}"), {first, second})
    assert_found(identified(f"urn:oid:1.2.250.1.999.7|{business}"), {first})
    assert_found(identified(business), {first})
    # Wrong system, unknown value.
    assert_found(identified(f"urn:oid:1.2.250.1.999.8|{unique}"), set())
    assert_found(identified(f"{RFC3986}|{business}"), set())
    assert_found(identified(f"urn:uuid:{uuid.uuid4()}"), set())
    # The uniqueId is found through the patient only.
    other_patient, _, _ = api.new_patient()
    assert_found(find(api, "dr_medioni", {"patient": other_patient, "identifier": unique}), set())


def test_related(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    encounter = f"ENC-{uuid.uuid4().hex}"
    related = publish(
        api, "dr_medioni", factories.docref(ins, system, related=(("urn:oid:1.2.250.1.999.9", encounter),))
    )
    publish(api, "dr_medioni", factories.docref(ins, system, related=(("urn:oid:1.2.250.1.999.9", "ENC-other"),)))
    publish(api, "dr_medioni", factories.docref(ins, system))

    def search(name: str, value: str) -> JSON:
        return find(api, "dr_medioni", {"patient": patient_id, name: value})

    assert_found(search("related", f"urn:oid:1.2.250.1.999.9|{encounter}"), {related})
    assert_found(search("related", encounter), {related})
    assert_found(search("related", f"urn:oid:1.2.250.1.999.10|{encounter}"), set())
    assert_found(search("related", f"ENC-{uuid.uuid4().hex}"), set())
    # related and identifier are different parameters.
    assert_found(search("identifier", encounter), set())


def test_is_archived(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    kept = publish(api, "dr_medioni", factories.docref(ins, system))
    archived = publish(api, "dr_medioni", factories.docref(ins, system))
    response = archive(api, "dr_medioni", archived)
    assert response.status_code == 200, response.text

    assert_found(find(api, "dr_medioni", {"patient": patient_id, "isArchived": "true"}), {archived})
    assert_found(find(api, "dr_medioni", {"patient": patient_id, "isArchived": "false"}), {kept})
    found = find(api, "dr_medioni", {"patient": patient_id, "isArchived": "true"})["entry"][0]["resource"]
    assert {"url": EXT_IS_ARCHIVED, "valueBoolean": True} in found["extension"]
    assert found["meta"]["versionId"] == "2"
    bad_request(api.get(DOCS, "dr_medioni", params={"patient": patient_id, "isArchived": "yes"}), "isArchived")


# --------------------------------------------------------------------------------- sort and paging


def test_sort_by_date(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    middle = publish(api, "dr_medioni", factories.docref(ins, system, date="2026-06-10T12:00:00Z"))
    oldest = publish(api, "dr_medioni", factories.docref(ins, system, date="2025-01-05T12:00:00Z"))
    newest = publish(api, "dr_medioni", factories.docref(ins, system, date="2026-11-01T12:00:00Z"))

    assert match_ids(find(api, "dr_medioni", {"patient": patient_id})) == [newest, middle, oldest]
    assert match_ids(find(api, "dr_medioni", {"patient": patient_id, "_sort": "-date"})) == [newest, middle, oldest]
    assert match_ids(find(api, "dr_medioni", {"patient": patient_id, "_sort": "date"})) == [oldest, middle, newest]
    bad_request(api.get(DOCS, "dr_medioni", params={"patient": patient_id, "_sort": "title"}), "_sort")


def _follow(api: Api, persona: str, first: JSON) -> list[JSON]:
    """The pages of a search, following ``next`` links until there is none."""
    pages = [first]
    while True:
        links = {link["relation"]: link["url"] for link in pages[-1]["link"]}
        if "next" not in links:
            return pages
        assert links["next"].startswith("http://testserver/fhir/DocumentReference?")
        response = api.get(links["next"].removeprefix("http://testserver"), persona)
        assert response.status_code == 200, response.text
        pages.append(response.json())
        assert len(pages) < 20, "paging does not end"


def test_count_and_paging_links(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    docs = [
        publish(api, "dr_medioni", factories.docref(ins, system, date=f"2026-0{month}-10T12:00:00Z"))
        for month in range(1, 8)
    ]
    first = find(api, "dr_medioni", {"patient": patient_id, "_count": "3", "_sort": "date"})
    pages = _follow(api, "dr_medioni", first)
    assert [len(match_ids(p)) for p in pages] == [3, 3, 1]
    assert [p["total"] for p in pages] == [7, 7, 7]
    seen = [doc_id for p in pages for doc_id in match_ids(p)]
    assert seen == docs  # every document once, in date order across pages
    relations = [{link["relation"] for link in p["link"]} for p in pages]
    assert {"self", "next"} <= relations[0]
    assert "previous" not in relations[0]
    assert {"self", "previous", "next"} <= relations[1]
    assert {"self", "previous"} <= relations[2]
    assert "next" not in relations[2]
    # The links keep the search parameters.
    for page in pages:
        for link in page["link"]:
            assert f"patient={patient_id}" in link["url"]
            assert "_count=3" in link["url"]

    # Descending order pages the other way.
    pages = _follow(api, "dr_medioni", find(api, "dr_medioni", {"patient": patient_id, "_count": "2"}))
    assert [doc_id for p in pages for doc_id in match_ids(p)] == list(reversed(docs))
    assert {p["total"] for p in pages} == {7}


def test_count_zero_and_offset_past_the_end(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    docs = {publish(api, "dr_medioni", factories.docref(ins, system)) for _ in range(3)}
    # _count=0: the total only, and no page to follow.
    summary = find(api, "dr_medioni", {"patient": patient_id, "_count": "0"})
    assert summary["total"] == 3
    assert match_ids(summary) == []
    assert "next" not in {link["relation"] for link in summary["link"]}
    # An offset past the last document: an empty page with the same total.
    beyond = find(api, "dr_medioni", {"patient": patient_id, "_count": "2", "_offset": "10"})
    assert beyond["total"] == 3
    assert match_ids(beyond) == []
    assert "next" not in {link["relation"] for link in beyond["link"]}
    assert set(match_ids(find(api, "dr_medioni", {"patient": patient_id, "_count": "2", "_offset": "1"}))) < docs
    bad_request(api.get(DOCS, "dr_medioni", params={"patient": patient_id, "_count": "-1"}), "_count")


def test_post_search_paging_links_carry_the_form_parameters(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    docs = {publish(api, "dr_medioni", factories.docref(ins, system)) for _ in range(3)}
    first = find_post(api, "dr_medioni", {"patient": patient_id, "_count": "2"})
    assert first["total"] == 3
    pages = _follow(api, "dr_medioni", first)
    seen = [doc_id for p in pages for doc_id in match_ids(p)]
    assert sorted(seen) == sorted(docs)
    assert {p["total"] for p in pages} == {3}


# -------------------------------------------------------------------------------------- includes


def test_include_subject(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    d1 = publish(api, "dr_medioni", factories.docref(ins, system))
    d2 = publish(api, "dr_medioni", factories.docref(ins, system))
    bundle = find(api, "dr_medioni", {"patient": patient_id, "_include": "DocumentReference:subject"})
    assert_found(bundle, {d1, d2})
    included = [e for e in bundle["entry"] if e["search"]["mode"] == "include"]
    assert len(included) == 1
    assert included[0]["resource"]["resourceType"] == "Patient"
    assert included[0]["resource"]["id"] == patient_id
    assert included[0]["fullUrl"] == f"http://testserver/fhir/Patient/{patient_id}"
    assert {"system": system, "value": ins} in [
        {"system": i["system"], "value": i["value"]} for i in included[0]["resource"]["identifier"]
    ]
    # Without the parameter, only the documents.
    assert {e["search"]["mode"] for e in find(api, "dr_medioni", {"patient": patient_id})["entry"]} == {"match"}


def test_revinclude_submission_sets_and_folders(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    provided = provide(
        api, "dr_medioni", ins, system, [factories.docref(ins, system), factories.docref(ins, system)], folder=True
    )
    alone = publish(api, "dr_medioni", factories.docref(ins, system))

    bundle = find(api, "dr_medioni", {"patient": patient_id, "_revinclude": "List:item"})
    assert_found(bundle, {*provided.documents, alone})
    included = {e["resource"]["id"]: e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "include"}
    assert {r["resourceType"] for r in included.values()} == {"List"}
    assert provided.submission_set in included
    assert provided.folder in included
    assert len(included) == 3  # the bundle's submission set and folder, and the ITI-105 submission set
    codes = {rid: r["code"]["coding"][0]["code"] for rid, r in included.items()}
    assert codes[provided.submission_set] == "submissionset"
    assert codes[provided.folder] == "folder"
    (alone_set,) = (rid for rid in included if rid not in (provided.submission_set, provided.folder))
    assert codes[alone_set] == "submissionset"
    assert included[alone_set]["code"]["coding"][0]["system"] == MHD_LIST_TYPES
    assert [e["item"]["reference"] for e in included[alone_set]["entry"]] == [f"DocumentReference/{alone}"]
    assert sorted(e["item"]["reference"] for e in included[provided.submission_set]["entry"]) == sorted(
        f"DocumentReference/{d}" for d in provided.documents
    )

    # Only the lists of the documents on the page are included.
    only = find(api, "dr_medioni", {"patient": patient_id, "_id": alone, "_revinclude": "List:item"})
    assert [e["resource"]["id"] for e in only["entry"] if e["search"]["mode"] == "include"] == [alone_set]


# -------------------------------------------------------------------------------------- POST _search


def test_post_search_form_encoded_matches_get(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    report = publish(api, "dr_medioni", factories.docref(ins, system, type_code="11488-4"))
    dispensation = publish(
        api,
        "ph_didot",
        factories.docref(ins, system, type_code="60593-1", class_code="43", facility="SA33", author_idnat=IDNAT_DIDOT),
    )
    assert_found(find_post(api, "dr_medioni", {"patient": patient_id}), {report, dispensation})
    assert_found(find_post(api, "dr_medioni", {"patient": patient_id, "type": f"{factories.LOINC}|11488-4"}), {report})
    assert_found(
        find_post(api, "dr_medioni", {"patient.identifier": f"{system}|{ins}", "category": "43"}), {dispensation}
    )
    assert_found(
        find_post(api, "dr_medioni", [("patient", patient_id), ("_id", report), ("_id", dispensation)]),
        {report, dispensation},
    )
    # Parameters may be split between the query string and the form.
    assert_found(
        find_post(api, "dr_medioni", {"type": "60593-1"}, query=urlencode({"patient": patient_id})), {dispensation}
    )
    # Same errors as GET.
    response = api.post(SEARCH, "dr_medioni", urlencode({"type": "11488-4"}).encode(), content_type=FORM)
    bad_request(response, "patient")
    response = api.post(
        SEARCH, "dr_medioni", urlencode({"patient": patient_id, "colour": "blue"}).encode(), content_type=FORM
    )
    bad_request(response, "colour")
    # Same visibility as GET.
    assert_found(find_post(api, "jean_patient", {"patient": patient_id}), set())


# ------------------------------------------------------------------------------------------ errors


def test_missing_patient_is_a_400(api: Api) -> None:
    for params in ({}, {"type": "11488-4"}, {"status": "current"}):
        outcome = bad_request(api.get(DOCS, "dr_medioni", params=params), "patient")
        assert outcome["issue"][0]["severity"] == "error"
        assert outcome["issue"][0]["code"] == "required"


def test_unknown_parameter_is_a_400_naming_it_unless_lenient(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    doc = publish(api, "dr_medioni", factories.docref(ins, system))
    response = api.get(DOCS, "dr_medioni", params={"patient": patient_id, "colour": "blue", "size": "9"})
    outcome = bad_request(response, "colour")
    assert issue_at(outcome, "size")
    assert {i["code"] for i in outcome["issue"]} == {"not-supported"}
    assert "colour" in outcome["issue"][0]["diagnostics"] + outcome["issue"][1]["diagnostics"]

    lenient = find(api, "dr_medioni", {"patient": patient_id, "colour": "blue"}, Prefer="handling=lenient")
    assert_found(lenient, {doc})
    strict = api.get(
        DOCS, "dr_medioni", params={"patient": patient_id, "colour": "blue"}, headers={"Prefer": "handling=strict"}
    )
    bad_request(strict, "colour")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("date", "yesterday"),
        ("date", "2026-13-45"),
        ("date", "ge2026-10-01T25:00"),
        ("period", "le-octobre"),
        ("status", "deleted"),
        ("status", "current,final"),
        ("_include", "DocumentReference:author"),
        ("_revinclude", "Composition:entry"),
        ("_count", "many"),
    ],
)
def test_invalid_values_are_a_400(api: Api, name: str, value: str) -> None:
    patient_id, _, _ = api.new_patient()
    response = api.get(DOCS, "dr_medioni", params={"patient": patient_id, name: value})
    bad_request(response, name)


# -------------------------------------------------------------------------------------- visibility


def test_masked_document_is_found_by_its_author_only(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    normal = publish(api, "dr_medioni", factories.docref(ins, system))
    masked = publish(api, "dr_medioni", factories.docref(ins, system, flags=("MASQUE_PS",)))

    assert_found(find(api, "dr_medioni", {"patient": patient_id}), {normal, masked})
    for persona in ("dr_lambert", "ph_didot", "dpi_saint_roch", "inf_moreau"):
        assert_found(find(api, persona, {"patient": patient_id}), {normal})
        assert_found(find(api, persona, {"patient": patient_id, "_id": masked}), set())
        assert_found(find(api, persona, {"patient": patient_id, "security-label": "MASQUE_PS"}), set())
    # Totals and paging leave the masked document out too.
    page = find(api, "dr_lambert", {"patient": patient_id, "_count": "1"})
    assert page["total"] == 1
    assert match_ids(page) == [normal]
    assert "next" not in {link["relation"] for link in page["link"]}


def test_masked_document_is_found_by_the_authors_organisation(api: Api) -> None:
    patient_id, ins, system = api.new_patient(team=(*CARE_TEAM, "dr_haddad"))
    masked = publish(api, "dr_lambert", factories.docref(ins, system, flags=("MASQUE_PS",), author_idnat=IDNAT_LAMBERT))
    for persona in ("dr_lambert", "dr_haddad", "dpi_saint_roch"):  # Hôpital Saint-Roch
        assert_found(find(api, persona, {"patient": patient_id}), {masked})
    for persona in ("dr_medioni", "ph_didot"):
        assert_found(find(api, persona, {"patient": patient_id}), set())


def test_invisible_patient_document_is_hidden_from_the_patient(api: Api) -> None:
    patient_id, ins, system = persona_patient(api, "jean_patient")
    visible = publish(api, "dr_medioni", factories.docref(ins, system))
    invisible = publish(api, "dr_medioni", factories.docref(ins, system, flags=("INVISIBLE_PATIENT",)))
    mine = {"patient": patient_id, "_id": f"{visible},{invisible}"}

    assert_found(find(api, "jean_patient", mine), {visible})
    assert_found(find(api, "jean_patient", {"patient": patient_id, "_id": invisible}), set())
    # searching by a label that hides documents from the caller is refused: it could only reveal them
    refused = api.get(
        "/fhir/DocumentReference", "jean_patient", params={"patient": patient_id, "security-label": "INVISIBLE_PATIENT"}
    )
    assert refused.status_code == 403
    for persona in ("dr_medioni", "dr_lambert", "ph_didot"):
        assert_found(find(api, persona, mine), {visible, invisible})


def test_patient_sees_documents_masked_from_professionals(api: Api) -> None:
    patient_id, ins, system = persona_patient(api, "jean_patient")
    masked = publish(api, "dr_medioni", factories.docref(ins, system, flags=("MASQUE_PS",)))
    assert_found(find(api, "jean_patient", {"patient": patient_id, "_id": masked}), {masked})
    assert_found(find(api, "jean_patient", {"patient.identifier": f"{system}|{ins}", "_id": masked}), {masked})
    assert_found(find(api, "dr_lambert", {"patient": patient_id, "_id": masked}), set())


def test_minor_record_hides_documents_from_the_representatives(api: Api) -> None:
    patient_id, ins, system = persona_patient(api, "lea_minor")
    ordinary = publish(api, "dr_medioni", factories.docref(ins, system))
    secret = publish(api, "dr_medioni", factories.docref(ins, system, flags=("INVISIBLE_REPRESENTANTS_LEGAUX",)))
    hidden_from_patient = publish(api, "dr_medioni", factories.docref(ins, system, flags=("INVISIBLE_PATIENT",)))
    mine = {"patient": patient_id, "_id": f"{ordinary},{secret},{hidden_from_patient}"}

    assert_found(find(api, "lea_minor", mine), {ordinary, secret})
    assert_found(find(api, "dominique_patient", mine), {ordinary})
    assert_found(find(api, "marc_parent", mine), {ordinary})
    assert_found(find(api, "dr_medioni", mine), {ordinary, secret, hidden_from_patient})
    assert_found(find(api, "dr_lambert", mine), {ordinary, secret, hidden_from_patient})
    # By INS too.
    by_ins = {"patient.identifier": f"{system}|{ins}", "_id": f"{ordinary},{secret}"}
    assert_found(find(api, "marc_parent", by_ins), {ordinary})
    assert_found(find(api, "lea_minor", by_ins), {ordinary, secret})


def test_representative_of_a_minor_sees_nothing_of_other_records(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    publish(api, "dr_medioni", factories.docref(ins, system))
    jean_id, _, _ = persona_patient(api, "jean_patient")
    assert_found(find(api, "marc_parent", {"patient": patient_id}), set())
    assert_found(find(api, "marc_parent", {"patient": jean_id}), set())
    dominique_id, _, _ = persona_patient(api, "dominique_patient")
    assert_found(find(api, "jean_patient", {"patient": dominique_id}), set())
    assert_found(find(api, "lea_minor", {"patient": dominique_id}), set())


@pytest.mark.parametrize("persona", ["cnam_feed", "ops_admin"])
def test_insurer_and_operator_find_nothing(api: Api, persona: str) -> None:
    patient_id, ins, system = api.new_patient()
    publish(api, "dr_medioni", factories.docref(ins, system))
    assert_found(find(api, persona, {"patient": patient_id}), set())
    assert_found(find(api, persona, {"patient.identifier": f"{system}|{ins}"}), set())
    assert_found(find(api, persona, {"patient": patient_id, "_include": "DocumentReference:subject"}), set())
    assert find(api, persona, {"patient": patient_id}).get("entry", []) == []


def test_patient_searching_another_record_finds_nothing(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    publish(api, "dr_medioni", factories.docref(ins, system))
    for persona in ("jean_patient", "dominique_patient", "lea_minor"):
        assert_found(find(api, persona, {"patient": patient_id}), set())
        assert_found(find(api, persona, {"patient.identifier": f"{system}|{ins}"}), set())


def test_deleted_documents_never_appear(api: Api) -> None:
    patient_id, ins, system = persona_patient(api, "jean_patient")
    kept = publish(api, "dr_medioni", factories.docref(ins, system))
    deleted = publish(api, "dr_medioni", factories.docref(ins, system))
    response = api.delete(f"{DOCS}/{deleted}", "dr_medioni")
    assert response.status_code == 200, response.text
    mine = f"{kept},{deleted}"

    for persona in ("dr_medioni", "dr_lambert", "jean_patient"):
        assert_found(find(api, persona, {"patient": patient_id, "_id": mine}), {kept})
        assert_found(find(api, persona, {"patient": patient_id, "_id": mine, "status": "entered-in-error"}), set())
        assert_found(
            find(api, persona, {"patient": patient_id, "_id": mine, "status": "current,entered-in-error"}), {kept}
        )
    assert_found(find(api, "dr_medioni", {"patient": patient_id, "_id": deleted, "_revinclude": "List:item"}), set())
