"""A database administrator rewrites the audit log (issue 8, "the audit chain must catch a full rewrite").

Every attack is real SQL on SQLite and PostgreSQL, after dropping the append-only triggers as a DBA would;
verification uses only the Ed25519 *public* key (a copy held by an auditor, away from the server), so nothing
on the server needs to be trusted. Attacks: cut the tail and rewind audit_head; rewrite a record and
re-chain every hash after it; replace the checkpoints file (re-signed with the attacker's own key, or cut
back). Before the fix the cut and the re-chained log read "chain intact" unless someone had run
'facetrail audit checkpoint' by hand, and whoever could verify (HMAC) could also forge.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import create_engine, select, text

from facetrail.audit.log import (
    GENESIS_HASH,
    append_audit,
    canonical_json,
    load_public_key,
    public_key_pem,
    read_checkpoints,
    record_hash,
    sign_ed25519,
    verify_chain,
)
from facetrail.audit.service import (
    checkpoint_due,
    maybe_checkpoint,
    signing_key,
    take_checkpoint,
    verify_audit,
)
from facetrail.config import Settings
from facetrail.context import AppContext, open_context
from facetrail.storage.models import AuditRecord

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def _postgres_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=0.5):
            return True
    except OSError:
        if os.environ.get("CI"):
            raise RuntimeError("CI needs PostgreSQL on 127.0.0.1:5432") from None
        return False


BACKENDS = ["sqlite"] + (["postgres"] if _postgres_up() else [])


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'facetrail.db'}"
        return
    name = f"facetrail_adv_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def ctx(tmp_path: Path, database_url: str) -> Iterator[AppContext]:
    """The private key lives outside the data folder (as docs/security.md tells operators to keep it)."""
    settings = Settings(  # type: ignore[call-arg]
        data_dir=tmp_path / "data",
        database_url=database_url,
        audit={"signing_key_path": tmp_path / "offsite" / "audit-signing.key", "checkpoint_every_records": 5},
    )
    context = open_context(settings)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def auditors_public_key(ctx: AppContext, tmp_path: Path) -> Path:
    """The auditor's own copy of the public key, taken when the system was set up."""
    path = tmp_path / "auditor" / "facetrail-audit.pub"
    path.parent.mkdir()
    path.write_text(public_key_pem(signing_key(ctx).public_key()))
    return path


# --- the DBA's tools: raw SQL -----------------------------------------------------------------------------


def sql(ctx: AppContext, statement: str, **params: Any) -> None:
    with ctx.db.engine.begin() as conn:
        conn.execute(text(statement), params)


def drop_triggers(ctx: AppContext) -> None:
    if ctx.db.is_sqlite:
        sql(ctx, "DROP TRIGGER audit_log_no_update")
        sql(ctx, "DROP TRIGGER audit_log_no_delete")
    else:
        sql(ctx, "DROP TRIGGER audit_log_append_only ON audit_log")
        sql(ctx, "DROP TRIGGER audit_log_no_truncate ON audit_log")


def rows(ctx: AppContext) -> list[Any]:
    columns = [getattr(AuditRecord, c) for c in ("seq", "ts", "actor", "action", "target", "outcome", "details")]
    with ctx.db.read() as s:
        return list(s.execute(select(*columns, AuditRecord.hash).order_by(AuditRecord.seq)).all())


def cut_tail(ctx: AppContext, keep: int) -> None:
    """Delete every record after ``keep`` and rewind audit_head to it: a valid, shorter chain."""
    drop_triggers(ctx)
    sql(ctx, "DELETE FROM audit_log WHERE seq > :keep", keep=keep)
    head_hash = next(r.hash for r in rows(ctx) if r.seq == keep)
    sql(ctx, "UPDATE audit_head SET seq = :seq, hash = :hash WHERE id = 1", seq=keep, hash=head_hash)


