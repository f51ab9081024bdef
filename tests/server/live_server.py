"""Helpers for the server tests: a real FaceTrail server (``facetrail serve`` in a subprocess, on a free port,
with a temporary data directory), sign-in, and the populated "world" shared by the server tests. Requests go
over real HTTP with httpx."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from authenticators import Authenticators
from server_process import ServerProcess
from server_process import free_port as free_port  # re-exported for the suites that import it from here
from server_process import start_server as start_server_process
from server_process import stop_server as stop_server

FIXTURES = Path(__file__).parent.parent / "fixtures"
FR = FIXTURES / "face_recognition"
ADMIN_FIRST_PASSWORD = "first-Start-password-1"
PASSWORD = "Correct-horse-battery-9"
ROLES = ("investigator", "reviewer", "auditor", "administrator")


# One server runner for every suite (tests/server_process.py); LiveServer is its ServerProcess.
LiveServer = ServerProcess


def start_server(data_dir: Path, env_extra: dict[str, str] | None = None) -> LiveServer:
    """A real server for the server and adversarial tests: the first administrator's password is known, ONNX
    runs on one thread, and grants take effect at once in worlds where one administrator makes the reviewers
    (separation of duties is tested with the real delay and a second administrator in tests/adversarial/)."""
    env = {
        "FACETRAIL_ADMIN_PASSWORD": ADMIN_FIRST_PASSWORD,
        "FACETRAIL_EMBEDDING__ONNX_THREADS": "1",
        "FACETRAIL_GOVERNANCE__ROLE_GRANT_DELAY_HOURS": "0",
        # Session-scoped worlds keep their clients for the whole run: on a loaded machine a run can pass the
        # 30-minute idle timeout between two uses (the idle timeout has its own tests, with their own setting).
        "FACETRAIL_AUTH__SESSION_IDLE_MINUTES": "1440",
        **(env_extra or {}),
    }
    return start_server_process(data_dir, env)


AUTHENTICATORS = Authenticators()


def enrol_totp(client: httpx.Client, server: LiveServer, username: str) -> list[str]:
    """First sign-in's second half: enrol TOTP from the secret the server returns; returns the recovery codes."""
    r = client.post("/api/v1/auth/mfa/totp/enrol")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["qr_svg"].startswith("data:image/svg+xml;base64,")
    AUTHENTICATORS.secrets[(server.base_url, username)] = body["secret"]
    AUTHENTICATORS.last_step.pop((server.base_url, username), None)
    r = client.post("/api/v1/auth/mfa/totp/confirm", json={"code": AUTHENTICATORS.code(server.base_url, username)})
    assert r.status_code == 200, r.text
    return list(r.json()["recovery_codes"])


def second_factor(client: httpx.Client, server: LiveServer, username: str) -> httpx.Response:
    """Present a fresh TOTP code for the client's session or token (sign-in or step-up)."""
    return client.post("/api/v1/auth/mfa/verify", json={"code": AUTHENTICATORS.code(server.base_url, username)})


def login(server: LiveServer, username: str, password: str) -> tuple[httpx.Client, str]:
    """A browser-like client: session cookie plus the CSRF token it must send on changes. Where the user has
    enrolled a second factor, its code is entered too (a user still to enrol gets a half-signed-in session)."""
    client = server.client()
    r = client.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    csrf = r.json()["csrf_token"]
    client.headers["x-csrf-token"] = csrf
    if r.json()["second_factor"] == "required":
        r = second_factor(client, server, username)
        assert r.status_code == 200, r.text
    return client, csrf


@dataclass
class World:
    server: LiveServer
    admin: httpx.Client  # session + CSRF
    tokens: dict[str, str] = field(default_factory=dict)  # "investigator", ..., "investigator_south" -> bearer
    usernames: dict[str, str] = field(default_factory=dict)
    gallery: str = "bookings"
    subject_face: dict[str, int] = field(default_factory=dict)  # external id -> face id

    def as_role(self, role: str) -> httpx.Client:
        return self.server.client(self.tokens[role])

    @contextmanager
    def stepped_up(self, role: str) -> Iterator[httpx.Client]:
        """The role's token client after a fresh second factor (step-up), for sensitive acts."""
        with self.as_role(role) as client:
            r = second_factor(client, self.server, self.usernames[role])
            assert r.status_code == 200, r.text
            yield client


def make_user(
    admin: httpx.Client,
    server: LiveServer,
    username: str,
    role: str,
    unit: str | None,
    approver: httpx.Client | None = None,
) -> str:
    """Create the user, change its one-time password, enrol its second factor, and return an API token. Where a second
    administrator exists, a reviewer or administrator grant waits for its approval: ``approver`` (another
    administrator) gives it, as separation of duties requires."""
    r = admin.post("/api/v1/users", json={"username": username, "role": role, "unit": unit})
    assert r.status_code == 201, r.text
    one_time = r.json()["one_time_password"]
    grant = r.json().get("pending_grant")
    if grant is not None:
        assert approver is not None, f"{username}: the {role} grant needs a second administrator's approval"
        approved = approver.post(f"/api/v1/role-grants/{grant['id']}/approve")
        assert approved.status_code == 200, approved.text
    client, _ = login(server, username, one_time)
    try:
        r = client.post("/api/v1/auth/password", json={"current_password": one_time, "new_password": PASSWORD})
        assert r.status_code == 200, r.text
        enrol_totp(client, server, username)
        r = client.post("/api/v1/auth/tokens", json={"name": f"{username} tests", "days": 1, "scope": "full"})
        assert r.status_code == 201, r.text
        return str(r.json()["secret"])
    finally:
        client.close()
