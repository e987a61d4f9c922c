"""A CDA R2 document rendered to safe HTML: the header essentials and the narrative of its sections.

The output is built from a whitelist, never copied from the input: each CDA narrative element
(``paragraph``, ``list``/``item``, ``table`` and its rows and cells, ``caption``, ``content``, ``br``,
``sub``, ``sup``, ``footnote`` …) becomes a fixed HTML element, every text is escaped, and no
attribute of the input reaches the output except a cell's ``colspan``/``rowspan`` (digits, bounded)
and ``styleCode`` mapped to a few fixed class names (the pages' CSP allows no ``style``). Links
(``linkHtml``) become plain text, multimedia a placeholder: nothing is fetched, nothing runs. The XML is
parsed without entity resolution, DTD or network, and any DOCTYPE is refused (``documents.cda``).

A level-1 CDA (``nonXMLBody``: a PDF or an image wrapped in XML) shows its header and a note; its
original is downloaded as it was deposited. Both portals use this module.
"""

from __future__ import annotations

import html
from collections.abc import Iterator, Mapping

from lxml import etree

from carnet.documents.cda import HL7, parse_ts, parse_xml_safely
from carnet.errors import Invalid

_NS = {"h": HL7}
MAX_DEPTH = 40  # deeper narrative is flattened to its text (no recursion without bound)
MAX_SPAN = 50

# French labels; a portal passes its translations.
DEFAULT_LABELS: Mapping[str, str] = {
    "document": "Document",
    "date": "Date",
    "patient": "Patient",
    "born": "né(e) le",
    "author": "Auteur",
    "organization": "Organisation",
    "custodian": "Conservé par",
    "untitled": "Section sans titre",
    "unstructured": "Ce document contient un fichier joint : téléchargez-le pour le lire.",
    "multimedia": "[image non affichée]",
}

# Narrative element → HTML element (children rendered inside).
_BLOCKS = {
    "paragraph": "p",
    "item": "li",
    "caption": "caption",
    "thead": "thead",
    "tbody": "tbody",
    "tfoot": "tfoot",
    "tr": "tr",
    "sub": "sub",
    "sup": "sup",
    "footnote": "small",
}
_STYLES = {
    "bold": "cda-bold",
    "italics": "cda-italic",
    "underline": "cda-underline",
    "emphasis": "cda-emphasis",
}


def _local(element: etree._Element | None) -> str:
    if element is None:
        return ""
    tag = str(element.tag)  # comments and processing instructions are removed by the parser
    return tag.rsplit("}", 1)[-1] if tag.startswith(f"{{{HL7}}}") else ""


def _text(value: str | None) -> str:
    return html.escape(value or "", quote=True)


def _classes(element: etree._Element, base: str | None = None) -> str:
    styles = (element.get("styleCode") or "").lower().split()
    names = [base] if base else []
    names += [_STYLES[s] for s in styles if s in _STYLES]
    return f' class="{" ".join(names)}"' if names else ""


def _span_attr(element: etree._Element, name: str) -> str:
    value = (element.get(name) or "").strip()
    if value.isdigit() and 1 < int(value) <= MAX_SPAN:
        return f' {name}="{int(value)}"'
    return ""


