"""`facetrail serve --processes N`: how many processes run, and SQLite's refusal of more than one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from facetrail.cluster.processes import ProcessCountError, server_processes


@given(st.integers(min_value=1, max_value=512), st.integers(min_value=1, max_value=256))
def test_postgres_runs_what_is_asked_and_defaults_to_one_per_core(requested: int, cores: int) -> None:
    assert server_processes(requested, is_sqlite=False, cores=cores) == requested
    assert server_processes(None, is_sqlite=False, cores=cores) == cores


@given(st.integers(min_value=2, max_value=512))
def test_sqlite_refuses_more_than_one_process(requested: int) -> None:
    assert server_processes(None, is_sqlite=True, cores=16) == 1
    assert server_processes(1, is_sqlite=True) == 1
    with pytest.raises(ProcessCountError) as info:
        server_processes(requested, is_sqlite=True)
    assert info.value.code == "processes_not_supported" and "PostgreSQL" in info.value.message


@given(st.integers(max_value=0))
def test_fewer_than_one_process_is_refused(requested: int) -> None:
    for sqlite in (True, False):
        with pytest.raises(ProcessCountError):
            server_processes(requested, is_sqlite=sqlite)


def test_serve_on_sqlite_with_two_processes_exits_with_a_clear_message(tmp_path: Path) -> None:
    env = {"FACETRAIL_DATA_DIR": str(tmp_path / "data"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", "from facetrail.cli.main import app; app()", "serve", "--processes", "2"],
        env={**env, "PYTHONPATH": ":".join(sys.path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    output = " ".join((done.stdout + done.stderr).split())
    assert "processes_not_supported" in output and "needs PostgreSQL" in output
