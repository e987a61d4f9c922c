"""Property-based checks of the access policy (hypothesis), on both databases.

Random sequences of what changes access run on a minor's record (two legal representatives): the
patient's or a representative's decisions (authorizing a professional or an organisation, revoking,
blocking, unblocking, designating an administrator, the three emergency preferences), professionals'
declarations (care team, médecin traitant, withdrawing one's care-team declaration), emergency accesses
(break-glass, regulation), expiries (of authorizations and emergencies) and document flags (MASQUE_PS set
by the author or by the patient side, INVISIBLE_PATIENT, INVISIBLE_REPRESENTANTS_LEGAUX).

``Model`` restates the rules of docs/access.md independently of the policy. It predicts whether each step
is accepted, and each step is asserted accepted or refused as predicted; at the end it predicts which
documents each reader may read. For every kind of reader (professionals of every profession, software
acting for one, the author, the patient, both representatives, the insurer's feed, the operator):

* the per-document decision (``decide``) is the model's;
* locating each document as reads, retrievals and changes do (``documents.permitted``: the context is
  loaded with the document, not by ``context_for``) agrees with it;
* a search (the SQL filter) returns exactly the documents the decision permits, and its total counts them.

So no sequence lets a blocked professional, an expired grant, the insurer or the operator read anything the
rules do not allow.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carnet.access import Action, DocumentFacts, decide
from carnet.access.emergency import open_access
from carnet.access.models import AccessGrant, EmergencyAccess, EmergencyMode
from carnet.accounts import service as accounts
from carnet.accounts.models import AccountKind
from carnet.auth.actor import SYSTEM_ACTOR, Actor
from carnet.auth.authenticate import resolve
from carnet.consents import service as consents
from carnet.demo.personas import BY_KEY, ORGANIZATIONS, token_claims
from carnet.documents import search as finder
from carnet.documents import service as documents
from carnet.documents.models import DocumentEntry
from carnet.documents.schemas import DocumentQuery
from carnet.errors import CarnetError, Forbidden, Invalid, NotFound
from carnet.records import service as records
from carnet.runtime import Runtime, Work
from carnet.terminology.valuesets import CONFIDENTIALITY_FLAGS
from tests import factories

# About 40 s (SQLite) and 55 s (PostgreSQL) on a shared 2-core machine; more with the variable.
MAX_EXAMPLES = int(os.environ.get("CARNET_TEST_PROPERTY_EXAMPLES", "120"))

# The professionals whose relationship the steps change (dr_lambert's is also his software's).
POOL = (
    "dr_blanc",
    "dr_girard",
    "dr_haddad",
    "dr_regul",
    "dr_lambert",
    "ph_didot",
    "inf_moreau",
    "dent_petit",
    "as_leroy",
)
AUTHOR = "dr_medioni"  # deposits every document (from his own practice: nobody of the pool works there)
SOFTWARE = {"dpi_saint_roch": "dr_lambert"}
OUTSIDERS = ("cnam_feed", "ops_admin")
PEOPLE = ("patient", "rep1", "rep2")  # the minor and her two legal representatives
READERS = (*POOL, *SOFTWARE, AUTHOR, *OUTSIDERS, *PEOPLE)
DOCTORS = frozenset({"dr_blanc", "dr_girard", "dr_haddad", "dr_regul", "dr_lambert"})
SAMU = frozenset({"dr_regul"})  # médecins régulateurs (practice setting SAMU_SMUR)
ORG_IDNAT = {org.key: org.idnat for org in ORGANIZATIONS}


def organization(persona: str) -> str:
    return ORG_IDNAT[BY_KEY[persona].organization or ""]


A05 = "https://mos.esante.gouv.fr/NOS/TRE_A05-TypeDocComplementaire/FHIR/TRE-A05-TypeDocComplementaire"
DOC_KINDS = {
    "report": ("11488-4", factories.LOINC, "10"),
    "psychiatric": ("68599-0", factories.LOINC, "11"),
    "social": ("28653-4", factories.LOINC, "10"),
    "residence": ("ATTEST-RESID", A05, "95"),
}
KINDS = tuple(DOC_KINDS)
# The habilitation matrix on these types (the shipped file): doctors read all but the residence
# certificate; pharmacists and nurses, of these, the report; dentists not the psychiatric synthesis;
# social workers social documents only.
MATRIX: dict[str, frozenset[str]] = {
    **{p: frozenset({"report", "psychiatric", "social"}) for p in DOCTORS},
    "ph_didot": frozenset({"report"}),
    "inf_moreau": frozenset({"report"}),
    "dent_petit": frozenset({"report", "social"}),
    "as_leroy": frozenset({"social"}),
}
MASQUE_PS = CONFIDENTIALITY_FLAGS["MASQUE_PS"]
INVISIBLE_PATIENT = CONFIDENTIALITY_FLAGS["INVISIBLE_PATIENT"]
INVISIBLE_REPRESENTANTS = CONFIDENTIALITY_FLAGS["INVISIBLE_REPRESENTANTS_LEGAUX"]
FLAG_OPS = {
    "mask": ("MASQUE_PS", True),
    "unmask": ("MASQUE_PS", False),
    "hide-from-patient": ("INVISIBLE_PATIENT", True),
    "reveal-to-patient": ("INVISIBLE_PATIENT", False),
    "hide-from-representatives": ("INVISIBLE_REPRESENTANTS_LEGAUX", True),
    "reveal-to-representatives": ("INVISIBLE_REPRESENTANTS_LEGAUX", False),
}
PREFERENCES = {
    "oppose-break-glass": ("emergency-break-glass", False),
    "allow-break-glass": ("emergency-break-glass", True),
    "oppose-regulation": ("emergency-regulation", False),
    "allow-regulation": ("emergency-regulation", True),
    "allow-masked-in-emergency": ("emergency-masked", True),
    "deny-masked-in-emergency": ("emergency-masked", False),
}
OPERATIONS = (
    "authorize",
    "authorize-organisation",
    "revoke",
    "block",
    "unblock",
    "administrator",
    "care-team",
    "leave-care-team",
    "medecin-traitant",
    "break-glass",
    "regulation",
    "expire",
    "patient-mask",
    "patient-unmask",
    "representative-mask",
    *FLAG_OPS,
    *PREFERENCES,
)
# (operation, professional it is about, a number choosing the document or who of the patient side decides)
Step = tuple[str, str, int]


FLAG_BITS = (MASQUE_PS, INVISIBLE_PATIENT, INVISIBLE_REPRESENTANTS)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[int], list[Step]]:
    """The flags the author deposits each document with, a few professionals (so that steps about the same
    one meet), then steps about them."""
    flags = draw(
        st.lists(st.lists(st.sampled_from(FLAG_BITS), unique=True).map(sum), min_size=len(KINDS), max_size=len(KINDS))
    )
    cast = draw(st.lists(st.sampled_from(POOL), min_size=1, max_size=3, unique=True))
    step = st.tuples(st.sampled_from(OPERATIONS), st.sampled_from(cast), st.integers(min_value=0, max_value=11))
    return flags, draw(st.lists(step, min_size=4, max_size=24))


# ------------------------------------------------------------------------------------------ the model


@dataclass
class Model:
    """The state that decides access, as docs/access.md describes it."""

    kinds: list[str]  # the type of each document
    flags: list[int]
    authorized: set[str] = field(default_factory=set)
    organisations: set[str] = field(default_factory=set)
    blocked: set[str] = field(default_factory=set)
    administrators: set[str] = field(default_factory=set)
    care_team: set[str] = field(default_factory=set)
    medecins_traitants: set[str] = field(default_factory=set)
    emergencies: dict[str, set[str]] = field(default_factory=dict)  # live modes per professional
    break_glass: bool = True  # the patient's emergency preferences, with their defaults
    regulation: bool = True
    masked_in_emergency: bool = False

    def emergency(self, pro: str) -> bool:
        """A live emergency access the patient's preferences allow (re-checked at every access)."""
        modes = self.emergencies.get(pro, set())
        return ("break-glass" in modes and self.break_glass) or ("regulation" in modes and self.regulation)

    def reads(self, reader: str) -> set[int]:
        docs = range(len(self.kinds))
        if reader in OUTSIDERS:
            return set()
        if reader == "patient":
            return {d for d in docs if not self.flags[d] & INVISIBLE_PATIENT}
        if reader in PEOPLE:
            return {d for d in docs if not self.flags[d] & (INVISIBLE_PATIENT | INVISIBLE_REPRESENTANTS)}
        if reader == AUTHOR:
            return set(docs)
        pro = SOFTWARE.get(reader, reader)
        if pro in self.blocked:
            return set()
        privileged = pro in self.medecins_traitants or pro in self.administrators
        ordinary = (
            privileged or pro in self.authorized or organization(pro) in self.organisations or pro in self.care_team
        )
        emergency = self.emergency(pro)
        if not (ordinary or emergency):
            return set()
        readable = set()
        for d in docs:
            if not privileged and self.kinds[d] not in MATRIX[pro]:
                continue
            if self.flags[d] & MASQUE_PS and not privileged and not (emergency and self.masked_in_emergency):
                continue  # nobody of the pool works in the author's organisation
            readable.add(d)
        return readable


