"""`carnet audit verify` on both databases: a clean trail passes, and each kind of tampering done with
plain SQL (UPDATE, DELETE, INSERT) is caught and named, with the record and the position."""

from __future__ import annotations

import datetime as dt
import json
import tracemalloc
import uuid
from pathlib import Path

import orjson
import sqlalchemy as sa

from carnet.audit import checkpoints, writer
from carnet.audit.models import AuditCheckpoint, AuditCheckpointHead, AuditEntry, AuditHead
from carnet.audit.trace import Trace, TraceAction
from tests.audit.conftest import Trail
from tests.audit.support import (
    activity,
    age_heads,
    canonical,
    check,
    checkpoint_ids,
    delete_checkpoint,
    entry,
    execute,
    kinds,
    payload,
    problems_of,
    relink,
    renumber,
    rows,
)
from tests.cli.support import carnet_env, run_carnet


def test_a_clean_trail_passes(trail: Trail) -> None:
    patient_id, _, _, _ = activity(trail.api)
    checkpoints.checkpoint(trail.runtime)
    activity(trail.api)  # more after the checkpoint
    report = check(trail.runtime)
    assert report.ok, report.as_json()
    assert report.entries >= 20
    assert report.chains >= 3
    assert report.checkpoints == 1
    assert report.checkpointed_heads >= 2
    one = check(trail.runtime, record=uuid.UUID(patient_id))
    assert one.ok, one.as_json()
    assert one.chains == 1
    assert one.entries == len(rows(trail.runtime, patient_id))


def test_an_altered_entry_is_named_with_its_record_and_position(trail: Trail) -> None:
    patient_id, _, _, _ = activity(trail.api)
    row = rows(trail.runtime, patient_id)[4]
    changed = payload(row) | {"actor_key": "pro:899999999999"}
    execute(trail.runtime, sa.update(AuditEntry).where(entry(patient_id, row.seq)).values(payload=canonical(changed)))
    report = check(trail.runtime)
    altered = problems_of(report, "altered")
    assert kinds(report) == {"altered"}, report.as_json()
    # The payload no longer matches its hash, and its indexed column no longer repeats it.
    assert {(p.chain, p.seq, p.subject) for p in altered} == {(uuid.UUID(patient_id), row.seq, "record")}
    assert any("hash" in p.message for p in altered)
    assert any("actor_key" in p.message for p in altered)


def test_an_altered_indexed_column_is_caught(trail: Trail) -> None:
    patient_id, _, _, _ = activity(trail.api)
    row = rows(trail.runtime, patient_id)[2]
    execute(trail.runtime, sa.update(AuditEntry).where(entry(patient_id, row.seq)).values(outcome="denied"))
    report = check(trail.runtime)
    assert kinds(report) == {"altered"}
    [problem] = report.problems
    assert problem.seq == row.seq
    assert "outcome" in problem.message


def test_an_altered_and_relinked_chain_is_caught_by_the_checkpoint(trail: Trail) -> None:
    patient_id, _, _, _ = activity(trail.api)
    taken = checkpoints.checkpoint(trail.runtime)
    assert taken is not None
    row = rows(trail.runtime, patient_id)[3]
    changed = payload(row) | {"resource_id": "somewhere-else"}
    execute(
        trail.runtime,
        sa.update(AuditEntry)
        .where(entry(patient_id, row.seq))
        .values(payload=canonical(changed), resource_id="somewhere-else"),
    )
    relink(trail.runtime, patient_id)  # hashes recomputed, head moved: the chain alone looks fine
    report = check(trail.runtime)
    assert kinds(report) == {"altered"}, report.as_json()
    [problem] = report.problems
    assert problem.chain == uuid.UUID(patient_id)
    assert problem.checkpoint == taken.id
    assert "rewritten" in problem.message


def test_a_deleted_entry_is_caught(trail: Trail) -> None:
    patient_id, _, _, _ = activity(trail.api)
    execute(trail.runtime, sa.delete(AuditEntry).where(entry(patient_id, 3)))
    report = check(trail.runtime)
    assert kinds(report) == {"deleted"}, report.as_json()
    [problem] = report.problems
    assert (problem.chain, problem.seq) == (uuid.UUID(patient_id), 3)
    assert "seq 3" in problem.message


