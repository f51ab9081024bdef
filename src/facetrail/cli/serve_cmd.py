"""`facetrail serve` (the README's first command runs it) and `facetrail user` for local administration."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from facetrail.cli.common import console, fail, open_cli_context


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on (default from settings: 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from settings: 8000).")] = None,
    workers: Annotated[
        int, typer.Option(help="Worker threads per process for blocking work (face pipeline, database).")
    ] = 8,
    processes: Annotated[
        int | None,
        typer.Option(
            help="Server processes (uvicorn workers). Default: one per core on PostgreSQL; SQLite serves one.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run the FaceTrail server on the configured database (SQLite + in-process index by default).

    SIGTERM or Ctrl-C stops it gracefully: no new connections, in-flight requests finish (up to
    cluster.graceful_shutdown_seconds), index snapshots are saved.
    """
    import uvicorn

    from facetrail.accounts.service import bootstrap_admin
    from facetrail.cluster.processes import ProcessCountError, server_processes
    from facetrail.service.worker import THREADS_ENV

    ctx = open_cli_context()
    settings = ctx.settings
    try:
        count = server_processes(
            processes if processes is not None else settings.cluster.processes, is_sqlite=ctx.db.is_sqlite
        )
    except ProcessCountError as exc:
        fail(exc)
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
    host = host or settings.server.host
    port = port or settings.server.port
    options = {
        "host": host,
        "port": port,
        "log_level": "info",
        # behind a load balancer the client's address comes from its X-Forwarded-For, believed from it only
        "proxy_headers": bool(settings.server.trusted_proxies),
        "forwarded_allow_ips": ",".join(settings.server.trusted_proxies) or None,
        "server_header": False,
        "timeout_graceful_shutdown": int(settings.cluster.graceful_shutdown_seconds),
    }
    plural = "es" if count > 1 else ""
    console.print(f"FaceTrail on http://{host}:{port}  ({count} process{plural}; data: {settings.data_dir.resolve()})")
    if count == 1:
        from facetrail.service.app import create_app

        app = create_app(ctx)
        app.state.worker_threads = workers
        uvicorn.run(app, **options)  # type: ignore[arg-type]
        return
    ctx.close()  # each worker opens its own context
    os.environ[THREADS_ENV] = str(workers)
    uvicorn.run("facetrail.service.worker:worker_app", factory=True, workers=count, **options)  # type: ignore[arg-type]
