"""``batchflow serve``: run the Batch API server (data staging now, jobs when installed)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import click

from batchflow.errors import ConfigError, UsageError

if TYPE_CHECKING:
    import uvicorn

__all__ = ["serve"]

_LEVELS = ["debug", "info", "warning", "error"]


def _keys(flags: tuple[str, ...], data_dir: Path) -> tuple[tuple[str, ...], Path | None]:
    keys = [key for key in flags if key]
    env = os.environ.get("BATCHFLOW_API_KEYS", "")
    keys += [key.strip() for key in env.split(",") if key.strip()]
    if keys:
        return tuple(dict.fromkeys(keys)), None
    from batchflow.server.core.settings import read_or_create_secret

    path = data_dir / "api_key"
    return (read_or_create_secret(path, prefix="bf_"),), path


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:
        raise ConfigError(f"can not listen on {host}:{port}: {exc.strerror or exc}") from exc


def _write_atomic(path: Path, payload: dict[str, object]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload) + "\n")
    os.replace(tmp, path)


def _graceful_server_class() -> type[uvicorn.Server]:
    import uvicorn

    class GracefulServer(uvicorn.Server):
        """SIGTERM/SIGINT stop the server gracefully and the process exits 0 (uvicorn would
        re-raise the signal after shutdown, skipping our clean-up)."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            signals = (signal.SIGINT, signal.SIGTERM)
            original = {sig: signal.signal(sig, self.handle_exit) for sig in signals}
            try:
                yield
            finally:
                for sig, handler in original.items():
                    signal.signal(sig, handler)

    return GracefulServer


def _run_server(
    app: Any,
    sock: socket.socket,
    *,
    url: str,
    workspace: str,
    data_dir: Path,
    key_file: Path | None,
    log_level: str,
) -> bool:
    """Serve ``app`` on ``sock`` until a signal; True when it had started."""
    import uvicorn

    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,  # keys may travel in query strings: never log request lines
        log_level=log_level,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    server = _graceful_server_class()(config)
    info = data_dir / "server.json"

    async def announce() -> None:
        while not server.started:
            if server.should_exit:
                return
            await anyio.sleep(0.02)
        _write_atomic(info, {"url": url, "pid": os.getpid(), "workspace": workspace})
        if key_file is not None:
            click.echo(f"API key stored in {key_file}", err=True)
        click.echo(f"batchflow serve listening on {url} (workspace {workspace})", err=True)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(announce)
            await server.serve(sockets=[sock])
            tg.cancel_scope.cancel()

    try:
        anyio.run(main)
    finally:
        info.unlink(missing_ok=True)
    return bool(server.started)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", type=int, default=8080, show_default=True, help="0 picks a free port.")
@click.option("--data-dir", type=click.Path(path_type=Path), help="Catalog, blobs and secrets.")
@click.option("--database-url", help="SQLAlchemy async URL (default: SQLite in the data dir).")
@click.option("--api-key", "api_keys", multiple=True, help="Accepted API key (repeatable).")
@click.option("--workspace", default="local", show_default=True, help="Workspace slug served.")
@click.option("--allow-url", "allow_urls", multiple=True, help="Host or CIDR allowed to fetch.")
@click.option("--public-url", help="Base URL of signed blob URLs (default http://host:port).")
@click.option("--batch-ttl", default="7d", show_default=True, help="How long batches live.")
@click.option("--log-level", type=click.Choice(_LEVELS), default="info", show_default=True)
@click.option(
    "--workflows-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="BATCHFLOW_WORKFLOWS_FILE",
    help="TOML file of user/remote workflows (env BATCHFLOW_WORKFLOWS_FILE).",
)
@click.option(
    "--job-workers",
    type=click.IntRange(min=1),
    envvar="BATCHFLOW_JOB_WORKERS",
    help="Job worker processes (env BATCHFLOW_JOB_WORKERS; default: CPU count).",
)
@click.option(
    "--executor",
    type=click.Choice(["local", "inline"]),
    default="local",
    show_default=True,
    envvar="BATCHFLOW_EXECUTOR",
    help="Where job tasks run: worker processes (local) or server threads (inline).",
)
@click.option("--sweep-interval", type=float, default=60.0, hidden=True)
@click.option("--shard-size", type=click.IntRange(1, 20_000), default=5000, hidden=True)
def serve(  # noqa: PLR0917  (one parameter per click option)
    host: str,
    port: int,
    data_dir: Path | None,
    database_url: str | None,
    api_keys: tuple[str, ...],
    workspace: str,
    allow_urls: tuple[str, ...],
    public_url: str | None,
    batch_ttl: str,
    log_level: str,
    workflows_file: Path | None,
    job_workers: int | None,
    executor: str,
    sweep_interval: float,
    shard_size: int,
) -> None:
    """Run the Batch API server until SIGTERM or Ctrl-C.

    When listening, DATA_DIR/server.json holds {"url", "pid", "workspace"}. DATA_DIR/serve.lock
    is locked for the life of the process: a second serve on the same DATA_DIR exits 5.
    """

    from batchflow.cli._serve_lock import hold_serve_lock
    from batchflow.logging import configure
    from batchflow.protocol.ids import validate_batch_id
    from batchflow.server.app import create_app, default_plugins
    from batchflow.server.core.settings import ServerSettings, default_data_dir, parse_duration

    try:
        validate_batch_id(workspace)
    except UsageError as exc:
        raise ConfigError(f"--workspace: {exc.message}") from exc
    if database_url:
        from batchflow.server.core.db import check_database_url

        check_database_url(database_url)
    data_dir = (data_dir or default_data_dir()).expanduser().resolve()
    ttl = parse_duration(batch_ttl)
    data_dir.mkdir(parents=True, exist_ok=True)
    # one serve per data dir, locked before a port is bound (a second one exits 5 naming the pid)
    with hold_serve_lock(data_dir), contextlib.closing(_bind(host, port)) as sock:
        configure(level=log_level)
        for noisy in ("aiosqlite", "sqlalchemy", "asyncio", "httpcore", "httpx"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        keys, key_file = _keys(api_keys, data_dir)
        bound_port = int(sock.getsockname()[1])
        shown_host = "127.0.0.1" if host in {"0.0.0.0", ""} else host  # noqa: S104
        shown_host = f"[{shown_host}]" if ":" in shown_host else shown_host
        url = f"http://{shown_host}:{bound_port}"
        settings = ServerSettings(
            data_dir=data_dir,
            api_keys=keys,
            public_url=(public_url or url).rstrip("/"),
            database_url=database_url,
            workspace=workspace,
            allow_urls=allow_urls,
            batch_ttl=ttl,
            sweep_interval=sweep_interval,
            shard_size=shard_size,
            workflows_file=workflows_file.expanduser().resolve() if workflows_file else None,
            job_workers=job_workers,
            executor=executor,
        )
        app = create_app(settings, plugins=default_plugins())
        started = _run_server(
            app,
            sock,
            url=url,
            workspace=workspace,
            data_dir=data_dir,
            key_file=key_file,
            log_level=log_level,
        )
    if not started:
        click.echo("error: the server did not start (see the log above)", err=True)
        sys.exit(1)