def rechain_from(ctx: AppContext, seq: int, new_details: dict[str, Any]) -> None:
    """Rewrite record ``seq`` and recompute every hash after it, so that the chain alone verifies again."""
    drop_triggers(ctx)
    prev = GENESIS_HASH
    for r in rows(ctx):
        details = canonical_json(new_details) if r.seq == seq else r.details
        digest = record_hash(r.seq, r.ts, r.actor, r.action, r.target, r.outcome, details, prev)
        if r.seq >= seq:
            sql(
                ctx,
                "UPDATE audit_log SET details = :d, prev_hash = :p, hash = :h WHERE seq = :s",
                d=details,
                p=prev,
                h=digest,
                s=r.seq,
            )
        prev = digest
    sql(ctx, "UPDATE audit_head SET hash = :hash WHERE id = 1", hash=prev)


def fill(ctx: AppContext, n: int) -> None:
    for i in range(n):
        with ctx.db.transaction() as s:
            append_audit(s, actor=f"user:inv{i % 3}", action="search", target=f"case:C-{i}", details={"n": i})


def verify_offsite(ctx: AppContext, public_key_file: Path, *more: Path) -> Any:
    return verify_audit(
        ctx.db,
        ctx.checkpoints_path,
        ctx.audit_key_path,
        public_key=load_public_key(public_key_file),
        more_checkpoint_files=more,
    )


def chain_alone_ok(ctx: AppContext) -> bool:
    with ctx.db.read() as s:
        return verify_chain(s).ok


# --- the attacks ------------------------------------------------------------------------------------------


def test_automatic_checkpoints_every_n_records_and_m_minutes(ctx: AppContext) -> None:
    fill(ctx, 4)
    assert maybe_checkpoint(ctx) is not None  # the first records get a first checkpoint
    fill(ctx, 3)
    assert maybe_checkpoint(ctx) is None  # 3 < checkpoint_every_records (5), within the minutes
    fill(ctx, 2)
    taken = maybe_checkpoint(ctx)  # 5 records since the last one
    assert taken is not None and taken.checkpoint["alg"] == "ed25519"
    fill(ctx, 1)
    later = taken.checkpoint["ts"]
    import datetime as dt

    soon = dt.datetime.fromisoformat(later) + dt.timedelta(minutes=59)
    hour = dt.datetime.fromisoformat(later) + dt.timedelta(minutes=61)
    assert not checkpoint_due(ctx, now=soon) and checkpoint_due(ctx, now=hour)
    assert not (ctx.data_dir / "audit-signing.key").exists()  # the private key is not in the data folder


def test_cut_tail_with_rewound_head_is_detected_with_the_public_key_alone(
    ctx: AppContext, auditors_public_key: Path
) -> None:
    fill(ctx, 12)
    take_checkpoint(ctx.db, ctx.checkpoints_path, ctx.audit_key_path, "system", signing_key=signing_key(ctx))
    assert verify_offsite(ctx, auditors_public_key).ok
    cut_tail(ctx, 8)
    assert chain_alone_ok(ctx)  # without a checkpoint the shorter chain looks whole
    result = verify_offsite(ctx, auditors_public_key)
    assert not result.ok and result.first_bad_seq == 9
    assert "removed from the end" in (result.problem or "")


def test_rechained_rewrite_is_detected(ctx: AppContext, auditors_public_key: Path) -> None:
    fill(ctx, 10)
    take_checkpoint(ctx.db, ctx.checkpoints_path, ctx.audit_key_path, "system", signing_key=signing_key(ctx))
    rechain_from(ctx, 3, {"n": "someone else's case"})
    assert chain_alone_ok(ctx)  # every hash recomputed: the chain alone cannot tell
    result = verify_offsite(ctx, auditors_public_key)
    assert not result.ok and "is not the record the checkpoint" in (result.problem or "")


