"""``facetrail case packet`` (a case's disclosure packet), ``facetrail case lead`` (the investigative lead report
of a released lead) and ``facetrail report`` (the transparency report).

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
    cli_context,
    console,
    print_json,
    signed_in,
)

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

    with cli_context(json=as_json) as ctx:
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


@case_app.command("lead")
def lead_cmd(
    search_id: Annotated[int, typer.Argument(help="The search the lead came from.")],
    rank: Annotated[int, typer.Argument(help="The released lead's rank in that search.")],
    out: Annotated[Path, typer.Option("--out", help="The PDF to write.")],
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """The investigative lead report of a released lead (PDF): probe and candidate with their hashes, the
    enhancement log, both examiners' checklists and conclusions, the notice that it is a lead only and what must
    still be corroborated. The same pages are in the case's packet. Audited ('lead.report')."""
    import hashlib

    from facetrail.reports.leads import make_lead_report

    with cli_context(json=as_json) as ctx:
        who = signed_in(ctx, token)
        pdf = make_lead_report(ctx, who, search_id, rank)
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(out.name + ".part")
    part.write_bytes(pdf)
    part.replace(out)
    sha = hashlib.sha256(pdf).hexdigest()
    if as_json:
        print_json({"ok": True, "search_id": search_id, "rank": rank, "pdf": str(out), "sha256": sha})
        return
    console.print(f"lead report for search {search_id}, rank {rank}: {out} (SHA-256 {sha})")


def report_cmd(
    date_from: Annotated[str, typer.Option("--from", help="First day of the period (YYYY-MM-DD, UTC).")],
    date_to: Annotated[str, typer.Option("--to", help="Last day of the period, included (YYYY-MM-DD, UTC).")],
    out: Annotated[Path, typer.Option("--out", help="Folder for index.html, its charts (PNG) and CSV files.")],
    as_json: JsonOption = False,
) -> None:
    """The transparency report for a period: aggregate counts only, fit to publish. Audited."""
    from facetrail.reports.transparency import collect_report, write_report

    with cli_context(json=as_json) as ctx:
        report = collect_report(ctx, date_from, date_to, actor=cli_actor(), audit_context={"via": "cli"})
        files = write_report(report, out)
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
