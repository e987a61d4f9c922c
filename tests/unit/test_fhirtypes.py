"""FHIR data-type helpers: date/dateTime parsing, instants, tokens, codings and extensions."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carnet.fhirtypes import (
    JSON,
    codings,
    extension,
    format_instant,
    parse_datetime,
    remove_extension,
    set_extension,
    split_token,
)

UTC = dt.UTC
# Hypothesis takes naive bounds and attaches the time zones itself.
EARLIEST = dt.datetime(1900, 1, 2)  # noqa: DTZ001
LATEST = dt.datetime(2200, 1, 1)  # noqa: DTZ001


def tz(hours: int, minutes: int = 0) -> dt.timezone:
    sign = -1 if hours < 0 else 1
    return dt.timezone(sign * dt.timedelta(hours=abs(hours), minutes=minutes))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026", dt.datetime(2026, 1, 1, tzinfo=UTC)),
        ("2026-03", dt.datetime(2026, 3, 1, tzinfo=UTC)),
        ("2026-03-15", dt.datetime(2026, 3, 15, tzinfo=UTC)),
        ("2026-03-15T10:30", dt.datetime(2026, 3, 15, 10, 30, tzinfo=UTC)),
        ("2026-03-15T10:30:15", dt.datetime(2026, 3, 15, 10, 30, 15, tzinfo=UTC)),  # no zone: UTC
        ("2026-03-15T10:30:15Z", dt.datetime(2026, 3, 15, 10, 30, 15, tzinfo=UTC)),
        ("2026-03-15T10:30:15+02:00", dt.datetime(2026, 3, 15, 10, 30, 15, tzinfo=tz(2))),
        ("2026-03-15T10:30:15-05:00", dt.datetime(2026, 3, 15, 10, 30, 15, tzinfo=tz(-5))),
        ("2026-03-15T10:30:15+05:30", dt.datetime(2026, 3, 15, 10, 30, 15, tzinfo=tz(5, 30))),
        ("2026-03-15T10:30:15-03:30", dt.datetime(2026, 3, 15, 10, 30, 15, tzinfo=tz(-3, 30))),
        ("2026-03-15T10:30:15+00:00", dt.datetime(2026, 3, 15, 10, 30, 15, tzinfo=UTC)),
        ("2026-03-15T10:30:15.5Z", dt.datetime(2026, 3, 15, 10, 30, 15, 500000, tzinfo=UTC)),
        ("2026-03-15T10:30:15.123Z", dt.datetime(2026, 3, 15, 10, 30, 15, 123000, tzinfo=UTC)),
        ("2026-03-15T10:30:15.123456+01:00", dt.datetime(2026, 3, 15, 10, 30, 15, 123456, tzinfo=tz(1))),
        ("2026-03-15T10:30:15.1234567891Z", dt.datetime(2026, 3, 15, 10, 30, 15, 123456, tzinfo=UTC)),
        ("2026-03-15T10:30:15.000Z", dt.datetime(2026, 3, 15, 10, 30, 15, tzinfo=UTC)),
        (" 2026-03-15 ", dt.datetime(2026, 3, 15, tzinfo=UTC)),
    ],
)
def test_parse_datetime(value: str, expected: dt.datetime) -> None:
    parsed = parse_datetime(value)
    assert parsed == expected
    assert parsed.utcoffset() == expected.utcoffset()
    assert parsed.microsecond == expected.microsecond


def test_parse_datetime_offsets_denote_the_same_instant() -> None:
    assert parse_datetime("2026-03-15T12:00:00+02:00") == parse_datetime("2026-03-15T10:00:00Z")
    assert parse_datetime("2026-03-15T05:00:00-05:00") == parse_datetime("2026-03-15T10:00:00Z")


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        "26-03-15",
        "2026-3-15",
        "2026/03/15",
        "20260315",
        "2026-03-15T",
        "2026-03-15T10",
        "2026-03-15 10:30:15",
        "2026-03-15T10:30:15z",
        "2026-03-15T10:30:15+0200",
        "2026-03-15T10:30:15+02",
        "2026-03T10:30",
        "2026-03-15T10:30:15.Z",
        "2026-03-15T10:30:15Z trailing",
    ],
)
def test_parse_datetime_refuses_malformed_values(value: str) -> None:
    with pytest.raises(ValueError, match="is not a FHIR date or dateTime"):
        parse_datetime(value)


@pytest.mark.parametrize(
    "value",
    ["2026-13", "2026-00-10", "2026-02-30", "2026-03-15T24:00:00Z", "2026-03-15T10:60Z", "2026-03-15T10:30:61Z"],
)
def test_parse_datetime_refuses_impossible_dates(value: str) -> None:
    with pytest.raises(ValueError, match=r"range|must be in"):
        parse_datetime(value)


@given(st.datetimes(min_value=EARLIEST, max_value=LATEST, timezones=st.just(UTC)))
def test_format_instant_roundtrips_through_parse_datetime(moment: dt.datetime) -> None:
    text = format_instant(moment)
    assert text.endswith("Z")
    assert parse_datetime(text) == moment.replace(microsecond=moment.microsecond // 1000 * 1000)


@given(
    st.datetimes(
        min_value=EARLIEST,
        max_value=LATEST,
        timezones=st.sampled_from([UTC, tz(2), tz(-5), tz(5, 30), tz(-3, 30), tz(14)]),
    )
)
def test_parse_datetime_reads_isoformat_with_seconds_and_offset(moment: dt.datetime) -> None:
    assert parse_datetime(moment.isoformat(timespec="microseconds")) == moment


def test_format_instant_converts_to_utc_with_milliseconds() -> None:
    moment = dt.datetime(2026, 3, 15, 12, 0, 0, 123456, tzinfo=tz(2))
    assert format_instant(moment) == "2026-03-15T10:00:00.123Z"


# ---------------------------------------------------------------- tokens, codings, extensions


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("http://loinc.org|11488-4", ("http://loinc.org", "11488-4")),
        ("|11488-4", (None, "11488-4")),
        ("11488-4", (None, "11488-4")),
        ("http://loinc.org|", ("http://loinc.org", "")),
        ("a|b|c", ("a", "b|c")),
    ],
)
def test_split_token(value: str, expected: tuple[str | None, str]) -> None:
    assert split_token(value) == expected


def test_codings_tolerates_absence_and_junk() -> None:
    assert codings(None) == []
    assert codings("x") == []
    assert codings({}) == []
    assert codings({"coding": "x"}) == []
    assert codings({"coding": [{"code": "a"}, "junk", {"code": "b"}]}) == [{"code": "a"}, {"code": "b"}]


def test_extensions_are_found_set_and_removed_by_url() -> None:
    resource: JSON = {"resourceType": "Patient", "extension": [{"url": "a", "valueBoolean": True}]}
    assert extension(resource, "a") == {"url": "a", "valueBoolean": True}
    assert extension(resource, "b") is None
    set_extension(resource, {"url": "a", "valueBoolean": False})
    set_extension(resource, {"url": "b", "valueString": "x"})
    assert resource["extension"] == [{"url": "a", "valueBoolean": False}, {"url": "b", "valueString": "x"}]
    remove_extension(resource, "a")
    assert resource["extension"] == [{"url": "b", "valueString": "x"}]
    remove_extension(resource, "b")
    assert "extension" not in resource
    assert extension(resource, "b") is None