def test_a_deletion_hidden_by_renumbering_is_caught(trail: Trail) -> None:
    patient_id, _, _, _ = activity(trail.api)
    last = len(rows(trail.runtime, patient_id))
    execute(trail.runtime, sa.delete(AuditEntry).where(sa.and_(entry(patient_id, 4))))
    renumber(trail.runtime, patient_id, after=4, by=-1)
    execute(trail.runtime, sa.update(AuditHead).where(AuditHead.chain == uuid.UUID(patient_id)).values(seq=last - 1))
    report = check(trail.runtime)
    assert "deleted" in kinds(report), report.as_json()
    deleted = problems_of(report, "deleted")
    assert kinds(report) == {"deleted"}, report.as_json()
    assert deleted[0].seq == 4
    assert "renumbered" in deleted[0].message


def test_reordered_entries_are_caught(trail: Trail) -> None:
    patient_id, _, _, _ = activity(trail.api)
    chain = uuid.UUID(patient_id)
    execute(
        trail.runtime,
        sa.update(AuditEntry).where(entry(chain, 5)).values(seq=1005),
        sa.update(AuditEntry).where(entry(chain, 6)).values(seq=5),
        sa.update(AuditEntry).where(entry(chain, 1005)).values(seq=6),
    )
    report = check(trail.runtime)
    assert kinds(report) == {"reordered"}, report.as_json()
    [problem] = report.problems
    assert (problem.chain, problem.seq) == (chain, 5)
    assert "seq 5 holds entry 6" in problem.message
    assert "seq 6 holds entry 5" in problem.message


def test_a_truncated_chain_is_caught(trail: Trail) -> None:
    patient_id, _, _, _ = activity(trail.api)
    last = len(rows(trail.runtime, patient_id))
    execute(
        trail.runtime,
        sa.delete(AuditEntry).where(AuditEntry.chain == uuid.UUID(patient_id), AuditEntry.seq >= last - 1),
    )
    report = check(trail.runtime)
    assert kinds(report) == {"truncated"}, report.as_json()
    [problem] = report.problems
    assert problem.seq == last - 1
    assert f"entries {last - 1}–{last}" in problem.message


def test_a_truncation_with_the_head_moved_back_is_caught_by_the_checkpoint(trail: Trail) -> None:
    patient_id, _, _, _ = activity(trail.api)
    taken = checkpoints.checkpoint(trail.runtime)
    assert taken is not None
    chain = rows(trail.runtime, patient_id)
    kept = chain[-3]
    execute(
        trail.runtime,
        sa.delete(AuditEntry).where(AuditEntry.chain == uuid.UUID(patient_id), AuditEntry.seq > kept.seq),
        sa.update(AuditHead).where(AuditHead.chain == uuid.UUID(patient_id)).values(seq=kept.seq, hash=kept.hash),
    )
    report = check(trail.runtime)
    assert kinds(report) == {"truncated"}, report.as_json()
    [problem] = report.problems
    assert problem.checkpoint == taken.id
    assert problem.chain == uuid.UUID(patient_id)


def test_an_inserted_entry_is_caught(trail: Trail) -> None:
    patient_id, _, _, _ = activity(trail.api)
    original = rows(trail.runtime, patient_id)[2]
    at = original.at + dt.timedelta(microseconds=1)
    forged = payload(original) | {"actor_key": "pro:810007345670", "professional": "810007345670"}
    forged["at"] = at.astimezone(dt.UTC).isoformat(timespec="microseconds")
    values = {c: getattr(original, c) for c in AuditEntry.__table__.columns.keys()}  # noqa: SIM118
    values |= {"at": at, "payload": canonical(forged)}
    values |= {"actor_key": "pro:810007345670", "professional": "810007345670"}
    execute(trail.runtime, sa.insert(AuditEntry).values(**values))
    report = check(trail.runtime)
    assert kinds(report) == {"inserted"}, report.as_json()
    [problem] = report.problems
    assert (problem.chain, problem.seq) == (uuid.UUID(patient_id), original.seq)


def test_an_inserted_entry_with_a_valid_link_and_renumbering_is_caught(trail: Trail) -> None:
    patient_id, _, _, _ = activity(trail.api)
    chain = uuid.UUID(patient_id)
    before = rows(trail.runtime, patient_id)
    renumber(trail.runtime, patient_id, after=3, by=1)
    forged = payload(before[3]) | {"actor_key": "pro:810007345670", "professional": "810007345670"}
    data = canonical(forged)
    values = {c: getattr(before[3], c) for c in AuditEntry.__table__.columns.keys()}  # noqa: SIM118
    values |= {"seq": 4, "payload": data, "actor_key": "pro:810007345670", "professional": "810007345670"}
    values |= {"hash": writer.link(before[2].hash, chain, 4, data)}  # a correct link from entry 3
    execute(trail.runtime, sa.insert(AuditEntry).values(**values))
    report = check(trail.runtime)
    assert "inserted" in kinds(report), report.as_json()
    assert kinds(report) == {"inserted"}, report.as_json()
    assert problems_of(report, "inserted")[0].seq == 4


