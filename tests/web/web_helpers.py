"""Constants and types shared by the browser tests' fixtures and tests."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "test-output" / "screenshots"
UNDER_CI = os.environ.get("CI") == "true"
ADMIN_PASSWORD = "first-Start-pass-42"


@dataclass(frozen=True)
class Server:
    url: str
    data_dir: Path
    log: Path
