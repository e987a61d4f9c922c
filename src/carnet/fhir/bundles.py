"""Bundle builders: searchset, history and transaction-response, embedding stored JSON as is."""

from __future__ import annotations

import datetime as dt
import uuid
from urllib.parse import urlencode

import orjson
from starlette.datastructures import URL, QueryParams

from carnet.db import utcnow
from carnet.fhirtypes import format_instant


def _type_and_id(body: bytes) -> tuple[str, str, str | None]:
    head = orjson.loads(body)
    return str(head.get("resourceType")), str(head.get("id")), (head.get("meta") or {}).get("versionId")


def _entry(base: str, body: bytes, mode: str | None) -> dict[str, object]:
    kind, rid, _ = _type_and_id(body)
    entry: dict[str, object] = {"fullUrl": f"{base}/{kind}/{rid}", "resource": orjson.Fragment(body)}
    if mode:
        entry["search"] = {"mode": mode}
    return entry


def page_links(url: URL, total: int, offset: int, count: int) -> list[dict[str, str]]:
    """self / first / previous / next / last links, keeping every other search parameter."""
    params = [(k, v) for k, v in QueryParams(url.query).multi_items() if k != "_offset"]

    def link(relation: str, at: int) -> dict[str, str]:
        query = urlencode([*params, ("_offset", str(at))]) if at else urlencode(params)
        return {"relation": relation, "url": str(url.replace(query=query))}

    links = [{"relation": "self", "url": str(url)}, link("first", 0)]
    if count <= 0:  # _count=0 asks for the total only: there is no page to move to
        return links
    if offset > 0:
        links.append(link("previous", max(0, offset - count)))
    if offset + count < total:
        links.append(link("next", offset + count))
    last = ((max(total, 1) - 1) // count) * count
    links.append(link("last", last))
    return links


def searchset(
    base: str, url: URL, total: int, matches: list[bytes], included: list[bytes], *, offset: int = 0, count: int = 20
) -> bytes:
    bundle = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": format_instant(utcnow())},
        "type": "searchset",
        "total": total,
        "link": page_links(url, total, offset, count),
        "entry": [_entry(base, b, "match") for b in matches] + [_entry(base, b, "include") for b in included],
    }
    return orjson.dumps(bundle)


def history(base: str, url: URL, versions: list[bytes]) -> bytes:
    entries = []
    for body in versions:
        kind, rid, version = _type_and_id(body)
        entries.append(
            {
                "fullUrl": f"{base}/{kind}/{rid}",
                "resource": orjson.Fragment(body),
                "request": {
                    "method": "POST" if version == "1" else "PUT",
                    "url": f"{kind}/{rid}" if version != "1" else kind,
                },
                "response": {"status": "201 Created" if version == "1" else "200 OK", "etag": f'W/"{version}"'},
            }
        )
    bundle = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": "history",
        "total": len(entries),
        "link": [{"relation": "self", "url": str(url)}],
        "entry": entries,
    }
    return orjson.dumps(bundle)


def transaction_response(entries: list[tuple[str, str | None, dt.datetime | None]]) -> bytes:
    """``entries`` = (status, location, lastModified) in the order of the request's entries."""
    out = []
    for status, location, modified in entries:
        response: dict[str, str] = {"status": status}
        if location:
            response["location"] = location
            response["etag"] = f'W/"{location.rsplit("/", 1)[-1]}"' if "/_history/" in location else 'W/"1"'
        if modified:
            response["lastModified"] = format_instant(modified)
        out.append({"response": response})
    return orjson.dumps(
        {"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": "transaction-response", "entry": out}
    )
