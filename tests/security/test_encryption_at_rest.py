"""Nothing a patient deposited, and nothing that names them, is stored in clear: not in the SQLite file,
not in any PostgreSQL table, not in the blob store."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from starlette.testclient import TestClient

from carnet import dbadmin
from carnet.app import create_app
from carnet.config import BlobBackend
from carnet.demo.loader import load_demo_directory_and_people
from carnet.runtime import Runtime
from tests import factories
from tests.conftest import BACKENDS, Api, drop_pg_database, fresh_database, make_settings


@pytest.fixture(params=BACKENDS)
def sealed(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Api, str | None, Path]]:
    backend = str(request.param)
    url, pg_name = fresh_database(backend, tmp_path, "sealed")
    blob_dir = tmp_path / "blobs"
    runtime = Runtime(make_settings(url, blob_backend=BlobBackend.FILESYSTEM, blob_dir=blob_dir))
    dbadmin.upgrade(runtime.engine)
    load_demo_directory_and_people(runtime)
    with TestClient(create_app(runtime.settings, runtime), base_url="http://testserver") as client:
        yield Api(client, runtime), (url if pg_name else None), tmp_path
    runtime.dispose()
    if pg_name:
        drop_pg_database(pg_name)


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


def test_no_clear_text_anywhere(sealed: tuple[Api, str | None, Path]) -> None:
    api, pg_url, folder = sealed
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
        with psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
            tables = [
                r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
            ]
            assert "resource_versions" in tables
            for table in tables:
                rows = conn.execute(f'SELECT t::text FROM "{table}" t').fetchall()  # noqa: S608 - catalog names
                _assert_absent("\n".join(r[0] for r in rows).encode(), needles, f"table {table}")
    blob_files = [p for p in (folder / "blobs").rglob("*") if p.is_file()]
    assert len(blob_files) == 2
    for path in blob_files:
        _assert_absent(path.read_bytes(), needles, f"blob {path.name}")


def test_a_blob_altered_on_disk_is_detected(sealed: tuple[Api, str | None, Path]) -> None:
    api, _, folder = sealed
    ins, system = factories.random_ins()
    assert api.post("/fhir/Patient", "dr_medioni", factories.patient_resource(ins, system)).status_code == 201
    doc = api.publish("dr_medioni", factories.docref(ins, system)).json()
    (blob,) = [p for p in (folder / "blobs").rglob("*") if p.is_file()]
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0x01
    blob.write_bytes(bytes(data))
    url = doc["content"][0]["attachment"]["url"].replace("http://testserver", "")
    response = api.get(url, "dr_medioni", headers={"Accept": "*/*"})
    assert response.status_code == 500
    assert "integrity" in response.json()["issue"][0]["diagnostics"]
