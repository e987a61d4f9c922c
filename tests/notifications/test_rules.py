"""The notification rules (reference/dmp.md §4): who is told of what, and who is not.

Traces are built by hand and applied inside a unit of work, as the runtime does; what the rules wrote
(notices in the notification centre, deliveries in the outbox) is then read back from the database.
"""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from carnet.audit.trace import Outcome, Trace, TraceAction
from carnet.auth.actor import Actor
from carnet.notifications.models import NotificationEvent, ProfessionalAccess
from carnet.notifications.rules import NotificationRules
from carnet.runtime import Runtime
from tests.conftest import Api
from tests.notifications.support import (
    account_key,
    account_trace,
    apply,
    holder,
    idnat,
    other_trace,
    pro_trace,
    representative,
    set_practitioner_email,
    unique_email,
    without_rules,
    written,
)

FIRST = "professional-first-access"
EMERGENCY = "emergency-access"
ADDED = "document-added"
REPLACED = "document-replaced"
CONSENT = "consent-changed"


def _patient(api: Api) -> str:
    patient_id, _, _ = api.new_patient(team=())
    return patient_id


def _document(api: Api, patient_id: str, *, flags: int = 0) -> str:
    """A document entry of the record with these visibility flags (only the flags matter to the rules)."""
    from carnet.documents.models import DocumentEntry
    from carnet.records.models import Record

    doc_id = uuid.uuid4().hex
    with api.runtime.work() as work:
        record = work.session.get(Record, uuid.UUID(patient_id))
        assert record is not None
        now = work.now
        work.session.add(
            DocumentEntry(
                record_id=record.id,
                id=doc_id,
                version=1,
                status="current",
                type_code="11488-4",
                class_code="10",
                confidentiality="N",
                flags=flags,
                date=now,
                binary_id=uuid.uuid4().hex,
                content_type="application/pdf",
                size=1,
                author_key=f"pro:{idnat('dr_lambert')}",
                created_at=now,
                last_updated=now,
            )
        )
    return doc_id


# ---------------------------------------------------------------------------------------- first access
def test_first_access_of_a_professional_tells_the_patient_and_representatives_once(
    api: Api, runtime: Runtime, rules: NotificationRules
) -> None:
    patient_id = _patient(api)
    record = uuid.UUID(patient_id)
    patient = holder(runtime, patient_id, email=unique_email())
    parent = representative(runtime, patient_id)

    apply(runtime, rules, pro_trace(TraceAction.RECORD_READ, record), pro_trace(TraceAction.DOCUMENT_SEARCH, record))
    apply(runtime, rules, pro_trace(TraceAction.DOCUMENT_READ, record))  # a second access: nothing more

    found = written(runtime, patient_id)
    assert found.told(account_key(patient)) == [FIRST]
    assert found.told(account_key(parent)) == [FIRST]
    assert found.sent(account_key(patient)) == [("email", FIRST)]  # e-mail: the patient gave an address
    assert found.sent(account_key(parent)) == []  # in-app only: no address
    with runtime.work() as work:
        row = work.session.get(ProfessionalAccess, (record, idnat("dr_blanc")))
        assert row is not None
        assert row.action == "record.read"


def test_each_professional_has_their_own_first_access(api: Api, runtime: Runtime, rules: NotificationRules) -> None:
    patient_id = _patient(api)
    record = uuid.UUID(patient_id)
    patient = holder(runtime, patient_id)
    apply(runtime, rules, pro_trace(TraceAction.RECORD_READ, record, "dr_blanc"))
    apply(runtime, rules, pro_trace(TraceAction.RECORD_READ, record, "dr_girard"))
    # Software acting for a professional is that professional's access.
    apply(runtime, rules, pro_trace(TraceAction.DOCUMENT_READ, record, "dr_noir", kind="software"))
    assert written(runtime, patient_id).told(account_key(patient)) == [FIRST, FIRST, FIRST]


