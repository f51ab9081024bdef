"""Red team: getting around the oversight limits, against a real server over HTTP.

An investigator limited to one search per case types the same case number again with other letter case
("ef-7", "Ef-7", "eF-7"): before the fix each variant was a fresh case for the per-case limit (three searches
under a limit of one). Every variant must be refused once the case has used its allowance, and the refusal
audited.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import httpx
import pytest
from live_server import (
    ADMIN_FIRST_PASSWORD,
    FR,
    PASSWORD,
    LiveServer,
    enrol_totp,
    login,
    make_user,
    second_factor,
    start_server,
    stop_server,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = start_server(tmp_path_factory.mktemp("redteam-oversight") / "data")
    yield live
    stop_server(live)


@pytest.fixture(scope="module")
def clients(server: LiveServer) -> Iterator[dict[str, httpx.Client]]:
    """The administrator, a trained investigator of unit north, an auditor; a gallery with one person."""
    admin, _ = login(server, "admin", ADMIN_FIRST_PASSWORD)
    r = admin.post("/api/v1/auth/password", json={"current_password": ADMIN_FIRST_PASSWORD, "new_password": PASSWORD})
    assert r.status_code == 200, r.text
    enrol_totp(admin, server, "admin")  # MFA is on, as in production
    assert admin.post("/api/v1/units", json={"name": "north", "agency": "Example Police"}).status_code == 201
    investigator = server.client(make_user(admin, server, "rt.inv", "investigator", "north"))
    auditor = server.client(make_user(admin, server, "rt.aud", "auditor", None))
    r = admin.post("/api/v1/users/rt.inv/training", json={"completed_on": str(dt.date.today()), "course": "FR-101"})
    assert r.status_code == 201, r.text
    r = admin.post("/api/v1/galleries", json={"name": "bookings", "legal_basis": "Booking", "source_system": "rms"})
    assert r.status_code == 201, r.text
    r = admin.post(
        "/api/v1/galleries/bookings/enroll",
        files=[("files", ("obama.jpg", (FR / "obama.jpg").read_bytes(), "image/jpeg"))],
        data={"subject_ids": ["B-OBAMA"]},
    )
    assert r.status_code == 200, r.text
    yield {"admin": admin, "investigator": investigator, "auditor": auditor}
    for client in (admin, investigator, auditor):
        client.close()


def set_limits(admin: httpx.Client, server: LiveServer, **limits: int) -> None:
    r = second_factor(admin, server, "admin")  # a fresh second factor for a sensitive act (step-up)
    assert r.status_code == 200, r.text
    text = admin.get("/api/v1/policy").json()["text"]
    for name, value in limits.items():
        assert f"\n{name} = 0\n" in text, f"the shipped policy no longer has '{name} = 0'"
        text = text.replace(f"\n{name} = 0\n", f"\n{name} = {value}\n", 1)
    r = admin.put("/api/v1/policy", json={"text": text})
    assert r.status_code == 200, r.text


def search(client: httpx.Client, case_number: str) -> httpx.Response:
    return client.post(
        "/api/v1/searches",
        files={"probe": ("probe.jpg", (FR / "obama2.jpg").read_bytes(), "image/jpeg")},
        data={
            "gallery": "bookings",
            "case_number": case_number,
            "offense": "robbery",
            "legal_basis": "warrant",
            "justification": "suspect photo from the shop's CCTV footage",
        },
    )


def test_letter_case_variants_do_not_buy_a_fresh_per_case_allowance(
    server: LiveServer, clients: dict[str, httpx.Client]
) -> None:
    set_limits(clients["admin"], server, per_case=1)
    inv = clients["investigator"]
    first = search(inv, "ef-7")
    assert first.status_code == 201, first.text
    for variant in ("Ef-7", "eF-7", "EF-7", " ef-7 "):
        r = search(inv, variant)
        assert r.status_code == 429, f"{variant!r} was searched past the per-case limit: {r.status_code}"
        assert r.json()["error"]["code"] == "search_limit_exceeded"
    r = clients["auditor"].get(
        "/api/v1/audit/records", params={"action": "search", "outcome": "refused", "actor": "user:rt.inv"}
    )
    assert r.status_code == 200, r.text
    refused = [rec for rec in r.json()["records"] if rec["details"]["error"]["code"] == "search_limit_exceeded"]
    assert len(refused) == 4, refused
    listed = inv.get("/api/v1/searches").json()
    assert listed["total"] == 1, "a variant search ran"
