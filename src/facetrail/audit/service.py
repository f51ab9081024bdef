"""Audit operations the CLI (and later the service) call: verify, checkpoint. Reading and export: export.py."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facetrail.audit.log import (
    AuditVerification,
    append_audit,
    append_checkpoint,
    load_key,
    load_or_create_key,
    make_checkpoint,
    read_checkpoints,
    verify_chain,
)
from facetrail.storage.db import Database


def verify_audit(db: Database, checkpoints_path: Path, key_path: Path) -> AuditVerification:
    """Recompute the chain and check every checkpoint in the file. Read-only: writes nothing, creates no key."""
    checkpoints = read_checkpoints(checkpoints_path)
    key = load_key(key_path) if key_path.exists() else None
    with db.read() as session:
        result = verify_chain(session, checkpoints, key)
    if checkpoints and key is None:
        # Unsigned trust is no trust: without the key a forged checkpoints file would pass.
        result.ok = False
        missing = f"the checkpoint key {key_path} is missing: the {len(checkpoints)} checkpoint(s) cannot be trusted"
        result.problems.append(missing)
        result.problem = result.problem or missing
        result.warnings = [w for w in result.warnings if "no key" not in w]
    return result


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


def take_checkpoint(db: Database, checkpoints_path: Path, key_path: Path, actor: str) -> CheckpointResult:
    """Sign the chain's head and append it to the checkpoints file.

    Order: (1) verify the chain as it stands, refusing to sign a broken one; (2) in one transaction, append
    the 'audit.checkpoint' record and sign the head *including that record*, so the checkpoint covers
    everything up to and including its own record; (3) only after the commit, append the signed checkpoint
    to the file (a checkpoint for an uncommitted record would later read as a truncated log).
    """
    key = load_or_create_key(key_path)
    verification = verify_audit(db, checkpoints_path, key_path)
    if not verification.ok:
        raise ChainBrokenError(verification)
    with db.transaction() as session:
        record = append_audit(
            session,
            actor=actor,
            action="audit.checkpoint",
            target=str(checkpoints_path),
            details={
                "verified_records": verification.records,
                "previous_checkpoint_seq": verification.last_checkpoint_seq,
            },
        )
        checkpoint = make_checkpoint(session, key)
        assert checkpoint["seq"] == record.seq  # the head is ours: the transaction holds the write lock
    append_checkpoint(checkpoints_path, checkpoint)
    return CheckpointResult(checkpoint=checkpoint, path=checkpoints_path, verification=verification)
