"""``batchflow service status|stop|logs``: manage the local embedded service (never starts it)."""

from __future__ import annotations

import click

from batchflow.cli._embedded import service_data_dir, service_status, stop_local_service, tail_log
from batchflow.cli._output import Output

__all__ = ["service"]

_json = click.option("--json", "json_flag", is_flag=True, help="Print one JSON object.")


@click.group()
def service() -> None:
    """Manage the local batchflow service the CLI starts when no API URL is set.

    Its data lives in $BATCHFLOW_DATA_DIR, else $XDG_DATA_HOME/batchflow/service, else
    ~/.local/share/batchflow/service.
    """


@service.command()
@_json
def status(json_flag: bool) -> None:
    """Show whether the local service runs, its URL, pid and data dir."""
    state = service_status()
    payload = {
        "status": "up" if state.up else "down",
        "url": state.url,
        "pid": state.pid,
        "workspace": state.workspace,
        "dataDir": str(state.data_dir),
        "logFile": str(state.log_file),
    }
    text = None
    if not state.up:
        text = f"down (data: {state.data_dir}); any API command starts it"
    Output.create(json_flag).result(payload, text=text)


@service.command()
@_json
def stop(json_flag: bool) -> None:
    """Stop the local service (SIGTERM, then wait)."""
    data_dir = service_data_dir()
    pid = stop_local_service(data_dir)
    payload = {"stopped": pid is not None, "pid": pid, "dataDir": str(data_dir)}
    text = f"stopped the local service (pid {pid})" if pid else "the local service was not running"
    Output.create(json_flag).result(payload, text=text)


@service.command()
@click.option("-n", "--lines", type=click.IntRange(min=0), default=50, show_default=True)
def logs(lines: int) -> None:
    """Print the last lines of the local service's log."""
    text = tail_log(service_data_dir(), lines)
    if text:
        click.echo(text)
