"""Append-only, hash-chained audit records, written in the same transaction as the action they record.

Each record's hash covers its sequence number, time, actor, action, target, outcome, details and the
previous record's hash, so editing, deleting, reordering or inserting a record breaks the chain at that
point. Truncating the tail, or re-chaining a rewritten log, leaves a valid chain, which only an external
reference can reveal: ``make_checkpoint`` signs the head's sequence number and hash with an Ed25519 private key
kept outside the data folder (``audit.signing_key_path`` or ``FACETRAIL_AUDIT__SIGNING_KEY``), and
``verify_chain`` checks every checkpoint it is given with only the public key, so whoever can verify cannot
forge. Older installations' HMAC-SHA256 checkpoints still verify with their key. docs/audit.md describes the
format; tests/adversarial/test_audit_rewrite.py performs the rewrites (SQLite and PostgreSQL).

Nothing in FaceTrail updates or deletes audit records; database triggers refuse it too.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from facetrail.errors import BadInputError
from facetrail.storage.models import AuditHead, AuditRecord

GENESIS_HASH = "0" * 64
MAX_PROBLEMS = 50  # a badly damaged log is reported by its first problems, not by millions of lines
# Column widths of the short fields (PostgreSQL enforces them; checked here so both databases agree).
FIELD_LIMITS = {"actor": 200, "action": 100, "outcome": 40}


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def record_hash(
    seq: int, ts: str, actor: str, action: str, target: str, outcome: str, details: str, prev_hash: str
) -> str:
    payload = canonical_json([seq, ts, actor, action, target, outcome, details, prev_hash])
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _check_storable(name: str, value: str) -> None:
    """Refuse text the databases cannot store exactly: the hash must cover exactly what is stored."""
    if "\x00" in value:
        raise BadInputError(f"audit {name} contains a NUL character, which the database cannot store", field=name)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadInputError(f"audit {name} is not valid Unicode (lone surrogate)", field=name) from None
    limit = FIELD_LIMITS.get(name)
    if limit is not None and len(value) > limit:
        raise BadInputError(f"audit {name} is longer than {limit} characters", field=name)


# Set per HTTP request by the server (client address, user agent, request id): every audit record written
# while serving the request carries it, without each service function having to pass it along.
REQUEST_CONTEXT: ContextVar[dict[str, Any] | None] = ContextVar("facetrail_audit_request", default=None)


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
    serialises writers), so concurrent writers still produce one gapless chain. Raises BadInputError, before
    touching the database, for text that cannot be stored exactly (NUL, lone surrogates, over-long fields).
    """
    request = REQUEST_CONTEXT.get()
    if request and "request" not in (details or {}):
        details = {**(details or {}), "request": request}
    details_json = canonical_json(details or {})
    for name, value in (
        ("actor", actor),
        ("action", action),
        ("target", target),
        ("outcome", outcome),
        ("details", details_json),
    ):
        _check_storable(name, value)
    # populate_existing: never trust a head loaded earlier in this session; the locked row is the truth.
    head = session.execute(
        select(AuditHead).where(AuditHead.id == 1).with_for_update().execution_options(populate_existing=True)
    ).scalar_one()
    seq = head.seq + 1
    ts = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
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
    warnings: list[str] = field(default_factory=list)
    last_checkpoint_seq: int | None = None  # the newest checkpoint that holds (records up to it are vouched for)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "records": self.records,
            "head_seq": self.head_seq,
            "head_hash": self.head_hash,
            "first_bad_seq": self.first_bad_seq,
            "problem": self.problem,
            "checkpoints_checked": self.checkpoints_checked,
            "last_checkpoint_seq": self.last_checkpoint_seq,
            "problems": self.problems,
            "warnings": self.warnings,
        }


_RECORD_COLUMNS = (
    AuditRecord.seq,
    AuditRecord.ts,
    AuditRecord.actor,
    AuditRecord.action,
    AuditRecord.target,
    AuditRecord.outcome,
    AuditRecord.details,
    AuditRecord.prev_hash,
    AuditRecord.hash,
)


