"""State a later request depends on lives in the database (migration 0010), so two processes (here: two
AppContexts on one database, as two hosts would have) see the same: held web-search probes, searched faces,
the per-address login throttle and the account lockout."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, update

from facetrail.accounts.service import ThrottledError, authenticate, bootstrap_admin
from facetrail.cluster import held_probes
from facetrail.config import AuthSettings
from facetrail.context import AppContext, open_context
from facetrail.policy.roles import AuthenticationError
from facetrail.storage.cluster_models import LoginFailure, PendingProbeRow, SearchedFace
from facetrail.storage.models import AuditRecord, SearchRecord


@pytest.fixture
def host_b(ctx: AppContext) -> Iterator[AppContext]:
    other = open_context(ctx.settings.model_copy(update={"data_dir": ctx.settings.data_dir.parent / "host-b"}))
    try:
        yield other
    finally:
        other.close()


def test_a_probe_held_by_one_host_is_found_by_the_other_for_its_uploader_only(
    ctx: AppContext, host_b: AppContext
) -> None:
    bootstrap_admin(ctx)  # user 1 exists (the held probe refers to its uploader)
    token = held_probes.hold(ctx, 1, b"probe bytes", {"case_number": "C-1"})
    assert held_probes.peek(host_b, token, 2) is None  # another user's token finds nothing
    assert held_probes.peek(host_b, token + "x", 1) is None
    held = held_probes.peek(host_b, token, 1)
    assert held is not None and held.data == b"probe bytes" and held.fields == {"case_number": "C-1"}
    with ctx.db.read() as s:  # only the token's hash is stored
        stored = s.execute(select(PendingProbeRow.token_hash)).scalars().all()
    assert token not in stored and len(stored) == 1
    assert held_probes.take(host_b, token, 1)  # searched: deleted, for both hosts
    assert held_probes.peek(ctx, token, 1) is None and not held_probes.take(ctx, token, 1)


def test_expired_probes_and_faces_are_never_returned_and_are_purged(ctx: AppContext, host_b: AppContext) -> None:
    bootstrap_admin(ctx)
    token = held_probes.hold(ctx, 1, b"old", {})
    fresh = held_probes.hold(ctx, 1, b"new", {})
    with ctx.db.transaction() as s:
        s.add(
            SearchRecord(
                actor="t",
                gallery_name="g",
                case_number="C",
                offense="o",
                reason="r",
                probe_sha256="0" * 64,
                face_index=0,
                faces_in_probe=1,
                model_id="m",
                candidates_requested=1,
                candidates=[],
            )
        )
    held_probes.remember_face(ctx, 1, b"jpeg")
    assert held_probes.searched_face(host_b, 1) == b"jpeg"
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    with ctx.db.transaction() as s:
        s.execute(update(PendingProbeRow).where(PendingProbeRow.data == b"old").values(expires_at=past))
        s.execute(update(SearchedFace).values(expires_at=past))
    assert held_probes.peek(host_b, token, 1) is None and held_probes.searched_face(host_b, 1) is None
    purged = held_probes.purge_expired(host_b, login_window_seconds=300)
    assert purged["pending_probes"] == 1 and purged["searched_faces"] == 1
    held = held_probes.peek(ctx, fresh, 1)
    assert held is not None and held.data == b"new"


def test_a_user_abandoning_uploads_keeps_only_the_newest_few(ctx: AppContext) -> None:
    bootstrap_admin(ctx)
    tokens = [held_probes.hold(ctx, 1, bytes([i]), {}) for i in range(held_probes.PENDING_PER_USER + 3)]
    with ctx.db.read() as s:
        assert s.execute(select(func.count()).select_from(PendingProbeRow)).scalar_one() == held_probes.PENDING_PER_USER
    assert held_probes.peek(ctx, tokens[-1], 1) is not None


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=80))
def test_any_token_text_is_answered_with_nothing_not_an_error(ctx: AppContext, token: str) -> None:
    assert held_probes.peek(ctx, token, 1) is None
    assert held_probes.take(ctx, token, 1) is False


def _fail(ctx: AppContext, ip: str, username: str = "admin") -> str:
    """A failed sign-in; its outcome as the audit log records it (the answer is the same for all)."""
    try:
        authenticate(ctx, username, "wrong-password", ip=ip)
    except ThrottledError:
        return "throttled"
    except AuthenticationError:
        with ctx.db.read() as s:
            return str(
                s.execute(
                    select(AuditRecord.outcome)
                    .where(AuditRecord.action == "auth.login")
                    .order_by(AuditRecord.seq.desc())
                    .limit(1)
                ).scalar_one()
            )
    return "signed-in"


def test_the_address_throttle_counts_failures_on_every_host(ctx: AppContext, host_b: AppContext) -> None:
    limit = 4
    for c in (ctx, host_b):
        c.settings.auth = AuthSettings(ip_failures_per_window=limit, max_failed_logins=100)
    outcomes = [_fail(ctx if i % 2 else host_b, "203.0.113.9", "nobody") for i in range(limit)]
    assert outcomes == ["failed"] * limit
    assert _fail(ctx, "203.0.113.9", "nobody") == "throttled"  # counted across both hosts
    assert _fail(host_b, "203.0.113.9", "nobody") == "throttled"
    assert _fail(host_b, "198.51.100.1", "nobody") == "failed"  # another address is not affected
    with ctx.db.transaction() as s:  # past the window, the failures no longer count
        s.execute(update(LoginFailure).values(at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)))
    assert _fail(ctx, "203.0.113.9", "nobody") == "failed"
    with ctx.db.read() as s:  # the old ones of that address were dropped on the way
        assert s.execute(select(func.count()).select_from(LoginFailure)).scalar_one() == 2


def test_the_account_lockout_counts_failures_on_every_host(ctx: AppContext, host_b: AppContext) -> None:
    created = bootstrap_admin(ctx)
    assert created is not None
    for c in (ctx, host_b):
        c.settings.auth = AuthSettings(max_failed_logins=3, ip_failures_per_window=100)
    assert [_fail(c, f"192.0.2.{i}") for i, c in enumerate((ctx, host_b))] == ["failed", "failed"]
    assert _fail(ctx, "192.0.2.7") == "locked"  # the third failure, on either host, locks the account
    with pytest.raises(AuthenticationError):
        authenticate(host_b, "admin", created[1], ip="192.0.2.8")  # even the right password, on the other host
    with ctx.db.read() as s:
        outcomes = s.execute(select(AuditRecord.outcome).where(AuditRecord.action == "auth.login")).scalars().all()
    assert outcomes == ["failed", "failed", "locked", "locked"]
