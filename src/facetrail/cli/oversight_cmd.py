"""``facetrail case import`` and ``facetrail oversight scan|notify|sample-draw``: the agency's case list and
the oversight runs, for the local operator (the server runs scan, draw and notify on its schedule)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from facetrail.cli.common import (
    JsonOption,
    TokenOption,
    acting_user,
    cli_actor,
    console,
    fail,
    open_cli_context,
    print_json,
)
from facetrail.cli.report_cmd import case_app  # `facetrail case …`: the packet lives there, the import here
from facetrail.errors import BadInputError, FaceTrailError
from facetrail.policy.roles import Permission

oversight_app = typer.Typer(help="Anomaly alerts, audit sampling and e-mail (docs/oversight.md).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(oversight_app, name="oversight")


def _run(as_json: bool, action: Any) -> Any:
    try:
        ctx = open_cli_context()
    except FaceTrailError as exc:
        fail(exc, as_json)
    try:
        return action(ctx)
    except FaceTrailError as exc:
        fail(exc, as_json)
    finally:
        ctx.close()


@case_app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(help="CSV: case_number,offense[,status]; the complete list of cases.")],
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Replace the case list with the file's (cases missing from it are closed). Audited ('case.import').
    Runs as the signed-in administrator behind --token."""
    from facetrail.oversight.cases import import_cases

    try:
        data = file.read_bytes()
    except OSError as exc:
        fail(BadInputError(f"cannot read {file}: {exc}", field="file"), as_json)

    def work(ctx: Any) -> Any:
        who = acting_user(ctx, token, Permission.CASES_MANAGE, action="case.import", target=str(file))
        return import_cases(ctx, data, actor=who.actor, audit_context=who.audit_context())

    counts = _run(as_json, work)
    if as_json:
        print_json({"ok": True, **counts})
    else:
        console.print(", ".join(f"{k}: {v}" for k, v in counts.items()))


@oversight_app.command("scan")
def scan_command(as_json: JsonOption = False) -> None:
    """Run the anomaly rules for every user who searched recently; new alerts are audited ('oversight.alert')."""
    from facetrail.oversight.alerts import scan

    created = _run(as_json, scan)
    if as_json:
        print_json({"ok": True, "new_alerts": created})
    else:
        console.print(f"{len(created)} new alert(s)")


@oversight_app.command("notify")
def notify_command(as_json: JsonOption = False) -> None:
    """Send the oversight e-mails that are due (failed ones are retried later)."""
    from facetrail.oversight.notify import flush

    counts = _run(as_json, flush)
    if as_json:
        print_json({"ok": True, **counts})
    else:
        console.print(", ".join(f"{k}: {v}" for k, v in counts.items()))


@oversight_app.command("sample-draw")
def sample_draw_command(as_json: JsonOption = False) -> None:
    """Draw the audit sample of the last completed period (needs an audit checkpoint taken after it ended)."""
    from facetrail.oversight.sampling import draw_due

    draw = _run(as_json, lambda ctx: draw_due(ctx, actor=cli_actor()))
    if as_json:
        print_json({"ok": True, "draw": draw})
    elif draw is None:
        console.print("sampling is off in the policy (share = 0)")
    else:
        console.print(
            f"{draw['period']}: {len(draw['search_ids'])} of {draw['population']} searches drawn "
            f"(seed: audit record {draw['seed_seq']}): {draw['search_ids']}"
        )