def _iter_records(session: Session, batch: int = 5000) -> Iterator[Any]:
    """Plain rows in seq order, in batches (a long log must not pile up in the session's identity map)."""
    last = -1
    while True:
        rows = session.execute(
            select(*_RECORD_COLUMNS).where(AuditRecord.seq > last).order_by(AuditRecord.seq).limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq


def _use_snapshot(session: Session) -> None:
    """Verification reads in batches; on PostgreSQL they must all see one snapshot, or a concurrent append
    between batches would look like a head mismatch. (SQLite WAL read transactions are snapshots already.)"""
    if session.get_bind().dialect.name == "postgresql" and not session.in_transaction():
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})


def _describe_link_break(session: Session, rec: Any) -> tuple[int, str]:
    """A record whose prev_hash is not its predecessor's hash: find what it does link to (hash is unique)."""
    linked = session.execute(select(AuditRecord.seq).where(AuditRecord.hash == rec.prev_hash)).scalar_one_or_none()
    if linked is not None and linked < rec.seq - 1:
        first, last = linked + 1, rec.seq - 1
        span = f"record {first}" if first == last else f"records {first}–{last}"
        return first, (
            f"{span} inserted or moved: record {rec.seq} links to record {linked}, so nothing was "
            f"ever chained between them"
        )
    if linked is not None and linked > rec.seq:
        return rec.seq, (f"records reordered: record {rec.seq} links to record {linked}, which comes after it")
    return rec.seq, (
        f"record {rec.seq} does not link to record {rec.seq - 1} (its predecessor was deleted, replaced or altered)"
    )


def verify_chain(
    session: Session,
    checkpoints: Iterable[dict[str, Any]] = (),
    key: bytes | None = None,
    *,
    public_key: Ed25519PublicKey | None = None,
    checkpoint_targets: Iterable[str] = (),
) -> AuditVerification:
    """Recompute the whole chain; report the first broken record, then check signed checkpoints.

    ``key`` (HMAC) None skips HMAC signature checks (the caller then vouches for them some other way); an
    Ed25519 checkpoint is checked against ``public_key`` and refused without one. ``checkpoint_targets``:
    the checkpoint files given; every 'audit.checkpoint' record naming one of them must have its checkpoint
    in ``checkpoints``, else the file was replaced or cut.
    """
    _use_snapshot(session)
    cps = list(checkpoints)
    wanted_seqs = {cp["seq"] for cp in cps if isinstance(cp, dict) and isinstance(cp.get("seq"), int)}
    problems: list[tuple[int | None, str]] = []

    def report(seq: int | None, text: str) -> None:
        if len(problems) < MAX_PROBLEMS:
            problems.append((seq, text))

    expected_seq, prev_hash, count = 1, GENESIS_HASH, 0
    hashes_by_seq: dict[int, str] = {0: GENESIS_HASH}
    targets = set(checkpoint_targets)
    recorded_checkpoints: list[int] = []  # 'audit.checkpoint' records for the files given
    for rec in _iter_records(session):
        count += 1
        if targets and rec.action == "audit.checkpoint" and rec.target in targets:
            recorded_checkpoints.append(rec.seq)
        if rec.seq > expected_seq:
            span = f"record {expected_seq}" if rec.seq - 1 == expected_seq else f"records {expected_seq}–{rec.seq - 1}"
            report(expected_seq, f"{span} missing (deleted): the log jumps from {expected_seq - 1} to {rec.seq}")
        if rec.prev_hash != prev_hash:
            report(*_describe_link_break(session, rec))
        recomputed = record_hash(
            rec.seq, rec.ts, rec.actor, rec.action, rec.target, rec.outcome, rec.details, rec.prev_hash
        )
        if recomputed != rec.hash:
            report(rec.seq, f"record {rec.seq} altered: its content no longer matches its hash")
        if rec.seq in wanted_seqs:
            hashes_by_seq[rec.seq] = rec.hash
        prev_hash = rec.hash
        expected_seq = rec.seq + 1
    last_seq = expected_seq - 1

    head = session.execute(select(AuditHead).where(AuditHead.id == 1)).scalar_one_or_none()
    if head is None:
        report(None, "the chain head row is missing")
    elif head.seq > last_seq:
        report(
            last_seq + 1,
            f"records {last_seq + 1}–{head.seq} removed from the end: the log ends at "
            f"{last_seq} but the chain head says {head.seq}",
        )
    elif head.seq < last_seq:
        report(
            head.seq + 1,
            f"records {head.seq + 1}–{last_seq} are beyond the chain head ({head.seq}): appended outside FaceTrail",
        )
    elif head.hash != prev_hash:
        report(last_seq, f"record {last_seq} is not the record the chain head names (replaced)")

    checked, last_good_cp = 0, None
    missing = [seq for seq in recorded_checkpoints if seq not in wanted_seqs]
    if missing:
        report(
            None,
            f"{len(missing)} checkpoint(s) recorded in the log (first at record {missing[0]}) are missing from "
            "the checkpoint file: it was replaced or cut",
        )
    for cp in cps:
        checked += 1
        bad = _check_checkpoint(cp, hashes_by_seq, last_seq, key, public_key)
        if bad is None:
            last_good_cp = max(last_good_cp or 0, int(cp["seq"]))
        else:
            report(*bad)
    warnings = []
    if not cps:
        warnings.append("no checkpoints given: removal of records from the end of the log cannot be detected")
    elif key is None and any("hmac" in cp for cp in cps if isinstance(cp, dict)):
        warnings.append("HMAC checkpoint signatures not checked (no key)")
    elif cps and last_good_cp is not None and last_good_cp < last_seq:
        warnings.append(f"records {last_good_cp + 1}–{last_seq} come after the newest checkpoint (not yet vouched for)")

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
        warnings=warnings,
        last_checkpoint_seq=last_good_cp,
    )


