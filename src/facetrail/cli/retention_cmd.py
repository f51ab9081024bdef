"""``facetrail retention set|show|run|certificate``, ``facetrail hold add|list|lift`` and
``facetrail subject disposition`` (docs/retention.md)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from facetrail.cli.common import (
    JsonOption,
    TokenOption,
    acting_user,
    console,
    err_console,
    fail,
    open_cli_context,
    print_json,
)
from facetrail.errors import BadInputError, FaceTrailError
from facetrail.policy.roles import Permission

retention_app = typer.Typer(help="Retention rules, runs and deletion certificates.", no_args_is_help=True)
hold_app = typer.Typer(help="Legal holds: subjects or cases kept until the hold is lifted.", no_args_is_help=True)
subject_app = typer.Typer(help="Subjects' record outcomes.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(retention_app, name="retention")
    app.add_typer(hold_app, name="hold")
    app.add_typer(subject_app, name="subject")


def _user(ctx: Any, token: str | None, permission: Permission, action: str, target: str = "") -> str:
    """The audit actor: the signed-in user behind --token, who must hold the permission (no operator bypass)."""
    return acting_user(ctx, token, permission, action=action, target=target).actor


def _with_ctx(as_json: bool, work: Any) -> Any:
    ctx = open_cli_context()
    try:
        return work(ctx)
    except FaceTrailError as exc:
        fail(exc, as_json)
    finally:
        ctx.close()


@retention_app.command("set")
def set_command(
    gallery: Annotated[str, typer.Argument(help="Gallery name.")],
    rule: Annotated[
        str | None, typer.Argument(help="Rule as JSON or TOML text, e.g. 'delete_after_years = 7'.")
    ] = None,
    rule_file: Annotated[Path | None, typer.Option("--file", help="Read the rule from this TOML/JSON file.")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the gallery's rule.")] = False,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Set (validated, audited) or remove a gallery's retention rule."""
    from facetrail.retention.rules import set_rule

    if sum(x is not None and x is not False for x in (rule, rule_file, clear or None)) != 1:
        fail(BadInputError("give exactly one of RULE, --file or --clear"), as_json)
    text = None if clear else (rule_file.read_text() if rule_file is not None else rule)
    saved = _with_ctx(
        as_json,
        lambda ctx: set_rule(
            ctx, gallery, text, actor=_user(ctx, token, Permission.RETENTION_MANAGE, "retention.rule", gallery)
        ),
    )
    out = {
        "gallery": gallery,
        "rule": None if saved is None else json.loads(saved.to_json()),
        "description": None if saved is None else saved.describe(),
    }
    if as_json:
        print_json({"ok": True, **out})
    else:
        console.print(f"{gallery}: {out['description'] or 'no retention rule'}")


@retention_app.command("show")
def show_command(gallery: Annotated[str, typer.Argument()], as_json: JsonOption = False) -> None:
    """A gallery's retention rule."""
    from facetrail.retention.rules import get_rule

    rule = _with_ctx(as_json, lambda ctx: get_rule(ctx, gallery))
    if as_json:
        print_json({"ok": True, "gallery": gallery, "rule": None if rule is None else json.loads(rule.to_json())})
    else:
        console.print(f"{gallery}: {rule.describe() if rule else 'no retention rule'}")


@retention_app.command("run")
def run_command(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report what is due; delete nothing.")] = False,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Plan as of this date (YYYY-MM-DD; dry runs only).")
    ] = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Apply every gallery's retention rule and the probe retention period (legal holds respected)."""
    from facetrail.retention.run import PlannedAction, plan, run_retention

    day = None
    if as_of is not None:
        try:
            day = dt.date.fromisoformat(as_of)
        except ValueError:
            fail(BadInputError(f"--as-of {as_of!r} is not a YYYY-MM-DD date"), as_json)
        if not dry_run:
            fail(BadInputError("--as-of only plans: use it with --dry-run"), as_json)

    def work(ctx: Any) -> Any:
        actor = _user(ctx, token, Permission.RETENTION_MANAGE, "retention.run")
        total = len(plan(ctx, day))
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=err_console,
            disable=as_json,
            transient=True,
        ) as progress:
            task = progress.add_task("retention dry run" if dry_run else "applying retention", total=total)

            def advance(action: PlannedAction) -> None:
                progress.update(
                    task, advance=1, description=f"{action.kind} {action.gallery or ''} {action.external_id or ''}"
                )

            return run_retention(ctx, dry_run=dry_run, actor=actor, today=day, progress=advance)

    report = _with_ctx(as_json, work).to_dict()
    if as_json:
        print_json({"ok": True, **report})
        return
    verb = "due" if dry_run else "done"
    table = Table(
        title=f"retention {'dry run' if dry_run else 'run'} as of {report['as_of']}: "
        + ", ".join(f"{n} {s}" for s, n in report["summary"].items() if n)
        or f"nothing {verb}"
    )
    for col in ("kind", "gallery", "subject", "faces / searches", "status", "why", "certificate"):
        table.add_column(col)
    for a in report["actions"]:
        ids = a["face_ids"] if a["kind"] != "probe" else a["search_ids"]
        why = a["reason"] + (f" (holds {', '.join(map(str, a['hold_ids']))})" if a["hold_ids"] else "")
        table.add_row(
            a["kind"],
            a["gallery"] or "",
            a["external_id"] or "",
            ", ".join(map(str, ids)),
            a["status"] if not dry_run or a["status"] != "due" else "would delete",
            why,
            str(a["certificate_seq"] or ""),
        )
    console.print(table)


