"""The role × endpoint table of docs/roles.md, checked cell by cell over HTTP against a real server.

EXPECTED is written out by hand (not derived from policy.roles.GRANTS) so that a change of grants that is not
also made in the documented table fails here. Every operation of the OpenAPI document must appear in it.
For each operation and each role (plus anonymous) one well-formed request is sent with that role's API token:
- a denied role gets 403 with code 'forbidden', and the refusal is audited;
- anonymous gets 401 on every non-public operation;
- an allowed role gets neither 401 nor 403 (the request is well formed; a harmless 404 for a made-up id is
  still "allowed": the permission check passed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from live_server import FIXTURES, FR, ROLES, World

INV, REV, AUD, ADM = "investigator", "reviewer", "auditor", "administrator"
EVERYONE = frozenset(ROLES)
PUBLIC = "public"
# Sensitive acts: an allowed role whose token has not shown a second factor in the last minutes gets 401
# 'step_up_required' (after the role check: denied roles still get 403 'forbidden').
STEP_UP = {
    ("GET", "/api/v1/audit/export"),
    ("GET", "/api/v1/cases/{case_number}/packet"),
    ("GET", "/api/v1/searches/{search_id}/leads/{rank}/report"),
    ("DELETE", "/api/v1/galleries/{name}/subjects/{external_id}"),
    ("POST", "/api/v1/auth/mfa/recovery-codes"),
    ("DELETE", "/api/v1/users/{username}/mfa"),
    ("POST", "/api/v1/auth/passkeys/register/options"),
}

# (method, path) -> the roles allowed, or PUBLIC (no sign-in needed). Mirrors docs/roles.md exactly.
EXPECTED: dict[tuple[str, str], frozenset[str] | str] = {
    ("GET", "/api/v1/health"): PUBLIC,
    ("GET", "/api/v1/ready"): PUBLIC,
    ("POST", "/api/v1/auth/login"): PUBLIC,
    ("POST", "/api/v1/auth/logout"): EVERYONE,
    ("GET", "/api/v1/auth/me"): EVERYONE,
    ("POST", "/api/v1/auth/password"): EVERYONE,
    ("GET", "/api/v1/auth/tokens"): EVERYONE,
    ("POST", "/api/v1/auth/tokens"): EVERYONE,
    ("DELETE", "/api/v1/auth/tokens/{token_id}"): EVERYONE,
    ("GET", "/api/v1/auth/mfa"): EVERYONE,
    ("POST", "/api/v1/auth/mfa/totp/enrol"): EVERYONE,
    ("POST", "/api/v1/auth/mfa/totp/confirm"): EVERYONE,
    ("POST", "/api/v1/auth/mfa/verify"): EVERYONE,
    ("POST", "/api/v1/auth/mfa/recovery-codes"): EVERYONE,
    ("GET", "/api/v1/auth/sessions"): EVERYONE,
    ("DELETE", "/api/v1/auth/sessions/{session_id}"): EVERYONE,
    ("GET", "/api/v1/sessions"): frozenset({ADM}),
    ("DELETE", "/api/v1/sessions/{session_id}"): frozenset({ADM}),
    ("DELETE", "/api/v1/users/{username}/mfa"): frozenset({ADM}),
    ("GET", "/api/v1/auth/passkeys"): EVERYONE,
    ("POST", "/api/v1/auth/passkeys"): EVERYONE,
    ("POST", "/api/v1/auth/passkeys/register/options"): EVERYONE,
    ("DELETE", "/api/v1/auth/passkeys/{passkey_id}"): EVERYONE,
    ("POST", "/api/v1/auth/passkeys/assert/options"): EVERYONE,
    ("POST", "/api/v1/auth/passkeys/assert"): EVERYONE,
    ("POST", "/api/v1/auth/passkeys/login/options"): PUBLIC,
    ("POST", "/api/v1/auth/passkeys/login"): PUBLIC,
    ("GET", "/api/v1/users"): frozenset({ADM}),
    ("POST", "/api/v1/users"): frozenset({ADM}),
    ("GET", "/api/v1/users/{username}"): frozenset({ADM}),
    ("PATCH", "/api/v1/users/{username}"): frozenset({ADM}),
    ("GET", "/api/v1/units"): frozenset({ADM}),
    ("POST", "/api/v1/units"): frozenset({ADM}),
    ("GET", "/api/v1/tokens"): frozenset({ADM}),
    ("DELETE", "/api/v1/tokens/{token_id}"): frozenset({ADM}),
    ("GET", "/api/v1/galleries"): EVERYONE,
    ("POST", "/api/v1/galleries"): frozenset({ADM}),
    ("GET", "/api/v1/galleries/{name}"): EVERYONE,
    ("POST", "/api/v1/galleries/{name}/enroll"): frozenset({ADM}),
    ("GET", "/api/v1/galleries/{name}/subjects"): frozenset({ADM}),
    ("GET", "/api/v1/galleries/{name}/subjects/{external_id}"): frozenset({ADM}),
    ("DELETE", "/api/v1/galleries/{name}/subjects/{external_id}"): frozenset({ADM}),
    ("DELETE", "/api/v1/galleries/{name}/faces/{face_id}"): frozenset({ADM}),
    ("GET", "/api/v1/faces/{face_id}/thumbnail"): frozenset({ADM}),
    ("POST", "/api/v1/detect"): frozenset({INV, REV, ADM}),
    ("POST", "/api/v1/verify"): frozenset({INV, REV}),
    ("GET", "/api/v1/searches/options"): EVERYONE,
    ("POST", "/api/v1/searches"): frozenset({INV}),
    ("GET", "/api/v1/searches"): frozenset({INV, REV, AUD}),
    ("GET", "/api/v1/searches/{search_id}"): frozenset({INV, REV, AUD}),
    ("GET", "/api/v1/searches/{search_id}/candidates/{rank}/thumbnail"): frozenset({INV, REV}),
    ("GET", "/api/v1/searches/{search_id}/reviews"): frozenset({INV, REV, AUD}),
    ("GET", "/api/v1/examinations/method"): EVERYONE,
    ("GET", "/api/v1/examinations"): frozenset({REV}),
    ("GET", "/api/v1/examinations/proficiency"): frozenset({REV, AUD, ADM}),
    ("GET", "/api/v1/examinations/{task_id}"): frozenset({REV}),
    ("GET", "/api/v1/examinations/{task_id}/probe/image"): frozenset({REV}),
    ("POST", "/api/v1/examinations/{task_id}/probe-analysis"): frozenset({REV}),
    ("GET", "/api/v1/examinations/{task_id}/candidates"): frozenset({REV}),
    ("GET", "/api/v1/examinations/{task_id}/candidates/{handle}"): frozenset({REV}),
    ("GET", "/api/v1/examinations/{task_id}/candidates/{handle}/photos/{index}"): frozenset({REV}),
    ("PUT", "/api/v1/examinations/{task_id}/candidates/{handle}/checklist"): frozenset({REV}),
    ("POST", "/api/v1/examinations/{task_id}/candidates/{handle}/conclusion"): frozenset({REV}),
    ("GET", "/api/v1/audit/records"): frozenset({AUD}),
    ("GET", "/api/v1/audit/verify"): frozenset({AUD}),
    ("GET", "/api/v1/audit/export"): frozenset({AUD}),
    ("GET", "/api/v1/cases/{case_number}/packet"): frozenset({REV, AUD}),
    ("GET", "/api/v1/reports/transparency"): frozenset({AUD, ADM}),
    ("GET", "/api/v1/retention/rules/{name}"): frozenset({ADM}),
    ("PUT", "/api/v1/retention/rules/{name}"): frozenset({ADM}),
    ("POST", "/api/v1/retention/run"): frozenset({ADM}),
    ("GET", "/api/v1/retention/certificates/{seq}"): frozenset({AUD, ADM}),
    ("PUT", "/api/v1/galleries/{name}/subjects/{external_id}/disposition"): frozenset({ADM}),
    ("GET", "/api/v1/holds"): frozenset({ADM}),
    ("POST", "/api/v1/holds"): frozenset({ADM}),
    ("POST", "/api/v1/holds/{hold_id}/lift"): frozenset({ADM}),
    ("GET", "/api/v1/policy"): EVERYONE,
    ("GET", "/api/v1/policy/history"): EVERYONE,
    ("POST", "/api/v1/policy/validate"): EVERYONE,
    ("PUT", "/api/v1/policy"): frozenset({ADM}),
    ("POST", "/api/v1/users/{username}/training"): frozenset({ADM}),
    ("GET", "/api/v1/users/{username}/training"): frozenset({ADM}),
    ("POST", "/api/v1/search-requests"): frozenset({INV}),
    ("GET", "/api/v1/search-requests"): frozenset({INV, REV, AUD}),
    ("POST", "/api/v1/search-requests/{request_id}/approve"): frozenset({REV}),
    ("POST", "/api/v1/search-requests/{request_id}/deny"): frozenset({REV}),
    ("PUT", "/api/v1/searches/{search_id}/candidates/{rank}/adjudication"): frozenset({REV}),
    ("GET", "/api/v1/role-grants"): frozenset({REV, AUD, ADM}),
    ("GET", "/api/v1/searches/{search_id}/commitment"): frozenset({AUD}),
    ("POST", "/api/v1/role-grants/{grant_id}/approve"): frozenset({ADM}),
    ("POST", "/api/v1/role-grants/{grant_id}/cancel"): frozenset({ADM}),
    ("GET", "/api/v1/oversight/alerts"): frozenset({REV, AUD}),
    ("POST", "/api/v1/oversight/alerts/{alert_id}/ack"): frozenset({REV, AUD}),
    ("GET", "/api/v1/oversight/samples"): frozenset({AUD}),
    ("POST", "/api/v1/oversight/samples/{item_id}/finding"): frozenset({AUD}),
    ("GET", "/api/v1/oversight/notifications"): frozenset({REV, AUD}),
    # issue 15, evidence: enhancement (the task's examiner), its log for auditors, the lead report
    ("POST", "/api/v1/examinations/{task_id}/enhancements"): frozenset({REV}),
    ("GET", "/api/v1/examinations/{task_id}/enhancements"): frozenset({REV}),
    ("GET", "/api/v1/examinations/{task_id}/enhancements/{sha256}/image"): frozenset({REV}),
    ("GET", "/api/v1/examinations/{task_id}/enhancements/{sha256}/replay"): frozenset({REV}),
    ("GET", "/api/v1/searches/{search_id}/enhancements"): frozenset({AUD}),
    ("GET", "/api/v1/searches/{search_id}/leads/{rank}/report"): frozenset({REV, AUD}),
}

_counter = iter(range(1, 10_000))


def _request_for(method: str, path: str, world: World) -> dict[str, Any]:
    """A well-formed, harmless request for the operation: made-up ids where a real one would change data."""
    unique = next(_counter)
    face_id = world.subject_face["B-OBAMA"]
    values = {
        "token_id": "999999",
        "username": "matrix.target",
        "name": world.gallery,
        "external_id": "B-OBAMA" if method == "GET" else "NO-SUCH-SUBJECT",
        "face_id": str(face_id) if method == "GET" else "999999",
        "search_id": "999999",
        "rank": "1",
        "hold_id": "999999",
        "seq": "999999",
        "case_number": "NO-SUCH-CASE",
        "request_id": "999999",
        "grant_id": "999999",
        "session_id": "999999",
        "passkey_id": "999999",
        "alert_id": "999999",
        "item_id": "999999",
        "task_id": "nosuchtask00",
        "handle": "nosuchhandle",
        "index": "0",
        "sha256": "0" * 64,
    }
    url = path.format(**{k: v for k, v in values.items() if "{" + k + "}" in path})
    photo = (FR / "obama.jpg").read_bytes()
    bodies: dict[tuple[str, str], dict[str, Any]] = {
        ("POST", "/api/v1/auth/login"): {"json": {}},  # 422: no credentials are tried, no throttle is fed
        ("POST", "/api/v1/auth/mfa/verify"): {"json": {}},  # 422: no code is tried, no lockout is fed
        ("POST", "/api/v1/auth/mfa/totp/confirm"): {"json": {"code": "000000"}},  # 409: enrolled already
        ("POST", "/api/v1/auth/passkeys"): {"json": {}},  # 422: no credential is checked
        ("POST", "/api/v1/auth/passkeys/assert"): {"json": {}},
        ("POST", "/api/v1/auth/passkeys/login"): {"json": {}},
        ("POST", "/api/v1/auth/password"): {"json": {"current_password": "x", "new_password": "short"}},
        ("POST", "/api/v1/auth/tokens"): {"json": {"name": f"matrix {unique}", "days": 1}},
        ("POST", "/api/v1/users"): {"json": {"username": f"matrix.{unique}", "role": "auditor"}},
        ("PATCH", "/api/v1/users/{username}"): {"json": {}},
        ("POST", "/api/v1/units"): {"json": {"name": f"matrix unit {unique}"}},
        ("POST", "/api/v1/galleries"): {
            "json": {"name": f"matrix {unique}", "legal_basis": "test", "source_system": "test"}
        },
        ("POST", "/api/v1/galleries/{name}/enroll"): {
            "files": [("files", ("blank.png", (FIXTURES / "nonface" / "blank_white.png").read_bytes(), "image/png"))],
            "data": {"subject_ids": ["MATRIX"]},
        },
        ("POST", "/api/v1/detect"): {"files": {"image": ("obama.jpg", photo, "image/jpeg")}},
        ("POST", "/api/v1/verify"): {
            "files": {
                "image_a": ("a.jpg", photo, "image/jpeg"),
                "image_b": ("b.jpg", (FR / "obama2.jpg").read_bytes(), "image/jpeg"),
            }
        },
        ("POST", "/api/v1/searches"): {  # an offense not configured: allowed roles get 400, after the role check
            "files": {"probe": ("obama.jpg", photo, "image/jpeg")},
            "data": {
                "gallery": world.gallery,
                "case_number": "M-1",
                "offense": "not-an-offense",
                "legal_basis": "warrant",
                "justification": "role matrix",
            },
        },
        ("POST", "/api/v1/examinations/{task_id}/probe-analysis"): {"json": {"quality": {}, "suitable": True}},
        ("PUT", "/api/v1/examinations/{task_id}/candidates/{handle}/checklist"): {"json": {"marks": {}}},
        ("POST", "/api/v1/examinations/{task_id}/candidates/{handle}/conclusion"): {
            "json": {"conclusion": "neutral", "reasoning": "role matrix", "limitations": "none"}
        },
        ("PUT", "/api/v1/searches/{search_id}/candidates/{rank}/adjudication"): {
            "json": {"decision": "not_a_match", "reason": "role matrix"}
        },
        ("POST", "/api/v1/examinations/{task_id}/enhancements"): {
            "json": {"image": "probe", "operation": "brightness", "parameters": {"delta": 1}, "purpose": "role matrix"}
        },
        ("GET", "/api/v1/reports/transparency"): {"params": {"from": "2026-01-01", "to": "2026-01-31"}},
        ("POST", "/api/v1/oversight/alerts/{alert_id}/ack"): {"json": {"note": "role matrix"}},
        ("POST", "/api/v1/oversight/samples/{item_id}/finding"): {
            "json": {"case_real": True, "justification_adequate": True, "offense_right": True}
        },
    }
    return {"method": method, "url": url, **bodies.get((method, path), {})}


@pytest.fixture(scope="module")
def matrix_world(world: World) -> World:
    r = world.admin.post("/api/v1/users", json={"username": "matrix.target", "role": "auditor"})
    assert r.status_code == 201, r.text
    return world


def _openapi_operations(world: World) -> set[tuple[str, str]]:
    spec = httpx.get(f"{world.server.base_url}/api/v1/openapi.json", timeout=60).json()
    return {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}


def test_every_operation_of_the_openapi_document_is_in_the_table(matrix_world: World) -> None:
    assert _openapi_operations(matrix_world) == set(EXPECTED)


CELLS = [(op, who) for op in EXPECTED for who in (*ROLES, "anonymous")]


@pytest.mark.parametrize(("operation", "who"), CELLS, ids=[f"{m} {p} as {w}" for (m, p), w in CELLS])
def test_role_matrix_cell(operation: tuple[str, str], who: str, matrix_world: World) -> None:
    method, path = operation
    expected = EXPECTED[operation]
    client_for: Callable[[], httpx.Client] = (
        matrix_world.server.client if who == "anonymous" else lambda: matrix_world.as_role(who)
    )
    with client_for() as client:
        r = client.request(**_request_for(method, path, matrix_world))
    assert r.status_code < 500, r.text
    if expected == PUBLIC:
        assert r.status_code not in (401, 403), r.text
    elif who == "anonymous":
        assert r.status_code == 401, r.text
        assert r.json()["error"]["code"] == "unauthenticated"
    elif who in expected and operation in STEP_UP and r.status_code == 401:
        assert r.json()["error"]["code"] == "step_up_required", r.text
    elif who in expected:
        assert r.status_code not in (401, 403), r.text
    else:
        assert r.status_code == 403, r.text
        assert r.json()["error"]["code"] == "forbidden"


def test_denials_are_audited(matrix_world: World) -> None:
    with matrix_world.as_role(INV) as investigator:
        assert investigator.get("/api/v1/audit/records").status_code == 403
    with matrix_world.as_role(AUD) as auditor:
        r = auditor.get("/api/v1/audit/records", params={"action": "access.denied", "limit": 1000})
    assert r.status_code == 200
    denied = [
        rec
        for rec in r.json()["records"]
        if rec["actor"] == f"user:{matrix_world.usernames[INV]}" and rec["target"] == "GET /api/v1/audit/records"
    ]
    assert denied and denied[0]["outcome"] == "denied"
    assert denied[0]["details"]["request"]["user_agent"].startswith("python-httpx")
