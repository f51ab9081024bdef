"""``facetrail gallery create|list|show|subject|delete-subject|delete-face`` and ``facetrail enroll``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from facetrail.cli.common import (
    DeviceOption,
    JsonOption,
    TokenOption,
    acting_user,
    apply_device,
    cli_actor,
    cli_context,
    console,
    err_console,
    fail,
    open_cli_context,
    print_json,
)
from facetrail.errors import BadInputError, FaceTrailError
from facetrail.policy.roles import Permission

gallery_app = typer.Typer(help="Galleries: lawfully held sets of enrolled faces.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(gallery_app, name="gallery")
    app.command("enroll")(enroll_command)


def _show_summary(summary: dict[str, Any]) -> None:
    table = Table(title=f"gallery {summary['name']}", show_header=False)
    for key in (
        "name",
        "description",
        "legal_basis",
        "source_system",
        "retention_rule",
        "model_id",
        "keep_images",
        "subjects",
        "faces",
        "created_at",
        "created_by",
    ):
        table.add_row(key.replace("_", " "), str(summary[key]))
    console.print(table)


@gallery_app.command("create")
def create_command(
    name: Annotated[str, typer.Argument(help="Unique gallery name.")],
    legal_basis: Annotated[
        str,
        typer.Option("--legal-basis", help="The law or authority under which the images are held and may be searched."),
    ],
    source: Annotated[str, typer.Option("--source", help="The source system the images come from.")],
    description: Annotated[str, typer.Option("--description")] = "",
    retention_rule: Annotated[str, typer.Option("--retention-rule", help="When records must be removed.")] = "",
    keep_images: Annotated[
        bool,
        typer.Option("--keep-images/--no-keep-images", help="Keep the original images in the content-addressed store."),
    ] = True,
    as_json: JsonOption = False,
) -> None:
    """Create an empty gallery, bound for life to the configured embedding model."""
    from facetrail.gallery.service import create_gallery

    with cli_context(json=as_json) as ctx:
        summary = create_gallery(
            ctx,
            name,
            legal_basis=legal_basis,
            source_system=source,
            actor=cli_actor(),
            description=description,
            retention_rule=retention_rule,
            keep_images=keep_images,
        )
    if as_json:
        print_json({"ok": True, "gallery": summary.to_dict()})
    else:
        _show_summary(summary.to_dict())


@gallery_app.command("list")
def list_command(as_json: JsonOption = False) -> None:
    """All galleries with their subject and face counts."""
    from facetrail.gallery.service import list_galleries

    ctx = open_cli_context()
    try:
        galleries = [g.to_dict() for g in list_galleries(ctx)]
    finally:
        ctx.close()
    if as_json:
        print_json({"ok": True, "galleries": galleries})
        return
    table = Table(title=f"{len(galleries)} galler{'y' if len(galleries) == 1 else 'ies'}")
    for col in ("name", "subjects", "faces", "source", "legal basis", "model"):
        table.add_column(col)
    for g in galleries:
        table.add_row(
            g["name"], str(g["subjects"]), str(g["faces"]), g["source_system"], g["legal_basis"], g["model_id"]
        )
    console.print(table)


@gallery_app.command("show")
def show_command(name: Annotated[str, typer.Argument()], as_json: JsonOption = False) -> None:
    """One gallery: provenance fields, model id, subject and face counts."""
    from facetrail.gallery.service import get_gallery

    with cli_context(json=as_json) as ctx:
        summary = get_gallery(ctx, name).to_dict()
    if as_json:
        print_json({"ok": True, "gallery": summary})
    else:
        _show_summary(summary)


@gallery_app.command("subject")
def subject_command(
    name: Annotated[str, typer.Argument(help="Gallery name.")],
    external_id: Annotated[str, typer.Argument(help="Subject external id.")],
    as_json: JsonOption = False,
) -> None:
    """One subject and its faces."""
    from facetrail.gallery.service import get_subject

    with cli_context(json=as_json) as ctx:
        subject = get_subject(ctx, name, external_id)
    if as_json:
        print_json({"ok": True, "subject": subject})
        return
    console.print(f"subject [bold]{subject['external_id']}[/] ({subject['name'] or 'no name'}) in {name}")
    table = Table()
    for col in ("face id", "sha256", "quality", "source record", "capture date", "enrolled"):
        table.add_column(col)
    for f in subject["faces"]:
        table.add_row(
            str(f["face_id"]),
            f["image_sha256"][:16],
            str(f["quality"]),
            f["source_record_id"] or "",
            f["capture_date"] or "",
            f["enrolled_at"],
        )
    console.print(table)


def _delete(
    name: str, *, external_id: str | None, face_id: int | None, reason: str, token: str | None, as_json: bool
) -> None:
    """delete-subject and delete-face: one certified deletion (facetrail.retention.deletion), run as the
    signed-in administrator behind --token."""
    from facetrail.retention.deletion import delete_enrolled

    with cli_context(json=as_json) as ctx:
        target = f"{name}:{external_id if face_id is None else f'face {face_id}'}"
        who = acting_user(ctx, token, Permission.GALLERY_MANAGE, action="gallery.delete", target=target)
        result = delete_enrolled(ctx, name, external_id=external_id, face_id=face_id, actor=who.actor, reason=reason)
    if as_json:
        print_json({"ok": True, **result})
    elif face_id is not None:
        console.print(f"deleted face {face_id} from {name}")
    else:
        console.print(f"deleted subject {external_id} and {len(result['deleted_face_ids'])} face(s) from {name}")


@gallery_app.command("delete-subject")
def delete_subject_command(
    name: Annotated[str, typer.Argument(help="Gallery name.")],
    external_id: Annotated[str, typer.Argument(help="Subject external id.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded in the audit log).")] = "",
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete a subject, its faces, their vectors and their stored images (as the user behind --token)."""
    _delete(name, external_id=external_id, face_id=None, reason=reason, token=token, as_json=as_json)


