"""Carnet benchmarks (``make bench``): everything measured in one run, on PostgreSQL.

1. Raw floor: plain psycopg INSERTs of the same 20 KB payloads, at 1, 8 and 16 connections.
2. ITI-65 deposits per second (one 20 KB PDF per bundle) through the HTTP API, at 1 and 16 clients,
   filling the database up to 10 000 documents over 1 000 patients.
3. ITI-67 search and ITI-68 retrieve latency (median, p99) at 16 clients on those 10 000 documents.
4. In-process, alternated in one loop: the access policy's cost (decisions; searches with the policy versus
   a superuser bypass) and the audit trail's (reads and searches with the trail written versus dropped).
5. Notifications delivered per second by one worker to a local SMTP server (``benchmarks/notify.py``).

The server runs as a real ``carnet serve`` process (2 uvicorn workers) on a dedicated database;
the load comes from a lean asyncio HTTP/1.1 client in this process
(``benchmarks/loadgen.py``). Results: a table on stdout and a JSON file in
``benchmarks/results/``. The machine is shared and noisy: compare figures of the same run (ratios).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2 as httpx
import psycopg
import sqlalchemy as sa

from benchmarks import loadgen
from benchmarks.notify import notifications_per_second
from carnet import dbadmin
from carnet.access import Action, DocumentFacts, decide
from carnet.access.context import context_for
from carnet.access.models import AccessGrant
from carnet.audit.trace import Trace
from carnet.auth import tokens
from carnet.auth.actor import SYSTEM_ACTOR
from carnet.auth.authenticate import resolve
from carnet.config import Environment, Settings
from carnet.demo.loader import load_demo_directory_and_people
from carnet.demo.pdf import make_pdf
from carnet.demo.personas import BY_KEY, token_claims
from carnet.documents import search as finder
from carnet.documents import service as documents
from carnet.documents.models import DocumentEntry
from carnet.documents.schemas import DocumentQuery
from carnet.identifiers import nir_key
from carnet.records import service as records
from carnet.runtime import Runtime, Work

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
PG_ADMIN = os.environ.get("CARNET_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DB_NAME = "carnet_bench"
PAYLOAD_BYTES = 20 * 1024
HOST = "127.0.0.1"
READER = "dr_medioni"  # in the care team of every benchmark patient
TEST_OID = "urn:oid:1.2.250.1.213.1.4.10"


@dataclass
class Report:
    started: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    machine: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)

    def add(self, name: str, **values: Any) -> None:
        self.results[name] = values
        shown = ", ".join(f"{k}={v}" for k, v in values.items())
        print(f"  {name}: {shown}", flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def pdf_payload(counter: int) -> bytes:
    """A valid PDF of exactly PAYLOAD_BYTES bytes, different for every counter."""
    base = make_pdf("Compte rendu (benchmark)", [f"Document {counter:012d}"] + ["x" * 90] * 8)
    padding = PAYLOAD_BYTES - len(base) - len(b"%\n")
    return base + b"%" + b"P" * padding + b"\n"


# ----------------------------------------------------------------------------- database setup


def database_url(name: str) -> str:
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


def recreate(name: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def random_ins(rng: random.Random) -> str:
    body = (
        f"{rng.choice('12')}{rng.randint(30, 99):02d}{rng.randint(1, 12):02d}{rng.randint(1, 95):02d}"
        f"{rng.randint(1, 999):03d}{rng.randint(1, 999):03d}"
    )
    return f"{body}{nir_key(body):02d}"


def prepare(settings: Settings, patients: int) -> list[tuple[str, str]]:
    """Migrate, load the personas and open ``patients`` records; return their (id, INS)."""
    runtime = Runtime(settings)
    dbadmin.upgrade(runtime.engine)
    load_demo_directory_and_people(runtime)
    rng = random.Random(7)
    opened: list[tuple[str, str]] = []
    seen: set[str] = set()
    with runtime.work() as work:
        while len(opened) < patients:
            ins = random_ins(rng)
            if ins in seen:
                continue
            seen.add(ins)
            patient = {
                "resourceType": "Patient",
                "extension": [
                    {
                        "url": "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-identity-reliability",
                        "extension": [{"url": "identityStatus", "valueCoding": {"code": "QUAL"}}],
                    }
                ],
                "identifier": [{"system": TEST_OID, "value": ins}],
                "name": [{"family": f"BENCH{len(opened)}", "given": ["Test"]}],
                "gender": "unknown",
                "birthDate": "1970-01-01",
            }
            record = records.create_record(work, actor=SYSTEM_ACTOR, patient=patient)
            opened.append((str(record.id), ins))
            # The reader of the search benchmarks is in every patient's care team (the policy's usual path).
            work.store.stage(
                AccessGrant,
                record_id=record.id,
                id=str(uuid.uuid4()),
                kind="care-team",
                subject_kind="practitioner",
                subject_value=BY_KEY[READER].idnat,
                start=work.now,
                end=None,
                active=True,
                declared_by=f"pro:{BY_KEY[READER].idnat}",
                created_at=work.now,
                revoked_at=None,
            )
    runtime.dispose()
    return opened


class UnauditedRuntime(Runtime):
    """Benchmark only: a runtime that drops its traces, to measure what writing the audit trail costs.
    Carnet itself has no such switch ("no audit, no access").

    ``read`` clears the traces when its block ends, before the runtime writes them: on PostgreSQL a read's
    traces are written by ``Runtime.read`` itself, on its autocommit connection, not by ``_record_reads``."""

    @contextlib.contextmanager
    def read(self) -> Iterator[Work]:
        with super().read() as work:
            yield work
            work.traces.clear()

    def _record(self, work: Work, traces: list[Trace]) -> None:
        return None

    def _record_reads(self, read: Work) -> None:
        return None


def audit_cost(settings: Settings, patient_ids: list[str], n: int) -> dict[str, dict[str, float]]:
    """In-process, alternated in one loop: reading a DocumentReference (one trace) and an ITI-67 search
    (the query and ~10 documents: ~11 traces) with the audit trail written, and without."""
    audited, unaudited = Runtime(settings), UnauditedRuntime(settings)
    rng = random.Random(7)
    subject, extra = token_claims(BY_KEY[READER])
    with audited.read() as work:
        reader = resolve(work, {"sub": subject, **extra})
        doc_ids = list(work.session.scalars(sa.select(DocumentEntry.id).where(DocumentEntry.status == "current")))
    # Steady state: the reader has accessed every record once before (a professional's first access to a
    # record is a one-time event that also writes its notification; the process then knows the pair).
    for patient_id in patient_ids:
        with audited.read() as work:
            finder.search_documents(work, actor=reader, query=DocumentQuery(patient_id=patient_id))
    timings: dict[str, list[float]] = {"read_on": [], "read_off": [], "search_on": [], "search_off": []}
    for _ in range(n):
        doc_id, patient_id = rng.choice(doc_ids), rng.choice(patient_ids)
        for label, runtime in (("on", audited), ("off", unaudited)):
            started = time.perf_counter()
            with runtime.read() as work:
                documents.read_document(work, actor=reader, doc_id=doc_id)
            timings[f"read_{label}"].append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            with runtime.read() as work:
                finder.search_documents(work, actor=reader, query=DocumentQuery(patient_id=patient_id))
            timings[f"search_{label}"].append((time.perf_counter() - started) * 1000)
    audited.dispose()
    unaudited.dispose()
    return {
        name: {"p50": round(statistics.median(values), 3), "p99": round(percentile(values, 99), 3)}
        for name, values in timings.items()
    }


async def _asgi_get(app: Any, path: str, token: str) -> int:
    """One GET through the whole ASGI application (middleware, routing, authentication, the route), with
    no network: what a client's read costs the server, without the HTTP parsing."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {token}".encode())],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


