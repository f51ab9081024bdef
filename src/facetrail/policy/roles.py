"""Roles and permissions, least privilege. The single source for every check (API, web UI, CLI).

docs/roles.md renders this table; tests/server/test_role_matrix.py checks every cell through the API.
"""

from __future__ import annotations

from enum import StrEnum

# Re-exported for code written before they moved to facetrail.errors (import them from there).
from facetrail.errors import AuthenticationError as AuthenticationError
from facetrail.errors import PermissionDeniedError as PermissionDeniedError


class Role(StrEnum):
    INVESTIGATOR = "investigator"
    REVIEWER = "reviewer"
    AUDITOR = "auditor"
    ADMINISTRATOR = "administrator"


class Permission(StrEnum):
    SEARCH_RUN = "search.run"  # run a 1:N search in one's own cases
    SEARCH_VIEW_OWN = "search.view_own"  # see one's own searches and results (faces)
    SEARCH_VIEW_UNIT = "search.view_unit"  # see the unit's searches and results (faces), to review them
    SEARCH_METADATA_ALL = "search.metadata_all"  # every search's metadata, never faces
    REVIEW_DECIDE = "review.decide"
    VERIFY_RUN = "verify.run"  # 1:1 comparison of two uploaded photos
    DETECT_RUN = "detect.run"  # face detection / quality check of an uploaded photo
    GALLERY_READ = "gallery.read"  # gallery names and counts
    GALLERY_MANAGE = "gallery.manage"  # create galleries, enroll, delete subjects/faces
    FACES_BROWSE = "faces.browse"  # browse enrolled subjects and their face thumbnails
    AUDIT_READ = "audit.read"  # read, verify and export the audit log
    REPORT_READ = "report.read"  # transparency reports: aggregate counts only, no faces, no subjects
    CASE_PACKET = "case.packet"  # a case's disclosure packet: every search, candidate and review decision
    USERS_MANAGE = "users.manage"  # users, roles, units, others' tokens
    TOKENS_OWN = "tokens.own"  # create and revoke one's own API tokens
    RETENTION_MANAGE = "retention.manage"  # retention rules and runs, subject dispositions, certificates
    LEGAL_HOLD = "legal_hold.manage"  # place and lift legal holds
    SEARCH_APPROVE = "search.approve"  # approve or deny a unit colleague's search request / emergency search
    POLICY_MANAGE = "policy.manage"  # apply a new policy version (everyone signed in may read the one in force)
    TRAINING_MANAGE = "training.manage"  # record users' search training
    ROLE_GRANTS_VIEW = "role_grants.view"  # see pending and past grants of reviewer / administrator roles
    REVIEW_ADJUDICATE = "review.adjudicate"  # settle two reviewers' disagreement (named adjudicators only)
    OVERSIGHT_VIEW_UNIT = "oversight.view_unit"  # the unit's oversight alerts, timelines and e-mails
    OVERSIGHT_VIEW_ALL = "oversight.view_all"  # every unit's oversight alerts, timelines and e-mails
    OVERSIGHT_ACK = "oversight.ack"  # acknowledge an alert in one's scope, with a note
    AUDIT_SAMPLE = "audit.sample"  # see the random audit sample and record findings
    CASES_MANAGE = "cases.manage"  # import the agency's case list
    PROFICIENCY_VIEW_ALL = "proficiency.view_all"  # every reviewer's record on known-answer tests


_I, _R, _A, _D = Role.INVESTIGATOR, Role.REVIEWER, Role.AUDITOR, Role.ADMINISTRATOR

