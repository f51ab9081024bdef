"""The audit log under attack: every tampering is done directly in the database, as someone with database
access would (dropping the append-only triggers first), and verification must name the first bad record.
Runs on SQLite and PostgreSQL (see conftest.py)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from facetrail.audit.export import export_audit, read_audit_log
from facetrail.audit.log import (
    GENESIS_HASH,
    append_audit,
    canonical_json,
    checkpoint_signature,
    read_checkpoints,
    record_hash,
    verify_chain,
)
from facetrail.audit.service import ChainBrokenError, take_checkpoint, verify_audit
from facetrail.context import AppContext
from facetrail.errors import BadInputError
from facetrail.storage.db import Database
from facetrail.storage.models import AuditHead, AuditRecord, Gallery

N_RECORDS = 10


# --- helpers: the attacker's raw SQL, and the honest writer --------------------------------------------------


def sql(ctx: AppContext, statement: str, **params: Any) -> None:
    with ctx.db.engine.begin() as conn:
        conn.execute(text(statement), params)


def is_sqlite(ctx: AppContext) -> bool:
    return ctx.db.is_sqlite


def drop_triggers(ctx: AppContext) -> None:
    if is_sqlite(ctx):
        sql(ctx, "DROP TRIGGER audit_log_no_update")
        sql(ctx, "DROP TRIGGER audit_log_no_delete")
    else:
        sql(ctx, "DROP TRIGGER audit_log_append_only ON audit_log")
        sql(ctx, "DROP TRIGGER audit_log_no_truncate ON audit_log")


def fill(ctx: AppContext, n: int = N_RECORDS) -> None:
    for i in range(1, n + 1):
        with ctx.db.transaction() as s:
            append_audit(
                s,
                actor=f"officer{i % 3}",
                action="search" if i % 2 else "gallery.create",
                target=f"gallery-{i}",
                details={"case": f"C-{i}", "candidates": [i, i + 1]},
            )


def verify(ctx: AppContext) -> Any:
    with ctx.db.read() as s:
        return verify_chain(s)


def verify_with_checkpoints(ctx: AppContext) -> Any:
    return verify_audit(ctx.db, ctx.checkpoints_path, ctx.audit_key_path)


def row(ctx: AppContext, seq: int) -> dict[str, Any]:
    with ctx.db.read() as s:
        rec = s.execute(select(AuditRecord).where(AuditRecord.seq == seq)).scalar_one()
        return {
            c: getattr(rec, c)
            for c in ("seq", "ts", "actor", "action", "target", "outcome", "details", "prev_hash", "hash")
        }


def insert_row(ctx: AppContext, r: dict[str, Any]) -> None:
    sql(
        ctx,
        "INSERT INTO audit_log (seq, ts, actor, action, target, outcome, details, prev_hash, hash) "
        "VALUES (:seq, :ts, :actor, :action, :target, :outcome, :details, :prev_hash, :hash)",
        **r,
    )


def set_head(ctx: AppContext, seq: int) -> None:
    head_hash = row(ctx, seq)["hash"] if seq else GENESIS_HASH
    sql(ctx, "UPDATE audit_head SET seq = :seq, hash = :hash WHERE id = 1", seq=seq, hash=head_hash)


def count_records(ctx: AppContext) -> int:
    with ctx.db.read() as s:
        return len(s.execute(select(AuditRecord.seq)).all())


# --- the untouched chain and the triggers -----------------------------------------------------------------


def test_untouched_chain_verifies(ctx: AppContext) -> None:
    fill(ctx)
    result = verify(ctx)
    assert result.ok and result.first_bad_seq is None and result.problems == []
    assert (result.records, result.head_seq) == (N_RECORDS, N_RECORDS)
    take_checkpoint(ctx.db, ctx.checkpoints_path, ctx.audit_key_path, "auditor")
    full = verify_with_checkpoints(ctx)
    assert full.ok and full.checkpoints_checked == 1 and full.warnings == []


def test_triggers_refuse_update_delete_and_truncate(ctx: AppContext) -> None:
    fill(ctx, 5)
    truncate = "DELETE FROM audit_log" if is_sqlite(ctx) else "TRUNCATE audit_log"
    for statement in (
        "UPDATE audit_log SET actor = 'someone else' WHERE seq = 3",
        "DELETE FROM audit_log WHERE seq = 3",
        truncate,
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            sql(ctx, statement)
    assert count_records(ctx) == 5
    assert row(ctx, 3)["actor"] == "officer0"
    assert verify(ctx).ok


# --- each tampering, detected at the right record ----------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("actor", "officer9"),
        ("action", "gallery.create"),
        ("target", "another-gallery"),
        ("details", canonical_json({"case": "C-5", "candidates": [5]})),
        ("ts", "2001-01-01T00:00:00.000000+00:00"),
        ("outcome", "denied"),
    ],
)
def test_edited_field_is_detected(ctx: AppContext, column: str, value: str) -> None:
    fill(ctx)
    drop_triggers(ctx)
    assert row(ctx, 5)[column] != value
    sql(ctx, f"UPDATE audit_log SET {column} = :value WHERE seq = 5", value=value)
    result = verify(ctx)
    assert not result.ok
    assert result.first_bad_seq == 5
    assert "record 5 altered" in (result.problem or "")


def test_deleted_record_in_the_middle_is_detected(ctx: AppContext) -> None:
    fill(ctx)
    drop_triggers(ctx)
    sql(ctx, "DELETE FROM audit_log WHERE seq = 5")
    result = verify(ctx)
    assert not result.ok and result.first_bad_seq == 5
    assert "record 5 missing" in (result.problem or "")


def test_deleted_and_renumbered_record_is_detected(ctx: AppContext) -> None:
    """The attacker closes the gap the deletion left, and rewinds the head."""
    fill(ctx)
    drop_triggers(ctx)
    sql(ctx, "DELETE FROM audit_log WHERE seq = 5")
    sql(ctx, "UPDATE audit_log SET seq = seq + 1000000 WHERE seq > 5")
    sql(ctx, "UPDATE audit_log SET seq = seq - 1000001 WHERE seq > 1000000")
    set_head(ctx, N_RECORDS - 1)
    result = verify(ctx)
    assert not result.ok and result.first_bad_seq == 5


@pytest.mark.parametrize("swap", ["seq numbers", "contents"])
def test_reordered_pair_is_detected(ctx: AppContext, swap: str) -> None:
    fill(ctx)
    drop_triggers(ctx)
    if swap == "seq numbers":
        sql(ctx, "UPDATE audit_log SET seq = 1000 WHERE seq = 4")
        sql(ctx, "UPDATE audit_log SET seq = 4 WHERE seq = 5")
        sql(ctx, "UPDATE audit_log SET seq = 5 WHERE seq = 1000")
    else:  # every column but seq changes places
        four, five = row(ctx, 4), row(ctx, 5)
        sql(ctx, "DELETE FROM audit_log WHERE seq IN (4, 5)")
        insert_row(ctx, {**five, "seq": 4})
        insert_row(ctx, {**four, "seq": 5})
    result = verify(ctx)
    assert not result.ok and result.first_bad_seq == 4
    assert "reordered" in (result.problem or "")


def test_inserted_record_with_forged_hash_is_detected(ctx: AppContext) -> None:
    fill(ctx)
    drop_triggers(ctx)
    before = row(ctx, 5)
    # Make room after record 5, then insert a record whose hash the attacker computes correctly.
    sql(ctx, "UPDATE audit_log SET seq = seq + 1000000 WHERE seq > 5")
    sql(ctx, "UPDATE audit_log SET seq = seq - 999999 WHERE seq > 1000000")
    forged = {
        "seq": 6,
        "ts": before["ts"],
        "actor": "officer1",
        "action": "search",
        "target": "gallery-x",
        "outcome": "ok",
        "details": canonical_json({"case": "C-FAKE"}),
        "prev_hash": before["hash"],
    }
    forged["hash"] = record_hash(**forged)
    insert_row(ctx, forged)
    set_head(ctx, N_RECORDS + 1)
    result = verify(ctx)
    assert not result.ok and result.first_bad_seq == 6
    assert "record 6 inserted" in (result.problem or "")


def test_truncated_tail_with_rewound_head_is_caught_only_by_the_checkpoint(ctx: AppContext) -> None:
    fill(ctx)
    taken = take_checkpoint(ctx.db, ctx.checkpoints_path, ctx.audit_key_path, "auditor")
    assert taken.checkpoint["seq"] == N_RECORDS + 1  # it covers its own 'audit.checkpoint' record
    drop_triggers(ctx)
    sql(ctx, "DELETE FROM audit_log WHERE seq > 7")
    set_head(ctx, 7)
    # The chain alone is a valid, shorter chain: without the checkpoint nothing looks wrong...
    alone = verify(ctx)
    assert alone.ok and alone.records == 7
    assert any("cannot be detected" in w for w in alone.warnings)
    # ...the signed checkpoint reveals it.
    result = verify_with_checkpoints(ctx)
    assert not result.ok and result.first_bad_seq == 8
    assert f"records 8–{N_RECORDS + 1} removed from the end" in (result.problem or "")


def test_truncated_tail_without_rewinding_the_head_is_detected(ctx: AppContext) -> None:
    fill(ctx)
    drop_triggers(ctx)
    sql(ctx, "DELETE FROM audit_log WHERE seq > 7")
    result = verify(ctx)
    assert not result.ok and result.first_bad_seq == 8
    assert "removed from the end" in (result.problem or "")


def test_truncation_then_new_records_is_caught_by_the_checkpoint(ctx: AppContext) -> None:
    fill(ctx)
    take_checkpoint(ctx.db, ctx.checkpoints_path, ctx.audit_key_path, "auditor")
    drop_triggers(ctx)
    sql(ctx, "DELETE FROM audit_log WHERE seq > 7")
    set_head(ctx, 7)
    fill(ctx, 6)  # honest writes continue on the shortened chain, past the checkpoint's seq
    result = verify_with_checkpoints(ctx)
    assert not result.ok and result.first_bad_seq == N_RECORDS + 1
    assert "not the record the checkpoint" in (result.problem or "")


def test_forged_checkpoint_is_detected(ctx: AppContext) -> None:
    fill(ctx)
    real = take_checkpoint(ctx.db, ctx.checkpoints_path, ctx.audit_key_path, "auditor").checkpoint
    drop_triggers(ctx)
    sql(ctx, "DELETE FROM audit_log WHERE seq > 7")
    set_head(ctx, 7)
    # The attacker rewrites the checkpoints file to match the truncated log, without the key.
    forged = {**real, "seq": 7, "records": 7, "hash": row(ctx, 7)["hash"]}
    forged["hmac"] = checkpoint_signature(forged, b"attacker's guess at the key")
    ctx.checkpoints_path.write_text(canonical_json(forged) + "\n")
    result = verify_with_checkpoints(ctx)
    assert not result.ok and result.first_bad_seq is None
    assert "bad signature" in (result.problem or "")
    # An edited signed field (the count) breaks the signature as well.
    ctx.checkpoints_path.write_text(canonical_json({**real, "records": 3}) + "\n")
    assert "bad signature" in (verify_with_checkpoints(ctx).problem or "")


def test_checkpoints_without_the_key_are_not_trusted(ctx: AppContext) -> None:
    fill(ctx, 3)
    take_checkpoint(ctx.db, ctx.checkpoints_path, ctx.audit_key_path, "auditor")
    ctx.audit_key_path.unlink()
    result = verify_with_checkpoints(ctx)
    assert not result.ok and "key" in (result.problem or "")


def test_damaged_checkpoint_line_is_reported(ctx: AppContext) -> None:
    fill(ctx, 3)
    take_checkpoint(ctx.db, ctx.checkpoints_path, ctx.audit_key_path, "auditor")
    with open(ctx.checkpoints_path, "a") as fh:
        fh.write('{"seq": 2, "hash": \n')
    assert read_checkpoints(ctx.checkpoints_path)[-1]["malformed_line"] == 2
    result = verify_with_checkpoints(ctx)
    assert not result.ok and "malformed" in (result.problem or "")


def test_checkpoint_refuses_to_sign_a_broken_chain(ctx: AppContext) -> None:
    fill(ctx)
    drop_triggers(ctx)
    sql(ctx, "UPDATE audit_log SET actor = 'x' WHERE seq = 2")
    with pytest.raises(ChainBrokenError) as caught:
        take_checkpoint(ctx.db, ctx.checkpoints_path, ctx.audit_key_path, "auditor")
    assert caught.value.verification.first_bad_seq == 2
    assert read_checkpoints(ctx.checkpoints_path) == []
    assert count_records(ctx) == N_RECORDS  # no 'audit.checkpoint' record either


# --- concurrent writers ------------------------------------------------------------------------------------


def assert_gapless(ctx: AppContext, expected: int) -> list[dict[str, Any]]:
    result = verify(ctx)
    assert result.ok, result.problems
    assert result.records == result.head_seq == expected
    with ctx.db.read() as s:
        seqs = [r for (r,) in s.execute(select(AuditRecord.seq).order_by(AuditRecord.seq))]
        details = [json.loads(d) for (d,) in s.execute(select(AuditRecord.details))]
    assert seqs == list(range(1, expected + 1))
    return details


def test_concurrent_threads_make_one_gapless_chain(ctx: AppContext) -> None:
    threads, per_thread = 6, 20
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def writer(worker: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                with ctx.db.transaction() as s:
                    append_audit(s, actor=f"t{worker}", action="test.append", details={"w": worker, "i": i})
        except BaseException as exc:  # reported below; a thread's exception would otherwise vanish
            errors.append(exc)

    pool = [threading.Thread(target=writer, args=(w,)) for w in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert errors == []
    details = assert_gapless(ctx, threads * per_thread)
    assert sorted((d["w"], d["i"]) for d in details) == [(w, i) for w in range(threads) for i in range(per_thread)]


CHILD_WRITER = """
import sys, time, pathlib
from facetrail.storage.db import Database
from facetrail.audit.log import append_audit
url, worker, count, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), pathlib.Path(sys.argv[4])
db = Database(url)
print("ready", flush=True)
deadline = time.monotonic() + 120
while not go.exists() and time.monotonic() < deadline:
    time.sleep(0.01)
