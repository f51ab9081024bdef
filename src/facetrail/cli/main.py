"""The ``facetrail`` command. Commands are thin: they parse, call core functions, and print.

Exit codes (stable, documented in docs/cli.md): 0 success, 1 other error, 2 usage error,
3 bad input (image or argument), 4 no face found, 5 model error, 6 not signed in or not allowed.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from facetrail.cli import (
    admin_cmd,
    audit_cmd,
    eval_cmd,
    gallery_cmd,
    governance_cmd,
    identity_cmd,
    oversight_cmd,
    report_cmd,
    retention_cmd,
    search_cmd,
    serve_cmd,
    store_cmd,
)
from facetrail.cli.common import JsonOption, begin_command, console, fail, print_json
from facetrail.errors import BadInputError, FaceTrailError

app = typer.Typer(
    name="facetrail",
    help="FaceTrail: accountable face search. Results are investigative leads, never identifications.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _begin() -> None:
    """Every command starts with a clean slate for auditing its refusals (facetrail.cli.common.fail)."""
    begin_command()


@app.command()
def detect(
    image: Annotated[Path, typer.Argument(help="Image file (format sniffed from its bytes).")],
    as_json: JsonOption = False,
    annotate: Annotated[Path | None, typer.Option("--annotate", help="Write a copy with faces drawn (PNG).")] = None,
) -> None:
    """Find faces: boxes, 5 landmarks, detector score and a quality verdict for each."""
    from facetrail.faces.pipeline import get_pipeline

    pipeline = get_pipeline()
    try:
        decoded = pipeline.decode_path(image)
        faces = pipeline.analyze(decoded, embed=False)
    except FaceTrailError as exc:
        fail(exc, as_json)
        return
    annotated: Path | None = None
    if annotate is not None:
        from facetrail.faces.draw import draw_faces

        try:
            annotated = draw_faces(decoded.pixels, faces, annotate)
        except OSError as exc:
            fail(BadInputError(f"could not write the annotated copy: {exc}", path=str(annotate)), as_json)
    result: dict[str, object] = {
        "ok": True,
        "image": {
            "path": str(image),
            "sha256": decoded.sha256,
            "format": decoded.format,
            "width": decoded.width,
            "height": decoded.height,
            "exif_rotated": decoded.exif_transposed,
        },
        "detector": pipeline.detector.model_id,
        "faces": [f.to_dict() for f in faces],
    }
    if annotated is not None:
        result["annotated"] = str(annotated)
    if as_json:
        print_json(result)
    else:
        table = Table(title=f"{len(faces)} face(s) in {image.name} ({decoded.width}×{decoded.height} {decoded.format})")
        for col in ("#", "box (x, y, w, h)", "eyes px", "score", "quality", "reasons"):
            table.add_column(col)
        for f in faces:
            x, y, w, h = f.face.box
            table.add_row(
                str(f.index),
                f"{x:.0f}, {y:.0f}, {w:.0f}, {h:.0f}",
                f"{f.face.eye_distance:.0f}",
                f"{f.face.score:.2f}",
                f.quality.verdict,
                "; ".join(f.quality.reasons),
            )
        console.print(table)
        if annotated is not None:
            console.print(f"annotated copy: {annotated}")
    if not faces:
        raise typer.Exit(4)


@app.command()
def verify(
    image_a: Annotated[Path, typer.Argument(help="First image.")],
    image_b: Annotated[Path, typer.Argument(help="Second image.")],
    face_a: Annotated[int | None, typer.Option("--face-a", help="Face number in A (default: largest).")] = None,
    face_b: Annotated[int | None, typer.Option("--face-b", help="Face number in B (default: largest).")] = None,
    as_json: JsonOption = False,
) -> None:
    """1:1 comparison: similarity, decision at the configured threshold, and the estimated false-match rate."""
    from facetrail.api import verify as verify_images

    try:
        result = verify_images(image_a, image_b, face_a=face_a, face_b=face_b)
    except FaceTrailError as exc:
        fail(exc, as_json)
        return
    if as_json:
        print_json({"ok": True, **result.to_dict()})
        return
    verdict = (
        "[green]above[/] the threshold: likely the same person"
        if result.above_threshold
        else "[yellow]below[/] the threshold: same person not established"
    )
    console.print(f"similarity [bold]{result.similarity:.4f}[/] — {verdict}")
    console.print(f"threshold {result.threshold:.4f} (estimated false-match rate {result.target_fmr:g})")
    console.print(f"what the score means: {result.meaning}")
    console.print(
        f"faces: A has {result.faces_in_a} (used #{result.face_a.index}), "
        f"B has {result.faces_in_b} (used #{result.face_b.index}); model {result.model_id}"
    )
    console.print("[dim]A similarity score is an investigative aid, not an identification.[/]")


@app.command()
def demo() -> None:
    """A short end-to-end run over the bundled fixtures: detect, then verify a same and a different pair."""
    from facetrail.cli.demo import run_demo

    sys.exit(run_demo(console))


# Every command group, registered explicitly: a renamed or missing module fails at import, never vanishes.
# Kept in separate modules so each stays small; docs/cli.md lists them all (tests/test_wiring.py checks).
for module in (
    gallery_cmd,
    search_cmd,
    audit_cmd,
    admin_cmd,
    serve_cmd,
    report_cmd,
    retention_cmd,
    governance_cmd,
    oversight_cmd,
    identity_cmd,
    store_cmd,
):
    module.register(app)
app.add_typer(eval_cmd.app, name="eval")

if __name__ == "__main__":  # pragma: no cover
    app()
