"""``facetrail init`` and ``facetrail index rebuild|check``: set up a data directory; keep indexes honest."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from facetrail.cli.common import (
    JsonOption,
    cli_actor,
    cli_context,
    console,
    err_console,
    fail,
    open_cli_context,
    print_json,
)
from facetrail.errors import FaceTrailError

index_app = typer.Typer(
    help="The per-gallery vector indexes (derived from the database; rebuildable).", no_args_is_help=True
)

MISMATCH_EXIT = 1  # ``index check`` found an index that did not match the database (it was repaired)


def register(app: typer.Typer) -> None:
    app.command("init")(init_command)
    app.add_typer(index_app, name="index")


def init_command(
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Data directory (default: FACETRAIL_DATA_DIR or ./facetrail-data)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Create the data directory and database schema (or upgrade it) and the audit checkpoint key."""
    from facetrail.audit.log import append_audit, load_or_create_key
    from facetrail.config import get_settings
    from facetrail.context import open_context
    from facetrail.gallery.index_sync import index_dir
    from facetrail.gallery.search import results_root

    settings = get_settings()
    if data_dir is not None:
        settings = settings.model_copy(update={"data_dir": data_dir})
    try:
        ctx = open_context(settings)
    except FaceTrailError as exc:
        fail(exc, as_json)
    try:
        key_existed = ctx.audit_key_path.exists()
        load_or_create_key(ctx.audit_key_path)
        where = {
            "data_dir": str(ctx.data_dir.resolve()),
            "database": _redacted(settings.resolved_database_url),
            "audit_key": str(ctx.audit_key_path.resolve()),
            "audit_key_created": not key_existed,
            "audit_checkpoints": str(ctx.checkpoints_path.resolve()),
            "index_dir": str(index_dir(ctx).resolve()),
            "results_dir": str(results_root(ctx).resolve()),
            "index_kind": settings.index.kind,
        }
        with ctx.db.transaction() as session:
            append_audit(
                session, actor=cli_actor(), action="system.init", target=str(ctx.data_dir.resolve()), details=where
            )
    finally:
        ctx.close()
    if as_json:
        print_json({"ok": True, **where})
        return
    table = Table(title="FaceTrail is ready", show_header=False)
    for key, value in where.items():
        table.add_row(key.replace("_", " "), escape(str(value)))
    console.print(table)
    console.print("[dim]Keep the audit key outside the database host in production (docs/audit.md).[/]")


def _redacted(url: str) -> str:
    """A database URL without its password."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _galleries(ctx: Any, name: str | None) -> list[tuple[int, str]]:
    from sqlalchemy import select

    from facetrail.gallery.service import load_gallery
    from facetrail.storage.models import Gallery

    with ctx.db.read() as session:
        if name is not None:
            gallery = load_gallery(session, name)
            return [(gallery.id, gallery.name)]
        return [(row.id, row.name) for row in session.execute(select(Gallery.id, Gallery.name).order_by(Gallery.id))]


@index_app.command("rebuild")
def rebuild_command(
    gallery: Annotated[str | None, typer.Option("--gallery", help="Only this gallery (default: all).")] = None,
    device: Annotated[
        str | None,
        typer.Option(
            "--device",
            help="'cuda' trains approximate indexes' coarse quantiser on the GPU (needs faiss with GPU support);"
            " the index built is the same kind and format. Default: cpu.",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Rebuild gallery indexes from the database (the system of record). Audited as 'index.rebuild'."""
    from facetrail.gallery.index_sync import rebuild_index
    from facetrail.index import use_training_device

    try:
        use_training_device(device or "cpu")
    except FaceTrailError as exc:
        fail(exc, as_json)
    ctx = open_cli_context()
    reports = []
    try:
        targets = _galleries(ctx, gallery)
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err_console,
            disable=as_json,
        ) as progress:
            for gallery_id, name in targets:
                task = progress.add_task(f"gallery {escape(name)}", total=None)

                def advance(done: int, total: int, task_id: Any = task) -> None:
                    progress.update(task_id, completed=done, total=total)

                report = rebuild_index(ctx, gallery_id, actor=cli_actor(), progress=advance)
                reports.append({"gallery": name, **report.to_dict()})
    except FaceTrailError as exc:
        fail(exc, as_json)
    finally:
        ctx.close()
    if as_json:
        print_json({"ok": True, "rebuilt": reports})
        return
    for r in reports:
        console.print(
            f"gallery {escape(r['gallery'])}: rebuilt {r['kind']} index of {r['index_count']} faces "
            f"(checksum {r['db_checksum'][:16]}…)"
        )
    if not reports:
        console.print("no galleries")


@index_app.command("check")
def check_command(
    gallery: Annotated[str | None, typer.Option("--gallery", help="Only this gallery (default: all).")] = None,
    repair: Annotated[
        bool,
        typer.Option(
            "--repair/--no-repair",
            help="Rebuild an index that does not match the database (default), or only report it.",
        ),
    ] = True,
    as_json: JsonOption = False,
) -> None:
    """Compare each saved index with the database (count and checksum); report and repair any mismatch.

    Also finds stale index files (of deleted galleries, or of another index kind than configured), which may
    still hold vectors of deleted faces, and removes them when repairing. Exit status 1 when a mismatch or a
    stale file was found (even if repaired), so that monitoring notices.
    """
    from facetrail.gallery.index_sync import check_index, remove_stale_index_files, stale_index_files

    with cli_context(json=as_json) as ctx:
        reports = [
            {"gallery": name, **check_index(ctx, gid, repair=repair, actor=cli_actor()).to_dict()}
            for gid, name in _galleries(ctx, gallery)
        ]
        stale = (
            (remove_stale_index_files(ctx, actor=cli_actor()) if repair else stale_index_files(ctx))
            if (gallery is None)
            else []
        )
    consistent = all(r["consistent"] for r in reports) and not stale
    if as_json:
        print_json(
            {
                "ok": consistent,
                "galleries": reports,
                "stale_files": [str(p) for p in stale],
                "stale_files_removed": bool(stale) and repair,
            }
        )
    else:
        table = Table(title="index check")
        for column in ("gallery", "kind", "db faces", "index faces", "status", "problems"):
            table.add_column(column)
        for r in reports:
            status = (
                "[green]consistent[/]"
                if r["consistent"]
                else "[yellow]mismatch, repaired[/]"
                if r["repaired"]
                else "[bold red]mismatch[/]"
            )
            table.add_row(
                escape(r["gallery"]),
                r["kind"],
                str(r["db_count"]),
                str(r["index_count"]),
                status,
                escape("; ".join(r["problems"])),
            )
        console.print(table)
        for path in stale:
            console.print(f"stale index file {'removed' if repair else 'found'}: {escape(str(path))}")
    if not consistent:
        raise typer.Exit(MISMATCH_EXIT)
