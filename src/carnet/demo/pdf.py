"""One-page text PDFs for the demo documents (``carnet.pdf`` writes them)."""

from __future__ import annotations

from carnet.pdf import text_page


def make_pdf(title: str, lines: list[str]) -> bytes:
    """A PDF 1.4 page showing ``title`` and ``lines`` (Latin-1 text)."""
    return text_page(title, lines)
