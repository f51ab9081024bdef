"""Shared CLI plumbing: error output, JSON output, the acting user, and the application context."""

from __future__ import annotations

import getpass
import json
import os
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from facetrail.errors import FaceTrailError

console = Console()
err_console = Console(stderr=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print stable, documented JSON instead of tables.")]


def fail(error: FaceTrailError, as_json: bool = False) -> NoReturn:
    if as_json:
        print(json.dumps({"ok": False, "error": error.to_dict()}, default=str))
    else:
        err_console.print(f"[bold red]error[/] ({error.code}): {error.message}")
    raise typer.Exit(error.exit_code)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str, ensure_ascii=False))


def cli_actor() -> str:
    """Who is acting, for the audit log. Until accounts exist (server issue): the OS user, or FACETRAIL_ACTOR."""
    return os.environ.get("FACETRAIL_ACTOR") or f"cli:{getpass.getuser()}"


def open_cli_context() -> Any:
    from facetrail.context import open_context

    return open_context()
