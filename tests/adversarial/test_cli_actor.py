"""A forged actor on the local CLI (issue 8, item 10): the real CLI in a subprocess, on a real database.

The attack: ``FACETRAIL_ACTOR=user:reva1 facetrail user train inva2 ...`` trained an untrained investigator and
the audit record named the reviewer. Now governance commands run as the signed-in user behind --token, with
that user's permissions (refusals audited), and operator commands record ``cli:<OS user>`` from the process's
user id, whatever FACETRAIL_ACTOR, $USER or $LOGNAME say.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import pwd
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from facetrail.accounts.service import create_api_token, create_unit, create_user, principal_for
from facetrail.config import Settings
from facetrail.context import AppContext, open_context
from facetrail.policy.principal import Principal
from facetrail.storage.models import AuditRecord, User

OS_USER = f"cli:{pwd.getpwuid(os.getuid()).pw_name}"


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[AppContext]:
    # The reviewer and administrator made below take effect at once: role grants (separation of duties) are
    # tested in test_separation_of_duties.py; here the CLI's actor is.
    settings = Settings(data_dir=tmp_path / "data", governance={"role_grant_delay_hours": 0})  # type: ignore[call-arg]
    context = open_context(settings)
    try:
        yield context
    finally:
        context.close()


def _user(ctx: AppContext, username: str, role: str, unit: str | None) -> Principal:
    root = Principal(user_id=None, username="setup", role="administrator", unit_id=None, unit_name=None)
    create_user(ctx, root, username=username, role=role, unit=unit)
    with ctx.db.read() as s:
        return principal_for(s.execute(select(User).where(User.username == username)).scalar_one(), "session")


@pytest.fixture
def people(ctx: AppContext) -> dict[str, Any]:
    root = Principal(user_id=None, username="setup", role="administrator", unit_id=None, unit_name=None)
    create_unit(ctx, root, "north")
    reviewer = _user(ctx, "reva1", "reviewer", "north")
    admin = _user(ctx, "adam.admin", "administrator", None)
    _user(ctx, "inva2", "investigator", "north")
    return {
        "reviewer_token": create_api_token(ctx, reviewer, "cli", scope="full")[1],
        "admin_token": create_api_token(ctx, admin, "cli", scope="full")[1],
        "admin_read_token": create_api_token(ctx, admin, "cli read", scope="read")[1],
    }


def cli(ctx: AppContext, *args: str, **env_extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "FACETRAIL_API_TOKEN"}
    env.update({"FACETRAIL_DATA_DIR": str(ctx.data_dir), **env_extra})
    return subprocess.run(
        [sys.executable, "-c", "from facetrail.cli.main import app; app()", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def audits(ctx: AppContext, action: str) -> list[tuple[str, str]]:
    with ctx.db.read() as s:
        rows = s.execute(select(AuditRecord.actor, AuditRecord.outcome).where(AuditRecord.action == action))
        return [(actor, outcome) for actor, outcome in rows]


def trained(ctx: AppContext) -> bool:
    return bool(audits(ctx, "training.record") and ("ok" in {o for _, o in audits(ctx, "training.record")}))


def test_forged_actor_cannot_train_a_user(ctx: AppContext, people: dict[str, Any]) -> None:
    today = str(dt.date.today())
    forged = {"FACETRAIL_ACTOR": "user:reva1", "USER": "reva1", "LOGNAME": "reva1"}
    # 1. The reported attack: no token, a forged actor. Refused, and the refusal names the OS user.
    r = cli(ctx, "user", "train", "inva2", "--date", today, "--json", **forged)
    assert r.returncode != 0 and json.loads(r.stdout)["error"]["code"] == "unauthenticated", r.stdout + r.stderr
    assert not trained(ctx)
    assert audits(ctx, "user.train") == [(OS_USER, "denied")]
    # 2. The reviewer's own token: a reviewer may not record training. Refused and audited as the reviewer.
    r = cli(ctx, "user", "train", "inva2", "--date", today, "--json", "--token", people["reviewer_token"], **forged)
    assert r.returncode != 0 and json.loads(r.stdout)["error"]["code"] == "forbidden"
    assert not trained(ctx)
    assert audits(ctx, "user.train")[-1] == ("user:reva1", "denied")
    # 3. An administrator's read-only token: the scope refuses it.
    r = cli(ctx, "user", "train", "inva2", "--date", today, "--json", "--token", people["admin_read_token"])
    assert r.returncode != 0 and "scope" in json.loads(r.stdout)["error"]["message"]
    # 4. The administrator, signed in: recorded as the administrator, not as whoever the environment names.
    r = cli(ctx, "user", "train", "inva2", "--date", today, "--json", "--token", people["admin_token"], **forged)
    assert r.returncode == 0, r.stdout + r.stderr
    assert audits(ctx, "training.record") == [("user:adam.admin", "ok")]


@pytest.mark.parametrize(
    "args",
    [
        ("policy", "apply", "POLICY"),
        ("hold", "add", "--case", "C-1", "--reason", "order"),
        ("retention", "run", "--dry-run"),
        ("gallery", "delete-subject", "bookings", "B-1"),
        ("audit", "export"),
        ("audit", "log"),
    ],
)
def test_governance_commands_need_a_signed_in_user(
    ctx: AppContext, people: dict[str, Any], tmp_path: Path, args: tuple[str, ...]
) -> None:
    from facetrail.governance.policy import default_policy_text

    policy = tmp_path / "policy.toml"
    policy.write_text(default_policy_text())
    argv = [str(policy) if a == "POLICY" else a for a in args]
    r = cli(ctx, *argv, FACETRAIL_ACTOR="user:mallory", USER="mallory", LOGNAME="mallory")
    assert r.returncode != 0, r.stdout
    with ctx.db.read() as s:
        actors = {a for (a,) in s.execute(select(AuditRecord.actor))}
    assert not {a for a in actors if "mallory" in a}  # nothing was done, nor recorded, in the forged name
    assert OS_USER in actors  # the refusal names who really ran it


def test_operator_commands_record_the_os_user(ctx: AppContext) -> None:
    r = cli(ctx, "audit", "checkpoint", "--json", FACETRAIL_ACTOR="user:reva1", USER="reva1", LOGNAME="reva1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert audits(ctx, "audit.checkpoint") == [(OS_USER, "ok")]
