"""The insider-attack suite: each module performs one family of attacks for real (a real server over HTTP, the
real CLI in a subprocess, real SQL on SQLite and PostgreSQL) and fails if an attack succeeds again.
docs/security.md maps each threat to the test that proves it is closed."""

from __future__ import annotations

import sys
from pathlib import Path

# The real-server helpers (start_server, login, ...) live with the server tests.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "server"))
