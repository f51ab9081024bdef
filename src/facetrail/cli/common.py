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
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
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
DeviceOption = Annotated[
    str | None,
    typer.Option(
        "--device",
        help="Run the detector and embedder on 'cpu' or 'cuda' (ONNX Runtime's CUDA provider; needs onnxruntime-gpu)."
        " Default: the compute.device setting.",
    ),
]


def apply_device(device: str | None) -> None:
    """``--device``: this process and the workers it starts use that compute device (through the environment,
    the settings source that wins). CUDA is checked at once, so a missing GPU runtime fails before any work."""
    if device is None:
        return
    from facetrail.config import get_settings
    from facetrail.faces.device import onnx_providers

    onnx_providers(device)  # DeviceUnavailableError: unknown device, or no CUDA execution provider
    os.environ["FACETRAIL_COMPUTE__DEVICE"] = device
    get_settings.cache_clear()


def fail(error: FaceTrailError, as_json: bool = False) -> NoReturn:
    """Print the error and exit with its code. A refusal of a signed-in user's command, and any refused
    authentication or permission, is audited first (as over HTTP) unless the core already recorded it."""
    _audit_refusal(error)
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


# This command's own state (the context it opened, its signed-in user), for auditing its refusals. Reset by
# the root callback (facetrail.cli.main) at the start of every command, so that commands run one after another
# in one process (tests) never see each other's.
_INVOCATION: ContextVar[dict[str, Any] | None] = ContextVar("facetrail_cli_invocation", default=None)


def begin_command() -> None:
    from facetrail.audit.log import REFUSALS_RECORDED

    _INVOCATION.set({})
    REFUSALS_RECORDED.set([])


def _invocation() -> dict[str, Any]:
    state = _INVOCATION.get()
    if state is None:
        state = {}
        _INVOCATION.set(state)
    return state


def open_cli_context() -> Any:
    from facetrail.audit.log import REFUSALS_RECORDED
    from facetrail.context import open_context
    from facetrail.oversight.guard import install as install_oversight

    install_oversight()  # searches run from the CLI pass the same oversight guard as the server's
    ctx = open_context()
    _invocation()["ctx"] = ctx
    if REFUSALS_RECORDED.get() is None:
        REFUSALS_RECORDED.set([])
    return ctx


@contextmanager
def cli_context(*, json: bool = False) -> Iterator[Any]:
    """The application context for one command: opened, handed to the block, closed; a FaceTrailError raised
    in the block is printed (as JSON with ``json``), audited if it is a refusal, and exits with its code.

        with cli_context(json=as_json) as ctx:
            result = core_function(ctx, ...)
    """
    ctx = open_cli_context()
    try:
        yield ctx
    except FaceTrailError as exc:
        fail(exc, json)
    finally:
        ctx.close()


def _command_path() -> str:
    try:  # typer runs on its own copy of click; its current context names the command being run
        from typer._click.globals import get_current_context

        current = get_current_context(silent=True)
    except ImportError:  # pragma: no cover - another typer release
        current = None
    return str(current.command_path) if current is not None else "facetrail"


def _audit_refusal(error: FaceTrailError) -> None:
    from facetrail.audit.actions import AuditAction
    from facetrail.audit.log import REFUSALS_RECORDED
    from facetrail.audit.refusals import audit_refusal
    from facetrail.errors import AuthenticationError, PermissionDeniedError

    state = _invocation()
    ctx, who = state.get("ctx"), state.get("who")
    denied = isinstance(error, PermissionDeniedError | AuthenticationError)
    if ctx is None or REFUSALS_RECORDED.get() or (who is None and not denied):
        return
    target = "cli:" + _command_path()  # e.g. "cli:facetrail case packet": never its arguments (a token...)
    action = AuditAction.ACCESS_DENIED if denied else AuditAction.CLI_REFUSED
    audit_refusal(ctx, who or cli_actor(), action, target, error)


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
    _invocation()["who"] = principal
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