@pytest.mark.parametrize(
    ("action", "outcome"),
    [
        (TraceAction.RECORD_LOOKUP, Outcome.SUCCESS),  # learning that a record exists is not opening it
        (TraceAction.RECORD_READ, Outcome.DENIED),  # refused: no access happened
    ],
)
def test_lookups_and_refusals_are_not_accesses(
    api: Api, runtime: Runtime, rules: NotificationRules, action: TraceAction, outcome: Outcome
) -> None:
    patient_id = _patient(api)
    patient = holder(runtime, patient_id)
    trace = pro_trace(action, uuid.UUID(patient_id), outcome=outcome)
    assert rules.pending([trace]) is False
    apply(runtime, rules, trace)
    assert written(runtime, patient_id).told(account_key(patient)) == []
    with runtime.work() as work:
        assert work.session.get(ProfessionalAccess, (uuid.UUID(patient_id), idnat("dr_blanc"))) is None


def test_the_patients_own_reads_notify_nobody(api: Api, runtime: Runtime, rules: NotificationRules) -> None:
    patient_id = _patient(api)
    patient = holder(runtime, patient_id)
    parent = representative(runtime, patient_id)
    traces = [
        account_trace(TraceAction.RECORD_READ, uuid.UUID(patient_id), patient),
        account_trace(TraceAction.DOCUMENT_READ, uuid.UUID(patient_id), parent, kind="legal-representative"),
    ]
    assert rules.pending(traces) is False
    apply(runtime, rules, *traces)
    assert written(runtime, patient_id).recipients == set()


def test_pending_knows_committed_accesses_without_the_database(
    api: Api, runtime: Runtime, rules: NotificationRules
) -> None:
    patient_id = _patient(api)
    record = uuid.UUID(patient_id)
    read = pro_trace(TraceAction.DOCUMENT_READ, record, "dr_girard")
    assert rules.pending([read]) is True
    # Rolled back: the access did not happen, the pair is not remembered.
    with pytest.raises(RuntimeError, match="fails"):
        _apply_then_fail(runtime, rules, read)
    assert rules.pending([read]) is True
    apply(runtime, rules, read)
    assert rules.pending([read]) is False  # known once committed
    assert rules.pending([pro_trace(TraceAction.DOCUMENT_READ, record, "dr_blanc")]) is True
    # A fresh process learns it from the database (the row exists), and remembers it.
    fresh = NotificationRules(runtime.settings)
    assert fresh.pending([read]) is True
    apply(runtime, fresh, read)
    assert fresh.pending([read]) is False
    assert len(written(runtime, patient_id).events) == 0  # no account: nobody to tell, nothing written


def _apply_then_fail(runtime: Runtime, rules: NotificationRules, trace: Trace) -> None:
    with runtime.work() as work:
        rules.apply(work, [trace])
        raise RuntimeError("the unit of work fails")


def test_a_first_access_that_is_itself_notified_is_told_once(
    api: Api, runtime: Runtime, rules: NotificationRules
) -> None:
    patient_id = _patient(api)
    record = uuid.UUID(patient_id)
    patient = holder(runtime, patient_id)
    doc = _document(api, patient_id)
    apply(runtime, rules, pro_trace(TraceAction.DOCUMENT_CREATE, record, "dr_lambert", resource_id=doc))
    assert written(runtime, patient_id).told(account_key(patient)) == [ADDED]
    # … but the professional is now known: their next read is no first access.
    apply(runtime, rules, pro_trace(TraceAction.DOCUMENT_READ, record, "dr_lambert"))
    assert written(runtime, patient_id).told(account_key(patient)) == [ADDED]


def test_concurrent_first_accesses_notify_once(api: Api, runtime: Runtime) -> None:
    """Two processes (two rule sets, two transactions) see the same professional's first access."""
    patient_id = _patient(api)
    patient = holder(runtime, patient_id)
    read = pro_trace(TraceAction.RECORD_READ, uuid.UUID(patient_id), "dr_roux")
    apply(runtime, NotificationRules(runtime.settings), read)
    apply(runtime, NotificationRules(runtime.settings), read)
    assert written(runtime, patient_id).told(account_key(patient)) == [FIRST]


