"""A trace as a FHIR R4 ``AuditEvent``, in the shapes of IHE BALP (Basic Audit Log Patterns).

=====================  ==========================  =====================================  ======
trace action           type                        subtype                                action
=====================  ==========================  =====================================  ======
record.create          rest                        create                                 C
record.lookup          rest                        search-type                            E
record.read            rest                        read                                   R
record.close / reopen  rest                        operation + Carnet record-close/-reopen U
record.announce        rest                        create + Carnet record-announce        C
record.open / oppose   rest                        operation + Carnet record-open/-oppose U
record.purge           rest                        delete + Carnet record-purge           D
document.search        rest                        search-type                            E
document.read          rest                        read (history-instance for histories)  R
document.retrieve      rest                        read                                   R
document.create        rest                        create                                 C
document.replace       rest                        create + Carnet replace                C
document.update        rest                        update                                 U
document.delete        rest                        delete                                 D
list.search / read     rest                        search-type / read                     E / R
consent.create         rest                        create                                 C
consent.revoke         rest                        delete                                 D
consent.read           rest                        read                                   R
emergency.access       rest                        operation + Carnet emergency-access    E
audit.read             rest                        search-type                            E
auth.login / failure   DCM 110114 User Auth.       DCM 110122 Login + Carnet login(-failure) E
auth.logout            DCM 110114                  DCM 110123 Logout + Carnet logout      E
auth.activation        DCM 110114                  Carnet activation                      E
auth.password-reset    DCM 110114                  Carnet password-reset                  E
auth.token             DCM 110114                  ITI-71 Get Access Token + Carnet token E
record.export          DCM 110106 Export           Carnet export                          R
admin                  DCM 110100 App. Activity    Carnet admin                           E
=====================  ==========================  =====================================  ======

Agents: the user (``requestor``; the professional with their IdNat_PS and profession as ``role``, or
the patient, or the account), the client software (DICOM Source Role ID) and Carnet (Destination Role
ID). ``source``: Carnet, the interface as ``site``. Entities: the Patient, the resource with its
version, the query (base64) of a search, the request id (BALP ``XrequestId``). Emergencies carry
``purposeOfEvent`` BTG (break-glass) or ETREAT (regulation), with the reason as its text for readers
allowed to see it. ``outcome``: 0 success, 4 refused or failed. Names are the directory's, now.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from carnet.audit import labels
from carnet.audit.service import Reader, TraceView
from carnet.audit.trace import Outcome, TraceAction
from carnet.directory.service import G15, R01
from carnet.fhirtypes import CARNET_CANONICAL, JSON, format_instant
from carnet.terminology import terminology

AUDIT_EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL = "http://hl7.org/fhir/restful-interaction"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
IHE_EVENT = "urn:ihe:event-type-code"
CARNET_SUBTYPE = f"{CARNET_CANONICAL}/CodeSystem/audit-event-subtype"
ACTION_CODES = "http://hl7.org/fhir/audit-event-action"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
ROLE_CLASS = "http://terminology.hl7.org/CodeSystem/v3-RoleClass"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
BALP_ENTITY = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"
BALP = "https://profiles.ihe.net/ITI/BALP/StructureDefinition"
IDNAT_PS = "urn:oid:1.2.250.1.71.4.2.1"
SID_ACTOR = f"{CARNET_CANONICAL}/sid/actor"
SID_CLIENT = f"{CARNET_CANONICAL}/sid/client"
SID_EMERGENCY = f"{CARNET_CANONICAL}/sid/emergency-access"
EXT_ACCESS_MODE = f"{CARNET_CANONICAL}/StructureDefinition/audit-access-mode"
EXT_ACCESS_BASIS = f"{CARNET_CANONICAL}/StructureDefinition/audit-access-basis"


def _coding(system: str, code: str, display: str | None = None) -> JSON:
    coding: JSON = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return coding


REST = _coding(AUDIT_EVENT_TYPE, "rest", "Restful Operation")
USER_AUTHENTICATION = _coding(DCM, "110114", "User Authentication")
EXPORT = _coding(DCM, "110106", "Export")
APPLICATION_ACTIVITY = _coding(DCM, "110100", "Application Activity")


def _rest(code: str) -> JSON:
    return _coding(RESTFUL, code, code)


def _carnet(code: str) -> JSON:
    return _coding(CARNET_SUBTYPE, code)


@dataclass(frozen=True, slots=True)
class Shape:
    type: JSON
    subtypes: tuple[JSON, ...]
    action: str  # C R U D E
    profile: str | None = None  # the BALP profile, for REST interactions about a patient


SHAPES: dict[str, Shape] = {
    TraceAction.RECORD_CREATE: Shape(REST, (_rest("create"),), "C", "IHE.BasicAudit.PatientCreate"),
    TraceAction.RECORD_LOOKUP: Shape(REST, (_rest("search-type"),), "E", "IHE.BasicAudit.PatientQuery"),
    TraceAction.RECORD_READ: Shape(REST, (_rest("read"),), "R", "IHE.BasicAudit.PatientRead"),
    TraceAction.RECORD_CLOSE: Shape(REST, (_rest("operation"), _carnet("record-close")), "U"),
    TraceAction.RECORD_REOPEN: Shape(REST, (_rest("operation"), _carnet("record-reopen")), "U"),
    TraceAction.RECORD_ANNOUNCE: Shape(
        REST, (_rest("create"), _carnet("record-announce")), "C", "IHE.BasicAudit.PatientCreate"
    ),
    TraceAction.RECORD_OPEN: Shape(REST, (_rest("operation"), _carnet("record-open")), "U"),
    TraceAction.RECORD_OPPOSE: Shape(REST, (_rest("operation"), _carnet("record-oppose")), "U"),
    TraceAction.RECORD_PURGE: Shape(REST, (_rest("delete"), _carnet("record-purge")), "D"),
    TraceAction.DOCUMENT_SEARCH: Shape(REST, (_rest("search-type"),), "E", "IHE.BasicAudit.PatientQuery"),
    TraceAction.DOCUMENT_READ: Shape(REST, (_rest("read"),), "R", "IHE.BasicAudit.PatientRead"),
    TraceAction.DOCUMENT_RETRIEVE: Shape(REST, (_rest("read"),), "R", "IHE.BasicAudit.PatientRead"),
    TraceAction.DOCUMENT_CREATE: Shape(REST, (_rest("create"),), "C", "IHE.BasicAudit.PatientCreate"),
    TraceAction.DOCUMENT_REPLACE: Shape(
        REST, (_rest("create"), _carnet("replace")), "C", "IHE.BasicAudit.PatientCreate"
    ),
    TraceAction.DOCUMENT_UPDATE: Shape(REST, (_rest("update"),), "U", "IHE.BasicAudit.PatientUpdate"),
    TraceAction.DOCUMENT_DELETE: Shape(REST, (_rest("delete"),), "D", "IHE.BasicAudit.PatientDelete"),
    TraceAction.LIST_SEARCH: Shape(REST, (_rest("search-type"),), "E", "IHE.BasicAudit.PatientQuery"),
    TraceAction.LIST_READ: Shape(REST, (_rest("read"),), "R", "IHE.BasicAudit.PatientRead"),
    TraceAction.CONSENT_CREATE: Shape(REST, (_rest("create"),), "C", "IHE.BasicAudit.PatientCreate"),
    TraceAction.CONSENT_REVOKE: Shape(REST, (_rest("delete"),), "D", "IHE.BasicAudit.PatientDelete"),
    TraceAction.CONSENT_READ: Shape(REST, (_rest("read"),), "R", "IHE.BasicAudit.PatientRead"),
    TraceAction.EMERGENCY_ACCESS: Shape(REST, (_rest("operation"), _carnet("emergency-access")), "E"),
    TraceAction.AUDIT_READ: Shape(REST, (_rest("search-type"),), "E"),
    TraceAction.LOGIN: Shape(USER_AUTHENTICATION, (_coding(DCM, "110122", "Login"), _carnet("login")), "E"),
    TraceAction.LOGIN_FAILURE: Shape(
        USER_AUTHENTICATION, (_coding(DCM, "110122", "Login"), _carnet("login-failure")), "E"
    ),
    TraceAction.LOGOUT: Shape(USER_AUTHENTICATION, (_coding(DCM, "110123", "Logout"), _carnet("logout")), "E"),
    TraceAction.ACCOUNT_ACTIVATION: Shape(USER_AUTHENTICATION, (_carnet("activation"),), "E"),
    TraceAction.PASSWORD_RESET: Shape(USER_AUTHENTICATION, (_carnet("password-reset"),), "E"),
    TraceAction.TOKEN_ISSUED: Shape(
        USER_AUTHENTICATION, (_coding(IHE_EVENT, "ITI-71", "Get Access Token"), _carnet("token")), "E"
    ),
    TraceAction.EXPORT: Shape(EXPORT, (_carnet("export"),), "R"),
    TraceAction.ADMIN: Shape(APPLICATION_ACTIVITY, (_carnet("admin"),), "E"),
}
OUTCOMES = {Outcome.SUCCESS.value: "0", Outcome.DENIED.value: "4", Outcome.FAILURE.value: "4"}
OUTCOME_CODES = {"0": (Outcome.SUCCESS.value,), "4": (Outcome.DENIED.value, Outcome.FAILURE.value), "8": (), "12": ()}
PURPOSES = {"break-glass": ("BTG", "break the glass"), "regulation": ("ETREAT", "Emergency Treatment")}


def _matches(coding: JSON, system: str | None, code: str) -> bool:
    return bool(coding["code"] == code and (system is None or coding["system"] == system))


def actions_for(
    *,
    types: list[tuple[str | None, str]] | None = None,
    subtypes: list[tuple[str | None, str]] | None = None,
    codes: list[str] | None = None,
) -> frozenset[str] | None:
    """The trace actions a search's ``type``, ``subtype`` and ``action`` select (None: no restriction)."""
    selected: set[str] | None = None
    if types:
        chosen = {a for a, s in SHAPES.items() if any(_matches(s.type, sy, c) for sy, c in types)}
        selected = chosen
    if subtypes:
        chosen = {a for a, s in SHAPES.items() if any(_matches(st, sy, c) for st in s.subtypes for sy, c in subtypes)}
        selected = chosen if selected is None else selected & chosen
    if codes:
        chosen = {a for a, s in SHAPES.items() if s.action in codes}
        selected = chosen if selected is None else selected & chosen
    return None if selected is None else frozenset(str(a) for a in selected)


