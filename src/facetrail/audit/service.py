"""Audit operations the CLI and the server call: verify, checkpoint (by hand and automatically).

Reading and export: export.py. Guarantees (tests/adversarial/test_audit_rewrite.py, on SQLite and PostgreSQL):
- checkpoints are signed with an Ed25519 private key that can live outside the data folder
  (``audit.signing_key_path`` or ``FACETRAIL_AUDIT__SIGNING_KEY``) and are verified with the public key alone;
- the server signs one automatically every ``audit.checkpoint_every_records`` records and every
  ``audit.checkpoint_every_minutes`` while records arrive;
- ``verify_audit`` with the public key detects a cut tail (even with the head rewound), a rewritten and
  re-chained log, and a checkpoints file replaced (forged signatures) or cut (a checkpoint the log records is
  missing from it). HMAC checkpoints of older installations still verify with their key.
"""

from __future__ import annotations

import datetime as dt
import logging
import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import select

from facetrail.audit.log import (
    AuditVerification,
    append_audit,
    append_checkpoint,
    checkpoint_witness,
    latest_checkpoint,
    load_key,
    load_or_create_key,
    load_or_create_signing_key,
    load_public_key,
    load_signing_key,
    make_checkpoint,
    read_checkpoints,
    verify_chain,
)
from facetrail.context import AppContext
from facetrail.storage.db import Database
from facetrail.storage.models import AuditHead

log = logging.getLogger(__name__)
SYSTEM_ACTOR = "system:audit-checkpoint"


def signing_key(ctx: AppContext) -> Ed25519PrivateKey:
    """The checkpoint signing key: FACETRAIL_AUDIT__SIGNING_KEY (PEM) if set, else the key file (created once)."""
    secret = ctx.settings.audit.signing_key
    if secret is not None:
        return load_signing_key(secret.get_secret_value().encode())
    return load_or_create_signing_key(ctx.signing_key_path)


def verifying_key(ctx: AppContext, public_key_file: Path | None = None) -> tuple[Ed25519PublicKey | None, str]:
    """The public key to verify with, and where it came from: the file given, else the configured public key
    file, else the one derived from the private key if this machine holds it."""
    if public_key_file is not None:
        return load_public_key(public_key_file), str(public_key_file)
    if ctx.public_key_path.exists():
        return load_public_key(ctx.public_key_path), f"{ctx.public_key_path} (configured)"
    if ctx.settings.audit.signing_key is not None or ctx.signing_key_path.exists():
        return signing_key(ctx).public_key(), "derived from the signing key"
    return None, "none"


def checkpoint_target(path: Path) -> str:
    """How an 'audit.checkpoint' record names its file: host and absolute path. Several servers on one database
    each keep their own file; a verifier holds each host's records to that host's file only."""
    return f"{socket.gethostname()}:{path.resolve()}"


def verify_audit(
    db: Database,
    checkpoints_path: Path,
    key_path: Path,
    *,
    public_key: Ed25519PublicKey | None = None,
    more_checkpoint_files: Iterable[Path] = (),
) -> AuditVerification:
    """Recompute the chain and check every checkpoint in the file(s). Read-only: writes nothing, creates no key.

    ``more_checkpoint_files``: copies held elsewhere (witnesses); their checkpoints are checked too."""
    files = [checkpoints_path, *more_checkpoint_files]
    checkpoints = [cp for path in files for cp in read_checkpoints(path)]
    key = load_key(key_path) if key_path.exists() else None
    targets = {checkpoint_target(path) for path in files}
    with db.read() as session:
        result = verify_chain(session, checkpoints, key, public_key=public_key, checkpoint_targets=targets)
    hmac_checkpoints = [cp for cp in checkpoints if isinstance(cp, dict) and "hmac" in cp]
    if hmac_checkpoints and key is None:
        # Unsigned trust is no trust: without the key a forged checkpoints file would pass.
        result.ok = False
        missing = (
            f"the checkpoint key {key_path} is missing: the {len(hmac_checkpoints)} HMAC checkpoint(s) "
            "cannot be trusted"
        )
        result.problems.append(missing)
        result.problem = result.problem or missing
        result.warnings = [w for w in result.warnings if "no key" not in w]
    return result


def verify_with_settings(
    ctx: AppContext, public_key_file: Path | None = None, more_checkpoint_files: Iterable[Path] = ()
) -> AuditVerification:
    """verify_audit with this installation's files and keys (the public key: see verifying_key)."""
    public, source = verifying_key(ctx, public_key_file)
    result = verify_audit(
        ctx.db,
        ctx.checkpoints_path,
        ctx.audit_key_path,
        public_key=public,
        more_checkpoint_files=more_checkpoint_files,
    )
    if public is not None and public_key_file is None and "configured" not in source:
        result.warnings.append(
            f"public key {source}: pass --public-key with a copy held elsewhere to trust nothing on this machine"
        )
    return result


