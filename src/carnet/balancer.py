"""Several uvicorn workers behind one listening socket, with connections dealt out evenly.

``uvicorn --workers N`` lets every worker ``accept()`` on one shared socket. Which process wins is
up to the kernel and to which event loop wakes first; with keep-alive clients that connect together
(a hospital's interface engine, a benchmark) the split is lopsided: measured on this project's
benchmark, 16 connections opened at once landed 16/0 and 10/6 on two workers. The loaded worker's
queue is what the slowest requests see.

Here the supervisor owns the listening socket and accepts every connection itself, then hands the
accepted socket to the workers in turn, over a ``SOCK_SEQPACKET`` socket pair (``SCM_RIGHTS``, as
Node's cluster module does). A worker (:class:`HandedServer`) is a uvicorn server with no listener
of its own: it serves each socket it is handed with uvicorn's HTTP protocol, so TLS, keep-alive,
limits and graceful shutdown behave as in a single-process server.

A worker tells the supervisor when its application has started; the supervisor restarts a worker
that dies after that, stops everything with exit status 3 when one dies before (uvicorn's
``STARTUP_FAILURE``: a second would fail the same way), and on SIGINT / SIGTERM stops accepting, asks the workers
to finish their requests (uvicorn's graceful shutdown) and waits for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import selectors
import signal
import socket
import time
from dataclasses import dataclass, field
from multiprocessing.context import SpawnProcess
from types import FrameType

from uvicorn import Config, Server
from uvicorn._subprocess import get_subprocess
from uvicorn.config import STARTUP_FAILURE

logger = logging.getLogger("uvicorn.error")

_TOKEN = b"c"  # one byte of data rides with each passed descriptor
_READY = b"r"  # a worker's word to the supervisor: its application has started
_RESPAWN_PAUSE = 1.0  # seconds before a worker that died is started again (no crash loop at full speed)


class HandedServer(Server):
    """A uvicorn server that listens nowhere: it serves the sockets the supervisor hands it.

    The supervisor's end of ``channel`` closing (or a signal) tells it to shut down gracefully.
    """

    def __init__(self, config: Config, channel: socket.socket) -> None:
        super().__init__(config)
        self.channel = channel

    def run(self, sockets: list[socket.socket] | None = None) -> None:
        # An empty list, not None: uvicorn then opens no listener and logs no "running on" line.
        super().run(sockets=[])

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])
        if not self.started:
            return
        loop = asyncio.get_running_loop()
        self.channel.send(_READY)
        self.channel.setblocking(False)
        self._tasks: set[asyncio.Task[None]] = set()
        loop.add_reader(self.channel.fileno(), self._take, loop)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        asyncio.get_running_loop().remove_reader(self.channel.fileno())
        self.channel.close()
        await super().shutdown(sockets=[])

    def _take(self, loop: asyncio.AbstractEventLoop) -> None:
        """Receive every socket waiting on the channel; its end of file means: stop."""
        while True:
            try:
                data, fds, _flags, _address = socket.recv_fds(self.channel, len(_TOKEN), 1)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data, fds = b"", []
            if not data and not fds:
                loop.remove_reader(self.channel.fileno())
                self.should_exit = True
                return
            for fd in fds:
                sock = socket.socket(fileno=fd)
                if self.should_exit:
                    sock.close()  # shutting down: the client sees the connection closed and retries
                    continue
                task = loop.create_task(self._serve_handed(loop, sock))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _serve_handed(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        config = self.config
        sock.setblocking(False)

        def protocol() -> asyncio.Protocol:
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=self.server_state, app_state=self.lifespan.state, _loop=loop
            )

        try:
            await loop.connect_accepted_socket(protocol, sock, ssl=config.ssl)
        except OSError as exc:  # a failed TLS handshake too (ssl.SSLError is an OSError)
            logger.debug("connection dropped before serving: %s", exc)
            sock.close()


@dataclass
class _Worker:
    process: SpawnProcess
    channel: socket.socket  # the supervisor's end
    started_at: float = field(default_factory=time.monotonic)
    ready: bool = False  # its application has started: it serves what it is handed at once


class Balancer:
    """Accepts on ``config``'s address and deals the connections to ``workers`` processes."""

    def __init__(self, config: Config, workers: int) -> None:
        if workers < 2:
            raise ValueError("the balancer runs two workers or more")
        self.config = config
        self.count = workers
        self.workers: list[_Worker | None] = [None] * workers
        self.next = 0
        self.stopping = False
        self.status = 0
        self.selector = selectors.DefaultSelector()

    def _spawn(self, slot: int) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        process = get_subprocess(self.config, target=HandedServer(self.config, theirs).run, sockets=[])
        process.start()
        theirs.close()  # the child has its own duplicate; ours sees end of file when the child is gone
        ours.setblocking(False)
        worker = _Worker(process, ours)
        self.workers[slot] = worker
        self.selector.register(ours, selectors.EVENT_READ, worker)
        logger.info("Started worker process [%d]", process.pid)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.stopping = True

    def _hand(self, conn: socket.socket) -> None:
        """Give ``conn`` to the next worker that has started (else to any live one, which serves it once
        started); close it when none can take it."""
        for want_ready in (True, False):
            for _ in range(self.count):
                worker = self.workers[self.next]
                self.next = (self.next + 1) % self.count
                if worker is None or (want_ready and not worker.ready) or not worker.process.is_alive():
                    continue
                try:
                    socket.send_fds(worker.channel, [_TOKEN], [conn.fileno()])
                except OSError:
                    continue  # its queue is full (BlockingIOError) or its end is gone: the next one
                return
        logger.warning("no worker could take a connection: closed")

    def _hear(self, worker: _Worker) -> None:
        """A worker's channel is readable: it has started, or it is gone (end of file)."""
        try:
            message = worker.channel.recv(len(_READY))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            message = b""
        if message == _READY:
            worker.ready = True
            logger.info("Worker process [%d] ready", worker.process.pid)
        else:
            self.selector.unregister(worker.channel)  # gone: _check_workers collects it

    def _check_workers(self) -> None:
        for slot, worker in enumerate(self.workers):
            if worker is None or worker.process.is_alive():
                continue
            code = worker.process.exitcode
            with contextlib.suppress(KeyError):
                self.selector.unregister(worker.channel)
            worker.channel.close()
            self.workers[slot] = None
            if not worker.ready:
                # Its application did not start (a wrong setting, an unreadable TLS key): another would not either.
                logger.error("worker process [%d] failed to start (exit code %s): stopping", worker.process.pid, code)
                self.status = STARTUP_FAILURE
                self.stopping = True
                return
            logger.warning("worker process [%d] died (exit code %s): starting another", worker.process.pid, code)
            pause = _RESPAWN_PAUSE - (time.monotonic() - worker.started_at)
            if pause > 0:
                time.sleep(pause)
            self._spawn(slot)

    def run(self) -> int:
        """Serve until SIGINT / SIGTERM; the exit status: 0, or 3 when a worker could not start."""
        listener = self.config.bind_socket()
        listener.listen(self.config.backlog)  # bind_socket binds; listening is up to the caller
        listener.setblocking(False)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        logger.info("Started balancer process [%d]", os.getpid())
        try:
            for slot in range(self.count):
                self._spawn(slot)
            self.selector.register(listener, selectors.EVENT_READ, None)
            while not self.stopping:
                for key, _events in self.selector.select(timeout=0.5):
                    if key.data is None:
                        self._accept(listener)
                    else:
                        self._hear(key.data)
                self._check_workers()
        finally:
            self.selector.close()
            listener.close()
            self._stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return self.status

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _address = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of descriptors, for instance: wait instead of spinning
                logger.error("accept failed: %s", exc)
                time.sleep(0.1)
                return
            with conn:
                self._hand(conn)

    def _stop(self) -> None:
        live = [w for w in self.workers if w is not None]
        for worker in live:
            worker.channel.close()  # end of file: the worker stops taking sockets and shuts down
            if worker.process.is_alive() and worker.process.pid is not None:
                os.kill(worker.process.pid, signal.SIGTERM)
        grace = (self.config.timeout_graceful_shutdown or 30) + 5
        deadline = time.monotonic() + grace
        for worker in live:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                logger.error("worker process [%d] did not stop in %ss: killed", worker.process.pid, grace)
                worker.process.kill()
                worker.process.join()
        logger.info("Stopped balancer process [%d]", os.getpid())
