"""``facetrail audit ...``: verify the hash chain, sign checkpoints, export and list records (docs/audit.md)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from facetrail.audit.log import AuditVerification
from facetrail.cli.common import (
    JsonOption,
    cli_actor,
    cli_context,
    console,
    err_console,
    fail,
    open_cli_context,
    print_json,
)
from facetrail.errors import FaceTrailError

audit_app = typer.Typer(
    help="The append-only, hash-chained audit log: verify, checkpoint, export, log.", no_args_is_help=True
)

BROKEN_EXIT = 1  # the chain or a checkpoint does not verify


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")


def _print_verification(result: AuditVerification) -> None:
    if result.ok:
        newest = f", newest at record {result.last_checkpoint_seq}" if result.last_checkpoint_seq else ""
        console.print(
            f"[green]OK[/]: {result.records} records, chain intact; head {result.head_seq} "
            f"({result.head_hash[:16]}…); {result.checkpoints_checked} checkpoint(s) hold{newest}"
        )
    else:
        where = f" at record {result.first_bad_seq}" if result.first_bad_seq is not None else ""
        console.print(f"[bold red]BROKEN[/]{where}: {escape(str(result.problem))}")
        for problem in result.problems:
            console.print(f"  - {escape(problem)}")
    for warning in result.warnings:
        console.print(f"[yellow]warning[/]: {escape(warning)}")


@audit_app.command("verify")
def verify_cmd(
    checkpoint_file: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint-file", help="Signed checkpoints (JSONL). Default: DATA_DIR/audit-checkpoints.jsonl."
        ),
    ] = None,
    key_file: Annotated[
        Path | None, typer.Option("--key-file", help="Checkpoint HMAC key. Default: settings.audit_key_path.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Recompute the whole chain and check the signed checkpoints; report the first broken record.

    Exit 0 when everything holds, 1 when anything does not. Writes nothing.
    """
    from facetrail.audit.service import verify_audit

    ctx = open_cli_context()
    try:
        result = verify_audit(ctx.db, checkpoint_file or ctx.checkpoints_path, key_file or ctx.audit_key_path)
    finally:
        ctx.close()
    if as_json:
        print_json(result.to_dict())
    else:
        _print_verification(result)
    if not result.ok:
        raise typer.Exit(BROKEN_EXIT)


@audit_app.command("checkpoint")
def checkpoint_cmd(as_json: JsonOption = False) -> None:
    """Sign the chain's head (seq, hash, record count) with the HMAC key and append it to the checkpoints file.

    The chain is verified first (a broken chain is not signed); then an 'audit.checkpoint' record is written
    and the checkpoint covers it too. Copy the printed line somewhere the database's administrators cannot
    write: it is what reveals records removed from the end of the log.
    """
    from facetrail.audit.service import ChainBrokenError, take_checkpoint

    ctx = open_cli_context()
    try:
        result = take_checkpoint(ctx.db, ctx.checkpoints_path, ctx.audit_key_path, cli_actor())
    except ChainBrokenError as exc:
        if as_json:
            print_json({**exc.verification.to_dict(), "checkpoint": None})
        else:
            _print_verification(exc.verification)
            err_console.print("[bold red]not signed[/]: the chain does not verify")
        raise typer.Exit(BROKEN_EXIT) from None
    finally:
        ctx.close()
    cp = result.checkpoint
    if as_json:
        print_json({"ok": True, "checkpoint": cp, "file": str(result.path)})
        return
    console.print(f"checkpoint: record {cp['seq']} of {cp['records']}, head hash {cp['hash']}")
    console.print(f"signed {cp['ts']}: hmac {cp['hmac']}")
    console.print(f"appended to {result.path}")


@audit_app.command("export")
def export_cmd(
    since: Annotated[str | None, typer.Option("--since", help="ISO-8601 date/time, inclusive (no zone = UTC).")] = None,
    until: Annotated[str | None, typer.Option("--until", help="ISO-8601 date/time, exclusive (no zone = UTC).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="jsonl (default) or csv.")] = "jsonl",
    out: Annotated[Path | None, typer.Option("--out", help="Write here (atomically) instead of stdout.")] = None,
) -> None:
    """Export records with every hashed field as stored. The export is itself audited ('audit.export')."""
    from facetrail.audit.export import export_audit

    ctx = open_cli_context()
    try:
        result = export_audit(ctx.db, actor=cli_actor(), out=out, stdout=sys.stdout, since=since, until=until, fmt=fmt)
    except FaceTrailError as exc:
        fail(exc)
    finally:
        ctx.close()
    span = f"records {result.first_seq}–{result.last_seq}" if result.count else "no records"
    err_console.print(
        f"exported {result.count} ({span}) to {result.destination}; logged as audit record {result.audit_seq}"
    )


@audit_app.command("log")
def log_cmd(
    action: Annotated[str | None, typer.Option("--action", help="'search' matches search and search.*")] = None,
    actor: Annotated[str | None, typer.Option("--actor", help="Only this actor.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="Newest N records (1–10000).")] = 50,
    as_json: JsonOption = False,
) -> None:
    """The newest records as a table. Listing is itself audited ('audit.read')."""
    from facetrail.audit.export import read_audit_log

    with cli_context(json=as_json) as ctx:
        listing = read_audit_log(ctx.db, actor=cli_actor(), action=action, by_actor=actor, limit=limit)
    if as_json:
        print_json({"ok": True, "records": listing.records, "audit_seq": listing.audit_seq})
        return
    table = Table(
        title=f"{len(listing.records)} audit record(s), newest first (this listing: record {listing.audit_seq})"
    )
    for col in ("seq", "time (UTC)", "actor", "action", "target", "outcome", "details"):
        table.add_column(col, overflow="fold")
    for r in listing.records:
        details = r["details"] if len(r["details"]) <= 120 else r["details"][:119] + "…"
        table.add_row(
            str(r["seq"]),
            r["ts"][:19].replace("T", " "),
            escape(r["actor"]),
            escape(r["action"]),
            escape(r["target"][:80]),
            escape(r["outcome"]),
            escape(details),
        )
    console.print(table)
