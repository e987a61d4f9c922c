"""``carnet serve``: a real uvicorn process on a migrated SQLite database, spoken to over TCP."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import httpx2
import pytest

from tests.cli.support import FHIR_JSON, carnet_command, carnet_env, free_port, log_text, wait_ready

READY_TIMEOUT = 90.0  # a readiness guard, not a timing: CI machines are shared and busy


@pytest.mark.slow
def test_serve_answers_metadata_and_refuses_anonymous_searches(migrated_sqlite: str, workdir: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = carnet_env(migrated_sqlite, base_url=base, log_level="INFO")
    log = workdir.parent / "serve.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(  # noqa: S603 - the command is this project's own console script
            [*carnet_command(), "serve", "--port", str(port)],
            env=env,
            cwd=workdir,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        with httpx2.Client(base_url=base, timeout=10) as client:
            wait_ready(client, process, log, READY_TIMEOUT)
            assert client.get("/health/ready").json() == {"status": "ok"}

            metadata = client.get("/fhir/metadata", headers={"Accept": FHIR_JSON})
            assert metadata.status_code == 200, metadata.text
            capability = metadata.json()
            assert capability["resourceType"] == "CapabilityStatement"
            assert capability["fhirVersion"] == "4.0.1"

            anonymous = client.get("/fhir/DocumentReference", params={"patient": "x"}, headers={"Accept": FHIR_JSON})
            assert anonymous.status_code == 401, anonymous.text
            assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
            outcome = anonymous.json()
            assert outcome["resourceType"] == "OperationOutcome"
            assert outcome["issue"]
            assert all(i["severity"] in ("error", "fatal") for i in outcome["issue"])

        process.terminate()
        # uvicorn shuts down gracefully, then re-raises the signal it caught: the status is 0 or -SIGTERM.
        assert process.wait(timeout=15) in (0, -signal.SIGTERM), log_text(log)
        output = " ".join(log_text(log).split())
        assert f"Carnet on http://127.0.0.1:{port}" in output
        assert "Application shutdown complete" in output, output
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
