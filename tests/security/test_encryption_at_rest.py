"""Nothing a patient deposited, and nothing that names them, is stored in clear: not in the SQLite file,
not in any PostgreSQL table, not in the blob store."""

from __future__ import annotations

import base64
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from carnet import dbadmin
from carnet.app import create_app
from carnet.config import BlobBackend
from carnet.demo.loader import load_demo_directory_and_people
from carnet.runtime import Runtime
from carnet.storage.models import StoredBlob
from tests import factories
from tests.conftest import BACKENDS, Api, drop_pg_database, fresh_database, make_settings


@dataclass
class Sealed:
    api: Api
    pg_url: str | None  # the PostgreSQL database, or None on SQLite
    folder: Path  # where the SQLite file and the blob folder are
    blobs: BlobBackend

    def connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        assert self.pg_url is not None
        return psycopg.connect(self.pg_url.replace("postgresql+psycopg://", "postgresql://"))


@pytest.fixture(params=BACKENDS)
def db_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=[BlobBackend.DATABASE, BlobBackend.FILESYSTEM], ids=["blobs-in-db", "blobs-on-disk"])
def sealed(request: pytest.FixtureRequest, db_backend: str, tmp_path: Path) -> Iterator[Sealed]:
    blobs = BlobBackend(request.param)
    url, pg_name = fresh_database(db_backend, tmp_path, "sealed")
    runtime = Runtime(make_settings(url, blob_backend=blobs, blob_dir=tmp_path / "blobs"))
    dbadmin.upgrade(runtime.engine)
    load_demo_directory_and_people(runtime)
    with TestClient(create_app(runtime.settings, runtime), base_url="http://testserver") as client:
        yield Sealed(Api(client, runtime), url if pg_name else None, tmp_path, blobs)
    runtime.dispose()
    if pg_name:
        drop_pg_database(pg_name)


def _blob_rows(sealed: Sealed, record_id: str) -> list[bytes]:
    """The bytes of the record's rows in the ``blobs`` table, read behind Carnet's back."""
    if sealed.pg_url is not None:
        with sealed.connect() as conn:
            rows = conn.execute("SELECT data FROM blobs WHERE record_id = %s", (uuid.UUID(record_id),)).fetchall()
            return [bytes(r[0]) for r in rows]
    with sqlite3.connect(sealed.folder / "sealed.db") as conn:
        rows = conn.execute("SELECT data FROM blobs WHERE record_id = ?", (uuid.UUID(record_id).hex,)).fetchall()
        return [bytes(r[0]) for r in rows]


def _blob_files(sealed: Sealed) -> list[Path]:
    return [p for p in (sealed.folder / "blobs").rglob("*") if p.is_file()]


def _needles(*values: str) -> list[bytes]:
    found = []
    for value in values:
        raw = value.encode()
        found += [raw, raw.hex().encode(), value.encode("utf-16-le"), base64.b64encode(raw).rstrip(b"=")]
    return found


def _assert_absent(blob: bytes, needles: list[bytes], where: str) -> None:
    lowered = blob.lower()
    for needle in needles:
        assert needle.lower() not in lowered, f"{needle!r} found in clear in {where}"


def test_no_clear_text_anywhere(sealed: Sealed) -> None:
    api, pg_url, folder = sealed.api, sealed.pg_url, sealed.folder
    marker = f"MARQUEUR-{uuid.uuid4().hex[:12]}"
    family, given = "ZYGOMATIQUE", "Philoméne"
    ins, system = factories.random_ins()
    created = api.post(
        "/fhir/Patient",
        "dr_medioni",
        factories.patient_resource(ins, system, family=family, given=given, birth_date="1961-02-03"),
    )
    assert created.status_code == 201
    pdf = factories.pdf_bytes(marker)
    assert marker.encode() in pdf
    assert (
        api.publish("dr_medioni", factories.docref(ins, system, data=pdf, title=f"Titre {marker}")).status_code == 201
    )
    doc_id = f"1.2.250.1.999.{uuid.uuid4().int % 10**9}"
    cda = factories.cda(ins, marker=marker, doc_id=doc_id)
    published = api.publish(
        "dr_medioni",
        factories.docref(
            ins, system, data=cda, content_type="text/xml", format_code=None, unique_id=f"urn:oid:{doc_id}"
        ),
    )
    assert published.status_code == 201, published.text
    # the data really is there, and readable through the API
    patient_id = created.json()["id"]
    assert api.search("dr_medioni", patient=patient_id)["total"] == 2

    needles = _needles(marker, family, given, ins, "1961-02-03")
    if pg_url is None:
        files = [p for p in folder.glob("sealed.db*") if p.is_file()]
        assert files
        for path in files:
            _assert_absent(path.read_bytes(), needles, path.name)
    else:
        with sealed.connect() as conn:
            tables = [
                r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
            ]
            assert {"resource_versions", "blobs"} <= set(tables)
            for table in tables:
                rows = conn.execute(f'SELECT t::text FROM "{table}" t').fetchall()  # noqa: S608 - catalog names
                _assert_absent("\n".join(r[0] for r in rows).encode(), needles, f"table {table}")
    # The blob store in use holds both documents, encrypted; the other holds nothing.
    stored = _blob_rows(sealed, patient_id)
    files = _blob_files(sealed)
    if sealed.blobs is BlobBackend.DATABASE:
        assert len(stored) == 2
        assert files == []
    else:
        assert stored == []
        assert len(files) == 2
        stored = [path.read_bytes() for path in files]
    for index, data in enumerate(stored):
        assert len(data) > len(pdf) // 2  # the document's bytes (encrypted), not a stub
        _assert_absent(data, needles, f"blob {index}")
        assert not data.startswith((b"%PDF", b"<?xml"))


def test_a_tampered_blob_is_refused_on_read(sealed: Sealed) -> None:
    """One bit changed behind Carnet's back, in the blobs table or the file: the read fails the integrity
    check (the blob's address is its SHA-256, recomputed on every read) and no byte is served."""
    api = sealed.api
    ins, system = factories.random_ins()
    created = api.post("/fhir/Patient", "dr_medioni", factories.patient_resource(ins, system))
    assert created.status_code == 201
    patient_id = created.json()["id"]
    data = factories.pdf_bytes("tamper")
    doc = api.publish("dr_medioni", factories.docref(ins, system, data=data)).json()
    url = doc["content"][0]["attachment"]["url"].replace("http://testserver", "")
    assert api.get(url, "dr_medioni", headers={"Accept": "*/*"}).content == data  # intact, it reads back

    if sealed.blobs is BlobBackend.FILESYSTEM:
        (blob,) = _blob_files(sealed)
        altered = bytearray(blob.read_bytes())
        altered[-1] ^= 0x01
        blob.write_bytes(bytes(altered))
    else:
        (original,) = _blob_rows(sealed, patient_id)
        altered = bytearray(original)
        altered[len(altered) // 2] ^= 0x01
        with sealed.api.runtime.engine.begin() as conn:
            changed = conn.execute(
                sa.update(StoredBlob).where(StoredBlob.record_id == uuid.UUID(patient_id)).values(data=bytes(altered))
            )
            assert changed.rowcount == 1
        assert _blob_rows(sealed, patient_id) == [bytes(altered)]

    response = api.get(url, "dr_medioni", headers={"Accept": "*/*"})
    assert response.status_code == 500
    assert "integrity" in response.json()["issue"][0]["diagnostics"]
    assert data not in response.content
