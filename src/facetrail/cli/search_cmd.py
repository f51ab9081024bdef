"""``facetrail search``: a probe photo against a gallery, giving a candidate list of investigative leads."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from facetrail.cli.common import JsonOption, cli_actor, console, fail, open_cli_context, print_json
from facetrail.errors import FaceTrailError


def register(app: typer.Typer) -> None:
    app.command("search")(search_command)
    app.command("verify-subject")(verify_subject_command)


def search_command(
    image: Annotated[Path, typer.Argument(help="The probe photo (local file). It is never added to a gallery.")],
    gallery: Annotated[str, typer.Option("--gallery", help="Gallery to search.")],
    case_number: Annotated[str, typer.Option("--case", help="Case number the search is for (required).")],
    offense: Annotated[str, typer.Option("--offense", help="Offense code under investigation (required).")],
    reason: Annotated[str, typer.Option("--reason", help="Why this search is needed (required).")],
    candidates: Annotated[int, typer.Option("--candidates", help="Length of the candidate list, 2-50.")] = 20,
    face: Annotated[int | None, typer.Option("--face", help="Face number in the probe (default: 0, the largest).")] = (
        None
    ),
    as_json: JsonOption = False,
) -> None:
    """Search a gallery. The result is a candidate list of investigative leads, never an identification."""
    from facetrail.gallery.search import LEADS_NOTICE, search_gallery

    ctx = open_cli_context()
    try:
        result = search_gallery(ctx, image, gallery=gallery, case_number=case_number, offense=offense, reason=reason,
                                actor=cli_actor(), candidates=candidates, face_index=face)
    except FaceTrailError as exc:
        fail(exc, as_json)
    finally:
        ctx.close()
    if as_json:
        print_json({"ok": True, **result.to_dict()})
        return
    console.print(f"[bold yellow]{LEADS_NOTICE}[/]")
    console.print(
        f"search {result.search_id} of gallery {escape(result.gallery)} ({result.gallery_size} faces), "
        f"case {escape(result.purpose.case_number)}, offense {escape(result.purpose.offense)}"
    )
    console.print(
        f"probe sha256 {result.probe_sha256[:16]}…: face {result.face_index} of {result.faces_in_probe} "
        f"detected (quality {result.probe_quality}); model {result.model_id}"
    )
    table = Table(title=f"{len(result.candidates)} candidate(s) for human review")
    for column in ("rank", "similarity", "est. false-match rate", "expected strangers ≥ score", "subject", "face id",
                   "thumbnail"):
        table.add_column(column)
    for c in result.candidates:
        table.add_row(str(c.rank), f"{c.similarity:.4f}", f"{c.estimated_fmr:.1e}",
                      f"{result.expected_false_matches(c):.2g}", escape(c.subject_external_id), str(c.face_id),
                      c.thumbnail_path.name if c.thumbnail_path else "")
    console.print(table)
    if result.results_dir is not None:
        console.print(f"thumbnails: {result.results_dir}")
    console.print("[dim]Estimated false-match rate: the share of different-person comparisons that score at least "
                  "this high; expected strangers: about how many different-person faces in a gallery of this size "
                  "would. A high rank or score does not establish identity.[/]")


def verify_subject_command(
    image: Annotated[Path, typer.Argument(help="The probe photo (local file). It is never added to a gallery.")],
    gallery: Annotated[str, typer.Option("--gallery", help="Gallery holding the subject.")],
    subject: Annotated[str, typer.Option("--subject", help="The subject's external id (e.g. booking number).")],
    case_number: Annotated[str, typer.Option("--case", help="Case number the comparison is for (required).")],
    offense: Annotated[str, typer.Option("--offense", help="Offense code under investigation (required).")],
    reason: Annotated[str, typer.Option("--reason", help="Why this comparison is needed (required).")],
    face: Annotated[int | None, typer.Option("--face", help="Face number in the probe (default: 0, the largest).")] = (
        None
    ),
    as_json: JsonOption = False,
) -> None:
    """1:1: compare the probe with one enrolled subject's faces. Audited; a lead, never an identification."""
    from facetrail.gallery.search import LEADS_NOTICE, verify_subject

    ctx = open_cli_context()
    try:
        result = verify_subject(ctx, image, gallery=gallery, subject=subject, case_number=case_number,
                                offense=offense, reason=reason, actor=cli_actor(), face_index=face)
    except FaceTrailError as exc:
        fail(exc, as_json)
    finally:
        ctx.close()
    if as_json:
        print_json({"ok": True, **result.to_dict()})
        return
    console.print(f"[bold yellow]{LEADS_NOTICE}[/]")
    verdict = ("[green]above[/] the threshold: similar enough to warrant review" if result.above_threshold
               else "[yellow]below[/] the threshold: same person not established")
    console.print(f"subject {escape(result.subject_external_id)} in gallery {escape(result.gallery)}: best "
                  f"similarity [bold]{result.similarity:.4f}[/] over {len(result.face_scores)} face(s) — {verdict}")
    console.print(f"threshold {result.threshold:.4f} (estimated false-match rate {result.target_fmr:g}); "
                  f"what the score means: {result.score_meaning}")