for i in range(count):
    with db.transaction() as s:
        append_audit(s, actor=f"p{worker}", action="test.append", details={"w": worker, "i": i})
db.dispose()
"""


def test_concurrent_processes_make_one_gapless_chain(ctx: AppContext, tmp_path: Path) -> None:
    processes, per_process = 3, 25
    go = tmp_path / "go"
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD_WRITER, ctx.db.url, str(w), str(per_process), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(processes)
    ]
    for child in children:  # all connected before any writes, so the writes overlap
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
    go.touch()
    for child in children:
        _, err = child.communicate(timeout=300)
        assert child.returncode == 0, err
    details = assert_gapless(ctx, processes * per_process)
    assert sorted((d["w"], d["i"]) for d in details) == [(w, i) for w in range(processes) for i in range(per_process)]


# --- an action whose audit record cannot be written does not happen ------------------------------------------


def add_gallery(session: Any, name: str) -> None:
    session.add(Gallery(name=name, legal_basis="test", source_system="test", model_id="m", created_by="t"))
    session.flush()


def galleries(ctx: AppContext) -> list[str]:
    with ctx.db.read() as s:
        return list(s.execute(select(Gallery.name)).scalars())


def head(ctx: AppContext) -> tuple[int, str]:
    with ctx.db.read() as s:
        h = s.execute(select(AuditHead)).scalar_one()
        return h.seq, h.hash


def refuse_audit_inserts(ctx: AppContext) -> None:
    """Simulate an audit write that fails (full disk, lost connection...) with a trigger."""
    if is_sqlite(ctx):
        sql(ctx, "CREATE TRIGGER audit_fail BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'no space'); END")
    else:
        sql(
            ctx,
            "CREATE FUNCTION audit_fail() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'no space'; END; "
            "$$ LANGUAGE plpgsql",
        )
        sql(ctx, "CREATE TRIGGER audit_fail BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_fail()")


def test_action_is_rolled_back_with_a_failing_transaction(ctx: AppContext) -> None:
    fill(ctx, 2)
    before = head(ctx)
    with pytest.raises(RuntimeError), ctx.db.transaction() as s:
        add_gallery(s, "g1")
        append_audit(s, actor="t", action="gallery.create", target="g1")
        raise RuntimeError("the action fails after its audit record was added")
    assert galleries(ctx) == [] and count_records(ctx) == 2 and head(ctx) == before
    assert verify(ctx).ok


def test_action_does_not_happen_when_its_audit_record_cannot_be_written(ctx: AppContext) -> None:
    fill(ctx, 2)
    before = head(ctx)
    refuse_audit_inserts(ctx)
    with pytest.raises(DBAPIError, match="no space"), ctx.db.transaction() as s:
        add_gallery(s, "g1")
        append_audit(s, actor="t", action="gallery.create", target="g1")
    with pytest.raises(BadInputError), ctx.db.transaction() as s:
        add_gallery(s, "g2")
        append_audit(s, actor="t\x00", action="gallery.create", target="g2")
    assert galleries(ctx) == [] and count_records(ctx) == 2 and head(ctx) == before


# --- hostile text round-trips exactly ------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=20), inner, max_size=4),
    max_leaves=12,
)
hostile = st.one_of(
    st.text(),  # any Unicode but lone surrogates, control characters included
    st.text(alphabet=st.characters(max_codepoint=0x1F), max_size=50),  # only controls (NUL among them)
    st.text(min_size=1, max_size=3).map(lambda s: s * 30_000),  # very long
    st.sampled_from(["", " ", "'; DROP TABLE audit_log; --", "\u202etxt.exe", "e\u0301", "\ufeff", "😀" * 300]),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(actor=hostile, target=hostile, details=st.dictionaries(hostile, json_values, max_size=4), note=hostile)
def test_hostile_text_round_trips_and_verifies(
    ctx: AppContext, actor: str, target: str, details: dict[str, Any], note: str
) -> None:
    """One database for all examples (the chain grows): each stored record reads back exactly and verifies."""
    details = {**details, "note": note}
    before = head(ctx)
    storable = len(actor) <= 200 and "\x00" not in actor + target
    try:
        with ctx.db.transaction() as s:
            seq = append_audit(s, actor=actor, action="test.hostile", target=target, details=details).seq
    except BadInputError:
        assert not storable
        assert head(ctx) == before
        return
    assert storable
    stored = row(ctx, seq)
    assert (stored["actor"], stored["target"]) == (actor, target)
    assert stored["details"] == canonical_json(details)
    assert json.loads(stored["details"]) == details
    assert stored["hash"] == record_hash(
        *(stored[k] for k in ("seq", "ts", "actor", "action", "target", "outcome", "details", "prev_hash"))
    )
    assert verify(ctx).ok


@given(details=st.dictionaries(st.text(), json_values, max_size=6))
def test_canonical_json_ignores_key_order(details: dict[str, Any]) -> None:
    reordered = dict(reversed(list(details.items())))
    assert canonical_json(reordered) == canonical_json(details)
    assert record_hash(1, "t", "a", "b", "c", "ok", canonical_json(reordered), GENESIS_HASH) == record_hash(
        1, "t", "a", "b", "c", "ok", canonical_json(details), GENESIS_HASH
    )


# --- export and listing are themselves audited ---------------------------------------------------------------


def test_export_is_audited_in_the_same_transaction(ctx: AppContext, tmp_path: Path) -> None:
    fill(ctx)
    since = row(ctx, 4)["ts"]
    out = tmp_path / "export.jsonl"
    result = export_audit(ctx.db, actor="auditor", out=out, stdout=io.StringIO(), since=since, fmt="jsonl")
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["seq"] for r in lines] == list(range(4, N_RECORDS + 1)) and result.count == len(lines)
    for r in lines:  # every hashed field is exported exactly as stored
        assert r["hash"] == record_hash(
            *(r[k] for k in ("seq", "ts", "actor", "action", "target", "outcome", "details", "prev_hash"))
        )
    logged = row(ctx, result.audit_seq)
    assert logged["action"] == "audit.export" and logged["actor"] == "auditor"
    assert json.loads(logged["details"])["count"] == len(lines)
    assert json.loads(logged["details"])["since"] == since

    csv_out = io.StringIO()
    csv_result = export_audit(ctx.db, actor="auditor", out=None, stdout=csv_out, fmt="csv")
    assert csv_result.count == N_RECORDS + 1 and len(csv_out.getvalue().splitlines()) == N_RECORDS + 2
    assert verify(ctx).ok


def test_export_that_cannot_be_audited_hands_out_nothing(ctx: AppContext, tmp_path: Path) -> None:
    fill(ctx, 3)
    refuse_audit_inserts(ctx)
    out, stdout = tmp_path / "exports" / "export.jsonl", io.StringIO()
    with pytest.raises(DBAPIError):
        export_audit(ctx.db, actor="auditor", out=out, stdout=io.StringIO())
    with pytest.raises(DBAPIError):
        export_audit(ctx.db, actor="auditor", out=None, stdout=stdout)
    assert not out.exists() and stdout.getvalue() == ""
    assert list(out.parent.iterdir()) == []  # no temporary file left behind
    with pytest.raises(DBAPIError):
        read_audit_log(ctx.db, actor="auditor")


def test_log_listing_filters_and_is_audited(ctx: AppContext) -> None:
    fill(ctx)
    listing = read_audit_log(ctx.db, actor="auditor", action="gallery", limit=3)
    assert [r["action"] for r in listing.records] == ["gallery.create"] * 3
    assert [r["seq"] for r in listing.records] == [10, 8, 6]
    by_actor = read_audit_log(ctx.db, actor="auditor", by_actor="officer1")
    assert {r["actor"] for r in by_actor.records} == {"officer1"}
    logged = json.loads(row(ctx, listing.audit_seq)["details"])
    assert logged["count"] == 3 and logged["action"] == "gallery"
    with pytest.raises(BadInputError):
        read_audit_log(ctx.db, actor="auditor", limit=0)


# --- the commands --------------------------------------------------------------------------------------------


def _auditor_token(ctx: AppContext) -> str:
    from facetrail.accounts.service import create_api_token, create_user, principal_for
    from facetrail.policy.principal import Principal
    from facetrail.storage.models import User

    admin = Principal(user_id=None, username="root", role="administrator", unit_id=None, unit_name=None)
    create_user(ctx, admin, username="ada.aud", role="auditor", unit=None)
    with ctx.db.read() as s:
        auditor = principal_for(s.execute(select(User).where(User.username == "ada.aud")).scalar_one(), "session")
    return create_api_token(ctx, auditor, "cli", scope="read")[1]


def test_cli_verify_checkpoint_export_log(ctx: AppContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from facetrail.cli.main import app
    from facetrail.config import get_settings

    monkeypatch.setenv("FACETRAIL_DATA_DIR", str(ctx.settings.data_dir))
    monkeypatch.setenv("FACETRAIL_DATABASE_URL", ctx.db.url)
    get_settings.cache_clear()
    monkeypatch.setenv("FACETRAIL_API_TOKEN", _auditor_token(ctx))  # export and log run as a signed-in auditor
    try:
        fill(ctx, 4)
        runner = CliRunner()
        checkpoint = runner.invoke(app, ["audit", "checkpoint", "--json"])
        assert checkpoint.exit_code == 0, checkpoint.output
        assert json.loads(checkpoint.output)["checkpoint"]["seq"] == 2 + 4 + 1  # user, token, fill, itself
        ok = runner.invoke(app, ["audit", "verify", "--json"])
        assert ok.exit_code == 0 and json.loads(ok.output)["ok"] is True
        exported = runner.invoke(app, ["audit", "export", "--format", "csv", "--out", str(tmp_path / "a.csv")])
        assert exported.exit_code == 0, exported.output
        assert (tmp_path / "a.csv").read_text().startswith("seq,ts,actor")
        listed = runner.invoke(app, ["audit", "log", "--action", "audit", "--json"])
        assert [r["action"] for r in json.loads(listed.output)["records"]] == ["audit.export", "audit.checkpoint"]
        bad_time = runner.invoke(app, ["audit", "export", "--since", "yesterday"])
        assert bad_time.exit_code == 3

        drop_triggers(ctx)
        sql(ctx, "UPDATE audit_log SET target = 'elsewhere' WHERE seq = 3")
        broken = runner.invoke(app, ["audit", "verify", "--json"])
        assert broken.exit_code == 1
        assert json.loads(broken.output)["first_bad_seq"] == 3
        human = runner.invoke(app, ["audit", "verify"])
        assert human.exit_code == 1 and "BROKEN at record 3" in human.output
        refused = runner.invoke(app, ["audit", "checkpoint"])
        assert refused.exit_code == 1
    finally:
        get_settings.cache_clear()


def test_empty_log_verifies_and_a_checkpoint_covers_itself(ctx: AppContext) -> None:
    assert verify(ctx).ok and verify(ctx).records == 0
    cp = take_checkpoint(ctx.db, ctx.checkpoints_path, ctx.audit_key_path, "auditor").checkpoint
    assert (cp["seq"], cp["records"]) == (1, 1) and cp["hash"] == row(ctx, 1)["hash"]
    assert row(ctx, 1)["action"] == "audit.checkpoint"
    assert verify_with_checkpoints(ctx).last_checkpoint_seq == 1


def test_a_second_database_sees_the_same_chain(ctx: AppContext) -> None:
    fill(ctx, 3)
    other = Database(ctx.db.url)
    try:
        with other.transaction() as s:
            append_audit(s, actor="other", action="test.append")
    finally:
        other.dispose()
    fill(ctx, 1)
    assert_gapless(ctx, 5)