@gallery_app.command("delete-face")
def delete_face_command(
    name: Annotated[str, typer.Argument(help="Gallery name.")],
    face_id: Annotated[int, typer.Argument(help="Face id.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded in the audit log).")] = "",
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete one face, its vector and its stored image (as the user behind --token)."""
    _delete(name, external_id=None, face_id=face_id, reason=reason, token=token, as_json=as_json)


class _RichProgress:
    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: TaskID | None = None

    def start(self, total: int) -> None:
        self.task = self.progress.add_task("enrolling", total=total, status="", rate="")

    def advance(self, summary: Any) -> None:
        if self.task is not None:
            speed = self.progress.tasks[0].speed
            self.progress.update(
                self.task,
                completed=summary.processed,
                rate=f"{speed:.1f} img/s" if speed else "",
                status=(
                    f"{summary.enrolled} enrolled, {summary.skipped_duplicate} skipped, "
                    f"{len(summary.rejected)} rejected"
                ),
            )


def enroll_command(
    paths: Annotated[list[str] | None, typer.Argument(help="Image files and folders (walked recursively).")] = None,
    gallery: Annotated[str, typer.Option("--gallery", help="Gallery to enroll into.")] = "",
    manifest: Annotated[
        Path | None, typer.Option("--manifest", help="CSV or JSONL manifest (see docs/enrollment.md).")
    ] = None,
    subject_from: Annotated[
        str,
        typer.Option(
            "--subject-from",
            help="Subject id for PATH mode: auto (folder name inside a given folder, else file stem), parent, or stem.",
        ),
    ] = "auto",
    largest_face: Annotated[
        bool,
        typer.Option(
            "--largest-face", help="Enroll the largest face of an image with several, instead of rejecting it."
        ),
    ] = False,
    rejects: Annotated[
        Path | None,
        typer.Option("--rejects", help="CSV of rejected files (default: DATA_DIR/enroll-rejects/GALLERY-TIME.csv)."),
    ] = None,
    workers: Annotated[int, typer.Option("--workers", min=0, help="Worker processes (0: in this process).")] = 2,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Faces per committed batch.")] = 64,
    max_rows: Annotated[
        int,
        typer.Option(
            "--max-rows", min=1, envvar="FACETRAIL_MANIFEST_MAX_ROWS", help="Refuse manifests with more rows than this."
        ),
    ] = 1_000_000,
    device: DeviceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Enroll local images into a gallery. Resumable: rerun the same command to finish an interrupted run."""
    from facetrail.gallery.enroll import EnrollOptions, default_rejects_path, enroll, write_rejects_csv
    from facetrail.gallery.manifest import DEFAULT_MAX_ROWS, items_from_paths, read_manifest

    try:
        apply_device(device)
        if not gallery:
            raise BadInputError("--gallery is required", field="gallery")
        if bool(paths) == (manifest is not None):
            raise BadInputError("give either PATH... or --manifest FILE (one of them)")
        if subject_from not in ("auto", "parent", "stem"):
            raise BadInputError(f"--subject-from must be auto, parent or stem, not {subject_from!r}")
        items = (
            read_manifest(manifest, max_rows or DEFAULT_MAX_ROWS)
            if manifest is not None
            else items_from_paths(paths or [], subject_from)  # type: ignore[arg-type]
        )
    except FaceTrailError as exc:
        fail(exc, as_json)

    ctx = open_cli_context()
    options = EnrollOptions(largest_face=largest_face, workers=workers, batch_size=batch_size)
    source = f"manifest:{manifest}" if manifest is not None else f"paths:{len(paths or [])}"
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
    )
    try:
        with Progress(*columns, console=err_console, disable=as_json) as bar:
            summary = enroll(
                ctx, gallery, items, actor=cli_actor(), options=options, progress=_RichProgress(bar), source=source
            )
        rejects_path = write_rejects_csv(rejects or default_rejects_path(ctx.data_dir, gallery), summary.rejected)
    except FaceTrailError as exc:
        fail(exc, as_json)
    finally:
        ctx.close()

    result = {**summary.to_dict(), "rejects_csv": str(rejects_path)}
    if as_json:
        print_json({"ok": not summary.interrupted, **result})
    else:
        state = "[yellow]interrupted[/] (rerun the same command to finish)" if summary.interrupted else "done"
        console.print(
            f"enrollment into [bold]{gallery}[/] {state} in {summary.seconds:.1f}s: "
            f"{summary.enrolled} enrolled, {summary.skipped_duplicate} skipped (already in the gallery), "
            f"{len(summary.rejected)} rejected, {summary.subjects_created} new subject(s)"
        )
        for reason, count in summary.rejected_by_reason.items():
            console.print(f"  rejected {count:>6}  {reason}")
        console.print(f"rejected files and why: {rejects_path}")
    if summary.interrupted:
        raise typer.Exit(130)
