"""One way to run a real FaceTrail server for tests and benchmarks: ``facetrail serve`` in a subprocess on a
free port with its own data folder, ready once /api/v1/health answers. Used by tests/server (and
tests/adversarial), tests/web and bench/http_search.py."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx


@dataclass
class ServerProcess:
    base_url: str
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=60)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_ready(server: ServerProcess, timeout_s: float = 120) -> None:
    """Until /api/v1/health answers 200; raises (with the server's log) if it exits or takes too long."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"the server exited with {server.process.returncode}:\n{server.log()[-5000:]}")
        try:
            if httpx.get(f"{server.base_url}/api/v1/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    stop_server(server)
    raise RuntimeError(f"the server did not answer within {timeout_s:.0f} s:\n{server.log()[-5000:]}")


def start_server(
    data_dir: Path,
    env: dict[str, str] | None = None,
    *,
    port: int | None = None,
    workers: int = 4,
    timeout_s: float = 120,
    log_path: Path | None = None,
) -> ServerProcess:
    """Start ``facetrail serve`` on ``data_dir`` (SQLite in the folder: FACETRAIL_DATABASE_URL is dropped) with
    ``env`` added to this process's environment, and wait until it answers."""
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_path or data_dir.parent / f"server-{port}.log"
    full_env = {**os.environ, "FACETRAIL_DATA_DIR": str(data_dir), **(env or {})}
    full_env.pop("FACETRAIL_DATABASE_URL", None)
    command = [sys.executable, "-c", "from facetrail.cli.main import app; app()", "serve"]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=data_dir.parent,
        )
    server = ServerProcess(f"http://127.0.0.1:{port}", data_dir, log_path, process)
    wait_until_ready(server, timeout_s)
    return server


def stop_server(server: ServerProcess) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