def checkpoint_signature(checkpoint: dict[str, Any], key: bytes) -> str:
    """HMAC-SHA256 over the canonical JSON of every checkpoint field except ``hmac`` itself."""
    payload = canonical_json({k: v for k, v in checkpoint.items() if k != "hmac"}).encode("utf-8")
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


def _check_checkpoint(
    cp: dict[str, Any],
    hashes: dict[int, str],
    last_seq: int,
    key: bytes | None,
    public_key: Ed25519PublicKey | None = None,
) -> tuple[int | None, str] | None:
    """None if the checkpoint holds, else (first bad seq or None, what is wrong)."""
    try:
        seq, head_hash, ts = cp["seq"], str(cp["hash"]), str(cp["ts"])
        if not isinstance(seq, int) or seq < 0 or not ("hmac" in cp or "signature" in cp):
            raise ValueError(seq)
    except (KeyError, TypeError, ValueError):
        return None, f"checkpoint is malformed: {cp!r:.200}"
    if "signature" in cp:
        if public_key is None:
            return None, f"checkpoint of {ts} (record {seq}) is Ed25519-signed but no public key was given"
        if not ed25519_signature_holds(cp, public_key):
            return None, (
                f"checkpoint of {ts} (record {seq}) has a bad signature: forged, altered, or signed by another key "
                f"(key id {str(cp.get('key_id'))[:20]!r}; the public key given is {public_key_id(public_key)!r})"
            )
    elif key is not None and not hmac.compare_digest(checkpoint_signature(cp, key), str(cp["hmac"])):
        return None, f"checkpoint of {ts} (record {seq}) has a bad signature: forged, altered, or another key"
    if seq > last_seq:
        return last_seq + 1, (
            f"records {last_seq + 1}–{seq} removed from the end: the checkpoint of {ts} "
            f"saw {seq} records, the log now ends at {last_seq}"
        )
    if hashes.get(seq) != head_hash:
        return seq, f"record {seq} is not the record the checkpoint of {ts} signed"
    return None


