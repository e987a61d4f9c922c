"""Helpers to drive the installed ``carnet`` command the way a user does: a subprocess, a clean
environment of ``CARNET_*`` variables, a temporary working directory (so no stray ``.env`` file is read).
"""

from __future__ import annotations

import base64
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
from starlette.testclient import TestClient

from carnet.app import create_app
from carnet.runtime import Runtime
from tests.conftest import make_settings
from tests.factories import signing_keys

DATA = Path(__file__).resolve().parents[1] / "data" / "cli"
# The base URL the in-process app is served under (tests.conftest.make_settings): tokens name it as issuer.
TEST_BASE_URL = "http://testserver"
INS_TEST_SYSTEM = "urn:oid:1.2.250.1.213.1.4.10"
IDNAT_PS_SYSTEM = "urn:oid:1.2.250.1.71.4.2.1"
IDNAT_STRUCT_SYSTEM = "urn:oid:1.2.250.1.71.4.2.2"
FHIR_JSON = "application/fhir+json"


def carnet_command() -> list[str]:
    """The installed console script next to this interpreter, else ``python -m carnet``."""
    script = Path(sys.executable).parent / ("carnet.exe" if os.name == "nt" else "carnet")
    return [str(script)] if script.exists() else [sys.executable, "-m", "carnet"]


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        """stdout and stderr with whitespace collapsed (Rich wraps long lines)."""
        return " ".join(f"{self.stdout}\n{self.stderr}".split())

    def describe(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


def carnet_env(database_url: str | None, *, env: str = "test", **settings: str) -> dict[str, str]:
    """The process environment: the caller's minus any ``CARNET_*``, plus the given settings.

    ``settings`` are setting names without the prefix (``base_url="…"`` → ``CARNET_BASE_URL``).
    """
    values = {k: v for k, v in os.environ.items() if not k.startswith("CARNET_")}
    values.update({"COLUMNS": "400", "NO_COLOR": "1", "TERM": "dumb", "PYTHONUTF8": "1"})
    values["CARNET_ENV"] = env
    values["CARNET_BASE_URL"] = TEST_BASE_URL
    values["CARNET_LOG_LEVEL"] = "WARNING"
    if database_url is not None:
        values["CARNET_DATABASE_URL"] = database_url
    for name, value in settings.items():
        values[f"CARNET_{name.upper()}"] = value
    return values


def production_keys() -> dict[str, str]:
    """Fresh, valid, non-default key material and an https base URL: what production requires."""

    def key() -> str:
        return base64.b64encode(secrets.token_bytes(32)).decode()

    return {
        "kek": f"k1:{key()}",
        "index_key": key(),
        "signing_keys": signing_keys("k1"),
        "audit_signing_key": key(),
        "base_url": "https://carnet.example",
    }


def run_carnet(*args: str, env: dict[str, str], cwd: Path, timeout: float = 180) -> Result:
    completed = subprocess.run(  # noqa: S603 - the command is this project's own console script
        [*carnet_command(), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    return Result(
        completed.returncode,
        completed.stdout.decode("utf-8", "replace"),
        completed.stderr.decode("utf-8", "replace"),
    )


def cli_token(persona: str, *, env: dict[str, str], cwd: Path) -> str:
    """A development token from ``carnet token --as <persona>``."""
    result = run_carnet("token", "--as", persona, env=env, cwd=cwd)
    assert result.code == 0, result.describe()
    token = result.stdout.strip()
    assert token.count(".") == 2, result.describe()
    return token


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def fhir_client(database_url: str) -> Iterator[TestClient]:
    """The real ASGI app on this database, served in-process under ``TEST_BASE_URL``."""
    settings = make_settings(database_url)
    assert settings.base_url == TEST_BASE_URL
    runtime = Runtime(settings)
    try:
        with TestClient(create_app(settings, runtime), base_url=TEST_BASE_URL) as client:
            yield client
    finally:
        runtime.dispose()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Accept": FHIR_JSON}


def log_text(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def wait_ready(client: httpx2.Client, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    """Poll ``/health/ready`` until ``carnet serve`` answers; fail with its log if it exits or times out."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            pytest.fail(f"carnet serve exited with {process.returncode} before it was ready:\n{log_text(log)}")
        try:
            if client.get("/health/ready").status_code == 200:
                return
        except httpx2.TransportError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"carnet serve was not ready within {timeout:.0f} s:\n{log_text(log)}")
        time.sleep(0.2)