# ------------------------------------------------------------------------------------------ the record


@dataclass
class Stage:
    patient_id: str
    record_id: uuid.UUID
    doc_ids: list[str]
    people: dict[str, uuid.UUID]  # "patient", "rep1", "rep2" → account id
    grants: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (kind, who) → consent ids


_PERSONAS: dict[str, Actor] = {}  # the demo personas do not change: resolved once per process


def actor(work: Work, who: str, stage: Stage | None = None) -> Actor:
    if stage is not None and who in stage.people:
        return resolve(work, {"sub": f"account:{stage.people[who]}"})
    if who not in _PERSONAS:
        subject, extra = token_claims(BY_KEY[who])
        _PERSONAS[who] = resolve(work, {"sub": subject, **extra})
    return _PERSONAS[who]


def setup_record(runtime: Runtime, flags: list[int]) -> Stage:
    """A 14-year-old's record with her account, two legal representatives and one document of each kind,
    deposited by the author with ``flags``."""
    ins, system = factories.random_ins()
    with runtime.work() as work:
        patient = factories.patient_resource(ins, system, attest=False, birth_date="2012-05-14")
        record = records.create_record(work, actor=SYSTEM_ACTOR, patient=patient)
        label = uuid.uuid4().hex[:12]
        people = {
            "patient": accounts.create_account(
                work, kind=AccountKind.PATIENT, label=f"minor-{label}", record_id=record.id
            ).id
        }
        for rep, relationship in (("rep1", "MTH"), ("rep2", "FTH")):
            account = accounts.create_account(work, kind=AccountKind.REPRESENTATIVE, label=f"{rep}-{label}")
            accounts.add_representation(work, account_id=account.id, record_id=record.id, relationship=relationship)
            people[rep] = account.id
        author = actor(work, AUTHOR)
        doc_ids = []
        for kind, bits in zip(KINDS, flags, strict=True):
            type_code, type_system, class_code = DOC_KINDS[kind]
            labels = tuple(code for code, bit in CONFIDENTIALITY_FLAGS.items() if bits & bit)
            resource = factories.docref(
                ins, system, type_code=type_code, type_system=type_system, class_code=class_code, flags=labels
            )
            data = base64.b64decode(resource["content"][0]["attachment"].pop("data"))
            doc_ids.append(documents.publish(work, actor=author, resource=resource, data=data).id)
    return Stage(str(record.id), record.id, doc_ids, people)


