"""The append-only, hash-chained audit log."""

from facetrail.audit.log import (
    AuditVerification,
    append_audit,
    canonical_json,
    make_checkpoint,
    record_hash,
    verify_chain,
)

__all__ = [
    "AuditVerification",
    "append_audit",
    "canonical_json",
    "make_checkpoint",
    "record_hash",
    "verify_chain",
]
