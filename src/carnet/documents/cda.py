"""CDA R2 header reading, hardened against hostile XML.

The parser resolves no entities, loads no DTD, never touches the network and refuses any document
that carries a DOCTYPE at all (the vector of XXE and "billion laughs"): a CDA document has no use
for one. Only the header is read; the body is left alone except for the media type of an
unstructured (level 1) body.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

from lxml import etree

from carnet.errors import Invalid, IssueCode, Problem

HL7 = "urn:hl7-org:v3"
NS = {"h": HL7}
INS_OIDS = ("1.2.250.1.213.1.4.8", "1.2.250.1.213.1.4.9", "1.2.250.1.213.1.4.10", "1.2.250.1.213.1.4.11")
IDNAT_PS_OID = "1.2.250.1.71.4.2.1"
IDNAT_STRUCT_OID = "1.2.250.1.71.4.2.2"


@dataclass(frozen=True, slots=True)
class CdaCode:
    code: str
    code_system: str | None
    display: str | None


@dataclass(frozen=True, slots=True)
class CdaId:
    root: str
    extension: str | None

    @property
    def unique_id(self) -> str:
        """The XDS uniqueId form: ``root`` or ``root^extension``."""
        return f"{self.root}^{self.extension}" if self.extension else self.root


@dataclass(slots=True)
class CdaHeader:
    """The parts of a CDA header that must agree with the XDS/MHD metadata."""

    document_id: CdaId | None = None
    code: CdaCode | None = None
    title: str | None = None
    effective_time: dt.datetime | None = None
    confidentiality: str | None = None
    language: str | None = None
    set_id: CdaId | None = None
    version_number: int | None = None
    patient_ids: list[CdaId] = field(default_factory=list)
    author_ids: list[CdaId] = field(default_factory=list)
    author_org_ids: list[CdaId] = field(default_factory=list)
    facility_type: CdaCode | None = None
    practice_setting: CdaCode | None = None
    service_start: dt.datetime | None = None
    service_stop: dt.datetime | None = None
    parent_document_ids: list[CdaId] = field(default_factory=list)
    non_xml_media_type: str | None = None
    template_ids: list[str] = field(default_factory=list)

    @property
    def ins_ids(self) -> list[CdaId]:
        return [i for i in self.patient_ids if i.root in INS_OIDS]

    @property
    def author_idnats(self) -> list[str]:
        return [i.extension for i in self.author_ids if i.root == IDNAT_PS_OID and i.extension]


_TS = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.\d+)?([+-]\d{4})?$")


def parse_ts(value: str | None) -> dt.datetime | None:
    """An HL7 v3 TS (``YYYYMMDDHHMMSS+ZZZZ``, any precision) as an aware datetime (UTC if no zone)."""
    if not value:
        return None
    match = _TS.match(value.strip())
    if not match:
        raise ValueError(f"{value!r} is not an HL7 timestamp")
    year, month, day, hour, minute, second, zone = match.groups()
    tz = dt.UTC
    if zone:
        sign = 1 if zone[0] == "+" else -1
        tz = dt.timezone(sign * dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5])))
    return dt.datetime(
        int(year), int(month or 1), int(day or 1), int(hour or 0), int(minute or 0), int(second or 0), tzinfo=tz
    )


def _id(element: etree._Element | None) -> CdaId | None:
    if element is None or element.get("root") is None:
        return None
    return CdaId(element.get("root", ""), element.get("extension"))


def _code(element: etree._Element | None) -> CdaCode | None:
    if element is None or element.get("code") is None:
        return None
    return CdaCode(element.get("code", ""), element.get("codeSystem"), element.get("displayName"))


def _first(root: etree._Element, path: str) -> etree._Element | None:
    found = root.xpath(path, namespaces=NS)
    return found[0] if isinstance(found, list) and found and isinstance(found[0], etree._Element) else None


def _all(root: etree._Element, path: str) -> list[etree._Element]:
    found = root.xpath(path, namespaces=NS)
    return [e for e in found if isinstance(e, etree._Element)] if isinstance(found, list) else []


_DECLARATIONS = re.compile(rb"<!\s*(doctype|entity)", re.IGNORECASE)


def parse_xml_safely(data: bytes, where: str) -> etree._Element:
    """Parse XML bytes with every dangerous feature off; refuse any DOCTYPE."""
    if _DECLARATIONS.search(data):
        raise Invalid.at(where, "XML documents with a DOCTYPE or entity declarations are refused", IssueCode.SECURITY)
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )
    try:
        root = etree.fromstring(data, parser=parser)
    except etree.XMLSyntaxError as exc:
        raise Invalid.at(where, f"the XML content is not well-formed: {exc.msg}") from exc
    docinfo = root.getroottree().docinfo
    if getattr(docinfo, "doctype", "") or docinfo.internalDTD is not None:
        raise Invalid.at(where, "XML documents with a DOCTYPE are refused", IssueCode.SECURITY)
    return root


def read_header(data: bytes, where: str) -> CdaHeader:
    """Read the header of a CDA R2 document; raise ``Invalid`` (located at ``where``) if it is not one."""
    root = parse_xml_safely(data, where)
    if root.tag != f"{{{HL7}}}ClinicalDocument":
        raise Invalid.at(where, "XML content must be a CDA R2 ClinicalDocument (namespace urn:hl7-org:v3)")
    header = CdaHeader()
    problems: list[Problem] = []

    def ts(path: str) -> dt.datetime | None:
        element = _first(root, path)
        if element is None:
            return None
        try:
            return parse_ts(element.get("value"))
        except ValueError as exc:
            problems.append(Problem(f"CDA {path}: {exc}", where))
            return None

    header.document_id = _id(_first(root, "h:id"))
    header.code = _code(_first(root, "h:code"))
    title = _first(root, "h:title")
    header.title = " ".join("".join(str(t) for t in title.itertext()).split()) if title is not None else None
    header.effective_time = ts("h:effectiveTime")
    conf = _first(root, "h:confidentialityCode")
    header.confidentiality = conf.get("code") if conf is not None else None
    lang = _first(root, "h:languageCode")
    header.language = lang.get("code") if lang is not None else None
    header.set_id = _id(_first(root, "h:setId"))
    version = _first(root, "h:versionNumber")
    if version is not None and version.get("value"):
        try:
            header.version_number = int(version.get("value", ""))
        except ValueError:
            problems.append(Problem("CDA versionNumber is not an integer", where))
    header.patient_ids = [i for e in _all(root, "h:recordTarget/h:patientRole/h:id") if (i := _id(e))]
    header.author_ids = [i for e in _all(root, "h:author/h:assignedAuthor/h:id") if (i := _id(e))]
    header.author_org_ids = [
        i for e in _all(root, "h:author/h:assignedAuthor/h:representedOrganization/h:id") if (i := _id(e))
    ]
    header.facility_type = _code(
        _first(root, "h:componentOf/h:encompassingEncounter/h:location/h:healthCareFacility/h:code")
    )
    header.practice_setting = _code(
        _first(
            root,
            "h:documentationOf/h:serviceEvent/h:performer/h:assignedEntity/"
            "h:representedOrganization/h:standardIndustryClassCode",
        )
    )
    header.service_start = ts("h:documentationOf/h:serviceEvent/h:effectiveTime/h:low")
    header.service_stop = ts("h:documentationOf/h:serviceEvent/h:effectiveTime/h:high")
    header.parent_document_ids = [i for e in _all(root, "h:relatedDocument/h:parentDocument/h:id") if (i := _id(e))]
    body = _first(root, "h:component/h:nonXMLBody/h:text")
    header.non_xml_media_type = body.get("mediaType") if body is not None else None
    header.template_ids = [e.get("root", "") for e in _all(root, "h:templateId")]
    if problems:
        raise Invalid("the CDA header is invalid", problems=problems)
    missing = [
        name
        for name, value in (
            ("id", header.document_id),
            ("code", header.code),
            ("effectiveTime", header.effective_time),
            ("recordTarget/patientRole/id", header.patient_ids),
        )
        if not value
    ]
    if missing:
        raise Invalid.at(where, f"the CDA header lacks {', '.join(missing)}", IssueCode.REQUIRED)
    return header
