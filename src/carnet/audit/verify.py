"""``carnet audit verify``: recompute every chain and every checkpoint, and name what does not hold.

One read-only pass over a consistent snapshot (PostgreSQL: REPEATABLE READ; SQLite: one read
transaction), streamed: entries ordered by (chain, seq), merged with the heads and the checkpointed
heads of the same chain, so memory holds one chain position (plus a window of ``WINDOW`` entries when
the order must be rebuilt), never a chain or the table.

For each chain the walk checks, entry by entry, that ``seq`` runs from 1 without gaps or repeats,
that ``hash = SHA-256(previous ‖ chain ‖ seq ‖ payload)`` (``writer.link``), that the indexed columns
repeat the payload, and at the end that the head row holds the last (seq, hash), and that every
(seq, hash) a checkpoint recorded is still there. Then every checkpoint's digest is recomputed from
its stored heads, its Ed25519 signature checked and its link to the previous checkpoint followed.

What a problem is called (``Kind``):

* ``altered``   an entry's content, hash or indexed columns changed, or the chain was re-linked after a
                change (found by a checkpoint that signed a different entry at that position);
* ``deleted``   entries missing inside a chain (a gap in ``seq``, or entries removed and the rest renumbered);
* ``reordered`` entries present but out of order (their hashes link in another order);
* ``truncated`` entries missing at the end of a chain (the head, or a checkpoint, says the chain was longer);
* ``inserted``  an entry that belongs nowhere in the chain (a repeated ``seq``, or an entry the next one
                does not follow from);
* ``forged-checkpoint``  a checkpoint whose heads, time or digest do not match, whose signature does not
                verify, or whose key is unknown;
* ``missing-checkpoint`` a gap in the chain of checkpoints, or a head that changed long enough ago to be
                covered by a checkpoint and is not (checkpoints deleted, or checkpointing not running);
* ``head-mismatch``      the head row does not hold the chain's last entry.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import itertools
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from carnet.audit import checkpoints
from carnet.audit.models import GENESIS, AuditCheckpoint, AuditCheckpointHead, AuditEntry, AuditHead
from carnet.audit.writer import INDEXED, link
from carnet.records.models import Record
from carnet.runtime import Runtime

BATCH = 2000
WINDOW = 32  # entries examined ahead of a mismatch to tell a reordering from an alteration
MAX_SHIFT = 16  # entries removed (or added) before a renumbered part of a chain that are still named


class Kind(enum.StrEnum):
    ALTERED = "altered"
    DELETED = "deleted"
    REORDERED = "reordered"
    TRUNCATED = "truncated"
    INSERTED = "inserted"
    FORGED_CHECKPOINT = "forged-checkpoint"
    MISSING_CHECKPOINT = "missing-checkpoint"
    HEAD_MISMATCH = "head-mismatch"


@dataclass(frozen=True, slots=True)
class Problem:
    kind: Kind
    message: str
    chain: uuid.UUID | None = None
    seq: int | None = None  # the stored seq of the entry concerned (or the first missing one)
    at: dt.datetime | None = None
    checkpoint: int | None = None
    subject: str | None = None  # "record" when the chain is a record's, "chain" otherwise (filled at the end)

    def as_json(self) -> dict[str, object]:
        return {
            "kind": self.kind.value,
            "chain": str(self.chain) if self.chain else None,
            "subject": self.subject,
            "seq": self.seq,
            "at": self.at.isoformat(timespec="microseconds") if self.at else None,
            "checkpoint": self.checkpoint,
            "message": self.message,
        }

    def where(self) -> str:
        parts = []
        if self.chain is not None:
            parts.append(f"{self.subject or 'chain'} {self.chain}")
        if self.seq is not None:
            parts.append(f"seq {self.seq}")
        if self.checkpoint is not None:
            parts.append(f"checkpoint #{self.checkpoint}")
        return ", ".join(parts) or "trail"


@dataclass(slots=True)
class Report:
    """What a verification covered and found (``problems`` keeps the first ``max_problems``)."""

    record: uuid.UUID | None = None
    chains: int = 0
    entries: int = 0
    checkpoints: int = 0
    checkpointed_heads: int = 0
    latest_checkpoint: int | None = None
    by_kind: Counter[str] = field(default_factory=Counter)
    problems: list[Problem] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.by_kind

    @property
    def problem_count(self) -> int:
        return sum(self.by_kind.values())

    def as_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "record": str(self.record) if self.record else None,
            "summary": {
                "chains": self.chains,
                "entries": self.entries,
                "checkpoints": self.checkpoints,
                "checkpointedHeads": self.checkpointed_heads,
                "latestCheckpoint": self.latest_checkpoint,
                "problems": self.problem_count,
                "byKind": dict(sorted(self.by_kind.items())),
                "seconds": round(self.seconds, 3),
            },
            "problems": [p.as_json() for p in self.problems],
        }


class _Sink:
    def __init__(self, report: Report, max_problems: int) -> None:
        self.report = report
        self.max_problems = max_problems

    def add(self, problem: Problem) -> None:
        self.report.by_kind[problem.kind.value] += 1
        if len(self.report.problems) < self.max_problems:
            self.report.problems.append(problem)


# --------------------------------------------------------------------------------------- helpers


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class _Peek:
    """An iterator one can look into, and give rows back to."""

    def __init__(self, rows: Iterable[Any]) -> None:
        self._rows = iter(rows)
        self._buffer: deque[Any] = deque()

    def peek(self) -> Any | None:
        if not self._buffer:
            item = next(self._rows, None)
            if item is None:
                return None
            self._buffer.append(item)
        return self._buffer[0]

    def next(self) -> Any | None:
        if self._buffer:
            return self._buffer.popleft()
        return next(self._rows, None)

    def take(self, n: int) -> list[Any]:
        out: list[Any] = []
        while len(out) < n:
            item = self.next()
            if item is None:
                break
            out.append(item)
        return out

    def give_back(self, rows: list[Any]) -> None:
        self._buffer.extendleft(reversed(rows))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def _entries(n: int) -> str:
    return f"{n} {'entry' if n == 1 else 'entries'}"


# --------------------------------------------------------------------------------------- one chain


class _Chain:
    """The walk of one chain (see the module docstring)."""

    def __init__(self, chain: uuid.UUID, sink: _Sink, checkpointed: _Peek, report: Report) -> None:
        self.chain = chain
        self.chain_bytes = chain.bytes
        self.sink = sink
        self.report = report
        self.checkpointed = checkpointed  # this chain's checkpointed heads, by seq
        self.prev = GENESIS  # hash of the last entry accepted in the chain
        self.prev_alt: bytes | None = None  # what that hash should have been, when its stored one did not verify
        self.prev_prev: bytes | None = None
        self.link_next = 1  # the position (seq as hashed) the next entry must have
        self.offset = 0  # stored seq − hashed seq, for the part of the chain being walked
        self.last_stored = 0
        self.last_at: dt.datetime | None = None
        self.last_problem = 0  # the furthest position a problem was reported at
        self.pending: tuple[int, bytes, Row[Any]] | None = None  # accepted, not yet held against checkpoints
        self.truncated = False
        self.checkpoint_rewrite_reported = False
        self.max_checkpointed = 0
        # An entry that does not link is reported when the next one is seen: if that one links two
        # positions on, the first was not altered but follows entries deleted before it (renumbered).
        self.held: tuple[Problem, int] | None = None

    # ------------------------------------------------------------------ reporting
    def problem(self, kind: Kind, message: str, row: Row[Any] | None = None, *, seq: int | None = None,
                position: int | None = None, checkpoint: int | None = None, hold: bool = False) -> None:  # fmt: skip
        at = position if position is not None else self.link_next
        self.last_problem = max(self.last_problem, at)
        problem = Problem(
            kind,
            message,
            chain=self.chain,
            seq=seq if seq is not None else (row.seq if row is not None else None),
            at=_aware(row.at) if row is not None else None,
            checkpoint=checkpoint,
        )
        if hold:
            self.held = (problem, at)
        else:
            self.sink.add(problem)

    def release(self) -> None:
        if self.held is not None:
            self.sink.add(self.held[0])
            self.held = None

    # ------------------------------------------------------------------ checks
    def links(self, previous: bytes, position: int, row: Row[Any]) -> bool:
        return bool(link(previous, self.chain, position, row.payload) == row.hash)

    def consume(self, row: Row[Any]) -> None:
        """Count an entry and check that its indexed columns repeat its payload."""
        self.report.entries += 1
        try:
            document = orjson.loads(row.payload)
        except orjson.JSONDecodeError:
            self.problem(Kind.ALTERED, "the entry's payload is not the canonical JSON of a trace", row)
            return
        if not isinstance(document, dict):
            self.problem(Kind.ALTERED, "the entry's payload is not the canonical JSON of a trace", row)
            return
        differing = []
        for name in INDEXED:
            stored = getattr(row, name)
            expected = document.get(name)
            if isinstance(stored, uuid.UUID):
                stored = str(stored)
            if stored != expected:
                differing.append(name)
        try:
            stated = dt.datetime.fromisoformat(str(document.get("at")))
        except ValueError:
            stated = None
        if stated is None or _aware(row.at) != stated.astimezone(dt.UTC):
            differing.append("at")
        if differing:
            self.problem(
                Kind.ALTERED,
                f"indexed column{'s' if len(differing) > 1 else ''} {', '.join(differing)} differ"
                f"{'' if len(differing) > 1 else 's'} from the entry's content",
                row,
            )

    def accept(self, row: Row[Any], position: int, *, alt: bytes | None = None) -> None:
        self.confirm()
        self.pending = (position, row.hash, row)
        self.prev_prev, self.prev, self.prev_alt = self.prev, row.hash, alt
        self.link_next = position + 1
        self.offset = row.seq - position
        self.last_stored = row.seq
        self.last_at = _aware(row.at)

    def confirm(self) -> None:
        """Hold the last accepted entry against what checkpoints recorded at its position."""
        if self.pending is None:
            return
        position, stored_hash, row = self.pending
        self.pending = None
        while (cp := self.checkpointed.peek()) is not None and cp.seq <= position:
            self.checkpointed.next()
            self.report.checkpointed_heads += 1
            self.max_checkpointed = max(self.max_checkpointed, cp.seq)
            if cp.seq < position:
                if cp.seq > self.last_problem:
                    self.problem(
                        Kind.DELETED,
                        f"checkpoint #{cp.checkpoint_id} recorded entry {cp.seq}, which is no longer in the chain",
                        seq=cp.seq + self.offset,
                        position=cp.seq,
                        checkpoint=cp.checkpoint_id,
                    )
            elif cp.hash != stored_hash and position > self.last_problem and not self.checkpoint_rewrite_reported:
                self.checkpoint_rewrite_reported = True
                self.problem(
                    Kind.ALTERED,
                    f"checkpoint #{cp.checkpoint_id} signed another entry at this position: the chain was "
                    "rewritten at or before it and re-linked",
                    row,
                    position=position,
                    checkpoint=cp.checkpoint_id,
                )

    def step(self, row: Row[Any], rows: _Peek) -> None:
        held, self.held = self.held, None
        if not self.walk(row, rows, held) and held is not None:
            self.sink.add(held[0])

    def walk(self, row: Row[Any], rows: _Peek, held: tuple[Problem, int] | None) -> bool:
        """One entry; True when it explained the entry held before it (which is then not reported as is)."""
        self.consume(row)
        if row.seq <= self.last_stored:
            self.problem(Kind.INSERTED, f"a second entry at seq {row.seq}", row, position=self.link_next - 1)
            return False
        position = row.seq - self.offset
        if position > self.link_next:
            if self.links(self.prev, self.link_next, row):
                self.problem(
                    Kind.ALTERED,
                    f"sequence numbers changed: entry {self.link_next} is stored as seq {row.seq}",
                    row,
                )
                self.accept(row, self.link_next)
                return False
            first, last = self.link_next + self.offset, row.seq - 1
            span = f"seq {first}" if first == last else f"seq {first}–{last}"
            self.problem(
                Kind.DELETED,
                f"{_entries(last - first + 1)} missing ({span})",
                row,
                seq=first,
                position=position,
            )
            self.accept(row, position)  # its predecessor is gone: it is taken as stored
            return False
        if self.links(self.prev, position, row) or (
            self.prev_alt is not None and self.links(self.prev_alt, position, row)
        ):
            self.accept(row, position)
            return False
        for shift in range(1, MAX_SHIFT + 1):
            if self.links(self.prev, position + shift, row):
                if held is not None and held[1] == position - 1:
                    # The entry before did not link because the ones before it are gone, and the rest of
                    # the chain was renumbered to hide the gap.
                    prior = held[0]
                    self.held = (
                        Problem(
                            Kind.DELETED,
                            f"{_entries(shift)} removed before seq {prior.seq} and the rest of the chain "
                            f"renumbered (seq {prior.seq} is entry {position - 1 + shift})",
                            chain=self.chain,
                            seq=prior.seq,
                            at=prior.at,
                        ),
                        position - 1,
                    )
                    self.release()
                    self.accept(row, position + shift)
                    return True
                self.problem(
                    Kind.DELETED,
                    f"{_entries(shift)} removed before this one and the rest "
                    f"of the chain renumbered (it is entry {position + shift})",
                    row,
                    position=position + shift,
                )
                self.accept(row, position + shift)
                return False
        if self.prev_prev is not None and position > 1 and self.links(self.prev_prev, position - 1, row):
            self.problem(
                Kind.INSERTED,
                f"the entry at seq {row.seq - 1} was inserted: this entry follows the one before it",
                row,
                seq=row.seq - 1,
                position=position,
            )
            self.pending = None  # the inserted entry is not the chain's
            self.prev = self.prev_prev
            self.accept(row, position - 1)
            self.prev_prev = None
            return False
        window = [row, *rows.take(WINDOW - 1)]
        if self.rebuild(window, rows):
            return False
        rows.give_back(window[1:])
        self.problem(Kind.ALTERED, "the entry's hash does not match its content and position", row, hold=True)
        self.accept(row, position, alt=link(self.prev, self.chain, position, row.payload))
        return False

    def rebuild(self, window: list[Row[Any]], rows: _Peek) -> bool:
        """Put the window back in hash order from the last good entry: a reordering, or entries that fit nowhere."""
        pool = list(window)
        previous, position = self.prev, self.link_next
        taken: list[tuple[Row[Any], int]] = []
        while pool:
            found = next((r for r in pool if self.links(previous, position, r)), None)
            if found is None:
                break
            taken.append((found, position))
            pool.remove(found)
            previous, position = found.hash, position + 1
            if all(r.seq > found.seq for r in pool) and all(r.seq < found.seq for r, _ in taken[:-1]):
                break  # back in step: everything stored before this entry has been placed
        if not taken:
            return False
        for r in window[1:]:
            if r in pool and r.seq > max(t.seq for t, _ in taken):
                continue
            self.consume(r)
        last_stored = max(r.seq for r, _ in taken)
        final_offset = last_stored + 1 - position
        moved = [(r, p) for r, p in taken if r.seq - p != final_offset]
        if moved:
            described = ", ".join(f"seq {r.seq} holds entry {p + final_offset}" for r, p in moved[:8])
            self.problem(
                Kind.REORDERED,
                f"{_entries(len(moved))} out of order: {described}",
                moved[0][0],
                seq=min(r.seq for r, _ in moved),
                position=max(p for _, p in moved),
            )
        extra = sorted((r for r in pool if r.seq < last_stored), key=lambda r: r.seq)
        for r in extra:
            self.problem(Kind.INSERTED, "an entry that belongs nowhere in the chain", r, position=position)
        rows.give_back(sorted((r for r in pool if r.seq > last_stored), key=lambda r: r.seq))
        for r, p in taken:
            self.accept(r, p)
        self.offset = final_offset
        self.last_stored = last_stored
        return True

    def finish(self, head: Row[Any] | None, now: dt.datetime, last_checkpoint: checkpoints.Checkpoint | None,
               stale: list[int], interval: dt.timedelta, margin: dt.timedelta) -> None:  # fmt: skip
        self.release()
        self.confirm()
        end = self.link_next - 1
        if head is None:
            if end:
                self.problem(Kind.HEAD_MISMATCH, f"the chain has {end} entries and no head row", seq=end + self.offset)
        elif head.seq > end:
            self.truncated = True
            missing = f"entry {end + 1}" if head.seq == end + 1 else f"entries {end + 1}–{head.seq}"
            self.problem(
                Kind.TRUNCATED,
                f"the head says the chain has {head.seq} entries; {missing} are gone"
                if end
                else f"the head says the chain has {head.seq} entries; none is left",
                seq=end + 1 + self.offset,
                position=head.seq,
            )
        elif head.seq < end and not (head.seq == self.last_stored and head.hash == self.prev):
            # (a head at the last stored seq, holding the last hash: the chain was renumbered, said above)
            self.problem(
                Kind.HEAD_MISMATCH,
                f"the head says seq {head.seq} but the chain goes on to entry {end}",
                seq=head.seq + self.offset,
            )
        elif head.hash not in (self.prev, self.prev_alt):
            self.problem(Kind.HEAD_MISMATCH, f"the head's hash is not entry {end}'s", seq=end + self.offset)
        # What checkpoints recorded beyond the end of the chain.
        beyond = None
        while (cp := self.checkpointed.next()) is not None:
            self.report.checkpointed_heads += 1
            self.max_checkpointed = max(self.max_checkpointed, cp.seq)
            beyond = beyond or cp
        if beyond is not None and not self.truncated:
            self.truncated = True
            self.problem(
                Kind.TRUNCATED,
                f"checkpoint #{beyond.checkpoint_id} recorded entry {beyond.seq}; the chain ends at entry {end}",
                seq=end + 1 + self.offset,
                position=beyond.seq,
                checkpoint=beyond.checkpoint_id,
            )
        # A change that a checkpoint should already cover.
        if head is None or head.seq <= 0 or head.seq <= self.max_checkpointed or head.seq != end:
            return
        updated = _aware(head.updated_at)
        assert updated is not None
        if last_checkpoint is not None and updated < last_checkpoint.at - margin:
            self.problem(
                Kind.MISSING_CHECKPOINT,
                f"the chain changed at {updated.isoformat(timespec='seconds')} (entry {end}) but no checkpoint "
                f"covers it, although checkpoint #{last_checkpoint.id} was taken at "
                f"{last_checkpoint.at.isoformat(timespec='seconds')}",
                seq=end + self.offset,
                checkpoint=last_checkpoint.id,
            )
        elif updated < now - interval - margin:
            stale.append(1)


# --------------------------------------------------------------------------------------- the whole trail


def _chains(
    entries: Iterator[Row[Any]], heads: _Peek, checkpointed: _Peek
) -> Iterator[tuple[uuid.UUID, Iterator[Row[Any]], Row[Any] | None, Iterator[Row[Any]]]]:
    """Merge the three streams (each ordered by chain) into one item per chain."""
    groups = _Peek(itertools.groupby(entries, key=lambda r: r.chain))
    while True:
        candidates = [c for c in (_key(groups.peek()), _chain_of(heads.peek()), _chain_of(checkpointed.peek())) if c]
        if not candidates:
            return
        chain = min(candidates)
        group = groups.peek()
        rows: Iterator[Row[Any]] = iter(())
        if group is not None and group[0] == chain:
            groups.next()
            rows = group[1]
        head = heads.next() if _chain_of(heads.peek()) == chain else None
        cps = _take_while(checkpointed, chain)
        yield chain, rows, head, cps
        for _ in rows:  # in case the walk stopped early
            pass
        for _ in cps:
            pass


def _key(group: tuple[uuid.UUID, Any] | None) -> uuid.UUID | None:
    return group[0] if group is not None else None


def _chain_of(row: Row[Any] | None) -> uuid.UUID | None:
    return row.chain if row is not None else None


def _take_while(rows: _Peek, chain: uuid.UUID) -> Iterator[Row[Any]]:
    while (row := rows.peek()) is not None and row.chain == chain:
        rows.next()
        yield row


def _entries_query(record: uuid.UUID | None) -> sa.Select[Any]:
    query = sa.select(
        AuditEntry.chain,
        AuditEntry.seq,
        AuditEntry.at,
        *(getattr(AuditEntry, name) for name in INDEXED),
        AuditEntry.payload,
        AuditEntry.hash,
    ).order_by(AuditEntry.chain, AuditEntry.seq, AuditEntry.at)
    return query.where(AuditEntry.chain == record) if record is not None else query


def verify(
    runtime: Runtime,
    *,
    record: uuid.UUID | None = None,
    anchors: Iterable[tuple[int, bytes]] = (),
    max_problems: int = 1000,
    on_problem: Callable[[Problem], None] | None = None,
) -> Report:
    """Verify the whole trail (or the chain of one ``record``): chains, heads and checkpoints.

    ``anchors`` are (checkpoint id, digest) pairs kept outside the database (``carnet audit checkpoint
    --json`` prints them): each must still be there, unchanged, which also detects the deletion of the
    latest checkpoints.
    """
    started = time.perf_counter()
    report = Report(record=record)
    sink = _Sink(report, max_problems)
    settings = runtime.settings
    interval = dt.timedelta(seconds=settings.audit_checkpoint_seconds)
    margin = dt.timedelta(seconds=settings.audit_checkpoint_margin_seconds)
    postgresql = runtime.engine.dialect.name == "postgresql"
    with runtime.engine.connect() as conn:
        if postgresql:
            conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        with conn.begin():
            now = checkpoints.database_now(conn, postgresql)
            last = checkpoints.latest(conn)
            report.latest_checkpoint = last.id if last else None
            stale: list[int] = []
            # Checkpoints first: the chains are then held only against checkpoints that verify.
            forged = _verify_checkpoints(conn, record, runtime, sink, report)
            _verify_chains(conn, record, sink, report, now, last, stale, interval, margin, forged)
            if stale:
                sink.add(
                    Problem(
                        Kind.MISSING_CHECKPOINT,
                        f"{_plural(len(stale), 'chain')} changed more than "
                        f"{int((interval + margin).total_seconds())} s ago "
                        + ("are" if len(stale) > 1 else "is")
                        + " covered by no checkpoint; "
                        + (
                            f"the latest is #{last.id} at {last.at.isoformat(timespec='seconds')}"
                            if last
                            else "there is no checkpoint at all"
                        )
                        + ": checkpointing is not running, or the latest checkpoints were deleted",
                        checkpoint=last.id if last else None,
                    )
                )
            _check_anchors(conn, anchors, sink)
            _name_subjects(conn, report)
    report.seconds = time.perf_counter() - started
    if on_problem is not None:
        for problem in report.problems:
            on_problem(problem)
    return report


def _verify_chains(
    conn: Connection,
    record: uuid.UUID | None,
    sink: _Sink,
    report: Report,
    now: dt.datetime,
    last: checkpoints.Checkpoint | None,
    stale: list[int],
    interval: dt.timedelta,
    margin: dt.timedelta,
    forged: set[int],
) -> None:
    heads_query = sa.select(AuditHead.chain, AuditHead.seq, AuditHead.hash, AuditHead.updated_at).order_by(
        AuditHead.chain
    )
    checkpointed_query = sa.select(
        AuditCheckpointHead.chain, AuditCheckpointHead.seq, AuditCheckpointHead.hash, AuditCheckpointHead.checkpoint_id
    ).order_by(AuditCheckpointHead.chain, AuditCheckpointHead.seq, AuditCheckpointHead.checkpoint_id)
    if record is not None:
        heads_query = heads_query.where(AuditHead.chain == record)
        checkpointed_query = checkpointed_query.where(AuditCheckpointHead.chain == record)
    if forged:
        checkpointed_query = checkpointed_query.where(AuditCheckpointHead.checkpoint_id.not_in(sorted(forged)))
    with contextlib.ExitStack() as streams:  # server-side cursors on PostgreSQL: closed however this ends
        entries = streams.enter_context(conn.execute(_entries_query(record).execution_options(yield_per=BATCH)))
        heads = _Peek(streams.enter_context(conn.execute(heads_query.execution_options(yield_per=BATCH))))
        checkpointed = _Peek(streams.enter_context(conn.execute(checkpointed_query.execution_options(yield_per=BATCH))))
        _walk_chains(entries, heads, checkpointed, sink, report, now, last, stale, interval, margin)


def _walk_chains(
    entries: Iterable[Row[Any]],
    heads: _Peek,
    checkpointed: _Peek,
    sink: _Sink,
    report: Report,
    now: dt.datetime,
    last: checkpoints.Checkpoint | None,
    stale: list[int],
    interval: dt.timedelta,
    margin: dt.timedelta,
) -> None:
    for chain, rows, head, cps in _chains(iter(entries), heads, checkpointed):
        stream, recorded = _Peek(rows), _Peek(cps)
        if head is not None and head.seq == 0 and stream.peek() is None and recorded.peek() is None:
            continue  # a head row whose first append rolled back: nothing was ever written
        report.chains += 1
        walk = _Chain(chain, sink, recorded, report)
        while (row := stream.next()) is not None:
            walk.step(row, stream)
        walk.finish(head, now, last, stale, interval, margin)


def _verify_checkpoints(
    conn: Connection, record: uuid.UUID | None, runtime: Runtime, sink: _Sink, report: Report
) -> set[int]:
    """Check every checkpoint (or those naming ``record``); return the ids of those that do not verify."""
    keys = checkpoints.verification_keys(runtime.settings)
    columns = (
        AuditCheckpoint.id,
        AuditCheckpoint.at,
        AuditCheckpoint.previous,
        AuditCheckpoint.digest,
        AuditCheckpoint.heads,
        AuditCheckpoint.key_id,
        AuditCheckpoint.signature,
    )
    heads_query = sa.select(
        AuditCheckpointHead.checkpoint_id, AuditCheckpointHead.chain, AuditCheckpointHead.seq, AuditCheckpointHead.hash
    ).order_by(AuditCheckpointHead.checkpoint_id, AuditCheckpointHead.chain)
    query = sa.select(*columns).order_by(AuditCheckpoint.id)
    if record is not None:
        # The checkpoints that recorded this chain, and the one before each (for the link).
        ids = sa.select(AuditCheckpointHead.checkpoint_id).where(AuditCheckpointHead.chain == record)
        query = query.where(AuditCheckpoint.id.in_(ids))
        heads_query = heads_query.where(AuditCheckpointHead.checkpoint_id.in_(ids))
    with contextlib.ExitStack() as streams:
        rows = streams.enter_context(conn.execute(query.execution_options(yield_per=BATCH)))
        heads = _Peek(streams.enter_context(conn.execute(heads_query.execution_options(yield_per=BATCH))))
        return _check_checkpoints(conn, record, keys, rows, heads, sink, report)


def _check_checkpoints(
    conn: Connection,
    record: uuid.UUID | None,
    keys: dict[str, Any],
    rows: Iterable[Any],
    heads: _Peek,
    sink: _Sink,
    report: Report,
) -> set[int]:
    previous: tuple[int, set[bytes], dt.datetime] | None = None
    forged: set[int] = set()
    for cp in rows:
        report.checkpoints += 1
        at = _aware(cp.at)
        assert at is not None
        running = checkpoints.Digest(cp.previous, at)
        while (head := heads.peek()) is not None and head.checkpoint_id <= cp.id:
            heads.next()
            if head.checkpoint_id == cp.id:
                running.add(head.chain.bytes, head.seq, head.hash)
        recomputed = running.digest()
        if recomputed != cp.digest or running.count != cp.heads:
            forged.add(cp.id)
            sink.add(
                Problem(
                    Kind.FORGED_CHECKPOINT,
                    f"checkpoint #{cp.id} does not match its digest: its heads, time or digest were changed",
                    checkpoint=cp.id,
                    at=at,
                )
            )
        elif not checkpoints.verify_signature(keys, cp.key_id, cp.digest, cp.signature):
            forged.add(cp.id)
            reason = "its signature does not verify" if cp.key_id in keys else f"it names an unknown key {cp.key_id}"
            sink.add(Problem(Kind.FORGED_CHECKPOINT, f"checkpoint #{cp.id}: {reason}", checkpoint=cp.id, at=at))
        if record is not None:
            expected = _digest_before(conn, cp.id)
            if cp.previous != expected:
                sink.add(
                    Problem(
                        Kind.MISSING_CHECKPOINT,
                        f"checkpoint #{cp.id} does not follow the checkpoint before it",
                        checkpoint=cp.id,
                        at=at,
                    )
                )
        elif previous is None:
            if cp.previous != GENESIS:
                sink.add(
                    Problem(
                        Kind.MISSING_CHECKPOINT,
                        f"checkpoint #{cp.id} is the first left but follows another: earlier checkpoints were deleted",
                        checkpoint=cp.id,
                        at=at,
                    )
                )
        else:
            previous_id, previous_digests, previous_at = previous
            if cp.previous not in previous_digests:
                sink.add(
                    Problem(
                        Kind.MISSING_CHECKPOINT,
                        f"checkpoint #{cp.id} does not follow #{previous_id}: checkpoints between them were deleted "
                        "or replaced",
                        checkpoint=cp.id,
                        at=at,
                    )
                )
            if at <= previous_at:
                sink.add(
                    Problem(
                        Kind.FORGED_CHECKPOINT,
                        f"checkpoint #{cp.id} is not later than #{previous_id}",
                        checkpoint=cp.id,
                        at=at,
                    )
                )
        previous = (cp.id, {cp.digest, recomputed}, at)
    return forged


def _digest_before(conn: Connection, checkpoint_id: int) -> bytes:
    value = conn.execute(
        sa.select(AuditCheckpoint.digest)
        .where(AuditCheckpoint.id < checkpoint_id)
        .order_by(AuditCheckpoint.id.desc())
        .limit(1)
    ).scalar()
    return value if value is not None else GENESIS


def _check_anchors(conn: Connection, anchors: Iterable[tuple[int, bytes]], sink: _Sink) -> None:
    for checkpoint_id, digest in anchors:
        stored = conn.execute(sa.select(AuditCheckpoint.digest).where(AuditCheckpoint.id == checkpoint_id)).scalar()
        if stored is None:
            sink.add(
                Problem(
                    Kind.MISSING_CHECKPOINT,
                    f"checkpoint #{checkpoint_id}, anchored outside the database, is gone",
                    checkpoint=checkpoint_id,
                )
            )
        elif stored != digest:
            sink.add(
                Problem(
                    Kind.FORGED_CHECKPOINT,
                    f"checkpoint #{checkpoint_id} no longer has the digest anchored outside the database",
                    checkpoint=checkpoint_id,
                )
            )


def _name_subjects(conn: Connection, report: Report) -> None:
    """Say which problem chains are records' (the others hold sign-ins and administration)."""
    chains = {p.chain for p in report.problems if p.chain is not None}
    if not chains:
        return
    records = set(conn.execute(sa.select(Record.id).where(Record.id.in_(chains))).scalars())
    report.problems = [
        Problem(p.kind, p.message, p.chain, p.seq, p.at, p.checkpoint, "record" if p.chain in records else "chain")
        if p.chain is not None
        else p
        for p in report.problems
    ]
