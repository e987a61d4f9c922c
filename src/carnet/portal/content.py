"""What both portals do with a document's content: the policy its bytes are served with, and the labels
of a CDA document rendered to safe HTML (``carnet.documents.render``) in the reader's language.

The bytes (``…/contenu``, ``…/telecharger``) load nothing, run nothing and may be framed by Carnet's own
pages only. They are sandboxed (an opaque origin: no script, no form, no navigation) except a PDF shown
inline: the browsers' PDF viewers other than Chromium's show nothing in a sandboxed document (Safari an
empty frame), while Chromium renders it either way. A PDF keeps an otherwise strict policy,
``X-Content-Type-Options: nosniff`` keeps it a PDF, and its download is sandboxed like every other file.
No policy allows ``unsafe-inline``: nothing Carnet serves needs an inline style or script (a CDA is
rendered by Carnet with class names that the portal's style sheet styles).
"""

from __future__ import annotations

from collections.abc import Callable

CONTENT_CSP = "default-src 'none'; frame-ancestors 'self'; form-action 'none'; base-uri 'none'; sandbox"
PDF_CSP = "default-src 'none'; frame-ancestors 'self'; form-action 'none'; base-uri 'none'"
PDF = "application/pdf"


def content_policy(media: str, *, download: bool) -> str:
    """The Content-Security-Policy of a document's bytes of media type ``media`` (lower case, no parameters)."""
    return PDF_CSP if media == PDF and not download else CONTENT_CSP


def cda_labels(_: Callable[[str], str]) -> dict[str, str]:
    """The words ``documents.render.cda_to_html`` writes around a CDA's own text, translated with ``_``."""
    return {
        "document": _("Document"),
        "date": _("Date"),
        "patient": _("Patient"),
        "born": _("né(e) le"),
        "author": _("Auteur"),
        "organization": _("Organisation"),
        "custodian": _("Conservé par"),
        "untitled": _("Section sans titre"),
        "unstructured": _("Ce document contient un fichier joint : téléchargez-le pour le lire."),
        "multimedia": _("[image non affichée]"),
    }
