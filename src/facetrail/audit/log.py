"""Append-only, hash-chained audit records, written in the same transaction as the action they record.

Each record's hash covers its sequence number, time, actor, action, target, outcome, details and the
previous record's hash, so editing, deleting, reordering or inserting a record breaks the chain at that
point. Truncating the tail leaves a valid shorter chain, which only an external reference can reveal:
``make_checkpoint`` signs (HMAC-SHA256, key kept outside the database) the head's count and hash, and
``verify_chain`` checks every checkpoint it is given still holds.

Nothing in FaceTrail updates or deletes audit records; database triggers refuse it too.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from facetrail.storage.models import AuditHead, AuditRecord

GENESIS_HASH = "0" * 64


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def record_hash(
    seq: int, ts: str, actor: str, action: str, target: str, outcome: str, details: str, prev_hash: str
) -> str:
    payload = canonical_json([seq, ts, actor, action, target, outcome, details, prev_hash])
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def append_audit(
    session: Session,
    *,
    actor: str,
    action: str,
    target: str = "",
    details: dict[str, Any] | None = None,
    outcome: str = "ok",
) -> AuditRecord:
    """Add one record to the chain inside the caller's transaction (it commits or rolls back with the action).

    The head row is locked (FOR UPDATE on PostgreSQL; SQLite transactions here begin IMMEDIATE, which
    serialises writers), so concurrent writers still produce one gapless chain.
    """
    head = session.execute(select(AuditHead).where(AuditHead.id == 1).with_for_update()).scalar_one()
    seq = head.seq + 1
    ts = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
    details_json = canonical_json(details or {})
    digest = record_hash(seq, ts, actor, action, target, outcome, details_json, head.hash)
    record = AuditRecord(
        seq=seq,
        ts=ts,
        actor=actor,
        action=action,
        target=target,
        outcome=outcome,
        details=details_json,
        prev_hash=head.hash,
        hash=digest,
    )
    session.add(record)
    head.seq, head.hash = seq, digest
    session.flush()
    return record


@dataclass
class AuditVerification:
    ok: bool
    records: int
    head_seq: int
    head_hash: str
    first_bad_seq: int | None = None
    problem: str | None = None
    checkpoints_checked: int = 0
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "records": self.records,
            "head_seq": self.head_seq,
            "head_hash": self.head_hash,
            "first_bad_seq": self.first_bad_seq,
            "problem": self.problem,
            "checkpoints_checked": self.checkpoints_checked,
            "problems": self.problems,
        }


def _iter_records(session: Session, batch: int = 5000) -> Iterator[AuditRecord]:
    last = -1
    while True:
        rows = (
            session.execute(
                select(AuditRecord).where(AuditRecord.seq > last).order_by(AuditRecord.seq).limit(batch)
            )
            .scalars()
            .all()
        )
        if not rows:
            return
        yield from rows
        last = rows[-1].seq


def verify_chain(
    session: Session, checkpoints: Iterable[dict[str, Any]] = (), key: bytes | None = None
) -> AuditVerification:
    """Recompute the whole chain; report the first broken record, then check signed checkpoints."""
    problems: list[tuple[int | None, str]] = []
    expected_seq, prev_hash, count = 1, GENESIS_HASH, 0
    hashes_by_seq: dict[int, str] = {}
    for rec in _iter_records(session):
        count += 1
        if rec.seq != expected_seq:
            kind = "missing (deleted?)" if rec.seq > expected_seq else "out of order"
            problems.append((expected_seq, f"record {expected_seq} is {kind}: found {rec.seq} next"))
        if rec.prev_hash != prev_hash:
            problems.append(
                (
                    rec.seq,
                    f"record {rec.seq} does not link to the record before it "
                    "(deleted, inserted or reordered records)",
                )
            )
        recomputed = record_hash(
            rec.seq, rec.ts, rec.actor, rec.action, rec.target, rec.outcome, rec.details, rec.prev_hash
        )
        if recomputed != rec.hash:
            problems.append(
                (rec.seq, f"record {rec.seq} was altered: its content no longer matches its hash")
            )
        hashes_by_seq[rec.seq] = rec.hash
        prev_hash = rec.hash
        expected_seq = rec.seq + 1
        if len(problems) > 50:
            break
    last_seq = expected_seq - 1
    head = session.execute(select(AuditHead).where(AuditHead.id == 1)).scalar_one_or_none()
    if head is None:
        problems.append((None, "the chain head row is missing"))
    elif (head.seq, head.hash) != (last_seq, prev_hash):
        problems.append(
            (
                min(head.seq, last_seq) + 1,
                f"the chain head says {head.seq} records ending {head.hash[:12]}…, but the log has "
                f"{last_seq} ending {prev_hash[:12]}… (records removed from or added to the end)",
            )
        )
    checked = 0
    for cp in checkpoints:
        checked += 1
        problem = _check_checkpoint(cp, hashes_by_seq, last_seq, key)
        if problem:
            problems.append((int(cp.get("seq", 0)) if problem.startswith("truncated") else None, problem))
    first_bad = min((s for s, _ in problems if s is not None), default=None)
    first_problem = next((p for s, p in problems if s == first_bad), problems[0][1] if problems else None)
    return AuditVerification(
        ok=not problems,
        records=count,
        head_seq=last_seq,
        head_hash=prev_hash,
        first_bad_seq=first_bad,
        problem=first_problem,
        checkpoints_checked=checked,
        problems=[p for _, p in problems],
    )


def _checkpoint_payload(seq: int, head_hash: str, ts: str) -> bytes:
    return canonical_json({"seq": seq, "hash": head_hash, "ts": ts}).encode()


def _check_checkpoint(
    cp: dict[str, Any], hashes: dict[int, str], last_seq: int, key: bytes | None
) -> str | None:
    try:
        seq, head_hash, ts, mac = int(cp["seq"]), str(cp["hash"]), str(cp["ts"]), str(cp["hmac"])
    except (KeyError, TypeError, ValueError):
        return f"checkpoint is malformed: {cp!r:.200}"
    if key is not None:
        expected = hmac.new(key, _checkpoint_payload(seq, head_hash, ts), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, mac):
            return f"checkpoint at record {seq} has a bad signature (forged, or a different key)"
    if seq > last_seq:
        return f"truncated: checkpoint of {ts} saw {seq} records, the log now ends at {last_seq}"
    if seq > 0 and hashes.get(seq) != head_hash:
        return f"checkpoint at record {seq} does not match the log: the record there has changed"
    return None


def make_checkpoint(session: Session, key: bytes) -> dict[str, Any]:
    """The head's count and hash, signed with a key kept outside the database."""
    head = session.execute(select(AuditHead).where(AuditHead.id == 1)).scalar_one()
    count = session.execute(select(func.count()).select_from(AuditRecord)).scalar_one()
    ts = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    mac = hmac.new(key, _checkpoint_payload(head.seq, head.hash, ts), hashlib.sha256).hexdigest()
    return {"seq": head.seq, "hash": head.hash, "ts": ts, "records": count, "hmac": mac}


def load_or_create_key(path: Path) -> bytes:
    """The checkpoint key: 32 random bytes, hex, in a file only the owner can read."""
    if path.exists():
        return bytes.fromhex(path.read_text().strip())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32))
    return bytes.fromhex(path.read_text().strip())


def read_checkpoints(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            out.append(json.loads(line))
    return out


def append_checkpoint(path: Path, checkpoint: dict[str, Any]) -> None:
    with open(path, "a") as fh:
        fh.write(canonical_json(checkpoint) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
