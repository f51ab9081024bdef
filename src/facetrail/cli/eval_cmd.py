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
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table

from facetrail.cli.common import DeviceOption, apply_device, fail
from facetrail.errors import FaceTrailError

if TYPE_CHECKING:
    from facetrail.evaluation.degraded import SweepLevel
    from facetrail.evaluation.embedding import EmbeddingSet
    from facetrail.evaluation.lfw import Pair
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
DEGRADE_OPTION = Annotated[
    str | None,
    typer.Option(
        "--degrade",
        help="Degrade the probes only, e.g. 'eye=16+jpeg=20' (grammar: docs/accuracy.md); the other side stays clean.",
    ),
]
SEED_OPTION = Annotated[int, typer.Option("--seed", help="Base seed of the per-image degradation seeds.")]
PER_FOLD_OPTION = Annotated[
    int | None,
    typer.Option(
        "--pairs-per-fold",
        min=1,
        help="With --degrade: the first K same and K different pairs of every fold (docs/accuracy.md: 30).",
    ),
]


def _arithmetic() -> str:
    """'bf16' or 'fp32': what the SFace embedder computes in under the current settings (docs/pipeline.md)."""
    from facetrail.config import get_settings
    from facetrail.faces.embed import resolve_arithmetic

    settings = get_settings()
    return resolve_arithmetic(settings.embedding.backend, settings.embedding.precision, settings.compute.device)


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
    degrade: DEGRADE_OPTION = None,
    seed: SEED_OPTION = 0,
    pairs_per_fold: PER_FOLD_OPTION = None,
) -> None:
    """LFW View 2 verification: 10-fold accuracy, ROC AUC, TAR at FAR 1e-2 / 1e-3, ROC and DET plots."""
    from facetrail.evaluation.lfw import open_lfw, pair_images, read_pairs
    from facetrail.evaluation.plots import plot_det, plot_roc
    from facetrail.evaluation.verification import roc_points, verify_pairs

    try:
        apply_device(device)
    except FaceTrailError as exc:
        fail(exc, as_json)
    if degrade is not None or pairs_per_fold is not None:
        _lfw_degraded(
            data, model, flip, out, as_json, workers, cache_dir, folds, degrade or "clean", seed, pairs_per_fold
        )
        return
    start = time.perf_counter()
    try:
        lfw_data = open_lfw(data)
        pairs = [p for p in read_pairs(lfw_data.root / "pairs.txt") if p.fold < folds]
        run = _embed(data, pair_images(pairs), model, flip, workers, cache_dir, fusion_weight)
    except FaceTrailError as exc:
        fail(exc, as_json)
    report, scores, same = verify_pairs(run.embeddings, pairs)
    rate = run.images_per_second
    report.extra = {
        "detector_id": run.embeddings.detector_id,
        "embedder_arithmetic": "fp32" if model == "dlib" else _arithmetic(),  # fusion: its SFace half
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


def _degraded_models(model: str | None) -> list[str]:
    from facetrail.config import get_settings

    chosen = model or get_settings().embedding.embedder
    return ["sface", "dlib"] if chosen == "fusion" else [chosen]


def _run_levels(
    data: Path,
    specs: list[str],
    models: list[str],
    flip: bool | None,
    workers: int,
    cache_dir: Path | None,
    seed: int,
    pairs_per_fold: int | None,
    folds: int = 10,
) -> tuple[list[Pair], list[SweepLevel]]:
    """Every level for every model: clean second images from the embedding cache, degraded probes."""
    from facetrail.evaluation.degrade import parse_spec
    from facetrail.evaluation.degraded import subset_pairs, sweep_level
    from facetrail.evaluation.embedding import DEFAULT_CACHE_DIR
    from facetrail.evaluation.lfw import open_lfw, read_pairs
    from facetrail.evaluation.runner import settings_for

    parsed = [parse_spec(s) for s in specs]  # every spec is checked before anything runs
    lfw_data = open_lfw(data)
    pairs = subset_pairs([p for p in read_pairs(lfw_data.root / "pairs.txt") if p.fold < folds], pairs_per_fold)
    seconds = sorted({p.b for p in pairs})
    clean = {m: _embed(data, seconds, m, flip, workers, cache_dir).embeddings for m in models}
    settings = settings_for(None, flip)
    levels = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err_console) as bar:
        overall = bar.add_task("levels", total=len(parsed))
        for spec in parsed:
            task = bar.add_task(f"probes {spec.text}", total=len(pairs))

            def progress(done: int, total: int, task: TaskID = task) -> None:
                bar.update(task, completed=done, total=total)

            levels.append(
                sweep_level(
                    lfw_data.images_dir,
                    pairs,
                    spec,
                    clean,
                    settings,
                    seed=seed,
                    cache_dir=cache_dir or DEFAULT_CACHE_DIR,
                    workers=workers,
                    progress=progress,
                )
            )
            bar.update(task, visible=False)
            bar.advance(overall)
    return pairs, levels


