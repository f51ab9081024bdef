"""``facetrail case packet`` (a case's disclosure packet) and ``facetrail report`` (the transparency report).

A packet names people and may show probe faces: it is made as a signed-in user (API token) with that user's
scope, exactly as over the API (reviewers: their unit, blind review kept; auditors: every unit, hashes only).
The transparency report holds aggregate counts only; it is audited under the CLI actor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from facetrail.cli.common import (
    JsonOption,
    TokenOption,
    cli_actor,
    console,
    fail,
    open_cli_context,
    print_json,
    signed_in,
)
from facetrail.errors import FaceTrailError

case_app = typer.Typer(help="Cases: the disclosure packet of a case's face searches.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(case_app, name="case")
    app.command("report")(report_cmd)


@case_app.command("packet")
def packet_cmd(
    case_number: Annotated[str, typer.Argument(help="The case number the searches were run for.")],
    out: Annotated[Path, typer.Option("--out", help="The PDF to write; the JSON goes beside it (.json).")],
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Every search of the case (also those that found nothing), its probe, searcher, model and thresholds,
    the full candidate list and every review decision: a PDF and the same data as JSON. Audited."""
    from facetrail.policy.roles import Permission
    from facetrail.reports.packet import collect_packet, scope_for
    from facetrail.reports.packet_pdf import render_pdf, write_packet_files

    ctx = open_cli_context()
    try:
        who = signed_in(ctx, token)
        who.require(Permission.CASE_PACKET)
        packet = collect_packet(
            ctx,
            case_number,
            actor=who.actor,
            scope=scope_for(who),
            audit_context=who.audit_context(),
            render=render_pdf,
        )
        pdf, js = write_packet_files(packet, out)
    except FaceTrailError as exc:
        fail(exc, as_json)
    finally:
        ctx.close()
    summary = packet.data["summary"]
    if as_json:
        print_json(
            {
                "ok": True,
                "case_number": packet.case_number,
                "pdf": str(pdf),
                "json": str(js),
                "audit_seq": packet.audit_seq,
                "summary": summary,
            }
        )
        return
    console.print(
        f"disclosure packet for case {packet.case_number}: {summary['searches']} search(es), "
        f"{summary['review_decisions']} review decision(s); audit record {packet.audit_seq}"
    )
    console.print(f"  PDF:  {pdf}\n  JSON: {js}")
    if not packet.data["audit_chain"]["ok"]:
        console.print(f"[bold red]warning[/]: the audit chain does not verify: {packet.data['audit_chain']['problem']}")


def report_cmd(
    date_from: Annotated[str, typer.Option("--from", help="First day of the period (YYYY-MM-DD, UTC).")],
    date_to: Annotated[str, typer.Option("--to", help="Last day of the period, included (YYYY-MM-DD, UTC).")],
    out: Annotated[Path, typer.Option("--out", help="Folder for index.html, its charts (PNG) and CSV files.")],
    as_json: JsonOption = False,
) -> None:
    """The transparency report for a period: aggregate counts only, fit to publish. Audited."""
    from facetrail.reports.transparency import collect_report, write_report

    ctx = open_cli_context()
    try:
        report = collect_report(ctx, date_from, date_to, actor=cli_actor(), audit_context={"via": "cli"})
        files = write_report(report, out)
    except FaceTrailError as exc:
        fail(exc, as_json)
    finally:
        ctx.close()
    if as_json:
        print_json(
            {
                "ok": True,
                "from": str(report.period_from),
                "to": str(report.period_to),
                "audit_seq": report.audit_seq,
                "files": [str(f) for f in files],
            }
        )
        return
    searches = sum(int(r[1]) for r in report.section("searches_by_unit").rows)
    console.print(
        f"transparency report {report.period_from} to {report.period_to}: {searches} search(es); "
        f"audit record {report.audit_seq}"
    )
    console.print(f"  {out / 'index.html'} (+ {len(files) - 1} CSV/PNG files)")