def test_a_head_that_does_not_match_is_caught(trail: Trail) -> None:
    patient_id, _, _, _ = activity(trail.api)
    execute(
        trail.runtime,
        sa.update(AuditHead).where(AuditHead.chain == uuid.UUID(patient_id)).values(hash=bytes(32)),
    )
    report = check(trail.runtime)
    assert kinds(report) == {"head-mismatch"}, report.as_json()
    assert report.problems[0].chain == uuid.UUID(patient_id)


def test_a_forged_checkpoint_is_caught(trail: Trail) -> None:
    activity(trail.api)
    first = checkpoints.checkpoint(trail.runtime)
    activity(trail.api)
    second = checkpoints.checkpoint(trail.runtime)
    assert first is not None
    assert second is not None
    # A signature that is not the key's.
    execute(trail.runtime, sa.update(AuditCheckpoint).where(AuditCheckpoint.id == first.id).values(signature=bytes(64)))
    report = check(trail.runtime)
    assert kinds(report) == {"forged-checkpoint"}, report.as_json()
    assert report.problems[0].checkpoint == first.id
    assert "signature" in report.problems[0].message


def test_a_checkpoint_whose_heads_were_changed_is_forged_and_the_chains_are_not_accused(trail: Trail) -> None:
    patient_id, _, _, _ = activity(trail.api)
    taken = checkpoints.checkpoint(trail.runtime)
    assert taken is not None
    execute(
        trail.runtime,
        sa.update(AuditCheckpointHead)
        .where(AuditCheckpointHead.checkpoint_id == taken.id, AuditCheckpointHead.chain == uuid.UUID(patient_id))
        .values(hash=bytes(32)),
    )
    report = check(trail.runtime)
    assert kinds(report) == {"forged-checkpoint"}, report.as_json()
    assert "digest" in report.problems[0].message


def test_a_checkpoint_signed_by_an_unknown_key_is_forged(trail: Trail) -> None:
    activity(trail.api)
    taken = checkpoints.checkpoint(trail.runtime)
    assert taken is not None
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    other = Ed25519PrivateKey.generate()
    kid = checkpoints.key_id(checkpoints.public_bytes(other.public_key()))
    execute(
        trail.runtime,
        sa.update(AuditCheckpoint)
        .where(AuditCheckpoint.id == taken.id)
        .values(key_id=kid, signature=other.sign(taken.digest)),
    )
    report = check(trail.runtime)
    assert kinds(report) == {"forged-checkpoint"}
    assert "unknown key" in report.problems[0].message


def test_a_deleted_checkpoint_is_caught(trail: Trail) -> None:
    for _ in range(3):
        activity(trail.api, reads=1)
        checkpoints.checkpoint(trail.runtime)
    ids = checkpoint_ids(trail.runtime)
    delete_checkpoint(trail.runtime, ids[1])
    report = check(trail.runtime)
    missing = problems_of(report, "missing-checkpoint")
    assert missing, report.as_json()
    assert missing[0].checkpoint == ids[2]
    assert f"#{ids[0]}" in missing[0].message
    assert kinds(report) == {"missing-checkpoint"}


def test_deleting_the_first_checkpoint_is_caught(trail: Trail) -> None:
    activity(trail.api, reads=1)
    checkpoints.checkpoint(trail.runtime)
    checkpoints.checkpoint(trail.runtime)
    delete_checkpoint(trail.runtime, checkpoint_ids(trail.runtime)[0])
    report = check(trail.runtime)
    assert "missing-checkpoint" in kinds(report)
    assert any("earlier checkpoints were deleted" in p.message for p in report.problems)


def test_changes_left_without_checkpoint_are_reported(trail: Trail) -> None:
    """Checkpointing that stopped (or whose latest checkpoints were deleted) shows once changes are older
    than the interval and the margin."""
    activity(trail.api, reads=1)
    assert check(trail.runtime).ok  # recent changes: a checkpoint is not due yet
    settings = trail.runtime.settings
    age_heads(trail.runtime, settings.audit_checkpoint_seconds + settings.audit_checkpoint_margin_seconds + 60)
    report = check(trail.runtime)
    assert kinds(report) == {"missing-checkpoint"}, report.as_json()
    assert "there is no checkpoint at all" in report.problems[0].message
    checkpoints.checkpoint(trail.runtime)
    assert check(trail.runtime).ok


