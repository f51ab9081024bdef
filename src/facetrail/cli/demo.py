"""`facetrail demo`: a short end-to-end run over the bundled fixtures (the README's first command)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "face_recognition"


def run_demo(console: Console) -> int:
    from facetrail.api import detect_faces, verify

    if not FIXTURES.is_dir():
        console.print(f"[red]bundled fixtures not found at {FIXTURES} (run from a source checkout)[/]")
        return 1
    console.rule("FaceTrail demo — detection and 1:1 verification on bundled photos")
    table = Table(title="Detection")
    for col in ("image", "faces", "largest face: eyes px", "quality"):
        table.add_column(col)
    for name in ("obama.jpg", "biden.jpg", "two_people.jpg"):
        faces = detect_faces(FIXTURES / name)
        first = faces[0] if faces else None
        table.add_row(
            name,
            str(len(faces)),
            f"{first.face.eye_distance:.0f}" if first else "-",
            first.quality.verdict if first else "-",
        )
    console.print(table)
    table = Table(title="Verification (largest face of each)")
    for col in ("A", "B", "similarity", "threshold", "above threshold", "what the score means"):
        table.add_column(col)
    for a, b in (("obama.jpg", "obama2.jpg"), ("obama.jpg", "biden.jpg")):
        r = verify(FIXTURES / a, FIXTURES / b)
        table.add_row(
            a, b, f"{r.similarity:.3f}", f"{r.threshold:.3f}", "yes" if r.above_threshold else "no", r.meaning
        )
    console.print(table)
    console.print("[dim]Scores are investigative aids. FaceTrail never declares an identification.[/]")
    return 0
