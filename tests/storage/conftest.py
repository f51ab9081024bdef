"""Storage fixtures: every test here runs against SQLite and, where reachable, PostgreSQL.

PostgreSQL is used when FACETRAIL_TEST_POSTGRES_URL is set or a server answers on 127.0.0.1:5432 (as on
CI). Under CI (CI=true) an unreachable PostgreSQL is an error, never a silent skip. Each test gets its own
fresh database.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from databases import BACKENDS, database_url_for
from facetrail.config import Settings
from facetrail.context import AppContext, open_context


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_url_for(getattr(request, "param", "sqlite"), tmp_path) as url:
        yield url


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "database_url" in metafunc.fixturenames:
        metafunc.parametrize("database_url", BACKENDS, indirect=True)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    # MFA off (mfa.required_roles = []): these tests are about storage, governance, reports and retention, and
    # sign their users in through core functions. Second factors have their own tests here (test_mfa_store.py,
    # which enrols, so step-up still applies) and run ON in tests/identity, tests/server and tests/adversarial.
    return Settings(  # type: ignore[call-arg]
        data_dir=tmp_path / "data", database_url=database_url, mfa={"required_roles": []}
    )


@pytest.fixture
def ctx(settings: Settings) -> Iterator[AppContext]:
    context = open_context(settings)
    try:
        yield context
    finally:
        context.close()