# ---------------------------------------------------------------------------------------- emergency
def test_emergency_access_tells_patient_representatives_and_medecin_traitant(
    api: Api, runtime: Runtime, rules: NotificationRules
) -> None:
    patient_id = _patient(api)
    api.declare("dr_medioni", patient_id, "medecin-traitant")
    set_practitioner_email(runtime, "dr_medioni", "stephane.medioni@medecin.mssante.fr")
    patient = holder(runtime, patient_id, email=unique_email(), phone="06 11 22 33 44", channels={"sms": True})
    parent = representative(runtime, patient_id, email=unique_email())
    try:
        apply(
            runtime,
            rules,
            pro_trace(TraceAction.EMERGENCY_ACCESS, uuid.UUID(patient_id), "dr_haddad", access_mode="break-glass"),
        )
    finally:
        set_practitioner_email(runtime, "dr_medioni", None)
    found = written(runtime, patient_id)
    doctor = f"pro:{idnat('dr_medioni')}"
    assert found.told(account_key(patient)) == [EMERGENCY]
    assert found.told(account_key(parent)) == [EMERGENCY]
    assert found.told(doctor) == [EMERGENCY]
    assert found.sent(account_key(patient)) == [("email", EMERGENCY), ("sms", EMERGENCY)]
    assert found.sent(account_key(parent)) == [("email", EMERGENCY)]
    assert found.sent(doctor) == [("email", EMERGENCY)]
    assert {role for r, role, _ in found.inbox if r == doctor} == {"medecin-traitant"}
    assert [params["mode"] for kind, params in found.events if kind == EMERGENCY] == ["break-glass"]


def test_emergency_notices_cannot_be_turned_off(api: Api, runtime: Runtime, rules: NotificationRules) -> None:
    """Every topic off, every channel off: an emergency access still reaches every known address."""
    patient_id = _patient(api)
    address = unique_email()
    patient = holder(
        runtime,
        patient_id,
        email=address,
        phone="+33611223344",
        channels={"email": False, "sms": False},
        topics={"professional-access": False, "documents": False, "consents": False, "record": False},
    )
    record = uuid.UUID(patient_id)
    apply(runtime, rules, pro_trace(TraceAction.RECORD_READ, record, "dr_noir"))  # opted out: nothing
    apply(runtime, rules, pro_trace(TraceAction.EMERGENCY_ACCESS, record, "dr_regul", access_mode="regulation"))
    found = written(runtime, patient_id)
    assert found.told(account_key(patient)) == [EMERGENCY]
    assert found.sent(account_key(patient)) == [("email", EMERGENCY), ("sms", EMERGENCY)]
    assert [params["mode"] for kind, params in found.events] == ["regulation"]


def test_the_medecin_traitant_is_not_told_of_their_own_emergency_access(
    api: Api, runtime: Runtime, rules: NotificationRules
) -> None:
    patient_id = _patient(api)
    api.declare("dr_medioni", patient_id, "medecin-traitant")
    patient = holder(runtime, patient_id)
    apply(runtime, rules, pro_trace(TraceAction.EMERGENCY_ACCESS, uuid.UUID(patient_id), "dr_medioni"))
    found = written(runtime, patient_id)
    assert found.told(account_key(patient)) == [EMERGENCY]
    assert found.told(f"pro:{idnat('dr_medioni')}") == []


def test_a_medecin_traitant_declared_twice_is_told_once(api: Api, runtime: Runtime, rules: NotificationRules) -> None:
    """Two active declarations of the same médecin traitant (found by the access property test): the
    emergency access is still recorded, and the doctor is told once, not refused as a duplicate."""
    patient_id = _patient(api)
    for _ in range(2):
        declared = api.declare("dr_medioni", patient_id, "medecin-traitant")
        assert declared.status_code in (200, 201), declared.text
    patient = holder(runtime, patient_id)
    apply(runtime, rules, pro_trace(TraceAction.EMERGENCY_ACCESS, uuid.UUID(patient_id), "dr_haddad"))
    found = written(runtime, patient_id)
    assert found.told(account_key(patient)) == [EMERGENCY]
    assert found.told(f"pro:{idnat('dr_medioni')}") == [EMERGENCY]


