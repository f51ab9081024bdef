"""``facetrail store copy --to postgres`` (docs/deployment.md): local image folders into the database."""

from __future__ import annotations

from typing import Annotated

import typer

from facetrail.cli.common import JsonOption, cli_actor, cli_context, console, print_json
from facetrail.errors import BadInputError

store_app = typer.Typer(help="The image store: local folders or PostgreSQL.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(store_app, name="store")


@store_app.command("copy")
def copy_command(
    to: Annotated[str, typer.Option("--to", help="The target backend: 'postgres'.")],
    as_json: JsonOption = False,
) -> None:
    """Copy every stored image (gallery originals, kept probes, probes awaiting approval) from this host's data
    folder into the PostgreSQL image store, checking each file's SHA-256. Rerunnable; local files are kept.
    Then set cluster.image_store = "postgres" on every host."""
    from facetrail.gallery.store_copy import copy_to_database

    with cli_context(json=as_json) as ctx:
        if to != "postgres":
            raise BadInputError(f"--to must be 'postgres', not {to!r}", field="to")
        result = copy_to_database(ctx, actor=cli_actor())
    if as_json:
        print_json(result.to_dict())
    else:
        for name, copied in result.copied.items():
            console.print(f"{name}: {copied} copied, {result.already[name]} already in the database")
        if result.mismatched:
            console.print(f"[red]{len(result.mismatched)} file(s) do not match their hash, not copied:[/]")
            for item in result.mismatched:
                console.print(f"  {item}")
        console.print('Next: set cluster.image_store = "postgres" (FACETRAIL_CLUSTER__IMAGE_STORE) on every host.')
    if result.mismatched:
        raise typer.Exit(1)
