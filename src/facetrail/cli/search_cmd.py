"""``facetrail search``: a probe photo against a gallery, giving a candidate list of investigative leads."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from facetrail.cli.common import JsonOption, TokenOption, cli_context, console, print_json, signed_in


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
    show_faces: Annotated[
        bool, typer.Option("--faces", help="Expand each candidate subject into its enrolled faces, best first.")
    ] = False,
    probe_declaration: Annotated[
        str,
        typer.Option("--probe", help="What the probe is: original | edited | composite_sketch (policy may refuse)."),
    ] = "original",
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Search a gallery. The result is a candidate list of investigative leads, never an identification: one
    entry per subject (its best-matching face shown, scored over all of its enrolled faces)."""
    from facetrail.cases.probe import SearchRequest
    from facetrail.cases.searches import run_search
    from facetrail.faces.decode import read_image_bytes

    with cli_context(json=as_json) as ctx:
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
            probe_declaration=probe_declaration,
        )
        view = run_search(ctx, who, probe, request)
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
                        "score_rule": c.score_rule,
                        "faces_enrolled": c.faces_enrolled,
                        "faces_above_floor": c.faces_above_floor,
                        "faces": c.faces,
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
    table = Table(title=f"{len(rows)} candidate subject(s) for human review")
    for column in ("rank", "similarity", "est. false-match rate", "subject", "faces ≥ floor / enrolled"):
        table.add_column(column)
    for c in rows:
        score = "under review" if c.similarity is None else f"{c.similarity:.4f}"
        fmr = "" if c.estimated_fmr is None else f"{c.estimated_fmr:.1e}"
        faces = "" if c.faces_enrolled is None else f"{c.faces_above_floor} / {c.faces_enrolled}"
        table.add_row(str(c.rank), score, fmr, escape(c.subject_external_id), faces)
        if show_faces:
            for f in c.faces:
                table.add_row("", f"  {f['similarity']:.4f}", "", f"  face {f['face_id']}", "")
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
    probe_declaration: Annotated[
        str,
        typer.Option("--probe", help="What the probe is: original | edited | composite_sketch (policy may refuse)."),
    ] = "original",
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """1:1 check of one enrolled subject. It is a search: the same gate (training, case, offense, legal basis,
    justification, approvals), recorded and reviewed like one; nothing is shown until two reviewers release it."""
    from facetrail.cases.probe import SearchRequest
    from facetrail.cases.searches import run_subject_check
    from facetrail.faces.decode import read_image_bytes

    with cli_context(json=as_json) as ctx:
        who = signed_in(ctx, token)
        probe = read_image_bytes(image, ctx.settings.images)
        request = SearchRequest(
            gallery=gallery,
            case_number=case_number,
            offense=offense,
            legal_basis=legal_basis,
            justification=reason,
            face_index=face,
            probe_declaration=probe_declaration,
        )
        view = run_subject_check(ctx, who, probe, request, subject)
    released = [
        {"rank": c.rank, "subject_external_id": c.subject_external_id, "similarity": c.similarity}
        for c in view.candidates or []
    ]
    if as_json:
        print_json(
            {
                "ok": True,
                "kind": "subject_check",
                "notice": view.notice,
                "search_id": view.search_id,
                "gallery": view.gallery,
                "case_number": view.case_number,
                "released_leads": released,
                "status": "released" if released else "recorded: nothing is shown until two reviewers release a lead",
            }
        )
        return
    console.print(f"[bold yellow]{escape(view.notice)}[/]")
    console.print(
        f"subject check recorded as search {view.search_id} of gallery {escape(view.gallery)}, case "
        f"{escape(view.case_number)}. Nothing is shown until two reviewers of your unit release a lead; "
        "then it appears under this search."
    )
