"""The insider-attack suite: each module performs one family of attacks for real (a real server over HTTP, the
real CLI in a subprocess, real SQL on SQLite and PostgreSQL) and fails if an attack succeeds again.
docs/security.md maps each threat to the test that proves it is closed."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The real-server helpers (start_server, login, ...) live with the server tests.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "server"))

from gov_world import GovWorld, close_world, make_gov_world
from live_server import start_server, stop_server


# The review, scope and disclosure attacks (issue 8) share one real server and world per session.
@pytest.fixture(scope="session")
def gov_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GovWorld]:
    # delay 0 only lets the first administrator make the second one; every reviewer of this world is then
    # approved by that second administrator (the delay itself: test_separation_of_duties.py)
    # MFA off (no role required, nobody enrolled): these attacks are about review and disclosure; second
    # factors and step-up are tested by the identity tests
    server = start_server(tmp_path_factory.mktemp("gov") / "data", {"FACETRAIL_MFA__REQUIRED_ROLES": "[]"})
    try:
        world = make_gov_world(server)
        yield world
        close_world(world)
    finally:
        stop_server(server)
