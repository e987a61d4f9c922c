"""Every French text of the portals (templates and Python code) has its English translation."""

from __future__ import annotations

import io
from pathlib import Path

from babel.messages.extract import extract
from jinja2.ext import babel_extract

from carnet.portal import i18n

PORTAL = Path(__file__).resolve().parents[2] / "src" / "carnet" / "portal"


def messages() -> dict[str, str]:
    """msgid → where it is used."""
    found: dict[str, str] = {}
    for path in sorted(PORTAL.rglob("*.html")):
        with path.open("rb") as source:
            for line, _, message, _ in babel_extract(source, ("_", "gettext"), [], {"extensions": "jinja2.ext.i18n"}):
                if isinstance(message, str):
                    found.setdefault(message, f"{path.relative_to(PORTAL)}:{line}")
    for path in sorted(PORTAL.rglob("*.py")):
        for line, message, _, _ in extract(
            "python", io.BytesIO(path.read_bytes()), keywords={"_": None}, comment_tags=()
        ):
            if isinstance(message, str):
                found.setdefault(message, f"{path.relative_to(PORTAL)}:{line}")
    return found


def test_the_extraction_sees_the_portal_texts() -> None:
    found = messages()
    assert "Aller au contenu" in found  # a template
    assert "Page introuvable" in found  # Python code


def test_every_portal_text_has_an_english_translation() -> None:
    english = i18n.translations("en")
    # A msgid is translated when the English catalogue holds it (some words are the same in both
    # languages: "Document", "INS", "Type"), and with a non-empty text.
    catalogue: dict[object, str] = getattr(english, "_catalog", {})
    missing = {m: where for m, where in messages().items() if not catalogue.get(m)}
    assert not missing, "untranslated: " + "; ".join(f"{where}: {m!r}" for m, where in sorted(missing.items()))


def test_french_is_the_source_and_unknown_languages_fall_back_to_it() -> None:
    assert i18n.translations("fr").gettext("Accueil") == "Accueil"
    assert i18n.translations("de").gettext("Accueil") == "Accueil"
    assert i18n.translations("en").gettext("Accueil") == "Home"