GRANTS: dict[Permission, frozenset[Role]] = {
    Permission.SEARCH_RUN: frozenset({_I}),
    Permission.SEARCH_VIEW_OWN: frozenset({_I}),
    Permission.SEARCH_VIEW_UNIT: frozenset({_R}),
    Permission.SEARCH_METADATA_ALL: frozenset({_A}),
    Permission.REVIEW_DECIDE: frozenset({_R}),
    Permission.VERIFY_RUN: frozenset({_I, _R}),
    Permission.DETECT_RUN: frozenset({_I, _R, _D}),
    Permission.GALLERY_READ: frozenset({_I, _R, _A, _D}),
    Permission.GALLERY_MANAGE: frozenset({_D}),
    Permission.FACES_BROWSE: frozenset({_D}),
    Permission.AUDIT_READ: frozenset({_A}),
    Permission.REPORT_READ: frozenset({_A, _D}),
    # Not investigators: they see only their own searches, so their packet would silently miss a colleague's
    # search in the same case. Reviewers: their unit's cases; auditors: any case, without the probe image.
    Permission.CASE_PACKET: frozenset({_R, _A}),
    Permission.USERS_MANAGE: frozenset({_D}),
    Permission.TOKENS_OWN: frozenset({_I, _R, _A, _D}),
    Permission.RETENTION_MANAGE: frozenset({_D}),
    Permission.LEGAL_HOLD: frozenset({_D}),
    Permission.SEARCH_APPROVE: frozenset({_R}),
    Permission.POLICY_MANAGE: frozenset({_D}),
    Permission.TRAINING_MANAGE: frozenset({_D}),
    # Separation of duties: those who release leads (and audit them) see every grant of a releasing power.
    Permission.ROLE_GRANTS_VIEW: frozenset({_R, _A, _D}),
    # A reviewer, and only one the policy names in review.adjudicators (checked by governance.release).
    Permission.REVIEW_ADJUDICATE: frozenset({_R}),
    Permission.OVERSIGHT_VIEW_UNIT: frozenset({_R}),
    Permission.OVERSIGHT_VIEW_ALL: frozenset({_A}),
    Permission.OVERSIGHT_ACK: frozenset({_R, _A}),
    Permission.AUDIT_SAMPLE: frozenset({_A}),
    Permission.CASES_MANAGE: frozenset({_D}),
    # Supervision of examiners: auditors (oversight) and administrators (who record training). Reviewers see
    # their own record through review.decide.
    Permission.PROFICIENCY_VIEW_ALL: frozenset({_A, _D}),
}
# Nobody, in any role, may edit or delete audit records: there is no permission for it.


class TokenScope(StrEnum):
    """What an API token may do, within its owner's role (a token never has more than its owner's role).

    ``read``: look only (searches one may see, reports, packets, the audit log); ``search``: read, plus run
    searches, 1:1 verifications and detection; ``full``: everything the role allows, including changes
    (reviews, approvals, administration, creating further tokens). Browser sessions always act in full.
    """

    READ = "read"
    SEARCH = "search"
    FULL = "full"


_READ_PERMISSIONS = frozenset(
    {
        Permission.SEARCH_VIEW_OWN,
        Permission.SEARCH_VIEW_UNIT,
        Permission.SEARCH_METADATA_ALL,
        Permission.GALLERY_READ,
        Permission.FACES_BROWSE,
        Permission.AUDIT_READ,
        Permission.REPORT_READ,
        Permission.CASE_PACKET,
        Permission.ROLE_GRANTS_VIEW,
        Permission.OVERSIGHT_VIEW_UNIT,
        Permission.OVERSIGHT_VIEW_ALL,
        Permission.PROFICIENCY_VIEW_ALL,
    }
)
SCOPE_PERMISSIONS: dict[TokenScope, frozenset[Permission]] = {
    TokenScope.READ: _READ_PERMISSIONS,
    TokenScope.SEARCH: _READ_PERMISSIONS | {Permission.SEARCH_RUN, Permission.VERIFY_RUN, Permission.DETECT_RUN},
    TokenScope.FULL: frozenset(Permission),
}


def allowed(role: str, permission: Permission) -> bool:
    try:
        return Role(role) in GRANTS[permission]
    except ValueError:
        return False


def scope_allows(scope: str, permission: Permission) -> bool:
    try:
        return permission in SCOPE_PERMISSIONS[TokenScope(scope)]
    except ValueError:
        return False  # an unknown scope allows nothing


def roles_with(permission: Permission) -> list[str]:
    return sorted(r.value for r in GRANTS[permission])
