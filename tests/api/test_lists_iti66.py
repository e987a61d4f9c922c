"""ITI-66 Find Lists: SubmissionSets and Folders by patient, code, identifier, sourceId, date, status and
designationType; _include=List:item; read, history and vread; lists never reveal documents hidden from
the caller (a list of hidden documents only is not found, entries naming hidden documents are left out).
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx2 as httpx
import pytest

from carnet.demo.personas import BY_KEY
from carnet.fhirtypes import EXT_IHE_DESIGNATION_TYPE, EXT_IHE_SOURCE_ID, MHD_LIST_TYPES
from tests import factories
from tests.conftest import Api, issue_at, match_ids

JSON = dict[str, Any]
Params = Mapping[str, str] | Sequence[tuple[str, str]]

LISTS = "/fhir/List"
RFC3986 = "urn:ietf:rfc:3986"
R209 = "https://mos.esante.gouv.fr/NOS/TRE_R209-TypeActivite/FHIR/TRE-R209-TypeActivite"


# ------------------------------------------------------------------------------------------- helpers


def find_lists(api: Api, persona: str, params: Params, **headers: str) -> JSON:
    response = api.get(LISTS, persona, params=params, headers=headers)
    assert response.status_code == 200, response.text
    bundle: JSON = response.json()
    assert bundle["resourceType"] == "Bundle"
    assert bundle["type"] == "searchset"
    return bundle


def assert_found(bundle: JSON, expected: set[str]) -> None:
    ids = match_ids(bundle)
    assert len(ids) == len(set(ids)), ids
    assert set(ids) == expected
    assert bundle["total"] == len(expected)


def matched(bundle: JSON) -> dict[str, JSON]:
    return {e["resource"]["id"]: e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"}


def included(bundle: JSON) -> dict[str, JSON]:
    return {e["resource"]["id"]: e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == "include"}


def items(resource: JSON) -> set[str]:
    return {e["item"]["reference"] for e in resource.get("entry", [])}


def refs(*doc_ids: str) -> set[str]:
    return {f"DocumentReference/{d}" for d in doc_ids}


def publish(api: Api, persona: str, resource: JSON) -> str:
    response = api.publish(persona, resource)
    assert response.status_code == 201, response.text
    doc_id: str = response.json()["id"]
    return doc_id


def read(api: Api, persona: str, path: str) -> httpx.Response:
    return api.get(f"{LISTS}/{path}", persona)


def persona_patient(api: Api, persona: str) -> tuple[str, str, str]:
    p = BY_KEY[persona]
    assert p.ins is not None
    system = f"urn:oid:{p.ins_oid}"
    response = api.get("/fhir/Patient", "dr_medioni", params={"identifier": f"{system}|{p.ins}"})
    assert response.status_code == 200, response.text
    (entry,) = response.json()["entry"]
    return entry["resource"]["id"], p.ins, system


@dataclass
class Provided:
    submission_set: str
    identifier: str  # the submission set's uniqueId (identifier value)
    documents: list[str]
    folder: str | None


def provide(
    api: Api,
    persona: str,
    ins: str,
    system: str,
    resources: list[JSON],
    *,
    folder: bool = False,
    tweak: Callable[[JSON, JSON | None], None] | None = None,
) -> Provided:
    """ITI-65: deposit ``resources`` (built with inline data) as one submission set (and a folder);
    ``tweak(submission_set, folder)`` may change the lists before sending."""
    docs = []
    for resource in resources:
        attachment = resource["content"][0]["attachment"]
        docs.append((resource, base64.b64decode(attachment["data"]), attachment["contentType"]))
    bundle = factories.bundle(ins, system, docs, folder=folder)
    submission_set = bundle["entry"][0]["resource"]
    folder_resource = bundle["entry"][-1]["resource"] if folder else None
    if tweak:
        tweak(submission_set, folder_resource)
    response = api.post("/fhir", persona, bundle)
    assert response.status_code == 200, response.text
    locations = [e["response"].get("location") or "" for e in response.json()["entry"]]
    kinds = [loc.split("/")[0] for loc in locations]
    ids = [loc.split("/")[1] for loc in locations]
    assert kinds[0] == "List"
    return Provided(
        ids[0],
        submission_set["identifier"][0]["value"],
        [i for k, i in zip(kinds, ids, strict=True) if k == "DocumentReference"],
        ids[-1] if folder else None,
    )


def two_docs(ins: str, system: str, *flags: tuple[str, ...]) -> list[JSON]:
    return [factories.docref(ins, system, flags=f) for f in (flags or ((), ()))]


# ------------------------------------------------------------------------------------ patient / code


def test_find_by_patient_and_code(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    provided = provide(api, "dr_medioni", ins, system, two_docs(ins, system), folder=True)
    assert provided.folder is not None
    alone = publish(api, "dr_medioni", factories.docref(ins, system))

    everything = find_lists(api, "dr_medioni", {"patient": patient_id})
    lists = matched(everything)
    assert everything["total"] == 3
    assert {provided.submission_set, provided.folder} < set(lists)
    (alone_set,) = set(lists) - {provided.submission_set, provided.folder}
    for resource in lists.values():
        assert resource["resourceType"] == "List"
        assert resource["subject"] == {"reference": f"Patient/{patient_id}"}
        assert resource["status"] == "current"
        assert resource["mode"] == "working"
    assert items(lists[provided.submission_set]) == refs(*provided.documents)
    assert items(lists[provided.folder]) == refs(*provided.documents)
    assert items(lists[alone_set]) == refs(alone)
    assert lists[provided.folder]["code"]["coding"] == [{"system": MHD_LIST_TYPES, "code": "folder"}]

    sets = {provided.submission_set, alone_set}
    assert_found(find_lists(api, "dr_medioni", {"patient": patient_id, "code": "submissionset"}), sets)
    assert_found(
        find_lists(api, "dr_medioni", {"patient": patient_id, "code": f"{MHD_LIST_TYPES}|submissionset"}), sets
    )
    assert_found(find_lists(api, "dr_medioni", {"patient": patient_id, "code": "folder"}), {provided.folder})
    assert_found(
        find_lists(api, "dr_medioni", {"patient": patient_id, "code": f"{MHD_LIST_TYPES}|folder"}), {provided.folder}
    )
    assert_found(find_lists(api, "dr_medioni", {"patient": patient_id, "code": "folder,submissionset"}), set(lists))
    assert_found(find_lists(api, "dr_medioni", {"patient": patient_id, "code": "worklist"}), set())
    # The MHD list-type codes under another code system match nothing.
    assert_found(find_lists(api, "dr_medioni", {"patient": patient_id, "code": f"{factories.LOINC}|folder"}), set())
    assert_found(find_lists(api, "dr_medioni", {"patient.identifier": f"{system}|{ins}"}), set(lists))
    assert_found(find_lists(api, "dr_medioni", {"patient": f"Patient/{patient_id}", "_id": alone_set}), {alone_set})

    # Another patient's lists are not this patient's.
    other_id, other_ins, other_system = api.new_patient()
    other = provide(api, "dr_medioni", other_ins, other_system, [factories.docref(other_ins, other_system)])
    assert_found(find_lists(api, "dr_medioni", {"patient": other_id}), {other.submission_set})
    assert_found(find_lists(api, "dr_medioni", {"patient": patient_id, "_id": other.submission_set}), set())


def test_paging_lists(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    expected = {
        provide(api, "dr_medioni", ins, system, [factories.docref(ins, system)]).submission_set for _ in range(3)
    }
    page = find_lists(api, "dr_medioni", {"patient": patient_id, "_count": "2"})
    seen = match_ids(page)
    totals = [page["total"]]
    while next_url := {link["relation"]: link["url"] for link in page["link"]}.get("next"):
        response = api.get(next_url.removeprefix("http://testserver"), "dr_medioni")
        assert response.status_code == 200, response.text
        page = response.json()
        seen += match_ids(page)
        totals.append(page["total"])
    assert sorted(seen) == sorted(expected)
    assert totals == [3, 3]


# --------------------------------------------------------------------------- identifier / sourceId


def test_identifier_and_source_id(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    source = f"urn:oid:1.2.250.1.999.{uuid.uuid4().int % 10**9}"

    def own_source(submission_set: JSON, _folder: JSON | None) -> None:
        submission_set["extension"] = [{"url": EXT_IHE_SOURCE_ID, "valueIdentifier": {"value": source}}]

    first = provide(api, "dr_medioni", ins, system, [factories.docref(ins, system)], tweak=own_source)
    second = provide(api, "dr_medioni", ins, system, [factories.docref(ins, system)])

    def search(name: str, value: str) -> JSON:
        return find_lists(api, "dr_medioni", {"patient": patient_id, name: value})

    assert_found(search("identifier", f"{RFC3986}|{first.identifier}"), {first.submission_set})
    assert_found(search("identifier", first.identifier), {first.submission_set})
    assert_found(
        search("identifier", f"{first.identifier},{second.identifier}"), {first.submission_set, second.submission_set}
    )
    assert_found(search("identifier", f"urn:oid:1.2.250.1.999.3|{first.identifier}"), set())
    assert_found(search("identifier", f"urn:uuid:{uuid.uuid4()}"), set())

    assert_found(search("sourceId", source), {first.submission_set})
    assert_found(search("source.identifier", source), {first.submission_set})
    assert_found(search("sourceId", "urn:oid:1.2.250.1.999.1"), {second.submission_set})  # the factory's source
    assert_found(search("sourceId", f"{source},urn:oid:1.2.250.1.999.1"), {first.submission_set, second.submission_set})
    assert_found(search("sourceId", "urn:oid:1.2.250.1.999.2"), set())

    stored = matched(search("identifier", first.identifier))[first.submission_set]
    assert {"url": EXT_IHE_SOURCE_ID, "valueIdentifier": {"value": source}} in stored["extension"]


# ------------------------------------------------------------------------------------ date / status


def test_date_and_status(api: Api) -> None:
    patient_id, ins, system = api.new_patient()

    def winter_folder(_submission_set: JSON, folder: JSON | None) -> None:
        assert folder is not None
        folder["date"] = "2026-12-24T12:00:00Z"

    def september(submission_set: JSON, _folder: JSON | None) -> None:
        submission_set["date"] = "2026-09-15T12:00:00Z"

    october = provide(api, "dr_medioni", ins, system, [factories.docref(ins, system)], folder=True, tweak=winter_folder)
    assert october.folder is not None
    earlier = provide(api, "dr_medioni", ins, system, [factories.docref(ins, system)], tweak=september)
    everything = {october.submission_set, october.folder, earlier.submission_set}

    def dated(*values: str) -> set[str]:
        bundle = find_lists(api, "dr_medioni", [("patient", patient_id), *(("date", v) for v in values)])
        ids = match_ids(bundle)
        assert bundle["total"] == len(ids)
        return set(ids)

    assert dated("2026-10-01") == {october.submission_set}  # 2026-10-01T10:00:00+02:00
    assert dated("2026-10") == {october.submission_set}
    assert dated("ge2026-10-01") == {october.submission_set, october.folder}
    assert dated("gt2026-10-01") == {october.folder}
    assert dated("lt2026-10-01") == {earlier.submission_set}
    assert dated("le2026-10-01T10:00:00+02:00") == {october.submission_set, earlier.submission_set}
    assert dated("gt2026-10-01T08:00:00Z") == {october.folder}
    assert dated("ge2026-09", "le2026-10") == {october.submission_set, earlier.submission_set}
    assert dated("2027") == set()
    stored = matched(find_lists(api, "dr_medioni", {"patient": patient_id, "_id": october.folder}))
    assert stored[october.folder]["date"] == "2026-12-24T12:00:00.000Z"

    assert_found(find_lists(api, "dr_medioni", {"patient": patient_id, "status": "current"}), everything)
    assert_found(find_lists(api, "dr_medioni", {"patient": patient_id, "status": "current,retired"}), everything)
    assert_found(find_lists(api, "dr_medioni", {"patient": patient_id, "status": "retired"}), set())

    response = api.get(LISTS, "dr_medioni", params={"patient": patient_id, "date": "le 1er octobre"})
    assert response.status_code == 400, response.text
    assert issue_at(response.json(), "date")


def test_designation_type(api: Api) -> None:
    patient_id, ins, system = api.new_patient()

    def designated(submission_set: JSON, _folder: JSON | None) -> None:
        submission_set["extension"].append(
            {"url": EXT_IHE_DESIGNATION_TYPE, "valueCodeableConcept": {"coding": [{"system": R209, "code": "07"}]}}
        )

    consultation = provide(api, "dr_medioni", ins, system, [factories.docref(ins, system)], tweak=designated)
    plain = provide(api, "dr_medioni", ins, system, [factories.docref(ins, system)])
    assert consultation.submission_set != plain.submission_set

    def search(value: str) -> JSON:
        return find_lists(api, "dr_medioni", {"patient": patient_id, "designationType": value})

    assert_found(search(f"{R209}|07"), {consultation.submission_set})
    assert_found(search("07"), {consultation.submission_set})
    assert_found(search("04,07"), {consultation.submission_set})
    assert_found(search(f"{R209}|04"), set())
    assert_found(search(f"{factories.LOINC}|07"), set())


# ------------------------------------------------------------------------------------------ include


def test_include_items(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    provided = provide(api, "dr_medioni", ins, system, two_docs(ins, system), folder=True)
    other = provide(api, "dr_medioni", ins, system, [factories.docref(ins, system)])

    bundle = find_lists(
        api, "dr_medioni", {"patient": patient_id, "_id": provided.submission_set, "_include": "List:item"}
    )
    assert_found(bundle, {provided.submission_set})
    docs = included(bundle)
    assert set(docs) == set(provided.documents)
    assert {d["resourceType"] for d in docs.values()} == {"DocumentReference"}

    folder = find_lists(api, "dr_medioni", {"patient": patient_id, "code": "folder", "_include": "List:item"})
    assert_found(folder, {provided.folder} if provided.folder else set())
    assert set(included(folder)) == set(provided.documents)

    all_sets = find_lists(api, "dr_medioni", {"patient": patient_id, "code": "submissionset", "_include": "List:item"})
    assert_found(all_sets, {provided.submission_set, other.submission_set})
    assert set(included(all_sets)) == {*provided.documents, *other.documents}
    assert len([e for e in all_sets["entry"] if e["search"]["mode"] == "include"]) == 3  # each document once

    without = find_lists(api, "dr_medioni", {"patient": patient_id, "_id": provided.submission_set})
    assert included(without) == {}
    response = api.get(LISTS, "dr_medioni", params={"patient": patient_id, "_include": "List:subject"})
    assert response.status_code == 400, response.text
    assert issue_at(response.json(), "_include")


# -------------------------------------------------------------------------------- read and history


def test_read_history_and_vread(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    provided = provide(api, "dr_medioni", ins, system, two_docs(ins, system), folder=True)
    assert provided.folder is not None

    for list_id, code in ((provided.submission_set, "submissionset"), (provided.folder, "folder")):
        response = read(api, "dr_medioni", list_id)
        assert response.status_code == 200, response.text
        resource = response.json()
        assert resource["resourceType"] == "List"
        assert resource["id"] == list_id
        assert resource["code"]["coding"][0]["code"] == code
        assert resource["meta"]["versionId"] == "1"
        assert resource["subject"] == {"reference": f"Patient/{patient_id}"}
        assert items(resource) == refs(*provided.documents)

        history = read(api, "dr_medioni", f"{list_id}/_history")
        assert history.status_code == 200, history.text
        bundle = history.json()
        assert bundle["type"] == "history"
        assert bundle["total"] == 1
        assert [e["resource"]["id"] for e in bundle["entry"]] == [list_id]
        assert bundle["entry"][0]["resource"] == resource

        version = read(api, "dr_medioni", f"{list_id}/_history/1")
        assert version.status_code == 200, version.text
        assert version.json() == resource
        assert read(api, "dr_medioni", f"{list_id}/_history/2").status_code == 404
        assert read(api, "dr_medioni", f"{list_id}/_history/one").status_code == 404

    submission_set = read(api, "dr_medioni", provided.submission_set).json()
    assert submission_set["identifier"][0] == {"use": "usual", "system": RFC3986, "value": provided.identifier}
    assert read(api, "dr_medioni", str(uuid.uuid4())).status_code == 404
    assert read(api, "dr_medioni", f"{uuid.uuid4()}/_history").status_code == 404
    assert read(api, "dr_medioni", f"{uuid.uuid4()}/_history/1").status_code == 404
    # A document id is not a list id.
    assert read(api, "dr_medioni", provided.documents[0]).status_code == 404


# --------------------------------------------------------------------------------------- visibility


def test_submission_set_of_hidden_documents_only_is_not_found(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    hidden = provide(api, "dr_medioni", ins, system, [factories.docref(ins, system, flags=("MASQUE_PS",))])
    shown = provide(api, "dr_medioni", ins, system, [factories.docref(ins, system)])

    for persona in ("dr_lambert", "dpi_saint_roch", "ph_didot"):
        for path in (hidden.submission_set, f"{hidden.submission_set}/_history", f"{hidden.submission_set}/_history/1"):
            response = read(api, persona, path)
            assert response.status_code == 404, (persona, path, response.text)
            assert response.json()["resourceType"] == "OperationOutcome"
        assert_found(find_lists(api, persona, {"patient": patient_id}), {shown.submission_set})
        assert_found(find_lists(api, persona, {"patient": patient_id, "identifier": hidden.identifier}), set())
        assert_found(find_lists(api, persona, {"patient": patient_id, "_id": hidden.submission_set}), set())
        assert read(api, persona, shown.submission_set).status_code == 200

    assert_found(find_lists(api, "dr_medioni", {"patient": patient_id}), {hidden.submission_set, shown.submission_set})
    response = read(api, "dr_medioni", hidden.submission_set)
    assert response.status_code == 200, response.text
    assert items(response.json()) == refs(*hidden.documents)


def test_entries_naming_hidden_documents_are_left_out(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    provided = provide(api, "dr_medioni", ins, system, two_docs(ins, system, (), ("MASQUE_PS",)), folder=True)
    assert provided.folder is not None
    shown, masked = provided.documents
    lists = {provided.submission_set, provided.folder}

    for persona in ("dr_lambert", "dpi_saint_roch"):
        for list_id in lists:
            response = read(api, persona, list_id)
            assert response.status_code == 200, response.text
            assert items(response.json()) == refs(shown)
            version = read(api, persona, f"{list_id}/_history/1")
            assert version.status_code == 200, version.text
            assert items(version.json()) == refs(shown)
            history = read(api, persona, f"{list_id}/_history")
            assert history.status_code == 200, history.text
            assert [items(e["resource"]) for e in history.json()["entry"]] == [refs(shown)]
        bundle = find_lists(api, persona, {"patient": patient_id, "_include": "List:item"})
        assert_found(bundle, lists)
        assert all(items(resource) == refs(shown) for resource in matched(bundle).values())
        assert set(included(bundle)) == {shown}
        # The same filtering applies to lists included in a document search.
        docs = api.get(
            "/fhir/DocumentReference", persona, params={"patient": patient_id, "_revinclude": "List:item"}
        ).json()
        assert match_ids(docs) == [shown]
        assert set(included(docs)) == lists
        assert all(items(resource) == refs(shown) for resource in included(docs).values())
        assert masked not in str(docs)

    # The author sees both documents in every list.
    for list_id in lists:
        assert items(read(api, "dr_medioni", list_id).json()) == refs(shown, masked)
    bundle = find_lists(api, "dr_medioni", {"patient": patient_id, "_include": "List:item"})
    assert all(items(resource) == refs(shown, masked) for resource in matched(bundle).values())
    assert set(included(bundle)) == {shown, masked}


def test_patient_does_not_see_lists_of_documents_hidden_from_them(api: Api) -> None:
    patient_id, ins, system = persona_patient(api, "jean_patient")
    hidden = provide(api, "dr_medioni", ins, system, [factories.docref(ins, system, flags=("INVISIBLE_PATIENT",))])
    mixed = provide(api, "dr_medioni", ins, system, two_docs(ins, system, (), ("INVISIBLE_PATIENT",)))
    shown, invisible = mixed.documents
    mine = {"patient": patient_id, "identifier": f"{hidden.identifier},{mixed.identifier}"}

    assert read(api, "jean_patient", hidden.submission_set).status_code == 404
    response = read(api, "jean_patient", mixed.submission_set)
    assert response.status_code == 200, response.text
    assert items(response.json()) == refs(shown)
    bundle = find_lists(api, "jean_patient", {**mine, "_include": "List:item"})
    assert_found(bundle, {mixed.submission_set})
    assert set(included(bundle)) == {shown}

    assert_found(find_lists(api, "dr_medioni", mine), {hidden.submission_set, mixed.submission_set})
    assert items(read(api, "dr_lambert", mixed.submission_set).json()) == refs(shown, invisible)


def test_representatives_do_not_see_lists_of_documents_hidden_from_them(api: Api) -> None:
    patient_id, ins, system = persona_patient(api, "lea_minor")
    secret = provide(
        api, "dr_medioni", ins, system, [factories.docref(ins, system, flags=("INVISIBLE_REPRESENTANTS_LEGAUX",))]
    )
    mine = {"patient": patient_id, "identifier": secret.identifier}
    assert_found(find_lists(api, "lea_minor", mine), {secret.submission_set})
    assert read(api, "lea_minor", secret.submission_set).status_code == 200
    for persona in ("dominique_patient", "marc_parent"):
        assert_found(find_lists(api, persona, mine), set())
        assert read(api, persona, secret.submission_set).status_code == 404


@pytest.mark.parametrize("persona", ["jean_patient", "marc_parent", "cnam_feed", "ops_admin"])
def test_callers_without_access_find_and_read_nothing(api: Api, persona: str) -> None:
    patient_id, ins, system = api.new_patient()
    provided = provide(api, "dr_medioni", ins, system, [factories.docref(ins, system)], folder=True)
    assert_found(find_lists(api, persona, {"patient": patient_id}), set())
    assert_found(find_lists(api, persona, {"patient.identifier": f"{system}|{ins}"}), set())
    assert_found(find_lists(api, persona, {"patient": str(uuid.uuid4())}), set())
    for list_id in (provided.submission_set, provided.folder):
        assert read(api, persona, str(list_id)).status_code == 404
        assert read(api, persona, f"{list_id}/_history").status_code == 404
        assert read(api, persona, f"{list_id}/_history/1").status_code == 404


# ------------------------------------------------------------------------------------------- errors


def test_search_errors(api: Api) -> None:
    patient_id, ins, system = api.new_patient()
    provided = provide(api, "dr_medioni", ins, system, [factories.docref(ins, system)])

    response = api.get(LISTS, "dr_medioni", params={"code": "submissionset"})
    assert response.status_code == 400, response.text
    assert response.json()["resourceType"] == "OperationOutcome"
    assert issue_at(response.json(), "patient")

    response = api.get(LISTS, "dr_medioni", params={"patient": patient_id, "title": "Dossier"})
    assert response.status_code == 400, response.text
    assert issue_at(response.json(), "title")
    assert response.json()["issue"][0]["code"] == "not-supported"

    lenient = find_lists(api, "dr_medioni", {"patient": patient_id, "title": "Dossier"}, Prefer="handling=lenient")
    assert_found(lenient, {provided.submission_set})
