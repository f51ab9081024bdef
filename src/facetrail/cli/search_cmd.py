"""``facetrail search``: a probe photo against a gallery, giving a candidate list of investigative leads."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from facetrail.cli.common import JsonOption, TokenOption, console, fail, open_cli_context, print_json, signed_in
from facetrail.errors import FaceTrailError


def register(app: typer.Typer) -> None:
    app.command("search")(search_command)
    app.command("verify-subject")(verify_subject_command)


def search_command(
    image: Annotated[Path, typer.Argument(help="The probe photo (local file). It is never added to a gallery.")],
    gallery: Annotated[str, typer.Option("--gallery", help="Gallery to search.")],
    case_number: Annotated[str, typer.Option("--case", help="Case number the search is for (required).")],
    offense: Annotated[str, typer.Option("--offense", help="Offense code from the policy's list (required).")],
    reason: Annotated[str, typer.Option("--reason", help="Justification: why this search is needed (required).")],
    legal_basis: Annotated[str, typer.Option("--legal-basis", help="Legal basis from the policy's list (required).")],
    candidates: Annotated[int, typer.Option("--candidates", help="Length of the candidate list, 2-50.")] = 20,
    face: Annotated[int | None, typer.Option("--face", help="Face number in the probe (default: 0, the largest).")] = (
        None
    ),
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Search a gallery. The result is a candidate list of investigative leads, never an identification."""
    from facetrail.cases.probe import SearchRequest
    from facetrail.cases.searches import run_search
    from facetrail.faces.decode import read_image_bytes

    ctx = open_cli_context()
    try:
        who = signed_in(ctx, token)
        probe = read_image_bytes(image, ctx.settings.images)
        request = SearchRequest(
            gallery=gallery,
            case_number=case_number,
            offense=offense,
            legal_basis=legal_basis,
            justification=reason,
            candidates=candidates,
            face_index=face,
        )
        view = run_search(ctx, who, probe, request)
    except FaceTrailError as exc:
        fail(exc, as_json)
    finally:
        ctx.close()
    rows = view.candidates or []
    if as_json:
        print_json(
            {
                "ok": True,
                "kind": "candidate_list",
                "notice": view.notice,
                "search_id": view.search_id,
                "gallery": view.gallery,
                "gallery_size": view.gallery_size,
                "case_number": view.case_number,
                "offense": view.offense,
                "legal_basis": view.legal_basis,
                "model_id": view.model_id,
                "probe_sha256": view.probe_sha256,
                "face_index": view.face_index,
                "faces_in_probe": view.faces_in_probe,
                "similarity_floor": view.similarity_floor,
                "candidates_shown": view.candidates_shown,
                "candidates": [
                    {
                        "rank": c.rank,
                        "similarity": c.similarity,
                        "estimated_fmr": c.estimated_fmr,
                        "subject_external_id": c.subject_external_id,
                        "face_id": c.face_id,
                    }
                    for c in rows
                ],
            }
        )
        return
    console.print(f"[bold yellow]{escape(view.notice)}[/]")
    console.print(
        f"search {view.search_id} of gallery {escape(view.gallery)} ({view.gallery_size} faces), "
        f"case {escape(view.case_number)}, offense {escape(view.offense)}, legal basis {escape(view.legal_basis)}"
    )
    console.print(
        f"probe sha256 {view.probe_sha256[:16]}…: face {view.face_index} of {view.faces_in_probe}; "
        f"model {view.model_id}; nothing below similarity {view.similarity_floor:g} is shown"
    )
    table = Table(title=f"{len(rows)} candidate(s) for human review")
    for column in ("rank", "similarity", "est. false-match rate", "subject"):
        table.add_column(column)
    for c in rows:
        table.add_row(str(c.rank), f"{c.similarity:.4f}", f"{c.estimated_fmr:.1e}", escape(c.subject_external_id))
    console.print(table)
    console.print(
        "[dim]Candidates stay 'under review' until two reviewers release them as leads. A high rank or "
        "score does not establish identity.[/]"
    )


def verify_subject_command(
    image: Annotated[Path, typer.Argument(help="The probe photo (local file). It is never added to a gallery.")],
    gallery: Annotated[str, typer.Option("--gallery", help="Gallery holding the subject.")],
    subject: Annotated[str, typer.Option("--subject", help="The subject's external id (e.g. booking number).")],
    case_number: Annotated[str, typer.Option("--case", help="Case number the comparison is for (required).")],
    offense: Annotated[str, typer.Option("--offense", help="Offense code under investigation (required).")],
    reason: Annotated[str, typer.Option("--reason", help="Why this comparison is needed (required).")],
    legal_basis: Annotated[str, typer.Option("--legal-basis", help="Legal basis from the policy's list (required).")],
    face: Annotated[int | None, typer.Option("--face", help="Face number in the probe (default: 0, the largest).")] = (
        None
    ),
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """1:1: compare the probe with one enrolled subject's faces. Audited; a lead, never an identification."""
    from facetrail.cases.probe import SearchRequest
    from facetrail.gallery.search import LEADS_NOTICE, verify_subject
    from facetrail.governance.approvals import authorize_search
    from facetrail.policy.roles import Permission

    ctx = open_cli_context()
    try:
        who = signed_in(ctx, token)
        who.require(Permission.SEARCH_RUN)
        # the same gates as a 1:N search of that gallery: training, policy fields, prior approval
        authorize_search(
            ctx,
            who,
            SearchRequest(
                gallery=gallery, case_number=case_number, offense=offense, legal_basis=legal_basis, justification=reason
            ),
            None,
        )
        result = verify_subject(
            ctx,
            image,
            gallery=gallery,
            subject=subject,
            case_number=case_number,
            offense=offense,
            reason=reason,
            actor=who.actor,
            face_index=face,
        )
    except FaceTrailError as exc:
        fail(exc, as_json)
    finally:
        ctx.close()
    if as_json:
        print_json({"ok": True, **result.to_dict()})
        return
    console.print(f"[bold yellow]{LEADS_NOTICE}[/]")
    verdict = (
        "[green]above[/] the threshold: similar enough to warrant review"
        if result.above_threshold
        else "[yellow]below[/] the threshold: same person not established"
    )
    console.print(
        f"subject {escape(result.subject_external_id)} in gallery {escape(result.gallery)}: best "
        f"similarity [bold]{result.similarity:.4f}[/] over {len(result.face_scores)} face(s) — {verdict}"
    )
    console.print(
        f"threshold {result.threshold:.4f} (estimated false-match rate {result.target_fmr:g}); "
        f"what the score means: {result.score_meaning}"
    )