def audit_cost_api(settings: Settings, n: int) -> dict[str, dict[str, float]]:
    """The same comparison through the ASGI application (token, routing, the route, the response): a
    DocumentReference read as a client sees it, alternated between an audited app and an unaudited one."""
    from carnet.app import create_app  # noqa: PLC0415 - the app is only needed here

    audited, unaudited = Runtime(settings), UnauditedRuntime(settings)
    apps = {"on": create_app(settings, audited), "off": create_app(settings, unaudited)}
    subject, extra = token_claims(BY_KEY[READER])
    token = tokens.issue_dev(settings, subject, extra=extra, ttl=3600)
    with audited.read() as work:
        doc_ids = list(work.session.scalars(sa.select(DocumentEntry.id).where(DocumentEntry.status == "current")))
    rng = random.Random(9)
    timings: dict[str, list[float]] = {"on": [], "off": []}

    async def loop() -> None:
        for label in ("on", "off"):  # warm both apps (routes, statements, caches)
            for doc_id in doc_ids[:50]:
                assert await _asgi_get(apps[label], f"/fhir/DocumentReference/{doc_id}", token) == 200
        for _ in range(n):
            path = f"/fhir/DocumentReference/{rng.choice(doc_ids)}"
            for label in ("on", "off"):
                started = time.perf_counter()
                status = await _asgi_get(apps[label], path, token)
                timings[label].append((time.perf_counter() - started) * 1000)
                assert status == 200, status

    asyncio.run(loop())
    audited.dispose()
    unaudited.dispose()
    return {
        name: {"p50": round(statistics.median(values), 3), "p99": round(percentile(values, 99), 3)}
        for name, values in timings.items()
    }


