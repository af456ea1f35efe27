"""``batchflow run``, ``batchflow poll`` and ``batchflow jobs ...``: start, follow, inspect jobs.

``poll`` exit codes: 0 the job succeeded; 7 (JobFailedError) it ended in error; 8
(DeadlineExceeded) ``--timeout`` ran out first; 3 no such job; 75 the API kept failing.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any

import click

from batchflow.cli._context import ApiOptions, api_options, run_with_client
from batchflow.cli._output import Output
from batchflow.cli._poll import PollSettings, follow_job, poll_job
from batchflow.cli.batches import json_option, rows_of
from batchflow.client import BatchClient
from batchflow.errors import UsageError
from batchflow.protocol import (
    ComputeConfiguration,
    Job,
    JobDefinition,
    JobInput,
    ProcessingSpecification,
    RestartOverrides,
    validate_batch_id,
    validate_job_id,
)

__all__ = ["PollSettings", "follow_job", "jobs", "poll", "run"]


def _poll_settings(interval: float, max_interval: float, timeout: float | None) -> PollSettings:
    return PollSettings(
        interval=interval, max_interval=max(interval, max_interval), timeout=timeout
    )


_interval = click.option("--interval", type=click.FloatRange(min=0.05), default=2.0,
                         show_default=True, help="First seconds between polls.")  # fmt: skip
_max_interval = click.option("--max-interval", type=click.FloatRange(min=0.05), default=30.0,
                             show_default=True, help="Polls back off up to this.")  # fmt: skip


@click.command()
@click.argument("job_id")
@_interval
@_max_interval
@click.option("--timeout", type=click.FloatRange(min=0), default=None,
              help="Give up (exit 8) after this many seconds.")  # fmt: skip
@api_options
@json_option
def poll(  # noqa: PLR0917  (one parameter per click option)
    job_id: str,
    interval: float,
    max_interval: float,
    timeout: float | None,
    api: ApiOptions,
    json_flag: bool,
) -> None:
    """Follow JOB_ID until it ends; print its output batches.

    Exit 0 on success, 7 when the job ended in error, 8 when --timeout ran out.
    """
    settings = _poll_settings(interval, max_interval, timeout)
    out = Output.create(json_flag)
    run_with_client(api, lambda c: poll_job(c, job_id, settings, out))


# -- run -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunArgs:
    """The job-shaping flags of ``batchflow run``."""

    workflow_id: str
    batch_id: str
    videos: bool = False
    machine_type: str | None = None
    workers_per_machine: int | None = None
    max_video_fps: float | None = None
    part_name: str | None = None
    aggregation_format: str | None = None
    persist_images_outputs: bool = False
    images_outputs: tuple[str, ...] = ()
    max_image_failure_rate: float | None = None
    max_parallel_tasks: int | None = None
    timeout: int | None = None
    notifications_url: str | None = None
    workflow_parameters: dict[str, Any] = field(default_factory=dict)

    def definition(self, workspace: str) -> JobDefinition:
        """The JobDefinition; flags not given keep the protocol defaults."""
        if self.max_video_fps is not None and not self.videos:
            raise UsageError("--max-video-fps needs --videos")
        compute: dict[str, Any] = {}
        if self.machine_type is not None:
            compute["machine_type"] = self.machine_type
        if self.workers_per_machine is not None:
            compute["workers_per_machine"] = self.workers_per_machine
        spec: dict[str, Any] = {
            "workspace": workspace,
            "workflow_id": self.workflow_id,
            "workflow_parameters": self.workflow_parameters,
            "persist_images_outputs": self.persist_images_outputs,
            "images_outputs_to_be_persisted": list(self.images_outputs),
        }
        if self.aggregation_format is not None:
            spec["aggregation_format"] = self.aggregation_format
        if self.max_video_fps is not None:
            spec["max_video_fps"] = self.max_video_fps
        body: dict[str, Any] = {
            "type": "simple-video-processing-v1" if self.videos else "simple-image-processing-v1",
            "job_input": JobInput(
                batch_id=validate_batch_id(self.batch_id), part_name=self.part_name
            ),
            "compute_configuration": ComputeConfiguration(**compute),
            "processing_specification": ProcessingSpecification(**spec),
            "notifications_url": self.notifications_url,
        }
        for name in ("max_image_failure_rate", "max_parallel_tasks"):
            if getattr(self, name) is not None:
                body[name] = getattr(self, name)
        if self.timeout is not None:
            body["processing_timeout_seconds"] = self.timeout
        try:
            return JobDefinition(**body)
        except ValueError as exc:
            raise UsageError(f"invalid job options: {exc}") from exc


async def _run(
    client: BatchClient,
    args: RunArgs,
    *,
    job_id: str | None,
    name: str | None,
    workspace: str | None,
    wait: PollSettings | None,
    out: Output,
) -> None:
    definition = args.definition(workspace or await client.workspace())
    created = await client.create_job(job_id, definition, name=name)
    if wait is None:
        out.result({"jobId": created}, text=created)
        if not out.json_mode:
            out.note(f"follow it with: batchflow poll {created}")
        return
    if out.json_mode:
        out.event("created", jobId=created)
    else:
        click.echo(created)
        sys.stdout.flush()
    await poll_job(client, created, wait, out)


def _parameters(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--workflow-parameters: not JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise UsageError("--workflow-parameters: give a JSON object")
    return value


@click.command()
@click.option("--workflow-id", required=True, help="Workflow to run (e.g. image-metadata).")
@click.option("--batch-id", required=True, help="Staged input batch.")
@click.option("--videos", is_flag=True, help="A video job (simple-video-processing-v1).")
@click.option("--machine-type", type=click.Choice(["cpu", "gpu"]), default=None)
@click.option("--workers-per-machine", type=click.IntRange(1, 64), default=None)
@click.option("--max-video-fps", type=click.FloatRange(min=0, min_open=True), default=None)
@click.option("--part-name", default=None, help="Only this part of the input batch.")
@click.option("--aggregation-format", type=click.Choice(["csv", "jsonl"]), default=None)
@click.option("--persist-images-outputs", is_flag=True, help="Keep the workflow's images.")
@click.option("--images-outputs", multiple=True, metavar="NAME",
              help="Image outputs to persist (repeatable).")  # fmt: skip
@click.option("--max-image-failure-rate", type=click.FloatRange(0, 1), default=None)
@click.option("--max-parallel-tasks", type=click.IntRange(1, 1024), default=None)
@click.option("--timeout", type=click.IntRange(min=1), default=None,
              help="processingTimeoutSeconds: machine seconds summed over workers.")  # fmt: skip
@click.option("--notifications-url", default=None, help="Webhook for the job-done event.")
@click.option("--workflow-parameters", default=None, metavar="JSON", help="A JSON object.")
@click.option("--job-id", default=None, help="Job id (default: job-<12 random chars>).")
@click.option("--name", default=None, help="Job name.")
@click.option("--workspace", default=None, help="Workspace (default: the API key's).")
@click.option("--wait", is_flag=True, help="Then follow the job like `batchflow poll`.")
@click.option("--poll-interval", type=click.FloatRange(min=0.05), default=2.0, show_default=True)
@click.option("--wait-timeout", type=click.FloatRange(min=0), default=None,
              help="With --wait: give up (exit 8) after this many seconds.")  # fmt: skip
@api_options
@json_option
def run(**kwargs: Any) -> None:
    """Start a workflow job over a staged batch; print its id.

    Re-running with the same --job-id and options is safe (the API answers it as a no-op).
    """
    out = Output.create(kwargs.pop("json_flag"))
    options: ApiOptions = kwargs.pop("api")
    job_id, name = kwargs.pop("job_id"), kwargs.pop("name")
    workspace, wait = kwargs.pop("workspace"), kwargs.pop("wait")
    interval, wait_timeout = kwargs.pop("poll_interval"), kwargs.pop("wait_timeout")
    kwargs["workflow_parameters"] = _parameters(kwargs.pop("workflow_parameters"))
    kwargs["images_outputs"] = tuple(kwargs["images_outputs"])
    args = RunArgs(**kwargs)
    if job_id is not None:
        validate_job_id(job_id)
    args.definition("check")  # flag errors before any network call
    settings = _poll_settings(interval, 30.0, wait_timeout) if wait else None
    run_with_client(
        options,
        lambda c: _run(
            c, args, job_id=job_id, name=name, workspace=workspace, wait=settings, out=out
        ),
    )


# -- jobs ------------------------------------------------------------------------------------


@click.group()
def jobs() -> None:
    """Inspect and control jobs (batch processing)."""


@jobs.command("list")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Show at most N.")
@api_options
@json_option
def list_(limit: int | None, api: ApiOptions, json_flag: bool) -> None:
    """List the workspace's jobs."""

    async def body(client: BatchClient) -> list[dict[str, Any]]:
        found: list[Job] = []
        async with client.iter_jobs() as receive:
            async for job in receive:
                found.append(job)
                if limit is not None and len(found) >= limit:
                    break
        return rows_of(found)

    rows = run_with_client(api, body)
    columns = ["jobId", "name", "currentStage", "isTerminal", "error", "createdAt"]
    Output.create(json_flag).table(rows, columns)


