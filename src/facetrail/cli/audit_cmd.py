"""``facetrail audit ...``: verify the hash chain, sign checkpoints, export and list records (docs/audit.md)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from facetrail.audit.log import AuditVerification
from facetrail.cli.common import (
    JsonOption,
    TokenOption,
    acting_user,
    cli_actor,
    cli_context,
    console,
    err_console,
    open_cli_context,
    print_json,
)
from facetrail.policy.roles import Permission

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
        list[Path] | None,
        typer.Option(
            "--checkpoint-file",
            help="Signed checkpoints (JSONL); repeat it to add copies held elsewhere. "
            "Default: settings audit.checkpoints_path (DATA_DIR/audit-checkpoints.jsonl).",
        ),
    ] = None,
    key_file: Annotated[
        Path | None,
        typer.Option("--key-file", help="HMAC key of older checkpoints. Default: settings.audit_key_path."),
    ] = None,
    public_key: Annotated[
        Path | None,
        typer.Option(
            "--public-key",
            help="Ed25519 public key (PEM, hex or base64) to check the checkpoints with: use a copy held away from "
            "this server, so that nothing here needs to be trusted. Default: settings audit.public_key_path.",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Recompute the whole chain and check the signed checkpoints; report the first broken record.

    Detects edited, deleted, inserted and reordered records; with the checkpoints, also a cut tail (even with
    audit_head rewound), a re-chained rewrite, and a replaced or cut checkpoints file.
    Exit 0 when everything holds, 1 when anything does not. Writes nothing.
    """
    from facetrail.audit.service import verify_audit, verifying_key

    with cli_context(json=as_json) as ctx:
        files = checkpoint_file or [ctx.checkpoints_path]
        public, _source = verifying_key(ctx, public_key)
        result = verify_audit(
            ctx.db, files[0], key_file or ctx.audit_key_path, public_key=public, more_checkpoint_files=files[1:]
        )
    if as_json:
        print_json(result.to_dict())
    else:
        _print_verification(result)
    if not result.ok:
        raise typer.Exit(BROKEN_EXIT)


@audit_app.command("checkpoint")
def checkpoint_cmd(as_json: JsonOption = False) -> None:
    """Sign the chain's head (seq, hash, record count) with the Ed25519 key and append it to the checkpoints file.

    The server does this by itself (audit.checkpoint_every_records / _minutes); this takes one now. The chain is
    verified first (a broken chain is not signed); then an 'audit.checkpoint' record is written and the
    checkpoint covers it too. Copy the printed line somewhere the database's administrators cannot write.
    """
    from facetrail.audit.service import ChainBrokenError, signing_key, take_checkpoint

    ctx = open_cli_context()
    try:
        result = take_checkpoint(
            ctx.db, ctx.checkpoints_path, ctx.audit_key_path, cli_actor(), signing_key=signing_key(ctx)
        )
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
    console.print(f"signed {cp['ts']}: {cp.get('alg', 'hmac')} {cp.get('signature') or cp.get('hmac')}")
    console.print(f"appended to {result.path}")


def _print_witness(cp: dict[str, Any] | None) -> None:
    if cp is None:
        err_console.print("newest signed checkpoint: none yet")
        return
    signature = cp.get("signature") or f"hmac {cp.get('hmac')}"
    err_console.print(
        f"newest signed checkpoint: record {cp['seq']}, hash {cp['hash']}, {cp['ts']}, signature {signature}"
    )


@audit_app.command("public-key")
def public_key_cmd(
    out: Annotated[Path | None, typer.Option("--out", help="Also write it to this file.")] = None,
) -> None:
    """Print the public key that verifies the checkpoints (PEM). Give it to auditors and keep copies elsewhere:
    with it alone, 'facetrail audit verify --public-key FILE' trusts nothing on this server.

    Creates the signing key on first use if no key is configured (an operator command: reveals nothing)."""
    from facetrail.audit.log import public_key_id, public_key_pem
    from facetrail.audit.service import signing_key

    with cli_context() as ctx:
        public = signing_key(ctx).public_key()
    pem = public_key_pem(public)
    if out is not None:
        out.write_text(pem)
    print(pem, end="")
    err_console.print(f"key id {public_key_id(public)}")


@audit_app.command("export")
def export_cmd(
    since: Annotated[str | None, typer.Option("--since", help="ISO-8601 date/time, inclusive (no zone = UTC).")] = None,
    until: Annotated[str | None, typer.Option("--until", help="ISO-8601 date/time, exclusive (no zone = UTC).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="jsonl (default) or csv.")] = "jsonl",
    out: Annotated[Path | None, typer.Option("--out", help="Write here (atomically) instead of stdout.")] = None,
    token: TokenOption = None,
) -> None:
    """Export records with every hashed field as stored. The export is itself audited ('audit.export').
    Runs as the signed-in auditor behind --token."""
    from facetrail.audit.export import export_audit
    from facetrail.audit.service import latest_witness

    with cli_context() as ctx:
        who = acting_user(ctx, token, Permission.AUDIT_READ, action="audit.export", target="audit_log")
        witness = latest_witness(ctx)
        result = export_audit(
            ctx.db,
            actor=who.actor,
            out=out,
            stdout=sys.stdout,
            since=since,
            until=until,
            fmt=fmt,
            checkpoint=witness,
        )
    span = f"records {result.first_seq}–{result.last_seq}" if result.count else "no records"
    err_console.print(
        f"exported {result.count} ({span}) to {result.destination}; logged as audit record {result.audit_seq}"
    )
    _print_witness(witness)


@audit_app.command("log")
def log_cmd(
    action: Annotated[str | None, typer.Option("--action", help="'search' matches search and search.*")] = None,
    actor: Annotated[str | None, typer.Option("--actor", help="Only this actor.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="Newest N records (1–10000).")] = 50,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """The newest records as a table. Listing is itself audited ('audit.read'). Runs as the signed-in auditor
    behind --token."""
    from facetrail.audit.export import read_audit_log

    with cli_context(json=as_json) as ctx:
        who = acting_user(ctx, token, Permission.AUDIT_READ, action="audit.read", target="audit_log")
        listing = read_audit_log(ctx.db, actor=who.actor, action=action, by_actor=actor, limit=limit)
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