def policy_cost(settings: Settings, patient_ids: list[str], searches: int) -> dict[str, dict[str, float]]:
    """In-process: the cost of one access decision, and ITI-67 searches with the policy versus a superuser
    bypass (the system actor, for which visibility is only "not deleted"), alternated in the same loop.

    The reader is resolved once, as the per-process actor cache does for a busy professional, so the
    difference is the policy alone: loading the professional's grants and building the SQL filter."""
    runtime = Runtime(settings)
    rng = random.Random(5)
    subject, extra = token_claims(BY_KEY[READER])
    decisions: list[float] = []
    with runtime.read() as work:
        reader = resolve(work, {"sub": subject, **extra})
        for patient_id in patient_ids[:100]:
            record = records.get_record(work, patient_id)
            assert record is not None
            entries = work.session.scalars(sa.select(DocumentEntry).where(DocumentEntry.record_id == record.id)).all()
            context_for(work, reader, record)  # the per-record context is loaded once per request
            for entry in entries:
                started = time.perf_counter()
                decide(work, reader, Action.DOCUMENT_READ, record, DocumentFacts.of(entry))
                decisions.append((time.perf_counter() - started) * 1e6)
    timings: dict[str, list[float]] = {"policy": [], "bypass": []}
    for _ in range(searches):
        patient_id = rng.choice(patient_ids)
        for label in ("policy", "bypass"):
            started = time.perf_counter()
            with runtime.read() as work:
                who = reader if label == "policy" else SYSTEM_ACTOR
                finder.search_documents(
                    work, actor=who, query=DocumentQuery(patient_id=patient_id, statuses=["current"])
                )
            timings[label].append((time.perf_counter() - started) * 1000)
    runtime.dispose()
    return {
        "decision_us": {
            "p50": round(statistics.median(decisions), 1),
            "p99": round(percentile(decisions, 99), 1),
            "n": len(decisions),
        },
        "search_policy_ms": {
            "p50": round(statistics.median(timings["policy"]), 2),
            "p99": round(percentile(timings["policy"], 99), 2),
        },
        "search_bypass_ms": {
            "p50": round(statistics.median(timings["bypass"]), 2),
            "p99": round(percentile(timings["bypass"], 99), 2),
        },
    }


# ----------------------------------------------------------------------------- raw floor


