"""`facetrail serve` (the README's first command runs it) and `facetrail user` for local administration."""

from __future__ import annotations

from typing import Annotated

import typer

from facetrail.cli.common import console, open_cli_context


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on (default from settings: 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from settings: 8000).")] = None,
    workers: Annotated[int, typer.Option(help="Worker threads for blocking work (face pipeline, database).")] = 8,
) -> None:
    """Run the FaceTrail server on the configured database (SQLite + in-process index by default)."""
    import anyio.to_thread
    import uvicorn

    from facetrail.accounts.service import bootstrap_admin
    from facetrail.service.app import create_app

    ctx = open_cli_context()
    created = bootstrap_admin(ctx)
    if created is not None:
        username, password = created
        console.rule("[bold]First start: an administrator account was created")
        console.print(f"username: [bold]{username}[/]")
        if password is None:  # from FACETRAIL_ADMIN_PASSWORD: never printed (logs are kept and shared)
            console.print("one-time password: the one in FACETRAIL_ADMIN_PASSWORD (it must be changed at first login)")
        else:
            console.print(f"one-time password: [bold]{password}[/]  (shown once; it must be changed at first login)")
        console.rule()
    settings = ctx.settings
    host = host or settings.server.host
    port = port or settings.server.port
    app = create_app(ctx)

    @app.on_event("startup")
    async def _threads() -> None:  # the default limiter (40) oversubscribes a small machine's cores
        anyio.to_thread.current_default_thread_limiter().total_tokens = workers

    console.print(f"FaceTrail on http://{host}:{port}  (data: {settings.data_dir.resolve()})")
    uvicorn.run(app, host=host, port=port, log_level="info", proxy_headers=False, server_header=False)
