"""``carnet serve``: a real uvicorn process on a migrated SQLite database, spoken to over TCP."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from tests.cli.support import FHIR_JSON, carnet_command, carnet_env, free_port, log_text, run_carnet, wait_ready

READY_TIMEOUT = 90.0  # a readiness guard, not a timing: CI machines are shared and busy


WORKER_STARTED = re.compile(r"Started worker process \[(\d+)\]")


WORKER_READY = re.compile(r"Worker process \[(\d+)\] ready")


def _worker_pids(log: Path) -> list[int]:
    return [int(pid) for pid in WORKER_STARTED.findall(log_text(log))]


def _wait_workers_ready(process: subprocess.Popen[bytes], log: Path, pids: list[int]) -> None:
    """Until the supervisor has heard every worker in ``pids`` report its application started (it
    hands connections to started workers only, so a busy machine's slow starter would get none)."""
    deadline = time.monotonic() + READY_TIMEOUT
    while not set(pids) <= {int(pid) for pid in WORKER_READY.findall(log_text(log))}:
        assert process.poll() is None, log_text(log)
        assert time.monotonic() < deadline, log_text(log)
        time.sleep(0.2)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _socket_inodes(pid: int) -> set[str]:
    """The inodes of the sockets process ``pid`` holds open (``socket:[N]`` links in /proc/<pid>/fd)."""
    inodes = set()
    for link in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(link)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    return inodes


def _server_side_inodes(server_port: int) -> dict[int, str]:
    """Client port → inode of the server's end of each TCP connection to ``server_port`` (/proc/net/tcp)."""
    ends = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].rsplit(":", 1)[1], 16)
        remote_port = int(fields[2].rsplit(":", 1)[1], 16)
        if local_port == server_port and fields[9] != "0":
            ends[remote_port] = fields[9]
    return ends


def _keep_alive_connections(port: int, count: int) -> list[socket.socket]:
    """``count`` connections opened one after the other, each having had one request answered and kept open."""
    connections = []
    for _ in range(count):
        conn = socket.create_connection(("127.0.0.1", port), timeout=30)
        conn.sendall(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = conn.recv(4096)
            assert chunk, "the server closed the connection"
            reply += chunk
        assert reply.startswith(b"HTTP/1.1 200"), reply
        connections.append(conn)
    return connections


def _holders(port: int, connections: list[socket.socket], pids: list[int]) -> Counter[int]:
    """How many of ``connections`` each process in ``pids`` serves."""
    ends = _server_side_inodes(port)
    inodes = {pid: _socket_inodes(pid) for pid in pids}
    holders: Counter[int] = Counter()
    for conn in connections:
        inode = ends[conn.getsockname()[1]]
        owners = [pid for pid in pids if inode in inodes[pid]]
        assert len(owners) == 1, f"connection {conn.getsockname()} held by {owners}"
        holders[owners[0]] += 1
    return holders


@contextlib.contextmanager
def _serving(database_url: str, workdir: Path, *extra: str) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = workdir.parent / "serve.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(  # noqa: S603 - the command is this project's own console script
            [*carnet_command(), "serve", "--port", str(port), *extra],
            env=carnet_env(database_url, base_url=base, log_level="INFO"),
            cwd=workdir,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        with httpx2.Client(base_url=base, timeout=10) as client:
            wait_ready(client, process, log, READY_TIMEOUT)
        yield process, port, log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pid in _worker_pids(log):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_serve_answers_metadata_and_refuses_anonymous_searches(migrated_sqlite: str, workdir: Path) -> None:
    with _serving(migrated_sqlite, workdir) as (process, port, log):
        with httpx2.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
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


# --- several workers: the supervisor accepts and deals connections out in turn (carnet.balancer).
# Who holds a connection is read from Linux's /proc (socket inodes of each process vs /proc/net/tcp).


@pytest.mark.slow
def test_workers_share_connections_evenly_and_stop_on_sigterm(migrated_sqlite: str, workdir: Path) -> None:
    with _serving(migrated_sqlite, workdir, "--workers", "2") as (process, port, log):
        workers = _worker_pids(log)
        assert len(workers) == 2, log_text(log)
        _wait_workers_ready(process, log, workers)
        connections = _keep_alive_connections(port, 4)
        try:
            # Dealt in turn: two each, whatever the kernel would have woken (uvicorn's own workers: 4/0 is common).
            assert sorted(_holders(port, connections, workers).values()) == [2, 2]
        finally:
            for conn in connections:
                conn.close()

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, log_text(log)
        assert not any(_alive(pid) for pid in workers), log_text(log)
        output = " ".join(log_text(log).split())
        assert output.count("Application shutdown complete") == 2, output
        assert f"Stopped balancer process [{process.pid}]" in output


@pytest.mark.slow
def test_a_worker_that_dies_is_replaced_and_connections_keep_being_served(migrated_sqlite: str, workdir: Path) -> None:
    with _serving(migrated_sqlite, workdir, "--workers", "2") as (process, port, log):
        first, second = _worker_pids(log)
        _wait_workers_ready(process, log, [first, second])
        os.kill(first, signal.SIGKILL)
        while _alive(first):
            time.sleep(0.05)

        # Meanwhile the survivor takes every connection.
        connections = _keep_alive_connections(port, 2)
        try:
            assert _holders(port, connections, [second]) == {second: 2}
        finally:
            for conn in connections:
                conn.close()

        deadline = time.monotonic() + READY_TIMEOUT
        while len(_worker_pids(log)) < 3:
            assert process.poll() is None, log_text(log)
            assert time.monotonic() < deadline, log_text(log)
            time.sleep(0.2)
        replacement = _worker_pids(log)[2]
        assert replacement not in (first, second)
        assert f"worker process [{first}] died" in " ".join(log_text(log).split())

        # Once the replacement has started its application, both workers take connections again.
        _wait_workers_ready(process, log, [replacement])
        connections = _keep_alive_connections(port, 4)
        try:
            assert _holders(port, connections, [second, replacement]) == {second: 2, replacement: 2}
        finally:
            for conn in connections:
                conn.close()


@pytest.mark.slow
def test_workers_that_cannot_start_stop_the_server_with_status_3(migrated_sqlite: str, workdir: Path) -> None:
    # Files that exist but hold no certificate: the check before serving passes, each worker's TLS set-up fails.
    unusable = workdir / "not-a-certificate.pem"
    unusable.write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n")
    port = free_port()
    result = run_carnet(
        "serve",
        "--port",
        str(port),
        "--workers",
        "2",
        "--tls-cert",
        str(unusable),
        "--tls-key",
        str(unusable),
        env=carnet_env(migrated_sqlite, log_level="INFO"),
        cwd=workdir,
        timeout=120,
    )
    assert result.code == 3, result.describe()
    assert "failed to start" in result.output, result.describe()
    assert "starting another" not in result.output  # no restart loop
    with pytest.raises(ConnectionRefusedError):  # nothing listens any more
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