def _consent(
    stage: Stage, kind: str, idnat: str | None, *, permit: bool = True, system: str = factories.IDNAT_PS
) -> Any:
    resource = factories.consent(
        stage.patient_id,
        kind,
        provision="permit" if permit else "deny",
        idnat=idnat,
        system=system,
        masked_label=kind == "emergency-masked",
    )
    return resource


def _revoke_all(work: Work, stage: Stage, kind: str, who: str, by: Actor) -> None:
    for consent_id in stage.grants[(kind, who)]:
        consents.revoke(work, actor=by, consent_id=consent_id)
    del stage.grants[(kind, who)]  # reached only if every revocation succeeded (else the unit rolls back)


def expected_refusal(model: Model, step: Step) -> type[CarnetError] | None:
    """The refusal the rules predict for a step, or None when it must succeed."""
    op, pro, number = step
    doc = number % len(model.kinds)
    if op in ("care-team", "break-glass", "regulation", "medecin-traitant") and pro in model.blocked:
        return Forbidden  # a blocked professional declares nothing and opens no emergency access
    if op == "medecin-traitant" and pro not in DOCTORS:
        return Invalid  # only a doctor can be the médecin traitant
    if op == "break-glass" and not model.break_glass:
        return Forbidden  # the patient opposed
    if op == "regulation" and (not model.regulation or pro not in SAMU):
        return Forbidden  # the patient opposed, or not a médecin régulateur
    if op == "leave-care-team" and pro in model.blocked:
        return NotFound  # blocked: the Consents of the record are hidden from them
    if op in ("patient-mask", "patient-unmask") and model.flags[doc] & INVISIBLE_PATIENT:
        return NotFound  # the patient does not see the document
    if op == "representative-mask" and model.flags[doc] & (INVISIBLE_PATIENT | INVISIBLE_REPRESENTANTS):
        return NotFound
    return None


