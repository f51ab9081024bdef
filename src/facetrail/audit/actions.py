"""The names written to the audit log: every action and every outcome, as enums, each documented in
docs/audit.md (tests/test_audit_names.py checks both ways: every action written is a member, every member is
documented). A StrEnum member is its string, so records written before are unchanged."""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    OK = "ok"
    REFUSED = "refused"  # refused for any reason but a missing permission
    DENIED = "denied"  # a missing permission, a failed CSRF check, a token scope
    NOT_FOUND = "not_found"  # asked for something that does not exist or is outside the caller's scope
    UNAUTHENTICATED = "unauthenticated"  # no valid session or API token
    FAILED = "failed"  # a sign-in that failed
    THROTTLED = "throttled"  # a sign-in refused after repeated failures


class AuditAction(StrEnum):
    # accounts
    USER_BOOTSTRAP = "user.bootstrap"
    USER_CREATE = "user.create"
    USER_UPDATE = "user.update"
    USER_PASSWORD_CHANGE = "user.password_change"  # noqa: S105 - an action name
    UNIT_CREATE = "unit.create"
    ROLE_GRANT_REQUEST = "role.grant.request"
    ROLE_GRANT_APPROVE = "role.grant.approve"
    ROLE_GRANT_CANCEL = "role.grant.cancel"
    ROLE_GRANT_EFFECTIVE = "role.grant.effective"
    AUTH_LOGIN = "auth.login"
    AUTH_LOGOUT = "auth.logout"
    AUTH_SESSION_END = "auth.session_end"
    TOKEN_CREATE = "token.create"  # noqa: S105 - an action name
    TOKEN_REVOKE = "token.revoke"  # noqa: S105 - an action name
    # refusals recorded by the doors (facetrail.service.refusals, facetrail.cli.common)
    ACCESS_DENIED = "access.denied"
    REQUEST_INVALID = "request.invalid"
    REQUEST_REFUSED = "request.refused"
    CLI_REFUSED = "cli.refused"
    GALLERY_DELETE = "gallery.delete"  # a CLI deletion refused before it began (no signed-in administrator)
    USER_TRAIN = "user.train"  # a CLI training record refused before it began
    # galleries and the index
    GALLERY_CREATE = "gallery.create"
    ENROLL_BATCH = "enroll.batch"
    ENROLL_RUN = "enroll.run"
    SUBJECT_VIEW = "subject.view"
    FACE_VIEW = "face.view"
    SUBJECT_DELETE = "subject.delete"
    FACE_DELETE = "face.delete"
    INDEX_REBUILD = "index.rebuild"
    INDEX_REPAIR = "index.repair"
    INDEX_REMOVE_STALE = "index.remove_stale"
    STORE_COPY = "store.copy"
    # searches, probes, reviews
    DETECT = "detect"
    VERIFY = "verify"
    VERIFY_UPLOAD = "verify.upload"
    SEARCH = "search"
    SEARCH_VIEW = "search.view"
    SEARCH_LIST = "search.list"
    SEARCH_THUMBNAIL = "search.thumbnail"
    REVIEW_DECIDE = "review.decide"
    REVIEW_LIST = "review.list"
    REVIEW_ADJUDICATE = "review.adjudicate"
    LEAD_RELEASED = "lead.released"
    # the examination method (docs/examination.md)
    EXAMINATION_ASSIGN = "examination.assign"
    EXAMINATION_KNOWN_ANSWER = "examination.known_answer"
    EXAMINATION_QUEUE = "examination.queue"
    EXAMINATION_VIEW = "examination.view"
    EXAMINATION_IMAGE = "examination.image"
    EXAMINATION_PROBE_ANALYSIS = "examination.probe_analysis"
    EXAMINATION_CANDIDATES = "examination.candidates"
    EXAMINATION_OPEN = "examination.open"
    EXAMINATION_CHECKLIST = "examination.checklist"
    EXAMINATION_CONCLUDE = "examination.conclude"
    EXAMINATION_PROFICIENCY = "examination.proficiency"
    # governance
    POLICY_APPLY = "policy.apply"
    TRAINING_RECORD = "training.record"
    SEARCH_REQUEST = "search.request"
    SEARCH_REQUEST_LIST = "search.request.list"
    SEARCH_REQUEST_EXPIRED = "search.request.expired"
    SEARCH_EMERGENCY = "search.emergency"
    SEARCH_EMERGENCY_EXPIRED = "search.emergency.expired"
    SEARCH_APPROVE = "search.approve"
    SEARCH_DENY = "search.deny"
    # retention
    RETENTION_RULE = "retention.rule"
    RETENTION_RUN = "retention.run"
    SUBJECT_DISPOSITION = "subject.disposition"
    LEGAL_HOLD_ADD = "legal_hold.add"
    LEGAL_HOLD_LIFT = "legal_hold.lift"
    PROBE_DELETE = "probe.delete"
    DELETION_CERTIFICATE = "deletion.certificate"
    # reports
    CASE_PACKET = "case.packet"
    REPORT_TRANSPARENCY = "report.transparency"
    LEAD_REPORT = "lead.report"
    # enhancement without altering evidence (examination/enhancements.py)
    ENHANCEMENT_CREATE = "enhancement.create"
    ENHANCEMENT_VIEW = "enhancement.view"
    ENHANCEMENT_LOG = "enhancement.log"
    ENHANCEMENT_REPLAY = "enhancement.replay"
    # the audit log itself
    AUDIT_READ = "audit.read"
    AUDIT_EXPORT = "audit.export"
    AUDIT_VERIFY = "audit.verify"
    AUDIT_CHECKPOINT = "audit.checkpoint"
    SYSTEM_INIT = "system.init"
    # oversight
    OVERSIGHT_ALERT = "oversight.alert"
    OVERSIGHT_ALERT_ACK = "oversight.alert.ack"
    OVERSIGHT_TIMELINE = "oversight.timeline"
    OVERSIGHT_SAMPLE_DRAW = "oversight.sample.draw"
    OVERSIGHT_SAMPLE_FINDING = "oversight.sample.finding"
    CASE_IMPORT = "case.import"
    CASE_UNVERIFIED = "case.unverified"