def make_checkpoint(session: Session, key: bytes | Ed25519PrivateKey) -> dict[str, Any]:
    """The head's sequence number, hash and record count, signed with a key kept outside the database:
    Ed25519 (verifiable with the public key alone), or HMAC with a legacy key given as bytes."""
    head = session.execute(select(AuditHead).where(AuditHead.id == 1)).scalar_one()
    count = session.execute(select(func.count()).select_from(AuditRecord)).scalar_one()
    ts = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    checkpoint: dict[str, Any] = {"seq": head.seq, "hash": head.hash, "ts": ts, "records": count}
    if isinstance(key, Ed25519PrivateKey):
        return sign_ed25519(checkpoint, key)
    checkpoint["hmac"] = checkpoint_signature(checkpoint, key)
    return checkpoint


# --- Ed25519 checkpoints ------------------------------------------------------------------------------------


def _ed25519_payload(checkpoint: dict[str, Any]) -> bytes:
    return canonical_json({k: v for k, v in checkpoint.items() if k != "signature"}).encode("utf-8")


def public_key_id(public_key: Ed25519PublicKey) -> str:
    """A short fingerprint of the public key: the first 16 hex digits of SHA-256 of its raw 32 bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def sign_ed25519(checkpoint: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """The checkpoint with alg, key_id and an Ed25519 signature (base64) over everything but the signature."""
    signed = {**checkpoint, "alg": "ed25519", "key_id": public_key_id(key.public_key())}
    signed["signature"] = base64.b64encode(key.sign(_ed25519_payload(signed))).decode("ascii")
    return signed


def ed25519_signature_holds(checkpoint: dict[str, Any], public_key: Ed25519PublicKey) -> bool:
    try:
        signature = base64.b64decode(str(checkpoint["signature"]), validate=True)
        public_key.verify(signature, _ed25519_payload(checkpoint))
    except (InvalidSignature, ValueError, KeyError):
        return False
    return True


def load_signing_key(pem: bytes) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise BadInputError("the audit signing key is not an Ed25519 private key", field="audit.signing_key")
    return key


def load_or_create_signing_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 private key in ``path`` (PEM, PKCS#8), created 0600 if missing, with its public key beside
    it (``path`` + '.pub') for convenience. Verifiers should use a copy of the public key held elsewhere."""
    if path.exists():
        return load_signing_key(path.read_bytes())
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    Path(f"{path}.pub").write_text(public_key_pem(key.public_key()))
    return key


def public_key_pem(public_key: Ed25519PublicKey) -> str:
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def load_public_key(path: Path) -> Ed25519PublicKey:
    """A public key file: PEM (SubjectPublicKeyInfo), or the raw 32 bytes as hex or base64."""
    text = path.read_bytes().strip()
    try:
        if text.startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(text)
        else:
            raw = bytes.fromhex(text.decode()) if len(text) == 64 else base64.b64decode(text, validate=True)
            key = Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadInputError(f"{path} is not an Ed25519 public key (PEM, hex or base64)", field="public_key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise BadInputError(f"{path} is not an Ed25519 public key", field="public_key")
    return key


def latest_checkpoint(path: Path) -> dict[str, Any] | None:
    """The newest well-formed checkpoint in the file (for reports and exports to witness), or None."""
    for cp in reversed(read_checkpoints(path)):
        if isinstance(cp.get("seq"), int) and ("signature" in cp or "hmac" in cp):
            return cp
    return None


def checkpoint_witness(cp: dict[str, Any] | None) -> dict[str, Any] | None:
    """What reports and exports print of a checkpoint: enough for anyone to check it later."""
    if cp is None:
        return None
    fields = ("seq", "hash", "ts", "records", "alg", "key_id", "signature", "hmac")
    return {k: cp[k] for k in fields if k in cp}


def load_or_create_key(path: Path) -> bytes:
    """The checkpoint key: 32 random bytes, hex, in a file only the owner can read."""
    if path.exists():
        return load_key(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32))
    return load_key(path)


def load_key(path: Path) -> bytes:
    return bytes.fromhex(path.read_text().strip())


def read_checkpoints(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out: list[dict[str, Any]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            entry = None
        # A damaged line is kept (as malformed) so that verification reports it instead of skipping it.
        out.append(entry if isinstance(entry, dict) else {"malformed_line": number, "text": line[:200]})
    return out


def append_checkpoint(path: Path, checkpoint: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(canonical_json(checkpoint) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