class _Renderer:
    def __init__(self, labels: Mapping[str, str], heading: int) -> None:
        self.labels = labels
        self.heading = heading

    # -------------------------------------------------------------- narrative
    def inline(self, element: etree._Element, depth: int) -> Iterator[str]:
        """An element's text, children and tails (the children rendered by the whitelist)."""
        yield _text(element.text)
        for child in element:
            yield from self.node(child, depth + 1)
            yield _text(child.tail)

    def node(self, element: etree._Element, depth: int) -> Iterator[str]:
        name = _local(element)
        if depth > MAX_DEPTH:
            yield _text(" ".join("".join(str(t) for t in element.itertext()).split()))
            return
        if name == "br":
            yield "<br>"
        elif name == "list":
            tag = "ol" if (element.get("listType") or "").lower() == "ordered" else "ul"
            yield f"<{tag}>"
            for child in element:
                child_name = _local(child)
                if child_name == "caption":
                    yield f'<li class="cda-caption">{"".join(self.inline(child, depth + 1))}</li>'
                elif child_name == "item":
                    yield from self.node(child, depth + 1)
            yield f"</{tag}>"
        elif name == "table":
            yield '<div class="table-wrap"><table class="cda-table">'
            for child in element:
                child_name = _local(child)
                if child_name in ("caption", "thead", "tbody", "tfoot", "tr"):
                    yield from self.node(child, depth + 1)
            yield "</table></div>"
        elif name in ("td", "th"):
            attrs = _span_attr(element, "colspan") + _span_attr(element, "rowspan") + _classes(element)
            if name == "th":
                parent = element.getparent()
                attrs += ' scope="col"' if parent is not None and _local(parent.getparent()) == "thead" else ""
            yield f"<{name}{attrs}>{''.join(self.inline(element, depth))}</{name}>"
        elif name in ("thead", "tbody", "tfoot", "tr"):
            yield f"<{_BLOCKS[name]}>"
            for child in element:
                if _local(child) in ("tr", "td", "th"):
                    yield from self.node(child, depth + 1)
            yield f"</{_BLOCKS[name]}>"
        elif name in _BLOCKS:
            tag = _BLOCKS[name]
            yield f"<{tag}{_classes(element)}>{''.join(self.inline(element, depth))}</{tag}>"
        elif name in ("content", "linkHtml", "footnoteRef"):
            yield f"<span{_classes(element)}>{''.join(self.inline(element, depth))}</span>"
        elif name == "renderMultiMedia":
            yield f'<span class="cda-placeholder">{_text(self.labels["multimedia"])}</span>'
        elif name in ("col", "colgroup"):
            return
        else:  # unknown or foreign element: its text only
            yield "".join(self.inline(element, depth))

    # -------------------------------------------------------------- sections
    def section(self, section: etree._Element, level: int, depth: int) -> Iterator[str]:
        title = section.find("h:title", _NS)
        heading = min(level, 6)
        label = " ".join("".join(str(t) for t in title.itertext()).split()) if title is not None else ""
        yield '<section class="cda-section">'
        yield f"<h{heading}>{_text(label or self.labels['untitled'])}</h{heading}>"
        text = section.find("h:text", _NS)
        if text is not None:
            yield f'<div class="cda-text">{"".join(self.inline(text, depth))}</div>'
        if depth < MAX_DEPTH:
            for inner in section.iterfind("h:component/h:section", _NS):
                yield from self.section(inner, level + 1, depth + 1)
        yield "</section>"

    # -------------------------------------------------------------- header
    def header(self, root: etree._Element) -> Iterator[str]:
        rows: list[tuple[str, str]] = []
        title = root.find("h:title", _NS)
        if title is not None:
            rows.append((self.labels["document"], " ".join("".join(str(t) for t in title.itertext()).split())))
        effective = root.find("h:effectiveTime", _NS)
        if effective is not None:
            try:
                when = parse_ts(effective.get("value"))
            except ValueError:
                when = None
            if when is not None:
                rows.append((self.labels["date"], when.strftime("%d/%m/%Y")))
        patient = root.find("h:recordTarget/h:patientRole/h:patient", _NS)
        if patient is not None:
            name = _person_name(patient.find("h:name", _NS))
            birth = patient.find("h:birthTime", _NS)
            born = ""
            if birth is not None:
                try:
                    day = parse_ts(birth.get("value"))
                except ValueError:
                    day = None
                born = f" ({self.labels['born']} {day.strftime('%d/%m/%Y')})" if day else ""
            if name:
                rows.append((self.labels["patient"], name + born))
        for author in root.iterfind("h:author/h:assignedAuthor", _NS):
            name = _person_name(author.find("h:assignedPerson/h:name", _NS))
            org = _org_name(author.find("h:representedOrganization/h:name", _NS))
            device = author.find("h:assignedAuthoringDevice/h:softwareName", _NS)
            who = name or (_flat(device) if device is not None else "")
            if who:
                rows.append((self.labels["author"], who))
            if org:
                rows.append((self.labels["organization"], org))
        custodian = root.find("h:custodian/h:assignedCustodian/h:representedCustodianOrganization/h:name", _NS)
        if custodian is not None and _flat(custodian):
            rows.append((self.labels["custodian"], _flat(custodian)))
        if not rows:
            return
        yield '<dl class="cda-header">'
        seen: set[tuple[str, str]] = set()
        for label, value in rows:
            if (label, value) in seen:
                continue
            seen.add((label, value))
            yield f"<dt>{_text(label)}</dt><dd>{_text(value)}</dd>"
        yield "</dl>"

    def document(self, root: etree._Element) -> str:
        parts = ['<div class="cda">', *self.header(root)]
        body = root.find("h:component/h:structuredBody", _NS)
        if body is not None:
            for section in body.iterfind("h:component/h:section", _NS):
                parts.extend(self.section(section, self.heading, 0))
        elif root.find("h:component/h:nonXMLBody", _NS) is not None:
            parts.append(f'<p class="cda-note">{_text(self.labels["unstructured"])}</p>')
        parts.append("</div>")
        return "".join(parts)


def _flat(element: etree._Element | None) -> str:
    if element is None:
        return ""
    return " ".join("".join(str(t) for t in element.itertext()).split())


def _person_name(name: etree._Element | None) -> str:
    if name is None:
        return ""
    parts = [_flat(name.find(f"h:{part}", _NS)) for part in ("prefix", "given", "family")]
    joined = " ".join(p for p in parts if p)
    return joined or _flat(name)


def _org_name(name: etree._Element | None) -> str:
    return _flat(name)


def cda_to_html(data: bytes, *, labels: Mapping[str, str] | None = None, heading_level: int = 2) -> str:
    """Safe HTML for a CDA R2 document; ``Invalid`` when the bytes are not a CDA document Carnet may parse."""
    root = parse_xml_safely(data, "document")
    if root.tag != f"{{{HL7}}}ClinicalDocument":
        raise Invalid.at("document", "the content is not a CDA R2 ClinicalDocument")
    return _Renderer({**DEFAULT_LABELS, **(labels or {})}, max(1, min(heading_level, 6))).document(root)