def perform(runtime: Runtime, stage: Stage, step: Step) -> None:
    """Run one step in its own unit of work (a refusal rolls it back); raise what the service raised."""
    op, pro, number = step
    idnat = BY_KEY[pro].idnat
    decider = PEOPLE[number % len(PEOPLE)]  # who of the patient side decides
    doc_id = stage.doc_ids[number % len(stage.doc_ids)]
    with runtime.work() as work:
        person = actor(work, decider, stage)
        if op in ("authorize", "block", "administrator"):
            kind = {"authorize": "authorization", "block": "block", "administrator": "administrator"}[op]
            consent_id, _ = consents.create(
                work, actor=person, resource=_consent(stage, kind, idnat, permit=op != "block")
            )
            stage.grants.setdefault((kind, pro), []).append(consent_id)
        elif op == "authorize-organisation":
            resource = _consent(stage, "authorization", organization(pro), system=factories.IDNAT_STRUCT)
            consent_id, _ = consents.create(work, actor=person, resource=resource)
            stage.grants.setdefault(("organisation", organization(pro)), []).append(consent_id)
        elif op in ("revoke", "unblock"):
            _revoke_all(work, stage, "authorization" if op == "revoke" else "block", pro, person)
        elif op in ("care-team", "medecin-traitant"):
            consent_id, _ = consents.create(work, actor=actor(work, pro), resource=_consent(stage, op, idnat))
            stage.grants.setdefault((op, pro), []).append(consent_id)
        elif op == "leave-care-team":
            _revoke_all(work, stage, "care-team", pro, actor(work, pro))
        elif op in ("break-glass", "regulation"):
            mode = EmergencyMode.BREAK_GLASS if op == "break-glass" else EmergencyMode.REGULATION
            open_access(
                work,
                actor=actor(work, pro),
                patient_id=stage.patient_id,
                mode=mode,
                reason="urgence vitale, inconsciente",
            )
        elif op == "expire":  # time passes for this professional: their authorizations and emergencies end
            past = work.now - dt.timedelta(seconds=1)
            work.session.execute(
                sa.update(EmergencyAccess)
                .where(EmergencyAccess.record_id == stage.record_id, EmergencyAccess.actor_key == f"pro:{idnat}")
                .values(expires_at=past)
            )
            work.session.execute(
                sa.update(AccessGrant)
                .where(
                    AccessGrant.record_id == stage.record_id,
                    AccessGrant.kind == "authorization",
                    AccessGrant.subject_value.in_([idnat, organization(pro)]),
                )
                .values(end=past)
            )
        elif op in ("patient-mask", "patient-unmask", "representative-mask"):
            who = actor(work, "patient" if op.startswith("patient") else "rep1", stage)
            documents.set_flag(work, actor=who, doc_id=doc_id, flag="MASQUE_PS", on=op != "patient-unmask")
        elif op in FLAG_OPS:
            flag, on = FLAG_OPS[op]
            documents.set_flag(work, actor=actor(work, AUTHOR), doc_id=doc_id, flag=flag, on=on)
        elif op in PREFERENCES:
            kind, permit = PREFERENCES[op]
            consents.create(work, actor=person, resource=_consent(stage, kind, None, permit=permit))