def latest_witness(ctx: AppContext) -> dict[str, Any] | None:
    """The newest checkpoint (seq, hash, time, signature) for reports and exports to print."""
    return checkpoint_witness(latest_checkpoint(ctx.checkpoints_path))


@dataclass
class CheckpointResult:
    checkpoint: dict[str, Any]
    path: Path
    verification: AuditVerification  # the check of the chain made just before signing it


class ChainBrokenError(Exception):
    """The chain does not verify: signing its head now would vouch for the tampering."""

    def __init__(self, verification: AuditVerification) -> None:
        super().__init__(verification.problem or "the audit chain does not verify")
        self.verification = verification


_CHECKPOINT_LOCK = threading.Lock()  # one checkpoint at a time per process (file appends stay whole)


def take_checkpoint(
    db: Database,
    checkpoints_path: Path,
    key_path: Path,
    actor: str,
    *,
    signing_key: Ed25519PrivateKey | None = None,
) -> CheckpointResult:
    """Sign the chain's head and append it to the checkpoints file.

    Signed with ``signing_key`` (Ed25519) when given, else with the legacy HMAC key at ``key_path``.
    Order: (1) verify the chain as it stands, refusing to sign a broken one; (2) in one transaction, append
    the 'audit.checkpoint' record and sign the head *including that record*, so the checkpoint covers
    everything up to and including its own record; (3) only after the commit, append the signed checkpoint
    to the file (a checkpoint for an uncommitted record would later read as a truncated log).
    """
    with _CHECKPOINT_LOCK:
        key: bytes | Ed25519PrivateKey = signing_key if signing_key is not None else load_or_create_key(key_path)
        public = signing_key.public_key() if signing_key is not None else None
        verification = verify_audit(db, checkpoints_path, key_path, public_key=public)
        if not verification.ok:
            raise ChainBrokenError(verification)
        previous = checkpoint_witness(latest_checkpoint(checkpoints_path))
        with db.transaction() as session:
            record = append_audit(
                session,
                actor=actor,
                action="audit.checkpoint",
                target=checkpoint_target(checkpoints_path),
                details={
                    "verified_records": verification.records,
                    "previous_checkpoint_seq": verification.last_checkpoint_seq,
                    "previous_checkpoint": previous,
                },
            )
            checkpoint = make_checkpoint(session, key)
            assert checkpoint["seq"] == record.seq  # the head is ours: the transaction holds the write lock
        append_checkpoint(checkpoints_path, checkpoint)
    return CheckpointResult(checkpoint=checkpoint, path=checkpoints_path, verification=verification)


def checkpoint_now(ctx: AppContext, actor: str) -> CheckpointResult:
    """A checkpoint of this installation, signed with its Ed25519 key (what 'facetrail audit checkpoint' does)."""
    return take_checkpoint(ctx.db, ctx.checkpoints_path, ctx.audit_key_path, actor, signing_key=signing_key(ctx))


def checkpoint_due(ctx: AppContext, now: dt.datetime | None = None) -> bool:
    """Whether an automatic checkpoint is due: N records since the last one, or M minutes with new records."""
    settings = ctx.settings.audit
    if settings.checkpoint_every_minutes <= 0:
        return False
    with ctx.db.read() as session:
        head = session.execute(select(AuditHead.seq).where(AuditHead.id == 1)).scalar_one()
    last = latest_checkpoint(ctx.checkpoints_path)
    if last is None:
        return head > 0
    since = head - int(last["seq"])
    if since <= 0:
        return False
    if since >= settings.checkpoint_every_records:
        return True
    try:
        taken = dt.datetime.fromisoformat(str(last["ts"]))
    except ValueError:
        return True
    age = (now or dt.datetime.now(dt.UTC)) - taken
    return age >= dt.timedelta(minutes=settings.checkpoint_every_minutes)


def maybe_checkpoint(ctx: AppContext) -> CheckpointResult | None:
    """Take an automatic checkpoint if one is due (audited as the system)."""
    if not checkpoint_due(ctx):
        return None
    return take_checkpoint(ctx.db, ctx.checkpoints_path, ctx.audit_key_path, SYSTEM_ACTOR, signing_key=signing_key(ctx))


class CheckpointScheduler:
    """The server's automatic checkpoints: a daemon thread that checks every few seconds whether one is due."""

    def __init__(self, ctx: AppContext, poll_seconds: float = 5.0) -> None:
        self.ctx = ctx
        self.poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.taken = 0

    def start(self) -> bool:
        if self.ctx.settings.audit.checkpoint_every_minutes <= 0:
            return False
        signing_key(self.ctx)  # fail at start, not later, if the configured key is unusable
        self._thread = threading.Thread(target=self._loop, name="facetrail-audit-checkpoint", daemon=True)
        self._thread.start()
        return True

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                if maybe_checkpoint(self.ctx) is not None:
                    self.taken += 1
            except ChainBrokenError as exc:  # never sign a broken chain; say so loudly, every time
                log.error("audit chain does not verify, no checkpoint signed: %s", exc)
            except Exception:
                log.exception("automatic audit checkpoint failed")
