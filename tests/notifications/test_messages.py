"""What notices say: French by default, English on request, dates in Paris time, no content, a link."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import pytest

from carnet.auth import patients
from carnet.config import Environment, Settings
from carnet.crypto import sealed
from carnet.notifications import preferences
from carnet.notifications.kinds import Kind, Language, Role
from carnet.notifications.messages import format_when, render

SETTINGS = Settings(env=Environment.TEST, notify_portal_url="https://portail.carnet.test")
WHEN = dt.datetime(2026, 3, 29, 0, 30, tzinfo=dt.UTC)  # 01:30 in Paris (winter time), then the clocks change


def _all(params: dict[str, object] | None = None) -> list[tuple[Kind, Language, Role, str, str, str]]:
    found = []
    for kind in Kind:
        for language in Language:
            for role in Role:
                message = render(
                    SETTINGS, kind=kind, language=language, role=role, occurred_at=WHEN, params=params or {}
                )
                found.append((kind, language, role, message.subject, message.text, message.sms))
    return found


def test_every_kind_renders_in_both_languages_for_every_recipient() -> None:
    for kind, language, role, subject, text, sms in _all(
        {"count": 2, "mode": "regulation", "consent": "block", "code": "ABCDE-FGHJK", "minutes": 15}
    ):
        assert subject, (kind, language, role)
        assert "https://portail.carnet.test" in text
        assert "https://portail.carnet.test" in sms
        assert len(sms) <= 200, (kind, language, role, sms)  # two SMS segments at most
        assert not re.search(r"{{|}}|{%|%}|Undefined", text + sms + subject)
        assert "  " not in subject


def test_french_is_the_default_and_dates_are_in_paris_time() -> None:
    message = render(
        SETTINGS,
        kind=Kind.PROFESSIONAL_FIRST_ACCESS,
        language=Language.FR,
        role=Role.HOLDER,
        occurred_at=WHEN,
        params={},
    )
    assert message.subject == "Un professionnel de santé a accédé à votre dossier"
    assert "Le 29 mars 2026 à 01h30, un professionnel de santé a accédé pour la première fois à votre dossier" in (
        message.summary
    )
    assert message.text.startswith("Bonjour,")
    english = render(
        SETTINGS,
        kind=Kind.PROFESSIONAL_FIRST_ACCESS,
        language=Language.EN,
        role=Role.HOLDER,
        occurred_at=WHEN,
        params={},
    )
    assert english.subject == "A health professional accessed your record"
    assert "On 29 March 2026 at 01:30" in english.summary
    summer = dt.datetime(2026, 7, 14, 10, 0, tzinfo=dt.UTC)
    assert format_when(summer, Language.FR, "Europe/Paris") == "14 juillet 2026 à 12h00"


def test_wording_follows_the_recipient() -> None:
    def summary(role: Role, kind: Kind = Kind.EMERGENCY_ACCESS, **params: object) -> str:
        return render(SETTINGS, kind=kind, language=Language.FR, role=role, occurred_at=WHEN, params=params).summary

    assert "à votre dossier" in summary(Role.HOLDER)
    assert "au dossier d'une personne que vous représentez" in summary(Role.REPRESENTATIVE)
    assert "médecin traitant" in summary(Role.MEDECIN_TRAITANT)
    assert "bris de glace" in summary(Role.HOLDER, mode="break-glass")
    assert "SAMU" in summary(Role.HOLDER, mode="regulation")
    assert "3 documents" in summary(Role.HOLDER, Kind.DOCUMENT_ADDED, count=3, count_representative=1)
    assert "un document" in summary(Role.REPRESENTATIVE, Kind.DOCUMENT_ADDED, count=3, count_representative=1)
    assert "l'Assurance Maladie a ajouté" in summary(Role.HOLDER, Kind.DOCUMENT_ADDED, actor="insurer")


@pytest.mark.parametrize(
    ("consent", "change", "expected"),
    [
        ("authorization", "create", "une autorisation d'accès à votre dossier a été donnée"),
        ("authorization", "revoke", "une autorisation d'accès à votre dossier a été retirée"),
        ("block", "create", "un professionnel de santé a été bloqué"),
        ("block", "revoke", "un professionnel de santé a été débloqué"),
        ("care-team", "create", "s'est déclaré membre de l'équipe de soins"),
        ("medecin-traitant", "create", "a été déclaré médecin traitant"),
        ("administrator", "revoke", "n'est plus administrateur de votre dossier"),
        ("emergency-break-glass", "create", "les préférences d'accès en urgence de votre dossier ont été modifiées"),
        ("default-confidentiality", "create", "la confidentialité par défaut des nouveaux documents"),
        (None, "create", "les règles d'accès à votre dossier ont été modifiées"),
    ],
)
def test_consent_changes_say_what_changed(consent: str | None, change: str, expected: str) -> None:
    params = {"change": change} if consent is None else {"consent": consent, "change": change}
    message = render(
        SETTINGS, kind=Kind.CONSENT_CHANGED, language=Language.FR, role=Role.HOLDER, occurred_at=WHEN, params=params
    )
    assert expected in message.summary
    assert " ." not in message.summary


def test_the_html_alternative_is_escaped_and_carries_the_link() -> None:
    message = render(
        SETTINGS,
        kind=Kind.CONSENT_CHANGED,
        language=Language.FR,
        role=Role.HOLDER,
        occurred_at=WHEN,
        params={"consent": "authorization"},
    )
    assert "autorisation d&#39;accès" in message.html
    assert 'href="https://portail.carnet.test"' in message.html
    assert '<html lang="fr">' in message.html


# ---------------------------------------------------------------------------------------- sealed contacts
def test_contacts_are_sealed_per_account() -> None:
    account, other = uuid.uuid4(), uuid.uuid4()
    blob = preferences.seal_contact(SETTINGS, account, "email", "camille@example.org")
    assert b"camille" not in blob
    assert preferences.open_contact(SETTINGS, account, "email", blob) == "camille@example.org"
    assert preferences.open_contact(SETTINGS, other, "email", blob) is None  # copied onto another account
    assert preferences.open_contact(SETTINGS, account, "phone", blob) is None  # or another field
    rotated = SETTINGS.model_copy(update={"kek": _rotated_keys()})
    assert preferences.open_contact(rotated, account, "email", blob) == "camille@example.org"  # old key kept


def _rotated_keys() -> object:
    import base64

    from pydantic import SecretStr

    new = base64.b64encode(b"n" * 32).decode()
    return SecretStr(f"k2:{new},{SETTINGS.kek.get_secret_value()}")


def test_the_shared_sealing_helper_reads_and_writes_totp_secrets_as_before() -> None:
    """``carnet.crypto.sealed`` is the TOTP format, generalised: each opens the other's values."""
    account = uuid.uuid4()
    keys = SETTINGS.key_encryption_keys()
    aad = f"carnet:totp:v1|{account}".encode()
    old = patients.encrypt_totp_secret(SETTINGS, account, "JBSWY3DPEHPK3PXP")
    assert sealed.open_sealed(keys, old, context=b"carnet-totp", aad=aad) == b"JBSWY3DPEHPK3PXP"
    new = sealed.seal(keys, b"JBSWY3DPEHPK3PXP", context=b"carnet-totp", aad=aad)
    assert patients.decrypt_totp_secret(SETTINGS, account, new) == "JBSWY3DPEHPK3PXP"
    assert sealed.key_id(new) == keys[0][0]
    assert sealed.open_sealed(keys, new, context=b"carnet-contact", aad=aad) is None
    assert sealed.open_sealed(keys, b"\x02garbage", context=b"carnet-totp", aad=aad) is None


# ---------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("06 12 34 56 78", "+33612345678"),
        ("07.12.34.56.78", "+33712345678"),
        ("+33 6 12 34 56 78", "+33612345678"),
        ("0033612345678", "+33612345678"),
        ("+262 692 12 34 56", "+262692123456"),
        ("612345678", None),
        ("+33 6 12", None),
        ("call me", None),
    ],
)
def test_phone_numbers_are_normalised_to_e164(given: str, expected: str | None) -> None:
    assert preferences.normalise_phone(given) == expected


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("Camille.Martin@Example.ORG", "Camille.Martin@example.org"),
        (" a+tag@sub.example.fr ", "a+tag@sub.example.fr"),
        ("no-at-sign.example.org", None),
        ("two@@example.org", None),
        ("a@localhost", None),
        ("a@example.org\r\nBcc: victim@example.org", None),
        ("a b@example.org", None),
    ],
)
def test_email_addresses_are_checked(given: str, expected: str | None) -> None:
    assert preferences.normalise_email(given) == expected
