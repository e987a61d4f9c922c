"""The process runtime (engine, keys, blob store) and the unit of work handed to services.

``Runtime`` is built once per process from ``Settings``. ``Runtime.work()`` opens one transaction
and yields a ``Work``: the session, the encrypted resource store, the settings and the clock that
every service function receives first. Services flush; ``work()`` commits on success and rolls back
on any exception, so a request either happens entirely or leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from carnet.audit import writer
from carnet.audit.trace import Outcome, Trace
from carnet.auth.cache import ActorCache
from carnet.cache import TTLCache
from carnet.config import BlobBackend, Settings
from carnet.crypto import BlindIndexer, KeyRing
from carnet.db import create_engine, session_factory, unit_of_work, utcnow
from carnet.logging import log
from carnet.storage.blobs import BlobStore, DatabaseBlobStore, FilesystemBlobStore
from carnet.storage.store import ResourceStore


@dataclass
class Work:
    """One unit of work: everything a service needs, nothing global."""

    session: Session
    store: ResourceStore
    settings: Settings
    now: dt.datetime = field(default_factory=utcnow)
    actors: ActorCache | None = None
    # IdNat_PS → directory Practitioner id, for indexing document authors.
    practitioner_ids: TTLCache[str, str] | None = None
    # Access contexts (a professional's relationship to a record) loaded during this unit of work.
    access_contexts: dict[tuple[str, str, uuid.UUID], object] = field(default_factory=dict)
    # What this unit of work did, for the audit trail (written by the runtime when the unit ends).
    traces: list[Trace] = field(default_factory=list)
    # Told of a (record, IdNat_PS) pair that has accessed the record before, as the statement that loaded
    # the record found it (see carnet.access.context): the first-access rule then needs no query.
    known_access: Callable[[uuid.UUID, str], None] | None = None


class Runtime:
    """Process-wide resources built from the settings."""

    def __init__(self, settings: Settings, engine: Engine | None = None) -> None:
        self.settings = settings
        self.engine = engine or create_engine(settings)
        # Units that may write; on SQLite they take the write lock when they begin (see carnet.db).
        self.sessions: sessionmaker[Session] = session_factory(self.engine.execution_options(carnet_write=True))
        # Read-only requests on PostgreSQL run in autocommit: no BEGIN/COMMIT round trips. Each of their
        # statements is atomic on its own; anything that writes uses work() and its single transaction.
        self.read_sessions: sessionmaker[Session] = (
            session_factory(self.engine.execution_options(isolation_level="AUTOCOMMIT"))
            if self.engine.dialect.name == "postgresql"
            else session_factory(self.engine)
        )
        self._autocommit_reads = self.engine.dialect.name == "postgresql"
        self.keyring = KeyRing(settings.key_encryption_keys())
        self.indexer = BlindIndexer(settings.index_key_bytes())
        self.actors = ActorCache()
        self.practitioner_ids: TTLCache[str, str] = TTLCache(ttl=60.0)
        # Imported here: the rules read records, accounts and the directory, whose services import this module.
        from carnet.notifications.rules import NotificationRules  # noqa: PLC0415 - import cycle

        self.notification_rules = NotificationRules(settings)
        self.blobs: BlobStore = (
            FilesystemBlobStore(settings.blob_dir)
            if settings.blob_backend is BlobBackend.FILESYSTEM
            else DatabaseBlobStore()
        )

    @contextlib.contextmanager
    def work(self) -> Iterator[Work]:
        """A unit of work that may write: one transaction, committed at the end, with its traces and the
        notifications they cause."""
        session = self.sessions()
        work = self._work(session)
        try:
            yield work
            work.store.flush()
            self._record(work, work.traces)
            session.commit()
        except BaseException:
            session.rollback()
            self._record_refusals(work.traces)
            raise
        finally:
            session.close()

    @contextlib.contextmanager
    def read(self) -> Iterator[Work]:
        """A unit of work that only reads (searches, reads, retrievals). Its traces are written before
        the block's result can be used: if they cannot be, the exception leaves the block instead."""
        session = self.read_sessions()
        work = self._work(session)
        try:
            yield work
            work.store.flush()
            if work.traces and self._autocommit_reads and not self.notification_rules.pending(work.traces):
                # PostgreSQL, nothing to notify: the traces go out on this connection, one autocommitted
                # call per chain, before the block's result can be used.
                writer.write(session, work.traces)
                work.traces = []
            session.commit()
        except BaseException:
            session.rollback()
            self._record_refusals(work.traces)
            raise
        finally:
            session.close()
        if work.traces:
            self._record_reads(work)

    def _work(self, session: Session) -> Work:
        return Work(
            session=session,
            store=ResourceStore(session, self.keyring, self.indexer, self.blobs),
            settings=self.settings,
            actors=self.actors,
            practitioner_ids=self.practitioner_ids,
            known_access=self.notification_rules.remember_access,
        )

    def _record(self, work: Work, traces: list[Trace]) -> None:
        """In the unit's transaction: the traces, then the notifications they cause."""
        if not traces:
            return
        writer.write(work.session, traces)
        self.notification_rules.apply(work, traces)

    def _record_reads(self, read: Work) -> None:
        if self.notification_rules.pending(read.traces):
            with unit_of_work(self.sessions) as session:
                work = self._work(session)
                work.now = read.now
                self._record(work, read.traces)
            return
        # Traces alone: on PostgreSQL one autocommitted call per chain, on SQLite one short transaction.
        with unit_of_work(self.read_sessions if self.engine.dialect.name == "postgresql" else self.sessions) as s:
            writer.write(s, read.traces)

    def _record_refusals(self, traces: list[Trace]) -> None:
        """After a rollback: keep the refusals and failed authentications (what succeeded did not happen)."""
        kept = [t for t in traces if t.outcome is not Outcome.SUCCESS]
        if not kept:
            return
        try:
            with unit_of_work(self.sessions) as session:
                writer.write(session, kept)
        except Exception:  # the original error is what the caller must see
            log.error("audit.refusals_not_written", count=len(kept))

    def dispose(self) -> None:
        self.engine.dispose()