@jobs.command()
@click.argument("job_id")
@api_options
@json_option
def show(job_id: str, api: ApiOptions, json_flag: bool) -> None:
    """Show one job."""

    async def body(client: BatchClient) -> dict[str, Any]:
        return (await client.get_job(job_id)).wire()

    payload = run_with_client(api, body)
    out = Output.create(json_flag)
    if not out.json_mode:
        payload["jobDefinition"] = json.dumps(payload.get("jobDefinition"), sort_keys=True)
    out.result(payload)


@jobs.command()
@click.argument("job_id")
@api_options
@json_option
def stages(job_id: str, api: ApiOptions, json_flag: bool) -> None:
    """List a job's stages and their output batches."""

    async def body(client: BatchClient) -> list[dict[str, Any]]:
        return rows_of(await client.stages(job_id))

    rows = run_with_client(api, body)
    columns = ["processingStageId", "statusType", "tasksNumber", "outputBatches",
               "lastEventTimestamp"]  # fmt: skip
    Output.create(json_flag).table(rows, columns)


@jobs.command()
@click.argument("job_id")
@click.argument("stage_id")
@api_options
@json_option
def tasks(job_id: str, stage_id: str, api: ApiOptions, json_flag: bool) -> None:
    """List the tasks of one stage of a job."""

    async def body(client: BatchClient) -> list[dict[str, Any]]:
        async with client.iter_tasks(job_id, stage_id) as receive:
            return rows_of([task async for task in receive])

    rows = run_with_client(api, body)
    columns = ["taskId", "statusType", "progress", "eventTimestamp", "notification"]
    Output.create(json_flag).table(rows, columns)


