"""Shared CLI plumbing: error output, JSON output, the acting user, and the application context.

Who acts (tests/adversarial/test_cli_actor.py): a command that changes governance data or reveals faces runs
as the signed-in user behind ``--token`` (FACETRAIL_API_TOKEN), with that user's role and token scope, its
refusals audited through the one gate; an operator command (init, serve, index, audit verify/checkpoint)
records ``cli:<OS user>`` taken from the process's user id. Nothing a caller sets (no FACETRAIL_ACTOR, no
$USER) can name someone else in the audit log.
"""

from __future__ import annotations

import json
import os
import pwd
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console

from facetrail.errors import FaceTrailError
from facetrail.policy.roles import Permission

if TYPE_CHECKING:
    from facetrail.policy.principal import Principal

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
    """The operator, for the audit log of OS-level commands: ``cli:<name of the process's user id>``.

    From the operating system, never from the environment (getpass.getuser() would believe $USER)."""
    uid = os.getuid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:  # a uid without a passwd entry (some containers)
        name = f"uid{uid}"
    return f"cli:{name}"


def open_cli_context() -> Any:
    from facetrail.context import open_context
    from facetrail.oversight.guard import install as install_oversight

    install_oversight()  # searches run from the CLI pass the same oversight guard as the server's
    return open_context()


TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="FACETRAIL_API_TOKEN",
        show_default=False,
        help="Your FaceTrail API token (or FACETRAIL_API_TOKEN): the command runs as that signed-in user.",
    ),
]


def signed_in(ctx: Any, token: str | None) -> Principal:
    """The user behind an API token. Commands that run searches or reveal faces act as a signed-in user and
    pass the same gates (role, unit, training, policy, approval, two-person review) as the web UI and the
    REST API: there is no operator bypass."""
    from facetrail.accounts.service import resolve_api_token
    from facetrail.errors import AuthenticationError

    principal = resolve_api_token(ctx, token or "", user_agent="facetrail-cli") if token else None
    if principal is None:
        raise AuthenticationError(
            "this command needs a signed-in user: pass --token or set FACETRAIL_API_TOKEN to your API token "
            "(create one in the web UI under Tokens)"
        )
    return principal


def acting_user(ctx: Any, token: str | None, permission: Permission, *, action: str, target: str = "") -> Principal:
    """The signed-in user behind ``token``, who must hold ``permission`` (role and token scope). A missing or
    bad token is audited as the OS user, a missing permission as the user: both through the one refusal gate."""
    from facetrail.audit.refusals import ensure_permission, refuse
    from facetrail.errors import AuthenticationError

    try:
        who = signed_in(ctx, token)
    except AuthenticationError as exc:
        raise refuse(ctx, cli_actor(), action, target, exc, details={"via": "cli"}) from None
    ensure_permission(ctx, who, permission, action=action, target=target)
    return who
