"""Root group, lazy command loading and the single place errors become exit codes."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any

import click

from batchflow.errors import BatchflowError, PermanentError

__all__ = ["BatchflowGroup", "CliError", "cli", "main"]

# command name -> "module:attribute"; modules are imported only when the command runs.
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("batchflow.cli.serve:serve", "Run the Batch API server (batchflow serve)."),
    "ingest": ("batchflow.cli.ingest:ingest", "Stage a folder, bucket or references file."),
    "sign": ("batchflow.cli.ingest:sign", "Write signed references (JSONL) for a source."),
    "run": ("batchflow.cli.jobs:run", "Start a workflow job over a staged batch."),
    "poll": ("batchflow.cli.jobs:poll", "Follow a job until it ends."),
    "export": ("batchflow.cli.export:export", "Download a job's or a batch's results."),
    "batches": ("batchflow.cli.batches:batches", "Inspect staged batches."),
    "jobs": ("batchflow.cli.jobs:jobs", "Inspect and control jobs."),
    "service": ("batchflow.cli.service:service", "Manage the local embedded service."),
}

EXIT_INTERRUPTED = 130


class CliError(click.ClickException):
    """A :class:`BatchflowError` on its way to the user: one line, its own exit code."""

    def __init__(self, error: BatchflowError) -> None:
        super().__init__(error.message)
        self.exit_code = error.exit_code  # type: ignore[misc]  # per instance, not per class

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class BatchflowGroup(click.Group):
    """A group that loads its commands lazily and translates errors once."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self._available())

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = self._available().get(cmd_name)
        if target is None:
            return None
        module_name, _, attr = target[0].partition(":")
        command = getattr(importlib.import_module(module_name), attr)
        assert isinstance(command, click.Command)
        return command

    @staticmethod
    def _available() -> dict[str, tuple[str, str]]:
        found: dict[str, tuple[str, str]] = {}
        for name, target in COMMANDS.items():
            module_name = target[0].partition(":")[0]
            if importlib.util.find_spec(module_name) is not None:
                found[name] = target
        return found

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List commands from the static table, without importing them (fast ``--help``)."""
        rows = [(name, help_text) for name, (_, help_text) in sorted(self._available().items())]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BatchflowError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            raise CliError(exc) from exc
        except OSError as exc:  # a local file or folder: unwritable, missing, disk full
            if ctx.obj and ctx.obj.get("debug"):
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            raise CliError(PermanentError(f"{where}{exc.strerror or exc}")) from exc


@click.group(cls=BatchflowGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full tracebacks and debug logs.")
@click.version_option(package_name="batchflow")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Stage millions of files for batch processing, run workflows over them, export results."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def main() -> None:
    """Console-script entry point: one line per failure, its exit code, 130 on Ctrl-C."""
    debug = "--debug" in sys.argv[1:]
    try:
        result = cli.main(prog_name="batchflow", standalone_mode=False)
    except (KeyboardInterrupt, click.Abort):
        if debug:
            raise
        click.echo("interrupted: re-run the same command to resume", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    sys.exit(result if isinstance(result, int) else 0)
