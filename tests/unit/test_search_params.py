"""FHIR search parameters → document and list queries; date ranges; paging links of searchset bundles."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
from starlette.datastructures import URL, QueryParams

from carnet.config import Settings
from carnet.documents.schemas import DateFilter, TokenFilter
from carnet.errors import Invalid, IssueCode
from carnet.fhir.bundles import page_links
from carnet.fhir.search_params import document_query, list_query, parse_date

UTC = dt.UTC
PLUS2 = dt.timezone(dt.timedelta(hours=2))
INS_SYSTEM = "urn:oid:1.2.250.1.213.1.4.10"


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.upper().startswith("CARNET_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def settings() -> Settings:
    return Settings(env="test", default_page_size=20, max_page_size=100)


def q(*pairs: tuple[str, str]) -> QueryParams:
    return QueryParams(list(pairs))


PATIENT = ("patient", "Patient/p-1")


def invalid(call: Callable[[], object]) -> Invalid:
    with pytest.raises(Invalid) as caught:
        call()
    return caught.value


# ---------------------------------------------------------------- parse_date


@pytest.mark.parametrize(
    ("raw", "prefix", "start", "end"),
    [
        ("2026", "eq", dt.datetime(2026, 1, 1, tzinfo=UTC), dt.datetime(2027, 1, 1, tzinfo=UTC)),
        ("2026-03", "eq", dt.datetime(2026, 3, 1, tzinfo=UTC), dt.datetime(2026, 4, 1, tzinfo=UTC)),
        ("2026-12", "eq", dt.datetime(2026, 12, 1, tzinfo=UTC), dt.datetime(2027, 1, 1, tzinfo=UTC)),
        ("2028-02", "eq", dt.datetime(2028, 2, 1, tzinfo=UTC), dt.datetime(2028, 3, 1, tzinfo=UTC)),
        ("2026-03-15", "eq", dt.datetime(2026, 3, 15, tzinfo=UTC), dt.datetime(2026, 3, 16, tzinfo=UTC)),
        ("2026-12-31", "eq", dt.datetime(2026, 12, 31, tzinfo=UTC), dt.datetime(2027, 1, 1, tzinfo=UTC)),
        (
            "2026-03-15T10:30Z",
            "eq",
            dt.datetime(2026, 3, 15, 10, 30, tzinfo=UTC),
            dt.datetime(2026, 3, 15, 10, 31, tzinfo=UTC),
        ),
        (
            "2026-03-15T10:30+02:00",
            "eq",
            dt.datetime(2026, 3, 15, 10, 30, tzinfo=PLUS2),
            dt.datetime(2026, 3, 15, 10, 31, tzinfo=PLUS2),
        ),
        (
            "2026-03-15T10:30:15+02:00",
            "eq",
            dt.datetime(2026, 3, 15, 10, 30, 15, tzinfo=PLUS2),
            dt.datetime(2026, 3, 15, 10, 30, 16, tzinfo=PLUS2),
        ),
        (
            "2026-03-15T23:59:59Z",
            "eq",
            dt.datetime(2026, 3, 15, 23, 59, 59, tzinfo=UTC),
            dt.datetime(2026, 3, 16, 0, 0, 0, tzinfo=UTC),
        ),
        (
            "2026-03-15T10:30:15.250Z",
            "eq",
            dt.datetime(2026, 3, 15, 10, 30, 15, 250000, tzinfo=UTC),
            dt.datetime(2026, 3, 15, 10, 30, 15, 251000, tzinfo=UTC),
        ),
        ("ge2026-03", "ge", dt.datetime(2026, 3, 1, tzinfo=UTC), dt.datetime(2026, 4, 1, tzinfo=UTC)),
        ("lt2026-03-15", "lt", dt.datetime(2026, 3, 15, tzinfo=UTC), dt.datetime(2026, 3, 16, tzinfo=UTC)),
        ("eq2026", "eq", dt.datetime(2026, 1, 1, tzinfo=UTC), dt.datetime(2027, 1, 1, tzinfo=UTC)),
    ],
)
def test_parse_date_range_of_each_precision(raw: str, prefix: str, start: dt.datetime, end: dt.datetime) -> None:
    parsed = parse_date("date", raw)
    assert parsed == DateFilter(prefix, start, end)
    assert parsed.start.utcoffset() == start.utcoffset()


@pytest.mark.parametrize("prefix", ["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"])
def test_parse_date_accepts_every_fhir_prefix(prefix: str) -> None:
    parsed = parse_date("date", f"{prefix}2026-03-15")
    assert parsed.prefix == prefix
    assert parsed.start == dt.datetime(2026, 3, 15, tzinfo=UTC)


@pytest.mark.parametrize(
    "raw", ["", "eq", "yesterday", "2026/03/15", "15-03-2026", "gx2026", "2026-13", "2026-02-30", "2026-03-15T25:00Z"]
)
def test_parse_date_refuses_garbage_naming_the_parameter(raw: str) -> None:
    error = invalid(lambda: parse_date("period", raw))
    assert error.message.startswith(f"period={raw!r}")
    assert [(p.expression, p.code) for p in error.problems] == [("period", IssueCode.VALUE)]


# ---------------------------------------------------------------- document_query: patient, unknown parameters


def test_document_query_by_patient_id(settings: Settings) -> None:
    query = document_query(q(PATIENT), settings, lenient=False)
    assert query.patient_id == "p-1"
    assert query.patient_ins is None
    assert (query.count, query.offset) == (20, 0)
    assert query.sort_ascending is False
    assert query.archived is None
    assert query.include_subject is False
    assert query.revinclude_lists is False


@pytest.mark.parametrize(
    ("name", "value", "patient_id"),
    [
        ("patient", "p-1", "p-1"),
        ("patient", "Patient/p-1", "p-1"),
        ("patient", "https://dmp.example.fr/fhir/Patient/p-1", "p-1"),
        ("subject", "Patient/p-2", "p-2"),
    ],
)
def test_document_query_patient_reference_forms(name: str, value: str, patient_id: str, settings: Settings) -> None:
    assert document_query(q((name, value)), settings, lenient=False).patient_id == patient_id


@pytest.mark.parametrize("name", ["patient.identifier", "subject.identifier"])
def test_document_query_by_patient_ins(name: str, settings: Settings) -> None:
    query = document_query(q((name, f"{INS_SYSTEM}|279035121518989")), settings, lenient=False)
    assert query.patient_id is None
    assert query.patient_ins == (INS_SYSTEM, "279035121518989")


def test_document_query_by_bare_ins_has_no_system(settings: Settings) -> None:
    query = document_query(q(("patient.identifier", "279035121518989")), settings, lenient=False)
    assert query.patient_ins == (None, "279035121518989")


@pytest.mark.parametrize("params", [[], [("status", "current")], [("patient", "")]])
def test_document_query_requires_the_patient(params: list[tuple[str, str]], settings: Settings) -> None:
    error = invalid(lambda: document_query(q(*params), settings, lenient=False))
    assert "patient" in error.message
    assert [(p.expression, p.code) for p in error.problems] == [("patient", IssueCode.REQUIRED)]


def test_document_query_names_every_unknown_parameter(settings: Settings) -> None:
    params = q(PATIENT, ("foo", "1"), ("bar", "2"), ("patient:missing", "true"))
    error = invalid(lambda: document_query(params, settings, lenient=False))
    assert error.message == "unsupported search parameter(s): bar, foo, patient:missing"
    assert [(p.expression, p.code) for p in error.problems] == [
        ("bar", IssueCode.NOT_SUPPORTED),
        ("foo", IssueCode.NOT_SUPPORTED),
        ("patient:missing", IssueCode.NOT_SUPPORTED),
    ]


def test_document_query_ignores_unknown_parameters_when_lenient(settings: Settings) -> None:
    query = document_query(q(PATIENT, ("foo", "1")), settings, lenient=True)
    assert query.patient_id == "p-1"


def test_common_parameters_are_always_known(settings: Settings) -> None:
    params = q(PATIENT, ("_format", "json"), ("_total", "accurate"), ("_summary", "false"), ("_elements", "id"))
    assert document_query(params, settings, lenient=False).patient_id == "p-1"


# ---------------------------------------------------------------- document_query: filters


def test_document_query_tokens_and_lists(settings: Settings) -> None:
    params = q(
        PATIENT,
        ("_id", "a,b"),
        ("_id", "c"),
        ("status", "current,superseded"),
        ("type", "http://loinc.org|11488-4,11502-2"),
        ("category", "|10"),
        ("format", "urn:ihe:iti:xds-sd:pdf:2008"),
        ("facility", "SA07"),
        ("setting", "AMBULATOIRE"),
        ("security-label", "N"),
        ("identifier", "urn:ietf:rfc:3986|urn:uuid:1"),
        ("related", "urn:oid:1.2.3|x"),
        ("author", "Practitioner/1,PractitionerRole/2"),
        ("author.identifier", "urn:oid:1.2.250.1.71.4.2.1|810002422979"),
    )
    query = document_query(params, settings, lenient=False)
    assert query.ids == ["a", "b", "c"]
    assert query.statuses == ["current", "superseded"]
    assert query.types == [TokenFilter("http://loinc.org", "11488-4"), TokenFilter(None, "11502-2")]
    assert query.categories == [TokenFilter(None, "10")]
    assert query.formats == [TokenFilter(None, "urn:ihe:iti:xds-sd:pdf:2008")]
    assert query.facilities == [TokenFilter(None, "SA07")]
    assert query.settings == [TokenFilter(None, "AMBULATOIRE")]
    assert query.security_labels == [TokenFilter(None, "N")]
    assert query.identifiers == [TokenFilter("urn:ietf:rfc:3986", "urn:uuid:1")]
    assert query.related == [TokenFilter("urn:oid:1.2.3", "x")]
    assert query.authors == ["Practitioner/1", "PractitionerRole/2"]
    assert query.author_identifiers == [TokenFilter("urn:oid:1.2.250.1.71.4.2.1", "810002422979")]


@pytest.mark.parametrize("name", ["type", "category", "format", "security-label", "identifier"])
def test_document_query_token_without_code_is_refused(name: str, settings: Settings) -> None:
    error = invalid(lambda: document_query(q(PATIENT, (name, "http://loinc.org|")), settings, lenient=False))
    assert error.problems[0].expression == name
    assert error.problems[0].code is IssueCode.VALUE


@pytest.mark.parametrize("status", ["current", "superseded", "entered-in-error"])
def test_document_query_accepts_documentreference_statuses(status: str, settings: Settings) -> None:
    assert document_query(q(PATIENT, ("status", status)), settings, lenient=False).statuses == [status]


@pytest.mark.parametrize("status", ["deleted", "final", "Current", "current,archived"])
def test_document_query_refuses_other_statuses(status: str, settings: Settings) -> None:
    error = invalid(lambda: document_query(q(PATIENT, ("status", status)), settings, lenient=False))
    assert "is not a DocumentReference status" in error.message
    assert error.problems[0].expression == "status"


def test_document_query_dates_and_periods(settings: Settings) -> None:
    params = q(PATIENT, ("date", "ge2026-01"), ("date", "lt2026-03"), ("period", "2025"))
    query = document_query(params, settings, lenient=False)
    assert [(d.prefix, d.start.month) for d in query.dates] == [("ge", 1), ("lt", 3)]
    assert query.periods == [DateFilter("eq", dt.datetime(2025, 1, 1, tzinfo=UTC), dt.datetime(2026, 1, 1, tzinfo=UTC))]


@pytest.mark.parametrize(("raw", "archived"), [("true", True), ("false", False)])
def test_document_query_is_archived(raw: str, archived: bool, settings: Settings) -> None:
    assert document_query(q(PATIENT, ("isArchived", raw)), settings, lenient=False).archived is archived


@pytest.mark.parametrize("raw", ["yes", "True", "1", ""])
def test_document_query_is_archived_must_be_a_boolean(raw: str, settings: Settings) -> None:
    error = invalid(lambda: document_query(q(PATIENT, ("isArchived", raw)), settings, lenient=False))
    assert error.problems[0].expression == "isArchived"


@pytest.mark.parametrize(("sort", "ascending"), [("date", True), ("-date", False)])
def test_document_query_sort(sort: str, ascending: bool, settings: Settings) -> None:
    assert document_query(q(PATIENT, ("_sort", sort)), settings, lenient=False).sort_ascending is ascending


@pytest.mark.parametrize("sort", ["title", "-_lastUpdated", "date,-date", ""])
def test_document_query_refuses_other_sorts(sort: str, settings: Settings) -> None:
    error = invalid(lambda: document_query(q(PATIENT, ("_sort", sort)), settings, lenient=False))
    assert [(p.expression, p.code) for p in error.problems] == [("_sort", IssueCode.NOT_SUPPORTED)]


@pytest.mark.parametrize("include", ["DocumentReference:subject", "DocumentReference:patient"])
def test_document_query_include_subject(include: str, settings: Settings) -> None:
    assert document_query(q(PATIENT, ("_include", include)), settings, lenient=False).include_subject is True


@pytest.mark.parametrize("include", ["DocumentReference:author", "List:item", "*"])
def test_document_query_refuses_other_includes(include: str, settings: Settings) -> None:
    error = invalid(lambda: document_query(q(PATIENT, ("_include", include)), settings, lenient=False))
    assert include in error.message
    assert [(p.expression, p.code) for p in error.problems] == [("_include", IssueCode.NOT_SUPPORTED)]


def test_document_query_revinclude_lists(settings: Settings) -> None:
    assert document_query(q(PATIENT, ("_revinclude", "List:item")), settings, lenient=False).revinclude_lists


@pytest.mark.parametrize("revinclude", ["Provenance:target", "List:subject"])
def test_document_query_refuses_other_revincludes(revinclude: str, settings: Settings) -> None:
    error = invalid(lambda: document_query(q(PATIENT, ("_revinclude", revinclude)), settings, lenient=False))
    assert [(p.expression, p.code) for p in error.problems] == [("_revinclude", IssueCode.NOT_SUPPORTED)]


# ---------------------------------------------------------------- paging


@pytest.mark.parametrize(
    ("count", "offset", "expected"),
    [
        ("5", "0", (5, 0)),
        ("0", "40", (0, 40)),
        ("100", "10", (100, 10)),
        ("101", "0", (100, 0)),  # capped at max_page_size
        ("100000", "0", (100, 0)),
    ],
)
def test_document_query_paging(count: str, offset: str, expected: tuple[int, int], settings: Settings) -> None:
    query = document_query(q(PATIENT, ("_count", count), ("_offset", offset)), settings, lenient=False)
    assert (query.count, query.offset) == expected


def test_count_is_capped_by_the_configured_maximum() -> None:
    small = Settings(env="test", default_page_size=5, max_page_size=7)
    assert document_query(q(PATIENT), small, lenient=False).count == 5
    assert document_query(q(PATIENT, ("_count", "50")), small, lenient=False).count == 7
    assert list_query(q(PATIENT, ("_count", "50")), small, lenient=False).count == 7


@pytest.mark.parametrize(
    ("name", "value"), [("_count", "-1"), ("_offset", "-5"), ("_count", "ten"), ("_offset", "1.5")]
)
def test_document_query_refuses_bad_paging(name: str, value: str, settings: Settings) -> None:
    error = invalid(lambda: document_query(q(PATIENT, (name, value)), settings, lenient=False))
    assert error.problems[0].code is IssueCode.VALUE


# ---------------------------------------------------------------- list_query


def test_list_query(settings: Settings) -> None:
    params = q(
        ("patient.identifier", f"{INS_SYSTEM}|279035121518989"),
        ("code", "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes|submissionset,folder"),
        ("status", "current"),
        ("designationType", "http://snomed.info/sct|71388002"),
        ("identifier", "urn:ietf:rfc:3986|urn:uuid:9"),
        ("sourceId", "urn:oid:1.2.3"),
        ("source.identifier", "urn:oid:1.2.4"),
        ("date", "ge2026-10-01"),
        ("_include", "List:item"),
        ("_id", "l1,l2"),
        ("_count", "500"),
    )
    query = list_query(params, settings, lenient=False)
    assert query.patient_ins == (INS_SYSTEM, "279035121518989")
    # each comma-separated value is its own token: "folder" carries no system
    assert query.codes == [
        TokenFilter("https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes", "submissionset"),
        TokenFilter(None, "folder"),
    ]
    assert query.statuses == ["current"]
    assert query.designation_types == [TokenFilter("http://snomed.info/sct", "71388002")]
    assert query.identifiers == [TokenFilter("urn:ietf:rfc:3986", "urn:uuid:9")]
    assert query.source_ids == [TokenFilter(None, "urn:oid:1.2.3"), TokenFilter(None, "urn:oid:1.2.4")]
    assert query.dates[0].prefix == "ge"
    assert query.include_items is True
    assert query.ids == ["l1", "l2"]
    assert query.count == 100


def test_list_query_requires_the_patient(settings: Settings) -> None:
    error = invalid(lambda: list_query(q(("code", "folder")), settings, lenient=False))
    assert error.problems[0].code is IssueCode.REQUIRED


def test_list_query_refuses_document_only_parameters(settings: Settings) -> None:
    error = invalid(lambda: list_query(q(PATIENT, ("type", "11488-4"), ("_sort", "date")), settings, lenient=False))
    assert error.message == "unsupported search parameter(s): _sort, type"
    assert list_query(q(PATIENT, ("type", "11488-4")), settings, lenient=True).patient_id == "p-1"


def test_list_query_refuses_other_includes(settings: Settings) -> None:
    error = invalid(lambda: list_query(q(PATIENT, ("_include", "List:subject")), settings, lenient=False))
    assert error.problems[0].expression == "_include"


# ---------------------------------------------------------------- bundles.page_links

BASE = "https://dmp.example.fr/fhir/DocumentReference"


def _offsets(links: list[dict[str, str]]) -> dict[str, int]:
    out = {}
    for link in links:
        query = dict(parse_qsl(urlsplit(link["url"]).query))
        out[link["relation"]] = int(query.get("_offset", "0"))
    return out


@pytest.mark.parametrize(
    ("total", "offset", "count", "expected"),
    [
        (0, 0, 20, {"self": 0, "first": 0, "last": 0}),
        (5, 0, 20, {"self": 0, "first": 0, "last": 0}),
        (20, 0, 20, {"self": 0, "first": 0, "last": 0}),
        (21, 0, 20, {"self": 0, "first": 0, "next": 20, "last": 20}),
        (45, 20, 20, {"self": 20, "first": 0, "previous": 0, "next": 40, "last": 40}),
        (45, 40, 20, {"self": 40, "first": 0, "previous": 20, "last": 40}),
        (100, 50, 10, {"self": 50, "first": 0, "previous": 40, "next": 60, "last": 90}),
        (35, 5, 10, {"self": 5, "first": 0, "previous": 0, "next": 15, "last": 30}),
        (3, 0, 1, {"self": 0, "first": 0, "next": 1, "last": 2}),
    ],
)
def test_page_links_offsets(total: int, offset: int, count: int, expected: dict[str, int]) -> None:
    url = URL(f"{BASE}?patient=p-1&_count={count}" + (f"&_offset={offset}" if offset else ""))
    links = page_links(url, total, offset, count)
    assert [link["relation"] for link in links] == [
        r for r in ("self", "first", "previous", "next", "last") if r in expected
    ]
    assert _offsets(links) == expected


def test_page_links_keep_every_other_parameter_and_drop_a_zero_offset() -> None:
    url = URL(
        f"{BASE}?patient=p-1&type=http%3A%2F%2Floinc.org%7C11488-4&status=current&status=superseded&_offset=10&_count=10"
    )
    links = {link["relation"]: link["url"] for link in page_links(url, 30, 10, 10)}
    assert links["self"] == str(url)
    for relation in ("first", "previous", "next", "last"):
        pairs = parse_qsl(urlsplit(links[relation]).query)
        assert ("patient", "p-1") in pairs
        assert ("type", "http://loinc.org|11488-4") in pairs
        assert [v for k, v in pairs if k == "status"] == ["current", "superseded"]
        assert ("_count", "10") in pairs
        assert links[relation].startswith(BASE + "?")
    assert "_offset" not in links["first"]
    assert "_offset" not in links["previous"]
    assert "_offset=20" in links["next"]
