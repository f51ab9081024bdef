"""``facetrail eval``: accuracy on LFW (1:1 and 1:N) and the score calibration tables.

docs/accuracy.md and docs/calibration.md give the protocols, the measured numbers and the exact commands.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from facetrail.cli.common import DeviceOption, apply_device, fail
from facetrail.errors import FaceTrailError

if TYPE_CHECKING:
    from facetrail.evaluation.runner import EmbeddingRun

app = typer.Typer(help="Measure accuracy on LFW and build calibration tables.", no_args_is_help=True)
err_console = Console(stderr=True)

DATA_OPTION = Annotated[Path, typer.Option("--data", help="LFW folder holding pairs.txt and the images.")]
MODEL_OPTION = Annotated[
    str | None, typer.Option("--model", help="sface, dlib, fusion or onnx:/path/model.onnx (default: settings).")
]
FLIP_OPTION = Annotated[
    bool | None, typer.Option("--flip/--no-flip", help="Mirror-image averaging, SFace/ONNX (default: settings).")
]
OUT_OPTION = Annotated[Path, typer.Option("--out", help="Folder for the summary JSON and the plots.")]
JSON_OPTION = Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")]
WORKERS_OPTION = Annotated[int, typer.Option("--workers", help="Processes embedding images.", min=1)]
CACHE_OPTION = Annotated[
    Path | None, typer.Option("--cache-dir", help="Embedding cache (default ~/.cache/facetrail/eval).")
]
WEIGHT_OPTION = Annotated[
    float | None, typer.Option("--fusion-weight", help="SFace weight w for --model fusion (default: shipped).")
]


def _embed(
    data_dir: Path,
    paths: list[str],
    model: str | None,
    flip: bool | None,
    workers: int,
    cache_dir: Path | None,
    fusion_weight: float | None = None,
) -> EmbeddingRun:
    from facetrail.evaluation.embedding import DEFAULT_CACHE_DIR
    from facetrail.evaluation.lfw import open_lfw
    from facetrail.evaluation.runner import embed_for_model

    data = open_lfw(data_dir)
    columns = (TextColumn("embedding {task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task(model or "", total=len(paths))

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return embed_for_model(
            data.images_dir,
            paths,
            model,
            flip=flip,
            fusion_weight=fusion_weight,
            workers=workers,
            cache_dir=cache_dir or DEFAULT_CACHE_DIR,
            progress=progress,
        )


def table_json(data: dict[str, object]) -> str:
    """The calibration JSON, one table row per line (readable diffs when a table is remade)."""
    head = {k: v for k, v in data.items() if k != "table"}
    rows = ",\n".join(f"  {json.dumps(row)}" for row in data["table"])  # type: ignore[attr-defined]
    return json.dumps(head, indent=1)[:-2] + ',\n "table": [\n' + rows + "\n ]\n}\n"


def _label(model_id: str) -> str:
    return model_id.split("@")[0]


@app.command("lfw")
def lfw(
    data: DATA_OPTION,
    model: MODEL_OPTION = None,
    flip: FLIP_OPTION = None,
    out: OUT_OPTION = Path("eval-out"),
    as_json: JSON_OPTION = False,
    workers: WORKERS_OPTION = 2,
    cache_dir: CACHE_OPTION = None,
    fusion_weight: WEIGHT_OPTION = None,
    device: DeviceOption = None,
    folds: Annotated[int, typer.Option("--folds", help="Use only the first N folds (quick checks).", min=2)] = 10,
) -> None:
    """LFW View 2 verification: 10-fold accuracy, ROC AUC, TAR at FAR 1e-2 / 1e-3, ROC and DET plots."""
    from facetrail.evaluation.lfw import open_lfw, pair_images, read_pairs
    from facetrail.evaluation.plots import plot_det, plot_roc
    from facetrail.evaluation.verification import roc_points, verify_pairs

    start = time.perf_counter()
    try:
        apply_device(device)
        lfw_data = open_lfw(data)
        pairs = [p for p in read_pairs(lfw_data.root / "pairs.txt") if p.fold < folds]
        run = _embed(data, pair_images(pairs), model, flip, workers, cache_dir, fusion_weight)
    except FaceTrailError as exc:
        fail(exc, as_json)
    report, scores, same = verify_pairs(run.embeddings, pairs)
    rate = run.images_per_second
    report.extra = {
        "detector_id": run.embeddings.detector_id,
        "face_choice": "largest face nearest the image centre (faces >= half the largest area; nearest centre)",
        "images_embedded_now": run.computed,
        "embedding_seconds": round(run.seconds, 2),
        "images_per_second": round(rate, 2) if rate else None,
        "workers": workers,
        "wall_seconds": round(time.perf_counter() - start, 2),
    }
    out.mkdir(parents=True, exist_ok=True)
    name = _label(report.model_id)
    curve = {name: roc_points(scores, same)}
    plot_roc(curve, out / f"lfw-roc-{name}.png")
    plot_det(curve, out / f"lfw-det-{name}.png")
    np.savez_compressed(out / f"lfw-scores-{name}.npz", scores=scores, same=same)
    summary = report.to_dict()
    (out / f"lfw-{name}.json").write_text(json.dumps(summary, indent=2) + "\n")
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    table = Table(title=f"LFW View 2 — {report.model_id}")
    table.add_column("measure")
    table.add_column("value")
    table.add_row("accuracy (10-fold)", f"{report.accuracy_mean * 100:.2f}% ± {report.accuracy_std * 100:.2f}")
    table.add_row("ROC AUC", f"{report.auc:.5f}")
    for far, tar in report.tar_at_far.items():
        table.add_row(f"TAR @ FAR={far}", f"{tar * 100:.2f}%")
    table.add_row("pairs with no face (scored -1)", f"{report.no_face_pairs} ({report.no_face_same_pairs} same-person)")
    table.add_row("images / s", f"{rate:.1f}" if rate else "all cached")
    table.add_row("wall time", f"{report.extra['wall_seconds']} s")
    Console().print(table)
    Console().print(f"plots and summary written to {out}/")


@app.command("identify")
def identify(
    data: DATA_OPTION,
    model: MODEL_OPTION = None,
    flip: FLIP_OPTION = None,
    out: OUT_OPTION = Path("eval-out"),
    as_json: JSON_OPTION = False,
    workers: WORKERS_OPTION = 2,
    cache_dir: CACHE_OPTION = None,
    fusion_weight: WEIGHT_OPTION = None,
    device: DeviceOption = None,
) -> None:
    """1:N on all of LFW: rank-1/5/20 (CMC plot) and open-set FNIR at FPIR 1e-2 / 1e-3."""
    from facetrail.evaluation.identification import identify as run_identification
    from facetrail.evaluation.lfw import all_images, open_lfw
    from facetrail.evaluation.plots import plot_cmc

    try:
        apply_device(device)
        people = all_images(open_lfw(data))
        run = _embed(
            data, [p for images in people.values() for p in images], model, flip, workers, cache_dir, fusion_weight
        )
    except FaceTrailError as exc:
        fail(exc, as_json)
    report, curve = run_identification(people, run.embeddings)
    out.mkdir(parents=True, exist_ok=True)
    name = _label(run.embeddings.model_id)
    plot_cmc(curve, name, out / f"lfw-cmc-{name}.png")
    (out / f"identify-{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    if as_json:
        print(json.dumps(report, indent=2))
        return
    table = Table(title=f"LFW 1:N — {run.embeddings.model_id}")
    table.add_column("measure")
    table.add_column("value")
    for key, value in report.items():
        if key != "model_id":
            table.add_row(key.replace("_", " "), json.dumps(value) if isinstance(value, dict) else str(value))
    Console().print(table)


@app.command("calibrate")
def calibrate(
    data: DATA_OPTION,
    model: MODEL_OPTION = None,
    flip: FLIP_OPTION = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Where to write the table (default: the package's table).")
    ] = None,
    as_json: JSON_OPTION = False,
    workers: WORKERS_OPTION = 2,
    cache_dir: CACHE_OPTION = None,
    fusion_weight: WEIGHT_OPTION = None,
    device: DeviceOption = None,
) -> None:
    """Build a model's calibration table from every different-person image pair in LFW."""
    from facetrail.evaluation.calibrate import calibrate as build
    from facetrail.evaluation.lfw import all_images, open_lfw

    try:
        apply_device(device)
        people = all_images(open_lfw(data))
        run = _embed(
            data, [p for images in people.values() for p in images], model, flip, workers, cache_dir, fusion_weight
        )
    except FaceTrailError as exc:
        fail(exc, as_json)
    emb = run.embeddings
    labels = np.array([p.split("/")[0] for p in emb.paths])
    found = emb.found
    source = (
        f"LFW deep-funneled, all {len(emb.paths):,} images of {len(people):,} people; "
        f"{int((~found).sum())} images without a detected face excluded; impostor scores = every pair of "
        f"images of different people; face choice: largest face nearest the centre"
    )
    calibration = build(emb.model_id, emb.vectors[found], labels[found], source)
    target = out or Path(__file__).resolve().parents[1] / "faces" / "calibration" / f"{_label(emb.model_id)}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(table_json(calibration.to_json()))
    summary = {
        "model_id": emb.model_id,
        "table": str(target),
        "impostor_comparisons": calibration.impostor_comparisons,
        "genuine_comparisons": calibration.genuine_comparisons,
        "threshold_at_fmr": {f"{f:g}": round(calibration.threshold_for(f), 5) for f in (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)},
    }
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        Console().print_json(json.dumps(summary))