def _reference(kind: str, ident: str, version: object) -> JSON:
    if kind == "EmergencyAccess":
        return {"identifier": {"system": SID_EMERGENCY, "value": ident}}
    return {"reference": f"{kind}/{ident}/_history/{version}" if version else f"{kind}/{ident}"}


def _user(view: TraceView, names: labels.Names, reader: Reader, shape: Shape) -> JSON:
    trace = view.trace
    kind = str(trace.get("actor_kind") or "")
    idnat = trace.get("professional")
    if kind in ("patient", "legal-representative"):
        agent_type = (
            _coding(ROLE_CLASS, "PAT", "patient") if kind == "patient" else _coding(ROLE_CLASS, "AGNT", "agent")
        )
    elif shape.action in ("R", "E"):
        agent_type = _coding(PARTICIPATION, "IRCP", "information recipient")
    else:
        agent_type = _coding(ROLE_CLASS, "AGNT", "agent")
    who: JSON
    if idnat:
        who = {"identifier": {"system": IDNAT_PS, "value": str(idnat)}}
        display = names.professional(str(idnat), str(trace.get("profession") or "") or None)
        if display:
            who["display"] = display
    elif kind == "patient" and view.record_id and not str(trace.get("actor_key", "")).startswith("unknown:"):
        who = {
            "reference": f"Patient/{view.record_id}",
            "identifier": {"system": SID_ACTOR, "value": trace["actor_key"]},
        }
    else:
        who = {"identifier": {"system": SID_ACTOR, "value": str(trace.get("actor_key"))}}
        if kind in ("system", "operator", "auditor"):
            who["display"] = {"system": "Carnet", "operator": "Carnet operator", "auditor": "Carnet auditor"}[kind]
    agent: JSON = {"type": {"coding": [agent_type]}, "who": who, "requestor": True}
    roles = []
    if trace.get("profession"):
        profession = str(trace["profession"])
        coding = terminology().professions.codes.get(profession)
        roles.append({"coding": [_coding(G15, profession, coding.display if coding else None)]})
    if trace.get("specialty"):
        roles.append({"coding": [_coding(R01, str(trace["specialty"]))]})
    if roles:
        agent["role"] = roles
    extensions = []
    if trace.get("access_mode"):
        extensions.append({"url": EXT_ACCESS_MODE, "valueCode": trace["access_mode"]})
    if trace.get("basis"):
        extensions.append({"url": EXT_ACCESS_BASIS, "valueString": trace["basis"]})
    if extensions:
        agent["extension"] = extensions
    if trace.get("source") and reader.sees_network(trace) and not trace.get("client_id"):
        agent["network"] = {"address": trace["source"], "type": "2"}
    return agent


