"""Account enumeration through sign-in (issue 8, item 9), against a real server over HTTP.

The attack: fail five times on a name to lock it, then compare the answer with that for a name that does not
exist. Before the fix a locked account said "account locked ..." (an unknown name said "wrong username or
password"), and answered without any argon2 work, so both the text and the time told real accounts apart.
Now every failure gets one status, one body, and one argon2 verification.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator

import httpx
import pytest
from auth_world import AuthWorld, make_world
from live_server import PASSWORD, LiveServer, start_server, stop_server

ROUNDS = 9


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthWorld]:
    # The per-address throttle would answer 429 to everything after 20 failures; raise it so that the
    # comparison sees the account logic, not the throttle (the throttle is the same for both anyway).
    server: LiveServer = start_server(
        tmp_path_factory.mktemp("enum") / "data", {"FACETRAIL_AUTH__IP_FAILURES_PER_WINDOW": "1000"}
    )
    w = make_world(server)
    yield w
    w.admin.close()
    stop_server(server)


def _attempt(client: httpx.Client, username: str, password: str) -> tuple[int, dict[str, object], float]:
    start = time.perf_counter()
    r = client.post("/api/v1/auth/login", json={"username": username, "password": password})
    return r.status_code, r.json(), time.perf_counter() - start


def test_locked_account_and_unknown_name_are_indistinguishable(world: AuthWorld) -> None:
    world.new_user("enum.real")
    world.new_user("enum.disabled")
    assert world.admin.patch("/api/v1/users/enum.disabled", json={"disabled": True}).status_code == 200
    with world.server.client() as client:
        for _ in range(5):  # lock it (auth.max_failed_logins)
            _attempt(client, "enum.real", "not-the-password-1")
        answers: dict[str, list[tuple[int, dict[str, object]]]] = {"locked": [], "unknown": [], "disabled": []}
        times: dict[str, list[float]] = {k: [] for k in answers}
        for i in range(ROUNDS):  # interleaved, so that load on the machine hits every kind alike
            for kind, name, password in (
                ("locked", "enum.real", PASSWORD),  # even the right password: locked
                ("unknown", f"enum.nobody{i}", PASSWORD),
                ("disabled", "enum.disabled", PASSWORD),
            ):
                status, body, took = _attempt(client, name, password)
                answers[kind].append((status, body))
                times[kind].append(took)
    medians = {kind: statistics.median(t) for kind, t in times.items()}
    print(f"median sign-in time (s): {medians}")
    # The same answer, byte for byte.
    distinct = {repr(a) for kind in answers for a in answers[kind]}
    assert len(distinct) == 1, distinct
    status, body = answers["unknown"][0]
    assert status == 401 and "locked" in str(body) and "wrong username or password" in str(body)
    # The same timing class: each does one argon2 verification (tens of ms); answering a locked account
    # without it took a few ms before the fix, a ratio far below 0.5.
    for kind in ("locked", "disabled"):
        ratio = medians[kind] / medians["unknown"]
        assert 0.5 < ratio < 2.0, f"{kind} vs unknown: {medians}"
