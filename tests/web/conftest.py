"""A real FaceTrail server process (``facetrail serve``, i.e. uvicorn) on a free port with a temporary data
folder, and Debian's Chromium driven by Playwright. The browser tests skip only where /usr/bin/chromium is
absent and CI is not set (test_browser.py's pytestmark); under CI=true they always run."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from web_helpers import ADMIN_PASSWORD, CHROMIUM, SCREENSHOTS, Server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("web-server")
    port = _free_port()
    env = {
        **os.environ,
        "FACETRAIL_DATA_DIR": str(root / "data"),
        "FACETRAIL_ADMIN_PASSWORD": ADMIN_PASSWORD,
        # reviewers compare the searched face with the candidates later, so the probe is kept
        "FACETRAIL_KEEP_PROBE_IMAGES": "true",
        # one administrator makes the reviewers here: grants take effect at once (the delay and the second
        # administrator's approval are tested in tests/adversarial/test_separation_of_duties.py)
        "FACETRAIL_GOVERNANCE__ROLE_GRANT_DELAY_HOURS": "0",
    }
    env.pop("FACETRAIL_DATABASE_URL", None)  # the embedded default: SQLite in the data folder
    log = root / "server.log"
    facetrail = Path(sys.executable).parent / "facetrail"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(facetrail), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "4"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=root,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited ({proc.returncode}):\n{log.read_text()}")
            try:
                if httpx.get(f"{url}/api/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            raise RuntimeError(f"the server did not answer within 60 s:\n{log.read_text()}")
        yield Server(url, root / "data", log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
            ],
        )
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    # Files are overwritten, never the folder removed: another test run may be writing into it at the same time.
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
