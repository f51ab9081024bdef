"""``facetrail policy show|validate|apply|history`` and ``facetrail user train``: the policy document and the
training gate, for the local operator (the API offers the same to administrators). Both are audited."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from facetrail.cli.common import JsonOption, TokenOption, acting_user, console, fail, open_cli_context, print_json
from facetrail.errors import BadInputError, FaceTrailError
from facetrail.policy.roles import Permission

policy_app = typer.Typer(
    help="The policy document: what searches are allowed (versioned, audited).", no_args_is_help=True
)
user_app = typer.Typer(help="Users' governance records (search training).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(policy_app, name="policy")
    app.add_typer(user_app, name="user")


def _run(as_json: bool, action: Any) -> Any:
    try:
        ctx = open_cli_context()
    except FaceTrailError as exc:
        fail(exc, as_json)
    try:
        return action(ctx)
    except FaceTrailError as exc:
        fail(exc, as_json)
    finally:
        ctx.close()


def _read(path: Path, as_json: bool) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(BadInputError(f"cannot read {path}: {exc}", field="file"), as_json)


@policy_app.command("show")
def show_command(as_json: JsonOption = False) -> None:
    """Print the policy in force (its version, hash, author and text)."""
    from facetrail.governance.policy import show_policy

    shown = _run(as_json, show_policy)
    if as_json:
        print_json(shown)
        return
    console.print(
        f"# policy version {shown['version']} (sha256 {shown['sha256'][:16]}…), applied by "
        f"{escape(shown['created_by'])} at {shown['created_at']:%Y-%m-%d %H:%M} UTC"
    )
    console.print(escape(shown["text"]), highlight=False)


@policy_app.command("validate")
def validate_command(
    file: Annotated[Path, typer.Argument(help="A TOML policy document")], as_json: JsonOption = False
) -> None:
    """Check a policy document without applying it."""
    from facetrail.governance.policy import parse_policy

    text = _read(file, as_json)
    try:
        policy = parse_policy(text)
    except FaceTrailError as exc:
        fail(exc, as_json)
    if as_json:
        print_json({"ok": True, "policy": policy.model_dump()})
    else:
        console.print(f"{escape(str(file))}: valid")


@policy_app.command("apply")
def apply_command(
    file: Annotated[Path, typer.Argument(help="A TOML policy document")],
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Validate and apply a policy document as the next version (audited with the diff). Runs as the signed-in
    administrator behind --token."""
    from facetrail.governance.policy import apply_policy

    text = _read(file, as_json)

    def apply(ctx: Any) -> Any:
        who = acting_user(ctx, token, Permission.POLICY_MANAGE, action="policy.apply", target="policy")
        return apply_policy(ctx, text, actor=who.actor, audit_context=who.audit_context())

    applied = _run(as_json, apply)
    if as_json:
        print_json(applied)
    else:
        console.print(f"policy version {applied['version']} applied")


@policy_app.command("history")
def history_command(as_json: JsonOption = False) -> None:
    """Every policy version, newest first."""
    from facetrail.governance.policy import policy_history

    versions = _run(as_json, policy_history)
    if as_json:
        print_json(versions)
        return
    for v in versions:
        console.print(
            f"v{v['version']}  {v['created_at']:%Y-%m-%d %H:%M} UTC  {escape(v['created_by'])}  {v['sha256'][:16]}…"
        )


@user_app.command("train")
def train_command(
    username: Annotated[str, typer.Argument(help="The user who completed search training")],
    date: Annotated[str, typer.Option("--date", help="Completion date, YYYY-MM-DD")],
    course: Annotated[str, typer.Option("--course", help="The course completed")] = "FaceTrail search training",
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Record a user's search training (audited). Without it, or once it expires, they cannot search. Runs as
    the signed-in administrator behind --token."""
    from facetrail.governance.training import record_training

    try:
        day = dt.date.fromisoformat(date.strip())
    except ValueError:
        fail(BadInputError("--date must be YYYY-MM-DD", field="date"), as_json)

    def train(ctx: Any) -> Any:
        who = acting_user(ctx, token, Permission.TRAINING_MANAGE, action="user.train", target=f"user:{username}")
        return record_training(ctx, username, day, course, actor=who.actor, audit_context=who.audit_context())

    done = _run(as_json, train)
    if as_json:
        print_json(done)
    else:
        console.print(f"{escape(username)}: training recorded, valid until {done['valid_until']}")