def test_replaced_checkpoint_file_is_detected(ctx: AppContext, auditors_public_key: Path) -> None:
    fill(ctx, 6)
    key = signing_key(ctx)
    take_checkpoint(ctx.db, ctx.checkpoints_path, ctx.audit_key_path, "system", signing_key=key)
    fill(ctx, 6)
    take_checkpoint(ctx.db, ctx.checkpoints_path, ctx.audit_key_path, "system", signing_key=key)
    # Cut the log and re-sign checkpoints for the cut log with the attacker's own key.
    cut_tail(ctx, 5)
    attacker = Ed25519PrivateKey.generate()
    forged = [
        sign_ed25519({"seq": r.seq, "hash": r.hash, "ts": "2026-12-01T00:00:00+00:00", "records": r.seq}, attacker)
        for r in rows(ctx)[-1:]
    ]
    ctx.checkpoints_path.write_text("".join(canonical_json(cp) + "\n" for cp in forged))
    result = verify_offsite(ctx, auditors_public_key)
    assert not result.ok and "bad signature" in (result.problem or "")


def test_cut_checkpoint_file_is_detected(ctx: AppContext, auditors_public_key: Path) -> None:
    key = signing_key(ctx)
    fill(ctx, 6)
    take_checkpoint(ctx.db, ctx.checkpoints_path, ctx.audit_key_path, "system", signing_key=key)
    fill(ctx, 6)
    take_checkpoint(ctx.db, ctx.checkpoints_path, ctx.audit_key_path, "system", signing_key=key)
    first_only = ctx.checkpoints_path.read_text().splitlines()[0] + "\n"
    # The DBA rewrites record 9 and re-chains, and removes the newer checkpoint (which would catch it) from
    # the file; the older checkpoint (record 7) still holds.
    rechain_from(ctx, 9, {"n": "rewritten"})
    ctx.checkpoints_path.write_text(first_only)
    assert chain_alone_ok(ctx)
    result = verify_offsite(ctx, auditors_public_key)
    assert not result.ok
    # The log's own 'audit.checkpoint' record (14) names a checkpoint the file no longer has.
    assert any("missing from the checkpoint file" in p for p in result.problems), result.problems


def test_a_witness_copy_catches_a_consistent_cut_of_log_and_file(ctx: AppContext, auditors_public_key: Path) -> None:
    """The DBA cuts log and checkpoints file consistently back to an old state: only a copy of a checkpoint
    held elsewhere (printed in a transparency report or an audit export) reveals it."""
    key = signing_key(ctx)
    fill(ctx, 6)
    first = take_checkpoint(ctx.db, ctx.checkpoints_path, ctx.audit_key_path, "system", signing_key=key)
    fill(ctx, 6)
    second = take_checkpoint(ctx.db, ctx.checkpoints_path, ctx.audit_key_path, "system", signing_key=key)
    witness = ctx.checkpoints_path.parent.parent / "auditor" / "witnessed.jsonl"
    witness.write_text(canonical_json(second.checkpoint) + "\n")  # e.g. copied from last month's report
    cut_tail(ctx, first.checkpoint["seq"])
    ctx.checkpoints_path.write_text(canonical_json(first.checkpoint) + "\n")
    assert verify_offsite(ctx, auditors_public_key).ok  # consistent on the server...
    result = verify_offsite(ctx, auditors_public_key, witness)
    assert not result.ok and "removed from the end" in (result.problem or "")  # ...not against the witness


def test_legacy_hmac_checkpoints_still_verify(ctx: AppContext, auditors_public_key: Path) -> None:
    fill(ctx, 3)
    take_checkpoint(ctx.db, ctx.checkpoints_path, ctx.audit_key_path, "system")  # an old installation's HMAC
    fill(ctx, 3)
    take_checkpoint(ctx.db, ctx.checkpoints_path, ctx.audit_key_path, "system", signing_key=signing_key(ctx))
    assert [("hmac" in cp, "signature" in cp) for cp in read_checkpoints(ctx.checkpoints_path)] == [
        (True, False),
        (False, True),
    ]
    result = verify_offsite(ctx, auditors_public_key)
    assert result.ok and result.checkpoints_checked == 2, result.problems