def _lfw_degraded(
    data: Path,
    model: str | None,
    flip: bool | None,
    out: Path,
    as_json: bool,
    workers: int,
    cache_dir: Path | None,
    folds: int,
    spec: str,
    seed: int,
    pairs_per_fold: int | None,
) -> None:
    try:
        pairs, levels = _run_levels(
            data, [spec], _degraded_models(model), flip, workers, cache_dir, seed, pairs_per_fold, folds
        )
    except FaceTrailError as exc:
        fail(exc, as_json)
    level = levels[0]
    wanted = model or "sface"
    label = next((k for k in level.summaries if k.startswith("fusion")), None) if wanted == "fusion" else None
    label = label or next(iter(level.summaries))
    summary = dict(level.summaries[label])
    summary["protocol"] = (
        f"LFW View 2 pairs ({len(pairs)}: "
        + ("all" if pairs_per_fold is None else f"first {pairs_per_fold} same + {pairs_per_fold} different per fold")
        + "); the first image of each pair degraded, the second clean; each fold's threshold chosen on the other folds"
    )
    summary["seed"] = seed
    out.mkdir(parents=True, exist_ok=True)
    safe = level.spec.replace("+", "_").replace("=", "").replace("@", "at")
    (out / f"lfw-degraded-{safe}-{label}.json").write_text(json.dumps(summary, indent=2) + "\n")
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    table = Table(title=f"LFW View 2, probes degraded by {level.spec} — {summary['model_id']}")
    table.add_column("measure")
    table.add_column("value")
    acc, std = float(summary["accuracy_mean"]), float(summary["accuracy_std"])  # type: ignore[arg-type]
    table.add_row("pairs", str(summary["pairs"]))
    table.add_row("accuracy (k-fold)", f"{acc * 100:.2f}% ± {std * 100:.2f}")
    table.add_row("ROC AUC", str(summary["roc_auc"]))
    table.add_row("pairs with no face", str(summary["no_face_pairs"]))
    table.add_row("probe inter-eye distance (median px)", str(summary["probe_eye_distance_median"]))
    Console().print(table)