def test_anchors_kept_outside_detect_the_deletion_of_the_latest_checkpoint(trail: Trail) -> None:
    activity(trail.api, reads=1)
    first = checkpoints.checkpoint(trail.runtime)
    latest = checkpoints.checkpoint(trail.runtime)
    assert first is not None
    assert latest is not None
    anchors = [(latest.id, latest.digest)]
    assert check(trail.runtime, anchors=anchors).ok
    delete_checkpoint(trail.runtime, latest.id)
    assert check(trail.runtime).ok  # the database alone cannot tell
    report = check(trail.runtime, anchors=anchors)
    assert kinds(report) == {"missing-checkpoint"}
    assert report.problems[0].checkpoint == latest.id
    wrong = check(trail.runtime, anchors=[(first.id, bytes(32))])
    assert kinds(wrong) == {"forged-checkpoint"}


def test_verifying_one_record_looks_at_its_chain_only(trail: Trail) -> None:
    clean, _, _, _ = activity(trail.api)
    damaged, _, _, _ = activity(trail.api)
    checkpoints.checkpoint(trail.runtime)
    execute(trail.runtime, sa.delete(AuditEntry).where(entry(damaged, 2)))
    assert check(trail.runtime, record=uuid.UUID(clean)).ok
    report = check(trail.runtime, record=uuid.UUID(damaged))
    assert kinds(report) == {"deleted"}
    assert report.checkpoints == 1
    assert report.chains == 1


def test_the_cli_verifies_and_exits_non_zero_on_tampering(trail: Trail, tmp_path: Path) -> None:
    patient_id, _, _, _ = activity(trail.api)
    checkpoints.checkpoint(trail.runtime)
    env = carnet_env(trail.url)
    clean = run_carnet("audit", "verify", env=env, cwd=tmp_path)
    assert clean.code == 0, clean.describe()
    assert "OK the whole trail" in clean.output
    execute(trail.runtime, sa.delete(AuditEntry).where(entry(patient_id, 3)))
    failed = run_carnet("audit", "verify", env=env, cwd=tmp_path)
    assert failed.code == 1, failed.describe()
    assert f"DELETED record {patient_id}, seq 3" in failed.output
    assert "FAILED" in failed.output
    as_json = run_carnet("audit", "verify", "--json", "--record", patient_id, env=env, cwd=tmp_path)
    assert as_json.code == 1
    document = json.loads(as_json.stdout)
    assert document["ok"] is False
    assert document["summary"]["byKind"] == {"deleted": 1}
    assert document["problems"][0] | {"at": None} == {
        "kind": "deleted",
        "chain": patient_id,
        "subject": "record",
        "seq": 3,
        "at": None,
        "checkpoint": None,
        "message": document["problems"][0]["message"],
    }
    # The verification itself is traced, as an administrative action from the command line.
    with trail.runtime.engine.connect() as conn:
        admin = [
            orjson.loads(p)
            for p in conn.execute(sa.select(AuditEntry.payload).where(AuditEntry.action == "admin")).scalars()
        ]
    assert any(a["reason"].startswith("audit verify") and a["interface"] == "cli" for a in admin)


def test_verify_streams_a_large_trail_in_bounded_memory(trail: Trail) -> None:
    """Thirty thousand entries in three hundred chains: every one is checked, and the memory used stays a
    small fraction of what holding them would take."""
    at = dt.datetime.now(dt.UTC)
    chains = 300
    per_chain = 100
    with trail.runtime.sessions() as session:
        for n in range(chains):
            record = uuid.uuid4()
            traces = [
                Trace(
                    action=TraceAction.DOCUMENT_READ,
                    at=at + dt.timedelta(microseconds=i),
                    actor_kind="professional",
                    actor_key="pro:810001745206",
                    record_id=record,
                    resource_type="DocumentReference",
                    resource_id=f"doc-{n}-{i}",
                    resource_version=1,
                    professional="810001745206",
                    profession="10",
                    detail="x" * 200,
                )
                for i in range(per_chain)
            ]
            writer.write(session, traces)
        session.commit()
    checkpoints.checkpoint(trail.runtime)
    tracemalloc.start()
    try:
        report = check(trail.runtime)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.ok, report.as_json()
    assert report.entries >= chains * per_chain
    stored = chains * per_chain * (600 + 32)  # payload and hash bytes alone, before any Python object
    assert peak < stored / 2, f"peak {peak} bytes for {stored} bytes of entries"