@retention_app.command("certificate")
def certificate_command(
    seq: Annotated[int, typer.Argument(help="The certificate's audit sequence number.")], as_json: JsonOption = False
) -> None:
    """Print a deletion certificate."""
    from facetrail.retention.deletion import get_certificate

    cert = _with_ctx(as_json, lambda ctx: get_certificate(ctx, seq))
    if as_json:
        print_json({"ok": True, "certificate": cert})
        return
    d = cert["details"]
    table = Table(title=f"deletion certificate {cert['seq']}", show_header=False)
    rows = [
        ("scope", d["scope"]),
        ("gallery", d["gallery"]),
        ("subject", d["external_id"]),
        ("deleted at", d["deleted_at"]),
        ("deleted by", d["deleted_by"]),
        ("reason", d["reason"]),
        ("basis", json.dumps(d["basis"])),
        ("counts", json.dumps(d["counts"])),
        ("face ids", ", ".join(map(str, d["face_ids"]))),
        ("storage", json.dumps(d["storage"])),
        ("record hash", cert["hash"]),
    ]
    for key, value in rows:
        table.add_row(key, str(value))
    console.print(table)
    for face in d["faces"]:
        console.print(
            f"face {face['face_id']}: image {face['image_sha256']}  embedding {face['embedding_sha256']}"
            f"  thumbnail {face['thumbnail_sha256']}"
        )
    for probe in d["probes"]:
        console.print(f"search {probe['search_id']} (case {probe['case_number']}): probe {probe['probe_sha256']}")


@hold_app.command("add")
def hold_add_command(
    reason: Annotated[str, typer.Option("--reason", help="Why (e.g. the preservation order).")],
    subject: Annotated[str | None, typer.Option("--subject", help="GALLERY:EXTERNAL_ID")] = None,
    case: Annotated[str | None, typer.Option("--case", help="A case number.")] = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Place a legal hold on a subject or a case (audited)."""
    from facetrail.retention.holds import add_hold

    target = None
    if subject is not None:
        gallery, sep, external_id = subject.partition(":")
        if not sep or not gallery or not external_id:
            fail(BadInputError("--subject must be GALLERY:EXTERNAL_ID", field="subject"), as_json)
        target = (gallery, external_id)
    hold = _with_ctx(
        as_json,
        lambda ctx: add_hold(
            ctx,
            actor=_user(ctx, token, Permission.LEGAL_HOLD, "legal_hold.place"),
            reason=reason,
            subject=target,
            case_number=case,
        ),
    )
    if as_json:
        print_json({"ok": True, "hold": hold})
    else:
        console.print(f"legal hold {hold['id']} placed")


@hold_app.command("list")
def hold_list_command(
    all_holds: Annotated[bool, typer.Option("--all", help="Include lifted holds.")] = False, as_json: JsonOption = False
) -> None:
    """Legal holds in force (or all of them)."""
    from facetrail.retention.holds import list_holds

    found = _with_ctx(as_json, lambda ctx: list_holds(ctx, include_lifted=all_holds))
    if as_json:
        print_json({"ok": True, "holds": found})
        return
    table = Table(title=f"{len(found)} legal hold(s)")
    for col in ("id", "on", "reason", "placed", "by", "lifted"):
        table.add_column(col)
    for h in found:
        on = f"case {h['case_number']}" if h["kind"] == "case" else f"{h['gallery']}:{h['external_id']}"
        table.add_row(str(h["id"]), on, h["reason"], h["created_at"], h["created_by"], h["lifted_at"] or "")
    console.print(table)


@hold_app.command("lift")
def hold_lift_command(
    hold_id: Annotated[int, typer.Argument()],
    reason: Annotated[str, typer.Option("--reason")],
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Lift a legal hold (audited)."""
    from facetrail.retention.holds import lift_hold

    hold = _with_ctx(
        as_json,
        lambda ctx: lift_hold(
            ctx, hold_id, actor=_user(ctx, token, Permission.LEGAL_HOLD, "legal_hold.lift", str(hold_id)), reason=reason
        ),
    )
    if as_json:
        print_json({"ok": True, "hold": hold})
    else:
        console.print(f"legal hold {hold['id']} lifted")


@subject_app.command("disposition")
def disposition_command(
    gallery: Annotated[str, typer.Argument()],
    external_id: Annotated[str, typer.Argument()],
    disposition: Annotated[str, typer.Argument(help="released | acquitted | expunged | active")],
    reason: Annotated[str, typer.Option("--reason")] = "",
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Record a subject's outcome; a gallery rule may then delete it (audited)."""
    from facetrail.retention.rules import set_disposition

    out = _with_ctx(
        as_json,
        lambda ctx: set_disposition(
            ctx,
            gallery,
            external_id,
            disposition,
            actor=_user(ctx, token, Permission.RETENTION_MANAGE, "subject.disposition", f"{gallery}:{external_id}"),
            reason=reason,
        ),
    )
    if as_json:
        print_json({"ok": True, **out})
    else:
        console.print(f"{gallery}:{external_id} is now {out['disposition']} (was {out['previous']})")