@app.command("degrade-sweep")
def degrade_sweep(
    data: DATA_OPTION,
    out: OUT_OPTION = Path("eval-out"),
    levels: Annotated[
        str | None,
        typer.Option("--levels", help="Comma-separated specs (default: clean, eye 48-12, and one of each kind)."),
    ] = None,
    models: Annotated[
        str, typer.Option("--models", help="Comma-separated: sface, dlib (fusion if both).")
    ] = "sface,dlib",
    flip: FLIP_OPTION = None,
    workers: WORKERS_OPTION = 2,
    cache_dir: CACHE_OPTION = None,
    seed: SEED_OPTION = 0,
    pairs_per_fold: PER_FOLD_OPTION = 30,
) -> None:
    """Every degradation level for every model on one deterministic pair subset: tables, plot, scores."""
    from facetrail.evaluation.degraded import DEFAULT_LEVELS, save_sweep, sweep_markdown
    from facetrail.evaluation.plots import plot_accuracy_vs_eye

    specs = [s.strip() for s in levels.split(",")] if levels else list(DEFAULT_LEVELS)
    chosen = [m.strip() for m in models.split(",") if m.strip()]
    start = time.perf_counter()
    try:
        pairs, results = _run_levels(data, specs, chosen, flip, workers, cache_dir, seed, pairs_per_fold)
    except FaceTrailError as exc:
        fail(exc, False)
    out.mkdir(parents=True, exist_ok=True)
    labels = list(dict.fromkeys(k for lv in results for k in lv.summaries))
    default = next((k for k in labels if k.startswith("sface")), labels[0])
    baseline = next((k for k in labels if k.startswith("dlib")), default)
    summary = {
        "protocol": f"LFW View 2, first {pairs_per_fold} same + {pairs_per_fold} different pairs of every fold "
        f"({len(pairs)} pairs); first image degraded, second clean; seed {seed}",
        "wall_seconds": round(time.perf_counter() - start, 1),
        "levels": [{"degrade": lv.spec, "images_degraded_now": lv.computed, "models": lv.summaries} for lv in results],
    }
    (out / "degrade-sweep.json").write_text(json.dumps(summary, indent=2) + "\n")
    save_sweep(results, pairs, out / "degrade-sweep-scores.npz")
    (out / "degrade-sweep.md").write_text(sweep_markdown(results, default, baseline))
    curves: dict[str, list[tuple[float, float]]] = {k: [] for k in labels}
    clean_acc: dict[str, float] = {}
    for lv in results:
        for k, s in lv.summaries.items():
            if lv.spec == "clean":
                clean_acc[k] = float(s["accuracy_mean"])  # type: ignore[arg-type]
            elif lv.spec.startswith("eye=") and "+" not in lv.spec:
                curves[k].append((float(lv.spec[4:]), float(s["accuracy_mean"])))  # type: ignore[arg-type]
    plot_accuracy_vs_eye(
        curves, clean_acc, out / "degrade-accuracy-vs-eye.png", f"LFW, degraded probes ({len(pairs)} pairs)"
    )
    Console().print((out / "degrade-sweep.md").read_text())
    Console().print(f"written to {out}/: degrade-sweep.json, degrade-sweep.md, degrade-accuracy-vs-eye.png")


@app.command("quality-table")
def quality_table(
    sweep: Annotated[Path, typer.Option("--sweep", help="Folder of an 'eval degrade-sweep' run.")] = Path("eval-out"),
    out: Annotated[
        Path | None, typer.Option("--out", help="Folder for the tables (default: the package's calibration folder).")
    ] = None,
) -> None:
    """The quality expectation tables (one per model in the sweep) that the quality verdict quotes."""
    from facetrail.evaluation.degraded import load_sweep
    from facetrail.evaluation.quality_table import build_quality_table

    scores_file = sweep / "degrade-sweep-scores.npz"
    summary_file = sweep / "degrade-sweep.json"
    if not scores_file.is_file() or not summary_file.is_file():
        err_console.print(f"[red]no degrade-sweep results in {sweep}: run 'facetrail eval degrade-sweep' first[/]")
        raise typer.Exit(3)
    summary = json.loads(summary_file.read_text())
    specs, same, folds, scores, quality = load_sweep(scores_file)
    ids = {_label(m["model_id"]): m["model_id"] for lv in summary["levels"] for m in lv["models"].values()}
    target = out or Path(__file__).resolve().parents[1] / "faces" / "calibration"
    target.mkdir(parents=True, exist_ok=True)
    source = (
        f"facetrail eval degrade-sweep: {summary['protocol']}; "
        f"built by 'facetrail eval quality-table --sweep DIR' from degrade-sweep-scores.npz"
    )
    for label, model_id in ids.items():
        try:
            table = build_quality_table(model_id, specs, same, folds, scores, quality, source=source, label=label)
        except ValueError as exc:
            err_console.print(f"[red]{exc}[/]")
            raise typer.Exit(3) from None
        path = target / f"quality-{label}.json"
        path.write_text(json.dumps(table, indent=1) + "\n")
        Console().print(f"{path}: threshold {table['threshold']}, clean accuracy {table['clean_accuracy']}")


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
    per_subject: Annotated[
        bool,
        typer.Option(
            "--per-subject",
            help="Several photos per subject (LFW people with >= 3: all but one enrolled): face lists against "
            "subject lists, and the subject-level FMR checked.",
        ),
    ] = False,
    rules: Annotated[
        str, typer.Option("--rules", help="With --per-subject: subject score rules to compare, comma-separated.")
    ] = "max,mean_top2,mean_top3,lse0.02,lse0.05",
    device: DeviceOption = None,
    degrade: DEGRADE_OPTION = None,
    seed: SEED_OPTION = 0,
    probes_every: Annotated[
        int, typer.Option("--probes-every", min=1, help="With --degrade: every K-th mated and non-mated probe.")
    ] = 1,
    groups: Annotated[
        Path | None,
        typer.Option(
            "--groups", help="CSV manifest: image,<group columns> (docs/accuracy.md): FNIR and FMR per group."
        ),
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option("--threshold", help="With --groups: the operational threshold (default: calibrated, verify FMR)."),
    ] = None,
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
    if per_subject:
        probes = None
        if degrade is not None:
            probes = _degraded_subject_probes(data, people, run.embeddings, degrade, seed, flip, workers, cache_dir)
        _identify_per_subject(people, run.embeddings, rules, out, as_json, probes, degrade)
        return
    if degrade is not None or groups is not None:
        _identify_extras(
            data,
            people,
            run.embeddings,
            model,
            flip,
            out,
            as_json,
            workers,
            cache_dir,
            fusion_weight,
            degrade,
            seed,
            probes_every,
            groups,
            threshold,
        )
        return
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


