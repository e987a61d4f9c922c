"""The portals' languages: French (the source language of the templates) and English.

Templates and Python code write French text inside ``_("…")``; the catalogues in
``locale/en/LC_MESSAGES/*.po`` (one per part of the portal, merged) translate it. They are compiled
in memory when the process starts (no build step). The language is the ``carnet_lang`` cookie, else
the browser's ``Accept-Language``, else French.
"""

from __future__ import annotations

import functools
import gettext
import io
from importlib import resources

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations
from fastapi import Request

LANGUAGES = ("fr", "en")
DEFAULT = "fr"
COOKIE = "carnet_lang"


@functools.cache
def translations(language: str) -> gettext.NullTranslations:
    """The compiled catalogue of ``language`` (French is the source: no catalogue)."""
    if language == DEFAULT or language not in LANGUAGES:
        return gettext.NullTranslations()
    folder = resources.files("carnet.portal").joinpath("locale").joinpath(language).joinpath("LC_MESSAGES")
    merged: Translations | None = None
    # One catalogue per part of the portal (messages.po, patient.po, pro.po …), merged.
    for source in sorted((f for f in folder.iterdir() if f.name.endswith(".po")), key=lambda f: f.name):
        with source.open("rb") as po:
            catalog = read_po(po, locale=language)
        buffer = io.BytesIO()
        write_mo(buffer, catalog)
        buffer.seek(0)
        part = Translations(buffer)
        if merged is None:
            merged = part
        else:
            merged.merge(part)
    return merged if merged is not None else gettext.NullTranslations()


def negotiate(request: Request) -> str:
    """The language of this request: the cookie, the browser's preference, or French."""
    chosen = request.cookies.get(COOKIE)
    if chosen in LANGUAGES:
        return chosen
    for part in request.headers.get("accept-language", "").split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGUAGES:
            return code
    return DEFAULT


def gettext_for(language: str) -> gettext.NullTranslations:
    return translations(language)
