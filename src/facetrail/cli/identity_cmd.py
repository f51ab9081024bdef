"""``facetrail user reset-mfa``: the server host's operator resets a user's second factors (the break-glass path
when the only administrators have lost theirs). Same core function as the web UI and the API; audited with the
operator as actor."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from facetrail.cli.common import JsonOption, cli_actor, console, fail, open_cli_context, print_json
from facetrail.errors import FaceTrailError
from facetrail.policy.principal import Principal
from facetrail.policy.roles import Role


def register(app: typer.Typer) -> None:
    from facetrail.cli.governance_cmd import user_app

    user_app.command("reset-mfa")(reset_mfa_command)


def reset_mfa_command(
    username: Annotated[str, typer.Argument(help="The user whose TOTP, recovery codes and passkeys are removed")],
    as_json: JsonOption = False,
) -> None:
    """Remove a user's second factors and end their sessions (audited); they enrol again at next sign-in."""
    from facetrail.accounts.mfa import reset_mfa

    operator = Principal(
        user_id=None, username=cli_actor(), role=Role.ADMINISTRATOR.value, unit_id=None, unit_name=None, via="cli"
    )
    try:
        ctx = open_cli_context()
    except FaceTrailError as exc:
        fail(exc, as_json)
    try:
        reset_mfa(ctx, operator, username)
    except FaceTrailError as exc:
        fail(exc, as_json)
    finally:
        ctx.close()
    if as_json:
        print_json({"ok": True, "user": username})
    else:
        console.print(f"{escape(username)}: second factors removed, sessions ended; they enrol again at sign-in")