@jobs.command()
@click.argument("job_id")
@click.option("--severity", type=click.Choice(["info", "warning", "error"]), default=None)
@api_options
@json_option
def logs(job_id: str, severity: Any, api: ApiOptions, json_flag: bool) -> None:
    """Print a job's structured logs."""

    async def body(client: BatchClient) -> list[dict[str, Any]]:
        async with client.iter_logs(job_id, severity=severity) as receive:
            return rows_of([entry async for entry in receive])

    rows = run_with_client(api, body)
    columns = ["createdAt", "severity", "processingStageId", "taskId", "logType", "payload"]
    Output.create(json_flag).table(rows, columns)


@jobs.command()
@click.argument("job_id")
@api_options
@json_option
def abort(job_id: str, api: ApiOptions, json_flag: bool) -> None:
    """Abort a job."""

    async def body(client: BatchClient) -> None:
        await client.abort(job_id)

    run_with_client(api, body)
    Output.create(json_flag).result({"jobId": job_id, "aborted": True}, text=f"aborted {job_id}")


@jobs.command()
@click.argument("job_id")
@click.option("--max-parallel-tasks", type=click.IntRange(1, 1024), default=None)
@click.option("--timeout", type=click.IntRange(min=1), default=None,
              help="New processingTimeoutSeconds.")  # fmt: skip
@click.option("--max-image-failure-rate", type=click.FloatRange(0, 1), default=None)
@click.option("--machine-type", type=click.Choice(["cpu", "gpu"]), default=None)
@click.option("--workers-per-machine", type=click.IntRange(1, 64), default=None)
@api_options
@json_option
def restart(  # noqa: PLR0917  (one parameter per click option)
    job_id: str,
    max_parallel_tasks: int | None,
    timeout: int | None,
    max_image_failure_rate: float | None,
    machine_type: Any,
    workers_per_machine: int | None,
    api: ApiOptions,
    json_flag: bool,
) -> None:
    """Restart what did not succeed in a job, optionally with new parameters."""
    compute = None
    if machine_type is not None or workers_per_machine is not None:
        compute = ComputeConfiguration(
            machine_type=machine_type or "cpu", workers_per_machine=workers_per_machine or 1
        )
    given = (max_parallel_tasks, timeout, max_image_failure_rate, compute)
    overrides = None
    if any(value is not None for value in given):
        overrides = RestartOverrides(
            compute_configuration=compute,
            max_parallel_tasks=max_parallel_tasks,
            processing_timeout_seconds=timeout,
            max_image_failure_rate=max_image_failure_rate,
        )

    async def body(client: BatchClient) -> None:
        await client.restart(job_id, overrides)

    run_with_client(api, body)
    payload = {"jobId": job_id, "restarted": True,
               "overrides": overrides.wire() if overrides else None}  # fmt: skip
    Output.create(json_flag).result(payload, text=f"restarted {job_id}")
