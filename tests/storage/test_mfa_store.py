"""Second factors in the database, on SQLite and PostgreSQL: a TOTP code is accepted once even when many threads
(standing in for several servers) present it at the same moment; recovery codes are stored hashed and work once;
step-up freshness belongs to the credential that showed the factor."""

from __future__ import annotations

import threading
import time

import pyotp
import pytest
from sqlalchemy import select

from facetrail.accounts import mfa
from facetrail.accounts import service as accounts
from facetrail.accounts.service import Principal
from facetrail.context import AppContext
from facetrail.storage.models import RecoveryCode, User

PASSWORD = "Correct-horse-battery-9"


def _user(ctx: AppContext, username: str) -> tuple[Principal, Principal, str, list[str]]:
    """A new auditor who enrolled TOTP in a session: the session's principal, an API token's principal, the
    TOTP secret and the recovery codes."""
    admin = Principal(user_id=None, username="cli:test", role="administrator", unit_id=None, unit_name=None, via="cli")
    accounts.create_user(ctx, admin, username=username, role="auditor", unit=None, password=PASSWORD)
    who = accounts.authenticate(ctx, username, PASSWORD, ip="192.0.2.7")
    token, _csrf = accounts.create_session(ctx, who)
    resolved = accounts.resolve_session(ctx, token, ip="192.0.2.7")
    assert resolved is not None
    session = resolved[0]
    secret = mfa.begin_totp_enrolment(ctx, session)["secret"]
    codes = mfa.confirm_totp_enrolment(ctx, session, pyotp.TOTP(secret).now())
    assert len(codes) == ctx.settings.mfa.recovery_codes
    _info, api_secret = accounts.create_api_token(ctx, session, "job", 1)
    by_token = accounts.resolve_api_token(ctx, api_secret, ip="192.0.2.8")
    assert by_token is not None
    return session, by_token, secret, codes


def test_a_code_is_accepted_once_across_concurrent_servers(ctx: AppContext) -> None:
    session, _token, secret, _codes = _user(ctx, "race.user")
    code = pyotp.TOTP(secret).at(time.time() + 30)  # the next step: unused so far
    results: list[str] = []
    barrier = threading.Barrier(8)

    def attempt() -> None:
        barrier.wait()
        try:
            mfa.verify_second_factor(ctx, session, code)
            results.append("ok")
        except (mfa.WrongCodeError, mfa.AccountLockedError):  # replays count towards lockout, like wrong codes
            results.append("refused")

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["ok"] + ["refused"] * 7
    with ctx.db.read() as s:  # the concurrent refusals were all counted: five of them locked the account
        user = s.execute(select(User).where(User.username == "race.user")).scalar_one()
        assert user.locked_until is not None


def test_recovery_codes_are_hashed_and_single_use(ctx: AppContext) -> None:
    session, _token, _secret, codes = _user(ctx, "recovery.user")
    with ctx.db.read() as s:
        stored = [r.code_hash for r in s.execute(select(RecoveryCode)).scalars()]
    assert len(stored) == len(codes) and not set(codes) & set(stored)
    assert all(len(h) == 64 for h in stored)
    assert mfa.verify_second_factor(ctx, session, codes[3]) == "recovery_code"
    with pytest.raises(mfa.WrongCodeError):
        mfa.verify_second_factor(ctx, session, codes[3])


def test_step_up_freshness_belongs_to_the_credential(ctx: AppContext) -> None:
    session, by_token, secret, _codes = _user(ctx, "fresh.user")
    mfa.require_fresh_second_factor(ctx, session, "exporting the audit log")  # the enrolment code counts
    with pytest.raises(mfa.StepUpRequiredError):
        mfa.require_fresh_second_factor(ctx, by_token, "exporting the audit log")  # the token showed none
    mfa.verify_second_factor(ctx, by_token, pyotp.TOTP(secret).at(time.time() + 30))
    mfa.require_fresh_second_factor(ctx, by_token, "exporting the audit log")
    with ctx.db.read() as s:
        user = s.execute(select(User).where(User.username == "fresh.user")).scalar_one()
        assert user.failed_logins == 0