@app.command("fusion-weight")
def fusion_weight_cmd(
    data: DATA_OPTION,
    flip: FLIP_OPTION = None,
    as_json: JSON_OPTION = False,
    workers: WORKERS_OPTION = 2,
    cache_dir: CACHE_OPTION = None,
    view2_folds: Annotated[
        int | None,
        typer.Option(
            "--view2-folds",
            min=2,
            help="Instead: nested k-fold on the first N View 2 folds "
            "(w and threshold chosen on the training folds, accuracy on the held-out fold).",
        ),
    ] = None,
) -> None:
    """Choose the SFace weight of the fusion on LFW View 1 (pairsDevTrain.txt), never on the test folds."""
    from facetrail.evaluation.lfw import open_lfw, pair_images, read_pairs
    from facetrail.evaluation.runner import choose_fusion_weight, fusion_nested_kfold

    try:
        lfw_data = open_lfw(data)
        if view2_folds is not None:
            pairs = [p for p in read_pairs(lfw_data.root / "pairs.txt") if p.fold < view2_folds]
        else:
            pairs = read_pairs(lfw_data.root / "pairsDevTrain.txt")
        paths = pair_images(pairs)
        sface = _embed(data, paths, "sface", flip, workers, cache_dir).embeddings
        dlib = _embed(data, paths, "dlib", flip, workers, cache_dir).embeddings
    except FaceTrailError as exc:
        fail(exc, as_json)
    if view2_folds is not None:
        print(json.dumps(fusion_nested_kfold(sface, dlib, pairs), indent=2))
        return
    same = np.array([p.same for p in pairs])
    weight, rows = choose_fusion_weight(sface, dlib, [p.a for p in pairs], [p.b for p in pairs], same)
    if as_json:
        print(json.dumps({"weight": weight, "grid": rows}, indent=2))
        return
    table = Table(title="Fusion weight on LFW DevTrain (score = w²·sface + (1−w²)·dlib)")
    for col in ("w", "accuracy", "AUC"):
        table.add_column(col)
    for row in rows:
        mark = " ←" if row["weight"] == weight else ""
        table.add_row(f"{row['weight']:.2f}{mark}", f"{row['accuracy'] * 100:.2f}%", f"{row['auc']:.5f}")
    Console().print(table)


@app.command("compare")
def compare(
    out: Annotated[Path, typer.Option("--out", help="Folder of earlier 'eval lfw' runs (lfw-scores-*.npz).")] = Path(
        "eval-out"
    ),
) -> None:
    """One ROC and one DET plot with every model measured into the same --out folder."""
    from facetrail.evaluation.plots import plot_det, plot_roc
    from facetrail.evaluation.verification import roc_points

    curves = {}
    for path in sorted(out.glob("lfw-scores-*.npz")):
        with np.load(path) as data:
            curves[path.stem.removeprefix("lfw-scores-")] = roc_points(data["scores"], data["same"].astype(bool))
    if not curves:
        err_console.print(f"[red]no lfw-scores-*.npz in {out}: run 'facetrail eval lfw --out {out}' first[/]")
        raise typer.Exit(3)
    plot_roc(curves, out / "lfw-roc-all.png")
    plot_det(curves, out / "lfw-det-all.png")
    Console().print(f"{len(curves)} model(s) plotted: {out}/lfw-roc-all.png, {out}/lfw-det-all.png")
