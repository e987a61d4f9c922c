"""The habilitation matrix: rule precedence, the shipped file, and the SQL type filter agreeing with
per-type answers for every profession, known type and unlisted type."""

from __future__ import annotations

import pytest

from carnet.access.matrix import HabilitationMatrix, matrix
from carnet.terminology import terminology

HEADER = "profession,specialty,type,effect,status,source\n"
UNLISTED = ("NOT-A-DMP-TYPE", "99999-9")


def parse(rows: str) -> HabilitationMatrix:
    return HabilitationMatrix.parse("# version: test-1\n" + HEADER + rows)


def known_types() -> set[str]:
    return set(terminology().type_codes.codes) | set(terminology().type_to_class)


def test_the_most_specific_rule_wins_and_nothing_matching_means_no_access() -> None:
    m = parse(
        "10,*,*,allow,established,\n"
        "10,*,ATTEST-RESID,deny,established,\n"
        "10,SM26,ATTEST-RESID,allow,provisional,\n"
        "R94:*,*,11488-4,allow,provisional,\n"
    )
    assert m.version == "test-1"
    assert m.allows("10", None, "11488-4")
    assert not m.allows("10", None, "ATTEST-RESID")  # a specific type beats *
    assert m.allows("10", "SM26", "ATTEST-RESID")  # then a specific specialty beats *
    assert m.allows("R94:41", None, "11488-4")  # a family rule
    assert not m.allows("R94:41", None, "34133-9")
    assert not m.allows("21", None, "11488-4")  # no matching row: no access


def test_deny_beats_allow_of_the_same_specificity() -> None:
    m = parse("60,*,11488-4,allow,provisional,\n60,*,11488-4,deny,established,\n")
    assert not m.allows("60", None, "11488-4")
    assert not m.allows("60", "SM01", "11488-4")


def test_an_effect_other_than_allow_or_deny_names_its_row() -> None:
    with pytest.raises(ValueError, match="row 3"):
        parse("10,*,*,allow,established,\n10,*,ATTEST-RESID,maybe,established,\n")


def test_the_shipped_file_encodes_what_is_established() -> None:
    shipped = matrix()
    assert shipped.version != "unversioned"
    known = known_types()
    # Doctors: every type except the residence certificate.
    assert {c for c in known if not shipped.allows("10", None, c)} == {"ATTEST-RESID"}
    # Dentists: the excluded types are excluded whatever their specialty.
    for code in ("80788-3", "75496-0", "83981-1", "88348-8", "83901-9", "68599-0"):
        assert not shipped.allows("40", None, code)
        assert not shipped.allows("40", "SCD01", code)
    # Social professions: a narrow list, far from everything a doctor reads.
    social = {c for c in known if shipped.allows("R94:41", None, c)}
    assert 0 < len(social) < len(known) / 4
    for rule in shipped.rules:
        assert rule.type_code == "*" or rule.type_code in known, rule
        assert rule.source, rule


def test_every_rule_says_whether_it_is_established_or_provisional() -> None:
    shipped = matrix()
    assert any(r.established for r in shipped.rules)
    assert any(not r.established for r in shipped.rules)


def _professions(m: HabilitationMatrix) -> set[tuple[str, str | None]]:
    found: set[tuple[str, str | None]] = {("21", None), ("unknown-profession", None), ("R94:99", None)}
    for rule in m.rules:
        profession = rule.profession.replace(":*", ":41") if rule.profession != "*" else "10"
        found.add((profession, None))
        if rule.specialty != "*":
            found.add((profession, rule.specialty))
    return found


@pytest.mark.parametrize(
    "source",
    [
        "shipped",
        "10,*,*,allow,established,\n10,*,ATTEST-RESID,deny,established,\n40,*,*,deny,provisional,\n"
        "40,*,11488-4,allow,provisional,\n*,*,34133-9,allow,provisional,\n",
    ],
)
def test_the_sql_type_filter_agrees_with_every_answer(source: str) -> None:
    m = matrix() if source == "shipped" else parse(source)
    for profession, specialty in sorted(_professions(m), key=str):
        types = m.type_filter(profession, specialty)
        for code in sorted(known_types()) + list(UNLISTED):
            selected = (code in types.codes) if types.include else (code not in types.codes)
            assert selected == m.allows(profession, specialty, code), (profession, specialty, code, types.include)


def test_doctors_filter_by_their_few_exclusions() -> None:
    types = matrix().type_filter("10", None)
    assert (types.include, types.codes) == (False, ("ATTEST-RESID",))
    # Social professions read only what is listed: their filter is the allowed list.
    social = matrix().type_filter("R94:41", None)
    assert social.include
    assert set(social.codes) == matrix().allowed_types("R94:41", None)
