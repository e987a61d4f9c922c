"""A lean HTTP/1.1 keep-alive load generator on asyncio streams.

General-purpose clients (httpx) spend ~0.5 ms of CPU per request, on the same two cores as the server
under test; this one spends a few tens of microseconds, so the figures measure Carnet, not the client.
It speaks just enough HTTP/1.1: one request at a time per connection, Content-Length or chunked bodies.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, token: str) -> None:
        self.reader = reader
        self.writer = writer
        self.prefix = f"Host: {host}\r\nAuthorization: Bearer {token}\r\nConnection: keep-alive\r\n"

    async def send(self, request: Request) -> Reply:
        head = f"{request.method} {request.path} HTTP/1.1\r\n{self.prefix}"
        for name, value in request.headers:
            head += f"{name}: {value}\r\n"
        head += f"Content-Length: {len(request.body)}\r\n\r\n"
        self.writer.write(head.encode() + request.body)
        status_line = await self.reader.readline()
        status = int(status_line.split(b" ", 2)[1])
        length = None
        chunked = False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            field, _, raw = line.partition(b":")
            lowered = field.strip().lower()
            if lowered == b"content-length":
                length = int(raw.strip())
            elif lowered == b"transfer-encoding" and b"chunked" in raw.lower():
                chunked = True
        if chunked:
            parts = []
            while True:
                size = int((await self.reader.readline()).strip(), 16)
                if size == 0:
                    await self.reader.readline()
                    break
                parts.append(await self.reader.readexactly(size))
                await self.reader.readline()
            return Reply(status, b"".join(parts))
        return Reply(status, await self.reader.readexactly(length or 0))


async def run(
    host: str, port: int, token: str, clients: int, requests: list[Request], check: Callable[[Request, Reply], None]
) -> tuple[float, list[float]]:
    """Send ``requests`` over ``clients`` connections; return (elapsed seconds, latencies in ms)."""
    queue: asyncio.Queue[Request] = asyncio.Queue()
    for request in requests:
        queue.put_nowait(request)
    latencies: list[float] = []

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        connection = Connection(reader, writer, f"{host}:{port}", token)
        try:
            while not queue.empty():
                request = queue.get_nowait()
                started = time.perf_counter()
                reply = await connection.send(request)
                latencies.append((time.perf_counter() - started) * 1000)
                check(request, reply)
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return time.perf_counter() - started, latencies
