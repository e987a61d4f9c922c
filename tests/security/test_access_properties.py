"""Property-based checks of the access policy (hypothesis), on both databases.

Whatever sequence of grants, revocations, blocks, maskings and emergency accesses happens:
* a blocked professional, a professional whose grant expired, the insurer and the operator read nothing;
* a search returns exactly the documents a per-document decision permits (SQL filter == decision).
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from typing import Any

import orjson
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carnet.access import Action, DocumentFacts, decide
from carnet.access.emergency import open_access
from carnet.access.models import AccessGrant, EmergencyAccess, EmergencyMode
from carnet.auth.actor import SYSTEM_ACTOR, Actor
from carnet.auth.authenticate import resolve
from carnet.consents import service as consents
from carnet.demo.personas import BY_KEY, token_claims
from carnet.documents import search as finder
from carnet.documents import service as documents
from carnet.documents.models import DocumentEntry
from carnet.documents.schemas import DocumentQuery, PatchOperation
from carnet.records import service as records
from carnet.runtime import Runtime, Work
from tests import factories

POOL = ("dr_blanc", "dr_girard", "ph_didot", "dent_petit", "as_leroy", "dr_haddad", "inf_moreau")
OUTSIDERS = ("cnam_feed", "ops_admin")
DOC_KINDS = (
    ("11488-4", "http://loinc.org", "10"),
    ("68599-0", "http://loinc.org", "11"),
    ("28653-4", "http://loinc.org", "10"),
    (
        "ATTEST-RESID",
        "https://mos.esante.gouv.fr/NOS/TRE_A05-TypeDocComplementaire/FHIR/TRE-A05-TypeDocComplementaire",
        "95",
    ),
)

operations = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "authorize",
                "revoke",
                "block",
                "unblock",
                "care-team",
                "mask",
                "unmask",
                "break-glass",
                "expire",
                "oppose-btg",
                "allow-btg",
                "administrator",
                "allow-masked",
            ]
        ),
        st.sampled_from(POOL),
        st.integers(min_value=0, max_value=len(DOC_KINDS) - 1),
    ),
    max_size=12,
)


def actor(work: Work, persona: str) -> Actor:
    subject, extra = token_claims(BY_KEY[persona])
    return resolve(work, {"sub": subject, **extra})


def consent(patient_id: str, kind: str, idnat: str | None, *, provision: str = "permit") -> dict[str, Any]:
    resource = consents.declaration(consents.Kind(kind), patient_id, idnat or "810007345670")
    resource["provision"]["type"] = provision
    if idnat is None:
        del resource["provision"]["actor"]
    if kind == "emergency-masked":
        resource["provision"]["securityLabel"] = [{"system": factories.A07, "code": "MASQUE_PS"}]
    return resource


def setup_record(runtime: Runtime) -> tuple[str, list[str], str]:
    ins, system = factories.random_ins()
    with runtime.work() as work:
        record = records.create_record(
            work, actor=SYSTEM_ACTOR, patient=factories.patient_resource(ins, system, attest=False)
        )
        patient_id = str(record.id)
    doc_ids = []
    for type_code, type_system, class_code in DOC_KINDS:
        with runtime.work() as work:
            author = actor(work, "dr_medioni")
            resource = factories.docref(
                ins, system, type_code=type_code, type_system=type_system, class_code=class_code
            )
            data = base64.b64decode(resource["content"][0]["attachment"].pop("data"))
            doc_ids.append(documents.publish(work, actor=author, resource=resource, data=data).id)
    return patient_id, doc_ids, ins


def apply(
    runtime: Runtime,
    patient_id: str,
    doc_ids: list[str],
    step: tuple[str, str, int],
    grants: dict[tuple[str, str], str],
) -> None:
    op, persona, doc_index = step
    idnat = BY_KEY[persona].idnat
    with runtime.work() as work:
        if op in ("authorize", "block", "care-team", "administrator"):
            kind = {
                "authorize": "authorization",
                "block": "block",
                "care-team": "care-team",
                "administrator": "administrator",
            }[op]
            who = actor(work, persona) if kind == "care-team" else SYSTEM_ACTOR
            try:
                consent_id, _ = consents.create(
                    work,
                    actor=who,
                    resource=consent(patient_id, kind, idnat, provision="deny" if kind == "block" else "permit"),
                )
            except Exception:
                return
            grants[(kind, persona)] = consent_id
        elif op in ("revoke", "unblock"):
            kind = "authorization" if op == "revoke" else "block"
            consent_id = grants.pop((kind, persona), "")
            if consent_id:
                consents.revoke(work, actor=SYSTEM_ACTOR, consent_id=consent_id)
        elif op in ("mask", "unmask"):
            doc_id = doc_ids[doc_index]
            labels = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "N"}]}]
            if op == "mask":
                labels.append({"coding": [{"system": factories.A07, "code": "MASQUE_PS"}]})
            documents.patch_document(
                work,
                actor=actor(work, "dr_medioni"),
                doc_id=doc_id,
                operations=[PatchOperation("replace", "/securityLabel", labels)],
            )
        elif op == "break-glass":
            try:
                open_access(
                    work,
                    actor=actor(work, persona),
                    patient_id=patient_id,
                    mode=EmergencyMode.BREAK_GLASS,
                    reason="urgence vitale, patient inconscient",
                )
            except Exception:
                return
        elif op == "expire":
            past = work.now - dt.timedelta(seconds=1)
            work.session.execute(
                sa.update(EmergencyAccess)
                .where(EmergencyAccess.record_id == uuid.UUID(patient_id), EmergencyAccess.actor_key == f"pro:{idnat}")
                .values(expires_at=past)
            )
            work.session.execute(
                sa.update(AccessGrant)
                .where(
                    AccessGrant.record_id == uuid.UUID(patient_id),
                    AccessGrant.subject_value == idnat,
                    AccessGrant.kind == "authorization",
                )
                .values(end=past)
            )
        elif op in ("oppose-btg", "allow-btg", "allow-masked"):
            kind = "emergency-masked" if op == "allow-masked" else "emergency-break-glass"
            consents.create(
                work,
                actor=SYSTEM_ACTOR,
                resource=consent(patient_id, kind, None, provision="deny" if op == "oppose-btg" else "permit"),
            )


def check(runtime: Runtime, patient_id: str, doc_ids: list[str]) -> None:
    with runtime.read() as work:
        record = records.get_record(work, patient_id)
        assert record is not None
        entries = {
            e.id: e
            for e in work.session.scalars(
                sa.select(DocumentEntry).where(DocumentEntry.record_id == record.id, DocumentEntry.id.in_(doc_ids))
            )
        }
        blocked = set(
            work.session.scalars(
                sa.select(AccessGrant.subject_value).where(
                    AccessGrant.record_id == record.id, AccessGrant.kind == "block", AccessGrant.active.is_(True)
                )
            )
        )
        live_authorizations = set(
            work.session.scalars(
                sa.select(AccessGrant.subject_value).where(
                    AccessGrant.record_id == record.id,
                    AccessGrant.active.is_(True),
                    sa.or_(AccessGrant.end.is_(None), AccessGrant.end > work.now),
                )
            )
        )
        for persona in (*POOL, *OUTSIDERS, "dr_medioni"):
            who = actor(work, persona)
            permitted = {
                doc_id
                for doc_id, entry in entries.items()
                if decide(work, who, Action.DOCUMENT_READ, record, DocumentFacts.of(entry)).permit
            }
            page = finder.search_documents(
                work, actor=who, query=DocumentQuery(patient_id=patient_id, ids=doc_ids, count=100)
            )
            found = {str(orjson.loads(body)["id"]) for body in page.matches}
            assert found == permitted, (persona, found, permitted)
            assert page.total == len(permitted)
            if persona in OUTSIDERS or BY_KEY[persona].idnat in blocked:
                assert permitted == set(), persona
            has_emergency = work.session.scalar(
                sa.select(sa.func.count())
                .select_from(EmergencyAccess)
                .where(
                    EmergencyAccess.record_id == record.id,
                    EmergencyAccess.actor_key == f"pro:{BY_KEY[persona].idnat}",
                    EmergencyAccess.expires_at > work.now,
                )
            )
            if persona in POOL and BY_KEY[persona].idnat not in live_authorizations and not has_emergency:
                # no live grant of any kind and no emergency: nothing (the documents are dr_medioni's)
                assert permitted == set(), persona


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(steps=operations)
def test_no_sequence_of_decisions_leaks_a_document(runtime: Runtime, steps: list[tuple[str, str, int]]) -> None:
    patient_id, doc_ids, _ = setup_record(runtime)
    grants: dict[tuple[str, str], str] = {}
    for step in steps:
        apply(runtime, patient_id, doc_ids, step, grants)
    # Every prefix of a sequence is a sequence hypothesis tries too: checking the end state suffices.
    check(runtime, patient_id, doc_ids)