def raw_floor(url: str, connections: int, seconds: float) -> float:
    """Plain INSERTs of 20 KB rows per second with ``connections`` parallel connections."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS raw_floor")
        conn.execute("CREATE TABLE raw_floor (id bigserial PRIMARY KEY, doc_id uuid NOT NULL, data bytea NOT NULL)")
    counts = [0] * connections
    stop = time.perf_counter() + seconds
    payload = pdf_payload(0)

    def worker(index: int) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            while time.perf_counter() < stop:
                conn.execute("INSERT INTO raw_floor (doc_id, data) VALUES (gen_random_uuid(), %s)", (payload,))
                counts[index] += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE raw_floor")
    return sum(counts) / elapsed


# ----------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(env: dict[str, str], port: int, workers: int) -> subprocess.Popen[bytes]:
    carnet = str(Path(sys.executable).with_name("carnet"))
    process = subprocess.Popen(  # noqa: S603 - our own command line
        [carnet, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    # Start-up (imports, FHIR structure definitions, templates) takes ~25 s per worker on this shared machine.
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.3)
    process.kill()
    _, errors = process.communicate(timeout=30)
    raise RuntimeError(f"the server did not start: {errors.decode(errors='replace')[-2000:]}")


# ----------------------------------------------------------------------------- load


def bundle(ins: str, counter: int) -> bytes:
    data = pdf_payload(counter)
    doc_url, bin_url = (
        f"urn:uuid:{counter:08d}-0000-4000-8000-000000000001",
        f"urn:uuid:{counter:08d}-0000-4000-8000-000000000002",
    )
    subject = {"reference": f"Patient?identifier={TEST_OID}|{ins}"}
    body = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{counter:08d}-0000-4000-8000-000000000000",
                "request": {"method": "POST", "url": "List"},
                "resource": {
                    "resourceType": "List",
                    "status": "current",
                    "mode": "working",
                    "code": {
                        "coding": [
                            {
                                "system": "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes",
                                "code": "submissionset",
                            }
                        ]
                    },
                    "extension": [
                        {
                            "url": "https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-sourceId",
                            "valueIdentifier": {"value": "urn:oid:1.2.250.1.999.42"},
                        }
                    ],
                    "subject": subject,
                    "date": "2026-11-01T10:00:00+01:00",
                    "entry": [{"item": {"reference": doc_url}}],
                },
            },
            {
                "fullUrl": doc_url,
                "request": {"method": "POST", "url": "DocumentReference"},
                "resource": {
                    "resourceType": "DocumentReference",
                    "contained": [
                        {
                            "resourceType": "Practitioner",
                            "id": "a",
                            "identifier": [{"system": "urn:oid:1.2.250.1.71.4.2.1", "value": "810001745206"}],
                        }
                    ],
                    "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:oid:1.2.250.1.999.42.{counter}"},
                    "status": "current",
                    "type": {"coding": [{"system": "http://loinc.org", "code": "11488-4"}]},
                    "category": [
                        {
                            "coding": [
                                {
                                    "system": "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument",
                                    "code": "10",
                                }
                            ]
                        }
                    ],
                    "subject": subject,
                    "date": f"2026-{1 + counter % 11:02d}-{1 + counter % 27:02d}T10:00:00+01:00",
                    "author": [{"reference": "#a"}],
                    "securityLabel": [
                        {
                            "coding": [
                                {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "N"}
                            ]
                        }
                    ],
                    "content": [
                        {
                            "attachment": {
                                "contentType": "application/pdf",
                                "url": bin_url,
                                "size": len(data),
                                "hash": base64.b64encode(hashlib.sha1(data, usedforsecurity=False).digest()).decode(),
                                "title": "Compte rendu",
                            },
                            "format": {
                                "system": "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode",
                                "code": "urn:ihe:iti:xds-sd:pdf:2008",
                            },
                        }
                    ],
                    "context": {
                        "period": {"start": "2026-11-01T09:00:00+01:00"},
                        "facilityType": {
                            "coding": [
                                {
                                    "system": "https://mos.esante.gouv.fr/NOS/TRE_R02-SecteurActivite/FHIR/TRE-R02-SecteurActivite",
                                    "code": "SA01",
                                }
                            ]
                        },
                        "practiceSetting": {
                            "coding": [
                                {
                                    "system": "https://mos.esante.gouv.fr/NOS/TRE_A01-CadreExercice/FHIR/TRE-A01-CadreExercice",
                                    "code": "ETABLISSEMENT",
                                }
                            ]
                        },
                    },
                },
            },
            {
                "fullUrl": bin_url,
                "request": {"method": "POST", "url": "Binary"},
                "resource": {
                    "resourceType": "Binary",
                    "contentType": "application/pdf",
                    "data": base64.b64encode(data).decode(),
                },
            },
        ],
    }
    return json.dumps(body).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--documents", type=int, default=10_000)
    parser.add_argument("--single-client-deposits", type=int, default=300)
    parser.add_argument("--requests", type=int, default=3000, help="search and retrieve requests each")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--floor-seconds", type=float, default=6.0)
    parser.add_argument("--notifications", type=int, default=1000, help="e-mails per notification round")
    parser.add_argument("--notify-rounds", type=int, default=3)
    args = parser.parse_args()

    report = Report(
        machine={"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    )
    url = database_url(DB_NAME)
    recreate(DB_NAME)
    print(f"Preparing {DB_NAME}: schema, personas, {args.patients} patients …", flush=True)
    port = free_port()
    env = {
        **os.environ,
        "CARNET_ENV": Environment.TEST.value,
        "CARNET_DATABASE_URL": url,
        "CARNET_BASE_URL": f"http://127.0.0.1:{port}",
        "CARNET_LOG_LEVEL": "WARNING",
        "CARNET_DB_POOL_SIZE": "20",
    }
    settings = Settings(env=Environment.TEST, database_url=url, base_url=f"http://127.0.0.1:{port}")
    patients = prepare(settings, args.patients)

    print("Raw floor (plain psycopg INSERTs of 20 KB rows):", flush=True)
    floors = {n: raw_floor(url, n, args.floor_seconds) for n in (1, 8, 16)}
    report.add("raw_floor_inserts_per_s", **{f"c{n}": round(v, 1) for n, v in floors.items()})

    server = start_server(env, port, args.workers)
    try:
        subject, extra = token_claims(BY_KEY["dpi_saint_roch"])  # hospital software acting for Dr Lambert
        depositor = tokens.issue_dev(settings, subject, extra=extra, ttl=3600)
        subject, extra = token_claims(BY_KEY[READER])
        reader = tokens.issue_dev(settings, subject, extra=extra, ttl=3600)

        rng = random.Random(11)
        order = [patients[i % len(patients)][1] for i in range(args.documents)]
        rng.shuffle(order)

        def deposit(counter: int, ins: str) -> loadgen.Request:
            return loadgen.Request("POST", "/fhir", bundle(ins, counter), (("Content-Type", "application/fhir+json"),))

        def created(request: loadgen.Request, reply: loadgen.Reply) -> None:
            if reply.status != 200:
                raise RuntimeError(f"deposit failed: {reply.status} {reply.body[:300]!r}")

        single = [deposit(i, ins) for i, ins in enumerate(order[: args.single_client_deposits])]
        many = [
            deposit(i, ins)
            for i, ins in enumerate(order[args.single_client_deposits :], start=args.single_client_deposits)
        ]
        print("ITI-65 deposits (one 20 KB PDF per bundle):", flush=True)
        elapsed, lat = asyncio.run(loadgen.run(HOST, port, depositor, 1, single, created))
        report.add(
            "iti65_c1",
            per_s=round(len(single) / elapsed, 1),
            p50_ms=round(statistics.median(lat), 1),
            p99_ms=round(percentile(lat, 99), 1),
            n=len(single),
        )
        elapsed, lat = asyncio.run(loadgen.run(HOST, port, depositor, 16, many, created))
        deposit16 = len(many) / elapsed
        report.add(
            "iti65_c16",
            per_s=round(deposit16, 1),
            p50_ms=round(statistics.median(lat), 1),
            p99_ms=round(percentile(lat, 99), 1),
            n=len(many),
        )
        report.add(
            "iti65_vs_floor",
            ratio_c16_vs_floor_c16=round(deposit16 / floors[16], 4),
            ratio_c16_vs_floor_c8=round(deposit16 / floors[8], 4),
            target=">= 0.08",
        )

        with psycopg.connect(url) as conn:
            total_docs = conn.execute("SELECT count(*) FROM document_entries").fetchone()
            binaries = [r[0] for r in conn.execute("SELECT id FROM binary_entries").fetchall()]
        report.add("dataset", documents=total_docs[0] if total_docs else 0, patients=len(patients))

        print("ITI-67 search and ITI-68 retrieve at 16 clients:", flush=True)
        ids = [p for p, _ in patients]

        def found(request: loadgen.Request, reply: loadgen.Reply) -> None:
            if reply.status != 200 or b'"searchset"' not in reply.body:
                raise RuntimeError(f"search failed: {reply.status}")

        searches = [
            loadgen.Request("GET", f"/fhir/DocumentReference?patient={rng.choice(ids)}&status=current")
            for _ in range(args.requests)
        ]
        elapsed, lat = asyncio.run(loadgen.run(HOST, port, reader, 16, searches, found))
        report.add(
            "iti67_c16",
            p50_ms=round(statistics.median(lat), 1),
            p99_ms=round(percentile(lat, 99), 1),
            per_s=round(len(searches) / elapsed, 1),
            target_p99_ms=50,
        )

        def retrieved(request: loadgen.Request, reply: loadgen.Reply) -> None:
            if reply.status != 200 or len(reply.body) != PAYLOAD_BYTES:
                raise RuntimeError(f"retrieve failed: {reply.status}")

        retrieves = [
            loadgen.Request("GET", f"/fhir/Binary/{rng.choice(binaries)}", b"", (("Accept", "application/pdf"),))
            for _ in range(args.requests)
        ]
        elapsed, lat = asyncio.run(loadgen.run(HOST, port, reader, 16, retrieves, retrieved))
        report.add(
            "iti68_c16",
            p50_ms=round(statistics.median(lat), 1),
            p99_ms=round(percentile(lat, 99), 1),
            per_s=round(len(retrieves) / elapsed, 1),
            target_p99_ms=30,
        )
    finally:
        server.terminate()
        server.wait(timeout=30)

    print(
        "Access policy cost (in-process decisions; ITI-67 search with the policy versus a superuser bypass):",
        flush=True,
    )
    cost = policy_cost(settings, [p for p, _ in patients], min(args.requests, 2000))
    report.add("policy_decision_us", **cost["decision_us"])
    report.add(
        "policy_search_ms",
        policy_p50=cost["search_policy_ms"]["p50"],
        policy_p99=cost["search_policy_ms"]["p99"],
        bypass_p50=cost["search_bypass_ms"]["p50"],
        bypass_p99=cost["search_bypass_ms"]["p99"],
        ratio_p99=round(cost["search_policy_ms"]["p99"] / cost["search_bypass_ms"]["p99"], 3),
        ratio_p50=round(cost["search_policy_ms"]["p50"] / cost["search_bypass_ms"]["p50"], 3),
        target="ratio_p99 <= 1.3",
    )

    print("Audit trail cost (in-process reads and searches with the trail written, and without):", flush=True)
    audit = audit_cost(settings, [p for p, _ in patients], min(args.requests, 2000))
    read_ratio = audit["read_on"]["p50"] / audit["read_off"]["p50"]
    report.add(
        "audit_read_ms",
        on_p50=audit["read_on"]["p50"],
        off_p50=audit["read_off"]["p50"],
        on_p99=audit["read_on"]["p99"],
        off_p99=audit["read_off"]["p99"],
        ratio_p50=round(read_ratio, 3),
        overhead_p50=round(read_ratio - 1, 3),
        target="overhead_p50 <= 0.15",
        met=read_ratio - 1 <= 0.15,
    )
    api_audit = audit_cost_api(settings, min(args.requests, 2000))
    api_ratio = api_audit["on"]["p50"] / api_audit["off"]["p50"]
    report.add(
        "audit_read_api_ms",
        on_p50=api_audit["on"]["p50"],
        off_p50=api_audit["off"]["p50"],
        on_p99=api_audit["on"]["p99"],
        off_p99=api_audit["off"]["p99"],
        ratio_p50=round(api_ratio, 3),
        overhead_p50=round(api_ratio - 1, 3),
        target="overhead_p50 <= 0.15",
        met=api_ratio - 1 <= 0.15,
    )
    report.add(
        "audit_search_ms",
        on_p50=audit["search_on"]["p50"],
        off_p50=audit["search_off"]["p50"],
        on_p99=audit["search_on"]["p99"],
        off_p99=audit["search_off"]["p99"],
        overhead_p50=round(audit["search_on"]["p50"] / audit["search_off"]["p50"] - 1, 3),
    )

    print(
        f"Notifications (one worker, local SMTP server, {args.notify_rounds} rounds of {args.notifications}):",
        flush=True,
    )
    report.add("notifications", **notifications_per_second(url, args.notifications, args.notify_rounds))

    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"bench-{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(
        json.dumps({"started": report.started, "machine": report.machine, "results": report.results}, indent=2)
    )
    print(f"\nwritten {out.relative_to(ROOT.parent)}")
    print_table(report)


def print_table(report: Report) -> None:
    r = report.results
    rows = [
        (
            "raw floor, INSERTs/s (c1 / c8 / c16)",
            f"{r['raw_floor_inserts_per_s']['c1']} / {r['raw_floor_inserts_per_s']['c8']} / "
            f"{r['raw_floor_inserts_per_s']['c16']}",
            "",
        ),
        ("ITI-65 deposits/s, 1 client", f"{r['iti65_c1']['per_s']}", f"p50 {r['iti65_c1']['p50_ms']} ms"),
        ("ITI-65 deposits/s, 16 clients", f"{r['iti65_c16']['per_s']}", f"p99 {r['iti65_c16']['p99_ms']} ms"),
        ("ITI-65 c16 / raw floor c16", f"{r['iti65_vs_floor']['ratio_c16_vs_floor_c16']:.1%}", "target ≥ 8%"),
        (
            "ITI-67 search, 16 clients",
            f"p50 {r['iti67_c16']['p50_ms']} ms",
            f"p99 {r['iti67_c16']['p99_ms']} ms (target ≤ 50)",
        ),
        (
            "ITI-68 retrieve, 16 clients",
            f"p50 {r['iti68_c16']['p50_ms']} ms",
            f"p99 {r['iti68_c16']['p99_ms']} ms (target ≤ 30)",
        ),
        (
            "access decision, per document",
            f"p50 {r['policy_decision_us']['p50']} µs",
            f"p99 {r['policy_decision_us']['p99']} µs",
        ),
        (
            "search, policy / bypass (in-process)",
            f"p99 {r['policy_search_ms']['policy_p99']} / {r['policy_search_ms']['bypass_p99']} ms",
            f"ratio {r['policy_search_ms']['ratio_p99']} (target ≤ 1.3); "
            f"p50 {r['policy_search_ms']['policy_p50']} / {r['policy_search_ms']['bypass_p50']} ms",
        ),
        (
            "read with / without audit (in-process)",
            f"p50 {r['audit_read_ms']['on_p50']} / {r['audit_read_ms']['off_p50']} ms",
            f"ratio {r['audit_read_ms']['ratio_p50']}: overhead {r['audit_read_ms']['overhead_p50']:.1%} "
            f"(target ≤ 15%: {'met' if r['audit_read_ms']['met'] else 'not met'})",
        ),
        (
            "read with / without audit (through the app)",
            f"p50 {r['audit_read_api_ms']['on_p50']} / {r['audit_read_api_ms']['off_p50']} ms",
            f"ratio {r['audit_read_api_ms']['ratio_p50']}: overhead {r['audit_read_api_ms']['overhead_p50']:.1%} "
            f"(target ≤ 15%: {'met' if r['audit_read_api_ms']['met'] else 'not met'})",
        ),
        (
            "search with / without audit",
            f"p50 {r['audit_search_ms']['on_p50']} / {r['audit_search_ms']['off_p50']} ms",
            f"overhead {r['audit_search_ms']['overhead_p50']:.1%} (~11 traces)",
        ),
        (
            "notifications/s, one worker (SMTP)",
            f"{r['notifications']['deliveries_per_second']}",
            f"median of {r['notifications']['rounds']} × {r['notifications']['n']} "
            f"(min {r['notifications']['min_per_second']}, max {r['notifications']['max_per_second']}); "
            f"commit → SMTP p50 {r['notifications']['p50_latency_ms']} ms at "
            f"{r['notifications']['poll_seconds']} s polling",
        ),
    ]
    width = max(len(a) for a, _, _ in rows)
    print()
    for name, value, note in rows:
        print(f"{name.ljust(width)}  {value:>24}  {note}")


if __name__ == "__main__":
    main()