def update(model: Model, step: Step) -> None:
    """What an accepted step changes, in the model."""
    op, pro, number = step
    doc = number % len(model.kinds)
    if op == "authorize":
        model.authorized.add(pro)
    elif op == "authorize-organisation":
        model.organisations.add(organization(pro))
    elif op == "revoke":
        model.authorized.discard(pro)
    elif op == "block":
        model.blocked.add(pro)
    elif op == "unblock":
        model.blocked.discard(pro)
    elif op == "administrator":
        model.administrators.add(pro)
    elif op == "care-team":
        model.care_team.add(pro)
    elif op == "leave-care-team":
        model.care_team.discard(pro)
    elif op == "medecin-traitant":
        model.medecins_traitants.add(pro)
    elif op in ("break-glass", "regulation"):
        model.emergencies.setdefault(pro, set()).add(op)
    elif op == "expire":
        model.authorized.discard(pro)
        model.organisations.discard(organization(pro))
        model.emergencies.pop(pro, None)
    elif op in ("patient-mask", "representative-mask"):
        model.flags[doc] |= MASQUE_PS
    elif op == "patient-unmask":
        model.flags[doc] &= ~MASQUE_PS
    elif op in FLAG_OPS:
        flag, on = FLAG_OPS[op]
        bit = CONFIDENTIALITY_FLAGS[flag]
        model.flags[doc] = model.flags[doc] | bit if on else model.flags[doc] & ~bit
    elif op in PREFERENCES:
        kind, permit = PREFERENCES[op]
        attribute = {
            "emergency-break-glass": "break_glass",
            "emergency-regulation": "regulation",
            "emergency-masked": "masked_in_emergency",
        }[kind]
        setattr(model, attribute, permit)


def apply(runtime: Runtime, stage: Stage, model: Model, step: Step) -> None:
    """Run a step and check that it was accepted, or refused as the rules say."""
    op, pro, _ = step
    withdrawn = {"revoke": "authorization", "unblock": "block", "leave-care-team": "care-team"}
    if op in withdrawn and (withdrawn[op], pro) not in stage.grants:
        return  # nothing to withdraw: the step does nothing
    refusal = expected_refusal(model, step)
    if refusal is not None:
        with pytest.raises(refusal):
            perform(runtime, stage, step)
        return
    perform(runtime, stage, step)
    update(model, step)


# ------------------------------------------------------------------------------------------ the check


def check(runtime: Runtime, stage: Stage, model: Model) -> None:
    with runtime.read() as work:
        record = records.get_record(work, stage.patient_id)
        assert record is not None
        entries = {
            e.id: e
            for e in work.session.scalars(
                sa.select(DocumentEntry).where(
                    DocumentEntry.record_id == record.id, DocumentEntry.id.in_(stage.doc_ids)
                )
            )
        }
        assert [
            entries[d].flags & (MASQUE_PS | INVISIBLE_PATIENT | INVISIBLE_REPRESENTANTS) for d in stage.doc_ids
        ] == model.flags
        for reader in READERS:
            who = actor(work, reader, stage)
            expected = {stage.doc_ids[d] for d in model.reads(reader)}
            decided = {
                doc_id
                for doc_id, entry in entries.items()
                if decide(work, who, Action.DOCUMENT_READ, record, DocumentFacts.of(entry)).permit
            }
            assert decided == expected, (reader, "decide", model)
            served = set()
            for doc_id in stage.doc_ids:
                try:  # loads the context with the document, as reads, retrievals and changes do
                    documents.permitted(work, actor=who, doc_id=doc_id, actions=())
                except NotFound:
                    continue
                served.add(doc_id)
            assert served == expected, (reader, "located", model)
            page = finder.search_documents(
                work, actor=who, query=DocumentQuery(patient_id=stage.patient_id, ids=stage.doc_ids, count=100)
            )
            found = {str(orjson.loads(body)["id"]) for body in page.matches}
            assert found == decided, (reader, "search", model)
            assert page.total == len(decided)


@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=scenarios())
def test_no_sequence_of_decisions_leaks_a_document(runtime: Runtime, scenario: tuple[list[int], list[Step]]) -> None:
    flags, steps = scenario
    stage = setup_record(runtime, flags)
    model = Model(kinds=list(KINDS), flags=list(flags))
    for step in steps:
        apply(runtime, stage, model, step)
    # Every prefix of a sequence is a sequence hypothesis tries too: checking the end state suffices.
    check(runtime, stage, model)
