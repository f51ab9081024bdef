"""A real FaceTrail server process (``facetrail serve``, i.e. uvicorn) on a free port with a temporary data
folder, and Debian's Chromium driven by Playwright. The browser tests skip only where /usr/bin/chromium is
absent and CI is not set (test_browser.py's pytestmark); under CI=true they always run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from web_helpers import ADMIN_PASSWORD, SCREENSHOTS, Server

from server_process import start_server, stop_server


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("web-server")
    env = {
        "FACETRAIL_ADMIN_PASSWORD": ADMIN_PASSWORD,
        # reviewers compare the searched face with the candidates later, so the probe is kept
        "FACETRAIL_KEEP_PROBE_IMAGES": "true",
        # one administrator makes the reviewers here: grants take effect at once (the delay and the second
        # administrator's approval are tested in tests/adversarial/test_separation_of_duties.py)
        "FACETRAIL_GOVERNANCE__ROLE_GRANT_DELAY_HOURS": "0",
    }
    process = start_server(root / "data", env, log_path=root / "server.log", timeout_s=60)
    try:
        yield Server(process.base_url, process.data_dir, process.log_path)
    finally:
        stop_server(process)


@pytest.fixture(scope="session")
def screenshots() -> Path:
    # Files are overwritten, never the folder removed: another test run may be writing into it at the same time.
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
