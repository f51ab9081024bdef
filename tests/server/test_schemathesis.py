"""schemathesis against the OpenAPI document of a real server: no 5xx, and every response matches the schema
(status-specific body schema and content type), as an administrator and as an investigator (API tokens).

Bounded: few examples per operation, no shrinking, fixed seed. Excluded from fuzzing, and why:
- uploads (enroll, detect, verify, POST /searches): covered with real photos by test_flows.py and the matrix;
- sign-in, sign-out, password change, token revocation and user updates: fuzzing them would lock out, sign out,
  disable or revoke the very credentials the run uses (they are covered by test_flows.py and the matrix).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from live_server import (
    ADMIN_FIRST_PASSWORD,
    PASSWORD,
    LiveServer,
    enrol_totp,
    login,
    make_user,
    start_server,
    stop_server,
)

EXCLUDED = [  # FastAPI's operation ids
    "enroll_api_v1_galleries__name__enroll_post",
    "detect_api_v1_detect_post",
    "verify_api_v1_verify_post",
    "run_search_api_v1_searches_post",
    "login_api_v1_auth_login_post",
    "logout_api_v1_auth_logout_post",
    "change_password_api_v1_auth_password_post",
    "revoke_token_api_v1_auth_tokens__token_id__delete",
    "revoke_any_token_api_v1_tokens__token_id__delete",
    "update_user_api_v1_users__username__patch",  # a password reset would lock the run out of its own token
]
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, dict[str, str]]]:
    """A server of its own (fuzzing creates users, units and galleries), with tokens for two roles."""
    server = start_server(tmp_path_factory.mktemp("fuzz") / "data")
    try:
        admin, _ = login(server, "admin", ADMIN_FIRST_PASSWORD)
        with closing(admin):
            admin.post(
                "/api/v1/auth/password", json={"current_password": ADMIN_FIRST_PASSWORD, "new_password": PASSWORD}
            ).raise_for_status()
            enrol_totp(admin, server, "admin")  # every role signs in with a second factor
            admin.post("/api/v1/units", json={"name": "north"}).raise_for_status()
            admin.post(
                "/api/v1/galleries", json={"name": "fuzz", "legal_basis": "test", "source_system": "test"}
            ).raise_for_status()
            tokens = {
                "administrator": make_user(admin, server, "fuzz.admin", "administrator", None),
                "investigator": make_user(admin, server, "fuzz.inv", "investigator", "north"),
            }
        yield server, tokens
    finally:
        stop_server(server)


@pytest.mark.slow
@pytest.mark.parametrize("role", ["administrator", "investigator"])
def test_schemathesis_finds_no_server_error_or_schema_violation(
    role: str, fuzz_server: tuple[LiveServer, dict[str, str]], tmp_path: Path
) -> None:
    server, tokens = fuzz_server
    # the venv's own script (make runs .venv/bin/pytest without activating the venv, so it may not be on PATH)
    beside = Path(sys.executable).parent / "schemathesis"
    exe = str(beside) if beside.exists() else shutil.which("schemathesis")
    assert exe, "schemathesis is a dev dependency"
    command = [
        exe,
        "run",
        f"{server.base_url}/api/v1/openapi.json",
        "--url",
        server.base_url,
        "--header",
        f"Authorization: Bearer {tokens[role]}",
        "--checks",
        CHECKS,
        "--max-examples",
        "12",
        "--seed",
        "20261126",
        "--no-shrink",
        "--workers",
        "1",
        "--phases",
        "examples,coverage,fuzzing",
        "--generation-database",
        "none",
        "--request-timeout",
        "30",
        "--no-color",
        "--suppress-health-check",
        "all",
    ]
    for operation_id in EXCLUDED:
        command += ["--exclude-operation-id", operation_id]
    run = subprocess.run(command, capture_output=True, text=True, timeout=540, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:] + server.log()[-3000:]
