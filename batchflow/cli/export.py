"""``batchflow export``: download a job's (or a batch's) results into a folder, resumably.

With ``--job-id`` the batches come from the job's stages only (never guessed from names): the
``export`` stage's output batches when that stage exists and has any, else every stage's.
Exit codes: 0 all files in place; 3 the batches hold no file at all (nothing is written; exit 0
with ``--allow-empty``); 6 (PartialFailure) some files failed (re-run to retry them); 1 an
unsafe file name or archive member was refused (nothing is written outside the target).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from batchflow.cli._context import api_options, run_with_client
from batchflow.cli._output import Output
from batchflow.cli.batches import json_option
from batchflow.client import BatchClient
from batchflow.errors import NothingMatched, UsageError
from batchflow.export.download import (
    ExportSummary,
    FileOutcome,
    export_batches,
    output_batches,
    raise_for_failures,
)

__all__ = ["export"]


async def _batches_of_job(client: BatchClient, job_id: str, out: Output) -> list[str]:
    job = await client.get_job(job_id)
    found = output_batches(await client.stages(job_id))
    if not job.is_terminal:
        out.warn(f"job {job_id} is still running: exporting what its stages hold so far")
    if not found:
        raise UsageError(f"job {job_id} has no output batches yet; `batchflow poll {job_id}` first")
    return found


class _Bar:
    """A rich progress bar on stderr (TTY only): files done of the batches' file count."""

    def __init__(self, out: Output) -> None:
        self.out = out
        self.progress: Any = None
        self.task: Any = None

    def start(self, total: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress

        self.progress = Progress(
            "export", BarColumn(), MofNCompleteColumn(),
            console=Console(stderr=True),
        )  # fmt: skip
        self.task = self.progress.add_task("export", total=total or None)
        self.progress.start()

    def advance(self, outcome: FileOutcome) -> None:
        if self.progress is not None and outcome.status != "extracted":
            self.progress.advance(self.task)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def _human_size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"  # pragma: no cover


def _summary_text(summary: ExportSummary) -> str:
    text = (
        f"exported {', '.join(summary.batches)} into {summary.target_dir}: "
        f"{summary.downloaded} downloaded, {summary.skipped} already complete, "
        f"{summary.failed} failed; {_human_size(summary.bytes)} in {summary.seconds:.1f}s "
        f"({_human_size(summary.rate)}/s)"
    )
    if summary.extracted:
        text += f"; {summary.extracted} archives extracted"
    return text


@click.command()
@click.option("--job-id", default=None, help="Export the output batches of this job.")
@click.option("--batch-id", default=None, help="Export this batch.")
@click.option("--target-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Files go to TARGET_DIR/<batch id>/<file name>.")  # fmt: skip
@click.option("--extract", is_flag=True, help="Extract downloaded archives (with path checks).")
@click.option("--concurrency", type=click.IntRange(1, 256), default=8, show_default=True)
@click.option("--allow-empty", is_flag=True, envvar="BATCHFLOW_ALLOW_EMPTY",
              help="Exit 0 when there is no file to export (default: exit 3) "
                   "[env: BATCHFLOW_ALLOW_EMPTY].")  # fmt: skip
@api_options
@json_option
def export(**kwargs: Any) -> None:
    """Download every file of a job's output batches (or of one batch) into a folder.

    Re-running resumes: complete files are skipped, partial ones continue with Range.
    """
    job_id, batch_id = kwargs["job_id"], kwargs["batch_id"]
    if (job_id is None) == (batch_id is None):
        raise UsageError("give exactly one of --job-id and --batch-id")
    out = Output.create(kwargs["json_flag"])
    target: Path = kwargs["target_dir"]

    bar = _Bar(out)

    def progress(outcome: FileOutcome) -> None:
        fields: dict[str, Any] = {"batchId": outcome.batch_id, "fileName": outcome.name,
                                  "status": outcome.status, "bytes": outcome.bytes}  # fmt: skip
        if outcome.error:
            fields["error"] = outcome.error
            if not out.json_mode:
                out.note(f"failed: {outcome.batch_id}/{outcome.name}: {outcome.error}")
        out.event("file", **fields)
        bar.advance(outcome)

    async def body(client: BatchClient) -> ExportSummary:
        batches = [batch_id] if batch_id else await _batches_of_job(client, job_id, out)
        if out.interactive:
            bar.start(sum([await client.count(batch) for batch in batches]))
        try:
            return await export_batches(
                client,
                batches,
                target,
                concurrency=kwargs["concurrency"],
                extract=kwargs["extract"],
                allow_empty=kwargs["allow_empty"],
                on_event=progress,
            )
        except NothingMatched as exc:
            if job_id is None:
                raise
            names = ", ".join(f"'{b}'" for b in batches)
            which = f"batch {names} is" if len(batches) == 1 else f"batches {names} are"
            raise NothingMatched(
                f"job '{job_id}' has no files to export (its output {which} empty; "
                "use --allow-empty to accept that)"
            ) from exc
        finally:
            bar.stop()

    summary = run_with_client(kwargs["api"], body)
    out.result(summary.wire(), text=_summary_text(summary))
    raise_for_failures(summary)