def test_a_revoked_medecin_traitant_is_not_told(api: Api, runtime: Runtime, rules: NotificationRules) -> None:
    patient_id = _patient(api)
    consent_id = api.declare("dr_medioni", patient_id, "medecin-traitant").json()["id"]
    revoked = api.delete(f"/fhir/Consent/{consent_id}", "dr_medioni")
    assert revoked.status_code == 200, revoked.text
    holder(runtime, patient_id)
    apply(runtime, rules, pro_trace(TraceAction.EMERGENCY_ACCESS, uuid.UUID(patient_id), "dr_haddad"))
    assert written(runtime, patient_id).told(f"pro:{idnat('dr_medioni')}") == []


# ---------------------------------------------------------------------------------------- documents
def test_a_professionals_deposit_is_told_to_the_patient_and_representatives(
    api: Api, runtime: Runtime, rules: NotificationRules
) -> None:
    patient_id = _patient(api)
    record = uuid.UUID(patient_id)
    patient = holder(runtime, patient_id, email=unique_email())
    parent = representative(runtime, patient_id)
    docs = [_document(api, patient_id) for _ in range(3)]
    replaced = _document(api, patient_id)
    apply(
        runtime,
        rules,
        *(pro_trace(TraceAction.DOCUMENT_CREATE, record, "dr_lambert", resource_id=d) for d in docs),
        pro_trace(TraceAction.DOCUMENT_REPLACE, record, "dr_lambert", resource_id=replaced, detail="replaces:x"),
    )
    found = written(runtime, patient_id)
    assert found.told(account_key(patient)) == [ADDED, REPLACED]  # one notice per kind, not one per document
    assert found.told(account_key(parent)) == [ADDED, REPLACED]
    counts = {kind: params["count"] for kind, params in found.events}
    assert counts == {ADDED: 3, REPLACED: 1}
    assert found.sent(account_key(patient)) == [("email", ADDED), ("email", REPLACED)]


def test_the_patients_own_deposit_notifies_nobody(api: Api, runtime: Runtime, rules: NotificationRules) -> None:
    patient_id = _patient(api)
    patient = holder(runtime, patient_id, email=unique_email())
    representative(runtime, patient_id, email=unique_email())
    doc = _document(api, patient_id)
    apply(runtime, rules, account_trace(TraceAction.DOCUMENT_CREATE, uuid.UUID(patient_id), patient, resource_id=doc))
    assert written(runtime, patient_id).recipients == set()


def test_a_representatives_deposit_is_told_to_the_others_only(
    api: Api, runtime: Runtime, rules: NotificationRules
) -> None:
    patient_id = _patient(api)
    patient = holder(runtime, patient_id)
    mother = representative(runtime, patient_id)
    father = representative(runtime, patient_id)
    doc = _document(api, patient_id)
    apply(
        runtime,
        rules,
        account_trace(
            TraceAction.DOCUMENT_CREATE, uuid.UUID(patient_id), mother, kind="legal-representative", resource_id=doc
        ),
    )
    found = written(runtime, patient_id)
    assert found.told(account_key(mother)) == []  # never told of one's own action
    assert found.told(account_key(father)) == [ADDED]
    assert found.told(account_key(patient)) == [ADDED]
    assert [params["actor"] for _, params in found.events] == ["representative"]