def test_cli_verify_with_public_key_catches_the_cut(ctx: AppContext, auditors_public_key: Path) -> None:
    """The real CLI, in a subprocess, with nothing but the database URL and the auditor's public key."""
    fill(ctx, 8)
    take_checkpoint(ctx.db, ctx.checkpoints_path, ctx.audit_key_path, "system", signing_key=signing_key(ctx))
    env = {
        **os.environ,
        "FACETRAIL_DATA_DIR": str(ctx.data_dir),
        "FACETRAIL_DATABASE_URL": ctx.db.url,
        "FACETRAIL_AUDIT__SIGNING_KEY_PATH": str(ctx.data_dir.parent / "nowhere" / "none.key"),
    }
    cmd = [sys.executable, "-c", "from facetrail.cli.main import app; app()", "audit", "verify", "--json"]
    cmd += ["--public-key", str(auditors_public_key)]
    ok = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    cut_tail(ctx, 4)
    broken = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "removed from the end" in json.loads(broken.stdout)["problem"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_running_server_signs_checkpoints_by_itself(ctx: AppContext, tmp_path: Path) -> None:
    """A real server with automatic checkpoints every 3 records and a key outside its data folder."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "server"))
    from live_server import ADMIN_FIRST_PASSWORD, start_server, stop_server

    key_path = tmp_path / "offsite-server" / "signing.key"
    server = start_server(
        tmp_path / "srv" / "data",
        {"FACETRAIL_AUDIT__CHECKPOINT_EVERY_RECORDS": "3", "FACETRAIL_AUDIT__SIGNING_KEY_PATH": str(key_path)},
    )
    try:
        with server.client() as anonymous:
            for _ in range(4):  # failed sign-ins are audited too
                anonymous.post("/api/v1/auth/login", json={"username": "admin", "password": "wrong-" * 3})
        checkpoints = server.data_dir / "audit-checkpoints.jsonl"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not read_checkpoints(checkpoints):
            time.sleep(0.5)
        taken = read_checkpoints(checkpoints)
        assert taken and taken[-1]["alg"] == "ed25519", taken
        assert key_path.exists() and not list(server.data_dir.glob("*.key"))
        assert ADMIN_FIRST_PASSWORD not in server.log()
    finally:
        stop_server(server)


def test_reports_and_exports_witness_the_newest_checkpoint(ctx: AppContext, tmp_path: Path) -> None:
    """Every transparency report and audit export prints the newest checkpoint (seq, hash, signature), so that
    copies kept by their readers witness it."""
    import datetime as dt

    from facetrail.audit.export import export_audit
    from facetrail.audit.service import latest_witness
    from facetrail.reports.transparency import collect_report

    fill(ctx, 3)
    cp = take_checkpoint(
        ctx.db, ctx.checkpoints_path, ctx.audit_key_path, "system", signing_key=signing_key(ctx)
    ).checkpoint
    today = dt.date.today().isoformat()
    report = collect_report(ctx, today, today, actor="user:aud")
    chain = report.section("audit_chain")
    row = dict(zip(chain.columns, chain.rows[0], strict=True))
    assert (row["checkpoint_seq"], row["checkpoint_hash"], row["checkpoint_signature"]) == (
        cp["seq"],
        cp["hash"],
        cp["signature"],
    )
    export_audit(ctx.db, actor="user:aud", out=tmp_path / "a.jsonl", stdout=None, checkpoint=latest_witness(ctx))  # type: ignore[arg-type]
    last = json.loads((tmp_path / "a.jsonl").read_text().splitlines()[-1])
    with ctx.db.read() as s:
        details = json.loads(s.execute(select(AuditRecord.details).order_by(AuditRecord.seq.desc())).first()[0])
    assert details["checkpoint"]["signature"] == cp["signature"] and last["seq"] <= details["checkpoint"]["seq"] + 2
