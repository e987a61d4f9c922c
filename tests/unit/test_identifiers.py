"""National identifiers: the NIR/NIA key, INS parsing by OID, RPPS Luhn, IdNat_PS and IdNat_Struct."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carnet.identifiers import (
    INS_NIA_OID,
    INS_NIR_DEMO_OID,
    INS_NIR_OID,
    INS_NIR_TEST_OID,
    IdentifierError,
    InsKind,
    luhn_valid,
    nir_key,
    parse_idnat_ps,
    parse_idnat_struct,
    parse_ins,
    validate_rpps,
)

# Test vectors of reference/dmp.md §1.1 (13-character body → key).
NIR_VECTORS = [
    ("2550814168025", 38),
    ("2940375120005", 91),
    ("1531245007231", 60),
    ("284052A321025", 52),  # Corsica: 2A counts as 19
    ("2B34567890123", 78),  # Corsica: 2B counts as 18
    ("2790351215189", 89),
    ("1460263220001", 96),
]
VALID = "255081416802538"

digits13 = st.text(alphabet="0123456789", min_size=13, max_size=13)


# ---------------------------------------------------------------- nir_key


@pytest.mark.parametrize(("body", "key"), NIR_VECTORS)
def test_nir_key_matches_reference_vectors(body: str, key: int) -> None:
    assert nir_key(body) == key


@pytest.mark.parametrize(
    ("corsican", "numeric"), [("284052A321025", "2840519321025"), ("2B34567890123", "1834567890123")]
)
def test_nir_key_reads_corsican_departments_as_19_and_18(corsican: str, numeric: str) -> None:
    assert nir_key(corsican) == nir_key(numeric) == 97 - int(numeric) % 97


def test_nir_key_accepts_lower_case_corsican_letters() -> None:
    assert nir_key("284052a321025") == 52


@pytest.mark.parametrize("body", ["2550814X68025", "25508141680 5", "284052C321025"])
def test_nir_key_refuses_other_characters(body: str) -> None:
    with pytest.raises(IdentifierError, match="not a NIR"):
        nir_key(body)


@given(digits13)
def test_nir_key_is_between_1_and_97_and_completes_a_multiple_of_97(body: str) -> None:
    key = nir_key(body)
    assert 1 <= key <= 97
    assert (int(body) + key) % 97 == 0


# ---------------------------------------------------------------- parse_ins


@pytest.mark.parametrize(("body", "key"), [(b, k) for b, k in NIR_VECTORS if not b.startswith("2B")])
def test_parse_ins_accepts_the_reference_vectors(body: str, key: int) -> None:
    ins = parse_ins(f"urn:oid:{INS_NIR_OID}", f"{body}{key:02d}", allow_test=False)
    assert ins.value == f"{body}{key:02d}"
    assert ins.kind is InsKind.NIR


@pytest.mark.parametrize(
    ("oid", "kind", "is_test"),
    [
        (INS_NIR_OID, InsKind.NIR, False),
        (INS_NIA_OID, InsKind.NIA, False),
        (INS_NIR_TEST_OID, InsKind.TEST, True),
        (INS_NIR_DEMO_OID, InsKind.DEMO, True),
    ],
)
def test_parse_ins_accepts_the_four_ins_oids(oid: str, kind: InsKind, is_test: bool) -> None:
    ins = parse_ins(f"urn:oid:{oid}", VALID, allow_test=True)
    assert ins.kind is kind
    assert ins.oid == oid
    assert ins.system == f"urn:oid:{oid}"
    assert ins.is_test is is_test


def test_ins_oids_are_the_published_ones() -> None:
    assert INS_NIR_OID == "1.2.250.1.213.1.4.8"
    assert INS_NIA_OID == "1.2.250.1.213.1.4.9"
    assert INS_NIR_TEST_OID == "1.2.250.1.213.1.4.10"
    assert INS_NIR_DEMO_OID == "1.2.250.1.213.1.4.11"


def test_parse_ins_accepts_a_bare_oid_as_cda_roots_carry() -> None:
    ins = parse_ins(INS_NIR_OID, VALID, allow_test=False)
    assert ins.kind is InsKind.NIR
    assert ins.system == f"urn:oid:{INS_NIR_OID}"


def test_parse_ins_normalises_spaces_and_corsican_case() -> None:
    ins = parse_ins(f"urn:oid:{INS_NIR_OID}", "  284052a32102552 ", allow_test=False)
    assert ins.value == "284052A32102552"


@pytest.mark.parametrize("oid", [INS_NIR_TEST_OID, INS_NIR_DEMO_OID])
def test_parse_ins_refuses_test_and_demo_oids_unless_allowed(oid: str) -> None:
    with pytest.raises(IdentifierError, match="refused in production") as caught:
        parse_ins(f"urn:oid:{oid}", VALID, allow_test=False)
    assert oid in str(caught.value)


@pytest.mark.parametrize("oid", [INS_NIR_OID, INS_NIA_OID])
def test_parse_ins_accepts_real_oids_without_allow_test(oid: str) -> None:
    assert parse_ins(f"urn:oid:{oid}", VALID, allow_test=False).is_test is False


@pytest.mark.parametrize(("oid", "name"), [("1.2.250.1.213.1.4.1", "INS-A"), ("1.2.250.1.213.1.4.2", "INS-C")])
def test_parse_ins_refuses_legacy_calculated_ins_naming_them(oid: str, name: str) -> None:
    with pytest.raises(IdentifierError, match="obsolete") as caught:
        parse_ins(f"urn:oid:{oid}", VALID, allow_test=True)
    message = str(caught.value)
    assert name in message
    assert oid in message


@pytest.mark.parametrize("oid", ["1.2.250.1.213.1.4.12", "1.2.3.4", "2.16.840.1.113883.6.1"])
def test_parse_ins_refuses_an_unknown_oid(oid: str) -> None:
    with pytest.raises(IdentifierError, match="not an INS assigning authority") as caught:
        parse_ins(f"urn:oid:{oid}", VALID, allow_test=True)
    assert oid in str(caught.value)


@pytest.mark.parametrize("system", [None, "", "urn:oid:"])
def test_parse_ins_refuses_a_missing_system(system: str | None) -> None:
    with pytest.raises(IdentifierError, match="no system"):
        parse_ins(system, VALID, allow_test=True)


@pytest.mark.parametrize("value", [None, "", "   "])
def test_parse_ins_refuses_a_missing_value(value: str | None) -> None:
    with pytest.raises(IdentifierError, match="no value"):
        parse_ins(f"urn:oid:{INS_NIR_OID}", value, allow_test=True)


@pytest.mark.parametrize(
    ("value", "length"),
    [("25508141680253", 14), ("2550814168025380", 16), ("2550814168025", 13), ("1", 1)],
)
def test_parse_ins_refuses_a_wrong_length_saying_the_length(value: str, length: int) -> None:
    with pytest.raises(IdentifierError, match="15 characters") as caught:
        parse_ins(f"urn:oid:{INS_NIR_OID}", value, allow_test=True)
    assert f"got {length}" in str(caught.value)


@pytest.mark.parametrize("value", ["2550814X6802538", "284052C32102552", "2A5081416802538", "25508 416802538"])
def test_parse_ins_refuses_letters_outside_the_corsican_department(value: str) -> None:
    with pytest.raises(IdentifierError, match="13 digits"):
        parse_ins(f"urn:oid:{INS_NIR_OID}", value, allow_test=True)


@pytest.mark.parametrize("value", ["25508141680253X", "2550814168025AB", "2550814168025-8"])
def test_parse_ins_refuses_a_non_numeric_key(value: str) -> None:
    with pytest.raises(IdentifierError, match="numeric key"):
        parse_ins(f"urn:oid:{INS_NIR_OID}", value, allow_test=True)


def test_parse_ins_refuses_a_wrong_key_naming_the_expected_one() -> None:
    with pytest.raises(IdentifierError) as caught:
        parse_ins(f"urn:oid:{INS_NIR_OID}", "255081416802539", allow_test=True)
    assert str(caught.value) == "the INS key is 39 but should be 38"


def test_parse_ins_pads_the_expected_key_to_two_digits() -> None:
    # 97 − (N mod 97) can be a single digit: the message shows it as the two characters expected.
    body = next(f"{n:013d}" for n in range(10**12, 10**12 + 200) if nir_key(f"{n:013d}") < 10)
    with pytest.raises(IdentifierError, match=rf"should be 0{nir_key(body)}$"):
        parse_ins(f"urn:oid:{INS_NIR_OID}", f"{body}99", allow_test=True)


def test_parse_ins_checks_the_oid_before_the_value() -> None:
    with pytest.raises(IdentifierError, match="obsolete"):
        parse_ins("urn:oid:1.2.250.1.213.1.4.1", "garbage", allow_test=True)


@given(digits13, st.integers(min_value=0, max_value=99))
def test_parse_ins_accepts_exactly_the_computed_key(body: str, key: int) -> None:
    expected = nir_key(body)
    value = f"{body}{key:02d}"
    if key == expected:
        assert parse_ins(f"urn:oid:{INS_NIR_OID}", value, allow_test=False).value == value
    else:
        with pytest.raises(IdentifierError, match=f"should be {expected:02d}"):
            parse_ins(f"urn:oid:{INS_NIR_OID}", value, allow_test=False)


@given(
    st.text(alphabet="0123456789", min_size=5, max_size=5),
    st.sampled_from(["2A", "2B"]),
    st.text(alphabet="0123456789", min_size=6, max_size=6),
)
def test_parse_ins_accepts_any_corsican_body_with_its_key(head: str, dept: str, tail: str) -> None:
    body = f"{head}{dept}{tail}"
    numeric = f"{head}{'19' if dept == '2A' else '18'}{tail}"
    key = 97 - int(numeric) % 97
    assert parse_ins(f"urn:oid:{INS_NIA_OID}", f"{body}{key:02d}", allow_test=False).kind is InsKind.NIA


# ---------------------------------------------------------------- RPPS and Luhn


@pytest.mark.parametrize("number", ["99700366240", "10002422979", "10001745206", "0", "18", "79927398713"])
def test_luhn_valid_numbers(number: str) -> None:
    assert luhn_valid(number) is True


@pytest.mark.parametrize("number", ["99700366241", "10002422970", "10001745207", "79927398710", "", "1000174520A"])
def test_luhn_invalid_numbers(number: str) -> None:
    assert luhn_valid(number) is False


@given(st.text(alphabet="0123456789", min_size=10, max_size=10))
def test_luhn_exactly_one_check_digit_completes_a_number(body: str) -> None:
    assert sum(luhn_valid(f"{body}{d}") for d in "0123456789") == 1


@pytest.mark.parametrize("rpps", ["99700366240", "10002422979", "10001745206"])
def test_validate_rpps_accepts_valid_numbers_with_luhn(rpps: str) -> None:
    assert validate_rpps(rpps, check_luhn=True) == rpps


def test_validate_rpps_strips_spaces() -> None:
    assert validate_rpps(" 10002422979\n", check_luhn=True) == "10002422979"


def test_validate_rpps_checks_luhn_only_when_asked() -> None:
    assert validate_rpps("10002422970", check_luhn=False) == "10002422970"
    with pytest.raises(IdentifierError, match="fails its Luhn check digit") as caught:
        validate_rpps("10002422970", check_luhn=True)
    assert "10002422970" in str(caught.value)


@pytest.mark.parametrize("rpps", ["1000242297", "100024229790", "1000242297A", "", "1000 242297"])
@pytest.mark.parametrize("check_luhn", [True, False])
def test_validate_rpps_requires_eleven_digits(rpps: str, check_luhn: bool) -> None:
    with pytest.raises(IdentifierError, match="11 digits"):
        validate_rpps(rpps, check_luhn=check_luhn)


# ---------------------------------------------------------------- IdNat_PS


@pytest.mark.parametrize(
    ("value", "kind", "rpps"),
    [
        ("0751234567", "ADELI", None),
        ("1ABC123", "cabinet ADELI", None),
        ("3750000001", "FINESS", None),
        ("4123456789", "SIREN", None),
        ("512345678900012", "SIRET", None),
        ("6XYZ0001", "cabinet RPPS", None),
        ("810002422979", "RPPS", "10002422979"),
        ("899700366240", "RPPS", "99700366240"),
    ],
)
def test_parse_idnat_ps_prefixes(value: str, kind: str, rpps: str | None) -> None:
    parsed = parse_idnat_ps(value, check_luhn=True)
    assert parsed.value == value
    assert parsed.kind == kind
    assert parsed.rpps == rpps


def test_parse_idnat_ps_strips_spaces() -> None:
    assert parse_idnat_ps("  810002422979 ", check_luhn=True).value == "810002422979"


@pytest.mark.parametrize("prefix", ["2", "7", "9", "A"])
def test_parse_idnat_ps_refuses_unknown_prefixes_naming_them(prefix: str) -> None:
    with pytest.raises(IdentifierError, match=f"starts with '{prefix}'") as caught:
        parse_idnat_ps(f"{prefix}10002422979", check_luhn=False)
    assert "8 + RPPS" in str(caught.value)


@pytest.mark.parametrize("value", ["", "   "])
def test_parse_idnat_ps_refuses_empty(value: str) -> None:
    with pytest.raises(IdentifierError, match="empty"):
        parse_idnat_ps(value, check_luhn=False)


@pytest.mark.parametrize("value", ["8", "0", "81000-2422979", "3 75000000", "4" + "1" * 30])
def test_parse_idnat_ps_refuses_malformed_rest(value: str) -> None:
    with pytest.raises(IdentifierError, match="alphanumeric identifier"):
        parse_idnat_ps(value, check_luhn=False)


@pytest.mark.parametrize("value", ["075123456", "07512345678", "075123456A"])
def test_parse_idnat_ps_requires_nine_digit_adeli(value: str) -> None:
    with pytest.raises(IdentifierError, match="ADELI number has 9 digits"):
        parse_idnat_ps(value, check_luhn=False)


@pytest.mark.parametrize("value", ["81000242297", "8100024229791", "81000242297A"])
def test_parse_idnat_ps_requires_an_eleven_digit_rpps_after_8(value: str) -> None:
    with pytest.raises(IdentifierError, match="11 digits"):
        parse_idnat_ps(value, check_luhn=False)


def test_parse_idnat_ps_checks_rpps_luhn_only_when_asked() -> None:
    # The ANS example documents use fictitious RPPS numbers such as 01234534765 that fail the Luhn check.
    assert parse_idnat_ps("801234534765", check_luhn=False).rpps == "01234534765"
    with pytest.raises(IdentifierError, match="Luhn"):
        parse_idnat_ps("801234534765", check_luhn=True)


# ---------------------------------------------------------------- IdNat_Struct


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("0ABC", "cabinet ADELI"),
        ("1750000001", "FINESS"),
        ("12A0000001", "FINESS"),  # Corsican FINESS numbers carry a letter
        ("2732829320", "SIREN"),
        ("373282932000074", "SIRET"),
        ("4100024229790001", "RPPS-rang"),
        ("9TECHNICAL", "technical"),
    ],
)
def test_parse_idnat_struct_prefixes(value: str, kind: str) -> None:
    parsed = parse_idnat_struct(value, check_luhn=True)
    assert parsed.value == value
    assert parsed.kind == kind


@pytest.mark.parametrize(
    ("value", "fault"),
    [
        ("175000000", "FINESS number has 9 characters"),
        ("17500000012", "FINESS number has 9 characters"),
        ("273282932", "SIREN has 9 digits"),
        ("27328293200", "SIREN has 9 digits"),
        ("27328293A", "SIREN has 9 digits"),
        ("37328293200007", "SIRET has 14 digits"),
        ("3732829320000741", "SIRET has 14 digits"),
        ("37328293200007A", "SIRET has 14 digits"),
        ("410002422979", "RPPS-rang"),
        ("4100024229790A", "RPPS-rang"),
        ("", "prefix followed by an alphanumeric identifier"),
        ("1750-00001", "prefix followed by an alphanumeric identifier"),
        ("3" + "1" * 30, "prefix followed by an alphanumeric identifier"),
    ],
)
def test_parse_idnat_struct_refuses_malformed_values(value: str, fault: str) -> None:
    with pytest.raises(IdentifierError, match=fault):
        parse_idnat_struct(value, check_luhn=False)


@pytest.mark.parametrize("value", ["2732829321", "373282932000075"])
def test_parse_idnat_struct_checks_siren_and_siret_luhn_only_when_asked(value: str) -> None:
    assert parse_idnat_struct(value, check_luhn=False).value == value
    with pytest.raises(IdentifierError, match="fails its Luhn check digit"):
        parse_idnat_struct(value, check_luhn=True)


def test_parse_idnat_struct_does_not_luhn_check_finess() -> None:
    # FINESS numbers have their own key; the Luhn check is for SIREN/SIRET only.
    assert not luhn_valid("750000001")
    assert parse_idnat_struct("1750000001", check_luhn=True).kind == "FINESS"


def test_parse_ins_allows_corsican_letters_only_at_the_departement_position() -> None:
    # 2B34567890123 is a key vector, not a matricule: a département sits at positions 6–7.
    with pytest.raises(IdentifierError, match="2A/2B allowed at positions 6–7"):
        parse_ins(f"urn:oid:{INS_NIR_OID}", "2B3456789012378", allow_test=True)