def test_documents_a_recipient_may_not_see_are_not_told(api: Api, runtime: Runtime, rules: NotificationRules) -> None:
    patient_id = _patient(api)
    record = uuid.UUID(patient_id)
    patient = holder(runtime, patient_id)
    parent = representative(runtime, patient_id)
    hidden_from_all = _document(api, patient_id, flags=2)  # INVISIBLE_PATIENT (until announced)
    hidden_from_parents = _document(api, patient_id, flags=4)  # INVISIBLE_REPRESENTANTS_LEGAUX
    apply(runtime, rules, pro_trace(TraceAction.DOCUMENT_CREATE, record, "dr_lambert", resource_id=hidden_from_all))
    assert written(runtime, patient_id).recipients == set()
    apply(runtime, rules, pro_trace(TraceAction.DOCUMENT_CREATE, record, "dr_lambert", resource_id=hidden_from_parents))
    found = written(runtime, patient_id)
    assert found.told(account_key(patient)) == [ADDED]
    assert found.told(account_key(parent)) == []


def test_a_document_made_visible_is_news_to_those_who_could_not_see_it(
    api: Api, runtime: Runtime, rules: NotificationRules
) -> None:
    patient_id = _patient(api)
    record = uuid.UUID(patient_id)
    patient = holder(runtime, patient_id)
    parent = representative(runtime, patient_id)
    announced = _document(api, patient_id, flags=0)  # the flags after the PATCH
    apply(
        runtime,
        rules,
        pro_trace(
            TraceAction.DOCUMENT_UPDATE, record, "dr_lambert", resource_id=announced, detail="-INVISIBLE_PATIENT"
        ),
    )
    found = written(runtime, patient_id)
    assert found.told(account_key(patient)) == [ADDED]
    assert found.told(account_key(parent)) == [ADDED]
    # Other PATCHes (masking, archiving) tell nobody.
    other = pro_trace(TraceAction.DOCUMENT_UPDATE, record, "dr_lambert", resource_id=announced, detail="+MASQUE_PS")
    assert rules.pending([other]) is False
    apply(runtime, rules, other)
    assert len(written(runtime, patient_id).inbox) == 2


# ---------------------------------------------------------------------------------------- consents
def test_consent_changes_by_a_professional_are_told_to_the_patient(
    api: Api, runtime: Runtime, rules: NotificationRules
) -> None:
    patient_id = _patient(api)
    patient = holder(runtime, patient_id, email=unique_email())
    apply(
        runtime,
        rules,
        pro_trace(
            TraceAction.CONSENT_CREATE,
            uuid.UUID(patient_id),
            "dent_petit",
            resource_id="c1",
            detail=f"care-team permit {idnat('dent_petit')}",
        ),
    )
    found = written(runtime, patient_id)
    assert found.told(account_key(patient)) == [CONSENT]
    assert found.sent(account_key(patient)) == [("email", CONSENT)]
    assert [(p["consent"], p["change"]) for _, p in found.events] == [("care-team", "create")]


def test_the_patients_own_consent_changes_are_told_to_representatives_only(
    api: Api, runtime: Runtime, rules: NotificationRules
) -> None:
    patient_id = _patient(api)
    record = uuid.UUID(patient_id)
    patient = holder(runtime, patient_id)
    parent = representative(runtime, patient_id)
    apply(
        runtime,
        rules,
        account_trace(TraceAction.CONSENT_CREATE, record, patient, resource_id="a", detail="block deny 810008456781"),
        account_trace(
            TraceAction.CONSENT_REVOKE, record, patient, resource_id="b", detail="emergency-break-glass deny"
        ),
    )
    found = written(runtime, patient_id)
    assert found.told(account_key(patient)) == []
    assert found.told(account_key(parent)) == [CONSENT, CONSENT]  # one notice per decision
    assert sorted((p["consent"], p["change"]) for _, p in found.events) == [
        ("block", "create"),
        ("emergency-break-glass", "revoke"),
    ]


