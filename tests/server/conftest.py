"""Server test fixtures: one real server process per session and a populated world (see live_server.py)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from live_server import (
    ADMIN_FIRST_PASSWORD,
    FIXTURES,
    FR,
    PASSWORD,
    ROLES,
    LiveServer,
    World,
    enrol_totp,
    login,
    make_user,
    start_server,
    stop_server,
)


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(tmp_path_factory.mktemp("server") / "data")
    yield server
    stop_server(server)


@pytest.fixture(scope="session")
def world(live_server: LiveServer) -> Iterator[World]:
    """First login of the bootstrap administrator (forced password change), two units, a user of each role in
    unit 'north' plus an investigator and a reviewer in 'south', and a gallery with three enrolled people."""
    admin, _ = login(live_server, "admin", ADMIN_FIRST_PASSWORD)
    assert admin.get("/api/v1/auth/me").json()["must_change_password"] is True
    assert admin.get("/api/v1/galleries").status_code == 403  # nothing else until the password is changed
    r = admin.post("/api/v1/auth/password", json={"current_password": ADMIN_FIRST_PASSWORD, "new_password": PASSWORD})
    assert r.status_code == 200, r.text
    assert admin.get("/api/v1/galleries").json()["error"]["code"] == "mfa_enrolment_required"  # MFA is on
    enrol_totp(admin, live_server, "admin")
    for unit in ("north", "south"):
        assert admin.post("/api/v1/units", json={"name": unit, "agency": "Example Police"}).status_code == 201
    w = World(server=live_server, admin=admin)
    for role in ROLES:
        unit = "north" if role in ("investigator", "reviewer") else None
        w.usernames[role] = f"{role[:5]}.north" if unit else f"{role[:5]}.hq"
        w.tokens[role] = make_user(admin, live_server, w.usernames[role], role, unit)
    second_admin = live_server.client(w.tokens["administrator"])  # approves grants now that two admins exist
    for role in ("investigator", "reviewer"):
        key = f"{role}_south"
        w.usernames[key] = f"{role[:5]}.south"
        w.tokens[key] = make_user(admin, live_server, w.usernames[key], role, "south", approver=second_admin)
    second_admin.close()
    for key in ("investigator", "investigator_south"):  # the training gate: nobody searches untrained
        r = admin.post(
            f"/api/v1/users/{w.usernames[key]}/training",
            json={"completed_on": str(dt.date.today()), "course": "FR-101"},
        )
        assert r.status_code == 201, r.text
    r = admin.post(
        "/api/v1/galleries",
        json={"name": w.gallery, "legal_basis": "Booking photos, statute 12-3", "source_system": "county-rms"},
    )
    assert r.status_code == 201, r.text
    files = [("files", (name, (FR / name).read_bytes(), "image/jpeg")) for name in ("obama.jpg", "biden.jpg")]
    files.append(("files", ("amy1.png", (FIXTURES / "faceapi" / "amy" / "amy1.png").read_bytes(), "image/png")))
    r = admin.post(
        f"/api/v1/galleries/{w.gallery}/enroll",
        files=files,
        data={"subject_ids": ["B-OBAMA", "B-BIDEN", "B-AMY"], "source_record_ids": ["r1", "r2", "r3"]},
    )
    assert r.status_code == 200, r.text
    for f in r.json()["files"]:
        assert f["status"] == "enrolled", f
        w.subject_face[f["subject_id"]] = f["face_id"]
    yield w
    admin.close()