def _client(view: TraceView, names: labels.Names, reader: Reader) -> JSON:
    trace = view.trace
    client_id = trace.get("client_id")
    if client_id:
        who: JSON = {"identifier": {"system": SID_CLIENT, "value": str(client_id)}}
        if names.clients.get(str(client_id)):
            who["display"] = names.clients[str(client_id)]
    else:
        who = {"display": f"{trace.get('interface', 'internal')} client"}
    agent: JSON = {"type": {"coding": [_coding(DCM, "110153", "Source Role ID")]}, "who": who, "requestor": False}
    if trace.get("source") and reader.sees_network(trace):
        agent["network"] = {"address": trace["source"], "type": "2"}
    return agent


def to_resource(view: TraceView, names: labels.Names, reader: Reader, base_url: str) -> JSON:
    """The AuditEvent of one trace, for this reader."""
    trace = view.trace
    action = view.action
    shape = SHAPES.get(action) or SHAPES[TraceAction.ADMIN]
    subtypes = list(shape.subtypes)
    if action == TraceAction.DOCUMENT_READ.value and trace.get("detail") == "history":
        subtypes = [_rest("history-instance")]
    event: JSON = {
        "resourceType": "AuditEvent",
        "id": view.id,
        "meta": {"lastUpdated": format_instant(view.at)},
        "type": shape.type,
        "subtype": subtypes,
        "action": shape.action,
        "recorded": format_instant(view.at),
        "outcome": OUTCOMES.get(str(trace.get("outcome")), "4"),
    }
    if shape.profile and view.record_id:
        event["meta"]["profile"] = [f"{BALP}/{shape.profile}"]
    if trace.get("outcome") != Outcome.SUCCESS.value:
        event["outcomeDesc"] = str(trace.get("detail") or trace.get("outcome"))
    mode = trace.get("access_mode")
    if mode in PURPOSES:
        code, display = PURPOSES[str(mode)]
        purpose: JSON = {"coding": [_coding(ACT_REASON, code, display)]}
        if view.reason:
            purpose["text"] = view.reason
        event["purposeOfEvent"] = [purpose]
    event["agent"] = [
        _user(view, names, reader, shape),
        _client(view, names, reader),
        {
            "type": {"coding": [_coding(DCM, "110152", "Destination Role ID")]},
            "who": {"display": "Carnet"},
            "requestor": False,
            "network": {"address": base_url, "type": "5"},
        },
    ]
    event["source"] = {
        "site": str(trace.get("interface") or "internal"),
        "observer": {"display": "Carnet"},
        "type": [_coding(SOURCE_TYPE, "4", "Application Server")],
    }
    entities: list[JSON] = []
    if view.record_id:
        entities.append(
            {
                "what": {"reference": f"Patient/{view.record_id}"},
                "type": _coding(ENTITY_TYPE, "1", "Person"),
                "role": _coding(OBJECT_ROLE, "1", "Patient"),
            }
        )
    kind, ident = trace.get("resource_type"), trace.get("resource_id")
    if kind and ident and not (kind == "Patient" and ident == view.record_id):
        entity: JSON = {
            "what": _reference(str(kind), str(ident), trace.get("resource_version")),
            "type": _coding(ENTITY_TYPE, "2", "System Object"),
            "role": _coding(OBJECT_ROLE, "4", "Domain Resource"),
        }
        entities.append(entity)
    details = trace.get("detail") if reader.sees_details(trace) and trace.get("outcome") == "success" else None
    if details or (action == TraceAction.ADMIN.value and trace.get("reason")):
        target = entities[-1] if entities else None
        detail_value = str(details or trace.get("reason"))
        if target is None:
            target = {
                "type": _coding(ENTITY_TYPE, "2", "System Object"),
                "role": _coding(OBJECT_ROLE, "4", "Domain Resource"),
            }
            entities.append(target)
        target["detail"] = [{"type": "carnet-detail", "valueString": detail_value}]
    if trace.get("query") and reader.sees_details(trace):
        entities.append(
            {
                "type": _coding(ENTITY_TYPE, "2", "System Object"),
                "role": _coding(OBJECT_ROLE, "24", "Query"),
                "query": base64.b64encode(str(trace["query"]).encode()).decode(),
            }
        )
    if trace.get("request_id"):
        entities.append(
            {"what": {"identifier": {"value": str(trace["request_id"])}}, "type": _coding(BALP_ENTITY, "XrequestId")}
        )
    if entities:
        event["entity"] = entities
    return event