# ---------------------------------------------------------------------------------------- record lifecycle
def test_record_creation_is_told_at_the_patient_resources_address(api: Api, runtime: Runtime) -> None:
    """Before the patient has an account, the opening is told to the Patient's e-mail (or mobile)."""
    from tests import factories

    ins, system = factories.random_ins()
    resource = factories.patient_resource(ins, system)
    address = unique_email("new")
    resource["telecom"] = [
        {"system": "phone", "value": "0611223344", "use": "mobile"},
        {"system": "email", "value": address},
    ]
    resource["communication"] = [{"language": {"coding": [{"code": "en"}]}, "preferred": True}]
    rules = NotificationRules(runtime.settings)
    with without_rules(runtime).work() as work:
        from carnet.records import service as records

        record = records.create_record(work, actor=_operator(), patient=resource)
        rules.apply(work, [other_trace(TraceAction.RECORD_CREATE, record.id, kind="operator", key="operator:ops")])
    found = written(runtime, record.id)
    recipient = f"patient:{record.id}"
    assert found.sent(recipient) == [("email", "record-created")]  # e-mail preferred over SMS, not both
    assert found.inbox == []  # no account, no notification centre
    with runtime.work() as work:
        from carnet.notifications.models import NotificationDelivery

        language = work.session.scalar(
            sa.select(NotificationDelivery.language).where(NotificationDelivery.recipient == recipient)
        )
    assert language == "en"


def _operator() -> Actor:
    from carnet.auth.actor import SYSTEM_ACTOR

    return SYSTEM_ACTOR


def test_record_closure_is_told_to_everyone_but_who_closed_it(
    api: Api, runtime: Runtime, rules: NotificationRules
) -> None:
    patient_id = _patient(api)
    record = uuid.UUID(patient_id)
    patient = holder(runtime, patient_id)
    parent = representative(runtime, patient_id)
    apply(runtime, rules, account_trace(TraceAction.RECORD_CLOSE, record, patient))
    found = written(runtime, patient_id)
    assert found.told(account_key(patient)) == []
    assert found.told(account_key(parent)) == ["record-closed"]


# ---------------------------------------------------------------------------------------- preferences
def test_topics_turned_off_are_not_told_and_channels_follow_preferences(
    api: Api, runtime: Runtime, rules: NotificationRules
) -> None:
    patient_id = _patient(api)
    record = uuid.UUID(patient_id)
    quiet = holder(runtime, patient_id, email=unique_email(), topics={"professional-access": False})
    sms_only = representative(
        runtime, patient_id, email=unique_email(), phone="+33700000001", channels={"email": False, "sms": True}
    )
    apply(runtime, rules, pro_trace(TraceAction.RECORD_READ, record, "dr_girard"))
    apply(
        runtime,
        rules,
        pro_trace(TraceAction.DOCUMENT_CREATE, record, "dr_lambert", resource_id=_document(api, patient_id)),
    )
    found = written(runtime, patient_id)
    assert found.told(account_key(quiet)) == [ADDED]
    assert found.sent(account_key(quiet)) == [("email", ADDED)]
    assert found.told(account_key(sms_only)) == [ADDED, FIRST]
    assert found.sent(account_key(sms_only)) == [("sms", ADDED), ("sms", FIRST)]


def test_inactive_accounts_are_not_told(api: Api, runtime: Runtime, rules: NotificationRules) -> None:
    from carnet.accounts.models import Account

    patient_id = _patient(api)
    patient = holder(runtime, patient_id)
    with runtime.work() as work:
        account = work.session.get(Account, patient)
        assert account is not None
        account.active = False
    apply(runtime, rules, pro_trace(TraceAction.RECORD_READ, uuid.UUID(patient_id), "dr_girard"))
    assert written(runtime, patient_id).recipients == set()


def test_events_hold_no_names_or_content(api: Api, runtime: Runtime, rules: NotificationRules) -> None:
    patient_id = _patient(api)
    holder(runtime, patient_id)
    doc = _document(api, patient_id)
    apply(runtime, rules, pro_trace(TraceAction.DOCUMENT_CREATE, uuid.UUID(patient_id), "dr_lambert", resource_id=doc))
    with runtime.work() as work:
        params = work.session.scalars(
            sa.select(NotificationEvent.params).where(NotificationEvent.record_id == uuid.UUID(patient_id))
        ).all()
    assert params
    assert all(doc not in p and "LAMBERT" not in p for p in params)