def _degraded_subject_probes(
    data: Path,
    people: dict[str, list[str]],
    clean: object,
    degrade: str,
    seed: int,
    flip: bool | None,
    workers: int,
    cache_dir: Path | None,
) -> object:
    """SFace embeddings of the per-subject protocol's probes, degraded by SPEC (the gallery stays clean)."""
    from facetrail.evaluation.degrade import parse_spec
    from facetrail.evaluation.degraded import degraded_embeddings
    from facetrail.evaluation.embedding import DEFAULT_CACHE_DIR, EmbeddingSet
    from facetrail.evaluation.identification import split_subjects
    from facetrail.evaluation.lfw import open_lfw
    from facetrail.evaluation.runner import settings_for

    assert isinstance(clean, EmbeddingSet)
    split = split_subjects(people, clean)
    paths = split.mated_probes + split.nonmated_probes
    run = degraded_embeddings(
        open_lfw(data).images_dir,
        paths,
        parse_spec(degrade),
        ["sface"],
        settings_for(None, flip),
        seed=seed,
        cache_dir=cache_dir or DEFAULT_CACHE_DIR,
        workers=workers,
    )
    return run.embeddings["sface"].subset(paths)


def _identify_per_subject(
    people: dict[str, list[str]],
    embeddings: object,
    rules: str,
    out: Path,
    as_json: bool,
    probes: object = None,
    degrade: str | None = None,
) -> None:
    from facetrail.evaluation.embedding import EmbeddingSet
    from facetrail.evaluation.identification import identify_subjects
    from facetrail.faces.calibration import load_calibration
    from facetrail.faces.subject_score import check_rule

    assert isinstance(embeddings, EmbeddingSet)
    try:
        chosen = tuple(check_rule(r.strip()) for r in rules.split(",") if r.strip())
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--rules") from None
    try:
        fmr_at = load_calibration(embeddings.model_id).fmr_at
    except FaceTrailError:
        fmr_at = None  # no shipped table for this model: lists are compared, the FMR check is skipped
    assert probes is None or isinstance(probes, EmbeddingSet)
    report = identify_subjects(people, embeddings, chosen, fmr_at, probes)
    if degrade is not None:
        report = {"probes_degraded": degrade, **report}
    out.mkdir(parents=True, exist_ok=True)
    name = _label(embeddings.model_id)
    suffix = "" if degrade is None else "-" + degrade.replace("+", "_").replace("=", "").replace("@", "at")
    (out / f"identify-subjects{suffix}-{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    if as_json:
        print(json.dumps(report, indent=2))
        return
    table = Table(title=f"LFW 1:N, several photos per subject — {embeddings.model_id}")
    for column in ("list", "entries", "rank 1", "rank 5", "rank 20", "FNIR @ FPIR 1e-2", "FNIR @ FPIR 1e-3"):
        table.add_column(column)
    for key, value in report.items():
        if isinstance(value, dict) and "rank_1" in value:
            open_set = value["open_set_rank1_fnir_at_fpir"]
            table.add_row(
                key,
                str(value["list_entries"]),
                *(f"{value[k] * 100:.2f}%" for k in ("rank_1", "rank_5", "rank_20")),
                *(f"{open_set[f]['fnir'] * 100:.2f}% ({open_set[f]['threshold']})" for f in ("0.01", "0.001")),
            )
    Console().print(table)


def _identify_extras(
    data: Path,
    people: dict[str, list[str]],
    clean: EmbeddingSet,
    model: str | None,
    flip: bool | None,
    out: Path,
    as_json: bool,
    workers: int,
    cache_dir: Path | None,
    fusion_weight: float | None,
    degrade: str | None,
    seed: int,
    probes_every: int,
    groups: Path | None,
    threshold: float | None,
) -> None:
    """``eval identify --degrade`` (degraded probes, clean gallery) and/or ``--groups`` (differentials)."""
    from facetrail.evaluation.plots import plot_cmc

    out.mkdir(parents=True, exist_ok=True)
    name = _label(clean.model_id)
    summary: dict[str, object] = {}
    try:
        if degrade is not None:
            from facetrail.evaluation.degrade import parse_spec
            from facetrail.evaluation.degraded import (
                degraded_embeddings,
                fuse_sets,
                identification_probes,
                identify_degraded,
            )
            from facetrail.evaluation.embedding import DEFAULT_CACHE_DIR
            from facetrail.evaluation.lfw import open_lfw
            from facetrail.evaluation.runner import settings_for

            spec = parse_spec(degrade)
            mated, nonmated = identification_probes(people, clean, probes_every)
            models = _degraded_models(model)
            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
            with Progress(*columns, console=err_console) as bar:
                task = bar.add_task(f"probes {spec.text}", total=len(mated) + len(nonmated))
                run = degraded_embeddings(
                    open_lfw(data).images_dir,
                    mated + nonmated,
                    spec,
                    models,
                    settings_for(None, flip),
                    seed=seed,
                    cache_dir=cache_dir or DEFAULT_CACHE_DIR,
                    workers=workers,
                    progress=lambda done, total: bar.update(task, completed=done, total=total),
                )
            sets = run.embeddings
            probes = fuse_sets(sets["sface"], sets["dlib"], fusion_weight) if len(models) == 2 else sets[models[0]]
            report, curve = identify_degraded(people, clean, probes, spec.text, probes_every)
            safe = spec.text.replace("+", "_").replace("=", "").replace("@", "at")
            plot_cmc(curve, f"{name} ({spec.text})", out / f"lfw-cmc-{name}-{safe}.png")
            (out / f"identify-degraded-{safe}-{name}.json").write_text(json.dumps(report, indent=2) + "\n")
            summary["degraded"] = report
        if groups is not None:
            from facetrail.config import get_settings
            from facetrail.evaluation.differentials import group_differentials, plot_differentials, read_manifest
            from facetrail.faces.calibration import load_calibration

            manifest = read_manifest(groups, clean.paths)
            if threshold is None:
                target = get_settings().verify.target_fmr
                threshold = load_calibration(clean.model_id).threshold_for(target)
                source = f"the shipped calibration table's score at FMR {target:g} (verify.target_fmr)"
            else:
                source = "given with --threshold"
            report = group_differentials(people, clean, manifest, threshold, source)
            report["manifest"] = str(groups)
            plot_differentials(report, out, name)
            (out / f"groups-{name}.json").write_text(json.dumps(report, indent=2) + "\n")
            summary["groups"] = report
    except FaceTrailError as exc:
        fail(exc, as_json)
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    if "degraded" in summary:
        Console().print_json(json.dumps(summary["degraded"]))
    if "groups" in summary:
        g = summary["groups"]
        for attribute, part in g["attributes"].items():  # type: ignore[index]
            table = Table(title=f"{attribute}: FNIR and impostor FMR at threshold {g['threshold']}")  # type: ignore[index]
            for col in ("group", "images", "mated searches", "rank 1", "FNIR", "FMR within", "impostor pairs"):
                table.add_column(col)
            for group, row in part["groups"].items():
                table.add_row(
                    group,
                    str(row["images"]),
                    str(row["mated_searches"]),
                    str(row["rank_1"]),
                    str(row["fnir"]),
                    "–" if row["fmr_within"] is None else f"{row['fmr_within']:.2e}",
                    str(row["impostor_pairs_within"]),
                )
            Console().print(table)
            Console().print(f"FMR within groups {part['fmr_within_groups']}, across groups {part['fmr_across_groups']}")
        Console().print(f"written to {out}/groups-{name}.json and groups-*.png")


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
