"""A real-server world for the review, scope and disclosure attacks (issue 8): a fresh server, a second
administrator (so that reviewer grants are approved by another administrator, as separation of duties
requires), unit 'north' with a trained investigator, three reviewers and an auditor, and a gallery of three
enrolled people. Every request goes over real HTTP."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from live_server import ADMIN_FIRST_PASSWORD, FIXTURES, FR, PASSWORD, LiveServer, login

SEARCH_FIELDS = {
    "gallery": "bookings",
    "case_number": "2026-0800",
    "offense": "robbery",
    "legal_basis": "warrant",
    "justification": "CCTV still from the pharmacy robbery",
}


def photo(name: str) -> tuple[str, bytes, str]:
    path = FR / name if (FR / name).exists() else FIXTURES / name
    return (path.name, path.read_bytes(), "image/png" if path.suffix == ".png" else "image/jpeg")


@dataclass
class GovWorld:
    server: LiveServer
    admin: httpx.Client  # session + CSRF
    admin2: httpx.Client | None = None
    tokens: dict[str, str] = field(default_factory=dict)  # username -> bearer token
    subject_face: dict[str, int] = field(default_factory=dict)

    def client(self, username: str) -> httpx.Client:
        return self.server.client(self.tokens[username])

    def audit(self, **params: Any) -> list[dict[str, Any]]:
        with self.client("aud") as auditor:
            r = auditor.get("/api/v1/audit/records", params={"limit": 1000, **params})
        assert r.status_code == 200, r.text
        records: list[dict[str, Any]] = r.json()["records"]
        return records

    def search(self, username: str = "inv", probe: str = "obama2.jpg", **fields: Any) -> httpx.Response:
        with self.client(username) as client:
            return client.post("/api/v1/searches", files={"probe": photo(probe)}, data={**SEARCH_FIELDS, **fields})


def first_password(client: httpx.Client, one_time: str) -> None:
    r = client.post("/api/v1/auth/password", json={"current_password": one_time, "new_password": PASSWORD})
    assert r.status_code == 200, r.text


def create_user(world: GovWorld, username: str, role: str, unit: str | None = "north") -> dict[str, Any]:
    """Create the user; a privileged grant (reviewer, administrator) is approved by the second administrator."""
    r = world.admin.post("/api/v1/users", json={"username": username, "role": role, "unit": unit})
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    grant = created.get("pending_grant")
    if grant and world.admin2 is not None:
        r = world.admin2.post(f"/api/v1/role-grants/{grant['id']}/approve")
        assert r.status_code == 200, r.text
    return created


def sign_up(world: GovWorld, username: str, one_time: str) -> str:
    """First sign-in (password change) and an API token for the user."""
    client, _ = login(world.server, username, one_time)
    try:
        first_password(client, one_time)
        r = client.post("/api/v1/auth/tokens", json={"name": f"{username} adversarial", "days": 1, "scope": "full"})
        assert r.status_code == 201, r.text
        return str(r.json()["secret"])
    finally:
        client.close()


def make_gov_world(server: LiveServer, *, second_admin: bool = True) -> GovWorld:
    admin, _ = login(server, "admin", ADMIN_FIRST_PASSWORD)
    first_password(admin, ADMIN_FIRST_PASSWORD)
    assert admin.post("/api/v1/units", json={"name": "north", "agency": "Example Police"}).status_code == 201
    world = GovWorld(server=server, admin=admin)
    if second_admin:
        created = create_user(world, "admin2", "administrator", None)
        admin2, _ = login(server, "admin2", created["one_time_password"])
        first_password(admin2, created["one_time_password"])
        world.admin2 = admin2
    for username, role in (("inv", "investigator"), ("rev1", "reviewer"), ("rev2", "reviewer"), ("rev3", "reviewer")):
        world.tokens[username] = sign_up(world, username, create_user(world, username, role)["one_time_password"])
    world.tokens["aud"] = sign_up(world, "aud", create_user(world, "aud", "auditor", None)["one_time_password"])
    r = admin.post("/api/v1/users/inv/training", json={"completed_on": str(dt.date.today()), "course": "FR-101"})
    assert r.status_code == 201, r.text
    r = admin.post(
        "/api/v1/galleries",
        json={"name": "bookings", "legal_basis": "Booking photos, statute 12-3", "source_system": "county-rms"},
    )
    assert r.status_code == 201, r.text
    files = [("files", photo(name)) for name in ("obama.jpg", "biden.jpg")]
    files.append(("files", photo("faceapi/amy/amy1.png")))
    r = admin.post(
        "/api/v1/galleries/bookings/enroll",
        files=files,
        data={"subject_ids": ["B-OBAMA", "B-BIDEN", "B-AMY"], "source_record_ids": ["r1", "r2", "r3"]},
    )
    assert r.status_code == 200, r.text
    for f in r.json()["files"]:
        assert f["status"] == "enrolled", f
        world.subject_face[f["subject_id"]] = f["face_id"]
    return world


def close_world(world: GovWorld) -> None:
    world.admin.close()
    if world.admin2 is not None:
        world.admin2.close()


def data_dir(world: GovWorld) -> Path:
    return world.server.data_dir


def examiners(world: GovWorld, search_id: int) -> list[str]:
    """The two reviewers the system assigned to the search (assigned now if not yet), from the answer key."""
    from examination_helpers import examiners_of, server_db

    with server_db(world.server.data_dir) as db:
        return examiners_of(db, search_id)


def conclude_as(
    world: GovWorld, user: str, search_id: int, rank: int, conclusion: str, reasoning: str = "compared"
) -> httpx.Response:
    """``user`` walks the examination method for the candidate at ``rank`` over HTTP; the conclusion's answer."""
    from examination_helpers import conclude_over_api, server_db

    with server_db(world.server.data_dir) as db, world.client(user) as client:
        response: httpx.Response = conclude_over_api(client, db, user, search_id, rank, conclusion, reasoning)
        return response


def task_id(world: GovWorld, user: str, search_id: int) -> str | None:
    from examination_helpers import server_db, task_of

    with server_db(world.server.data_dir) as db:
        return task_of(db, user, search_id)
