"""The poll loop: follow a job until it is terminal, with live progress and polite backoff.

Used by ``batchflow poll`` and ``batchflow run --wait``: a rich display per stage on a TTY,
JSON event lines otherwise; transient API errors are survived, the interval grows while
nothing changes.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import anyio
import click

from batchflow.cli._output import Output
from batchflow.client import BatchClient
from batchflow.errors import DeadlineExceeded, JobFailedError, TransientError
from batchflow.protocol import Job, JobStage, JobTask, validate_job_id

__all__ = ["PollSettings", "follow_job", "poll_job"]

_FAILED = {"failed", "error", "fail"}
_DONE = {"succeeded", "success", "completed", "failed", "error", "fail", "aborted", "cancelled"}


# ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PollSettings:
    """How ``poll`` follows a job: the first interval grows x1.5 while nothing changes, up to
    ``max_interval``; ``max_failures`` rounds in a row failing with transient errors give up."""

    interval: float = 2.0
    max_interval: float = 30.0
    timeout: float | None = None
    max_failures: int = 10


@dataclass
class _Display:
    """Progress of one job: rich on a TTY, JSON lines on stdout (--json) or stderr otherwise."""

    out: Output
    job_id: str
    stages_seen: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    tasks_seen: dict[tuple[str, str], str] = field(default_factory=dict)
    job_seen: tuple[Any, ...] | None = None
    live: Any = None
    rows: dict[str, Any] = field(default_factory=dict)

    def __enter__(self) -> _Display:
        if self.out.interactive:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self.live = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"),
                console=Console(stderr=True),
                transient=False,
            )
            self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.stop()

    def emit(self, kind: str, **fields: Any) -> None:
        if self.out.json_mode:
            self.out.event(kind, **fields)
        elif self.live is None:
            line = json.dumps({"event": kind, **fields}, default=str, ensure_ascii=False)
            click.echo(line, err=True)

    def warn(self, message: str) -> None:
        if self.live is not None:
            self.live.console.print(f"warning: {message}")
        else:
            self.emit("warning", jobId=self.job_id, message=message)

    def update(self, job: Job, stages: list[JobStage], tasks: dict[str, list[JobTask]]) -> bool:
        """Show what changed; return whether anything did."""
        changed = False
        job_key = (job.current_stage, job.is_terminal, job.error, str(job.last_notification))
        if job_key != self.job_seen:
            self.job_seen, changed = job_key, True
            self.emit("job", jobId=job.job_id, currentStage=job.current_stage,
                      isTerminal=job.is_terminal, error=job.error)  # fmt: skip
        for stage in stages:
            sid = stage.processing_stage_id
            for task in tasks.get(sid, []):
                if self.tasks_seen.get((sid, task.task_id)) != task.status_type:
                    self.tasks_seen[(sid, task.task_id)] = task.status_type
                    changed = True
                    self.emit("task", jobId=job.job_id, stageId=sid, taskId=task.task_id,
                              status=task.status_type, progress=task.progress)  # fmt: skip
            counts = Counter(status for (s, _), status in self.tasks_seen.items() if s == sid)
            done = sum(n for status, n in counts.items() if status.lower() in _DONE)
            key = (stage.status_type, stage.tasks_number, done, tuple(stage.output_batches))
            if key != self.stages_seen.get(sid):
                self.stages_seen[sid], changed = key, True
                self.emit("stage", jobId=job.job_id, stageId=sid, status=stage.status_type,
                          tasks=stage.tasks_number, counts=dict(counts),
                          outputBatches=stage.output_batches)  # fmt: skip
            self._draw(stage, counts, done)
        return changed

    def _draw(self, stage: JobStage, counts: Counter[str], done: int) -> None:
        if self.live is None:
            return
        sid = stage.processing_stage_id
        failed = sum(n for status, n in counts.items() if status.lower() in _FAILED)
        detail = f"{stage.status_type}" + (f", {failed} failed" if failed else "")
        if sid not in self.rows:
            self.rows[sid] = self.live.add_task(sid, total=stage.tasks_number or None, detail="")
        self.live.update(self.rows[sid], total=stage.tasks_number or None, completed=done,
                         detail=detail)  # fmt: skip


async def _snapshot(
    client: BatchClient, job_id: str, stamps: dict[str, Any]
) -> tuple[Job, list[JobStage], dict[str, list[JobTask]]]:
    job = await client.get_job(job_id)
    stages = await client.stages(job_id)
    tasks: dict[str, list[JobTask]] = {}
    for stage in stages:
        sid = stage.processing_stage_id
        stamp = (stage.last_event_timestamp, stage.status_type)
        if stamps.get(sid) == stamp and stage.status_type.lower() in _DONE:
            continue  # a finished stage with nothing new: skip listing its tasks
        async with client.iter_tasks(job_id, sid) as receive:
            tasks[sid] = [task async for task in receive]
        stamps[sid] = stamp
    return job, stages, tasks


@dataclass(slots=True)
class _Health:
    """Whether polling has had an answer, and the transient error outstanding, if any."""

    answered: bool = False
    error: str | None = None


async def follow_job(
    client: BatchClient,
    job_id: str,
    settings: PollSettings,
    display: _Display,
    health: _Health | None = None,
) -> tuple[Job, list[JobStage]]:
    """Poll ``job_id`` until it is terminal; return its last state and stages.

    ``health`` (when given) records whether the last poll answered, so a caller whose deadline
    runs out can say the API was unreachable rather than that the job was still running.
    """
    validate_job_id(job_id)
    interval = settings.interval
    failures = 0
    stamps: dict[str, Any] = {}
    health = health if health is not None else _Health()
    while True:
        try:
            job, stages, tasks = await _snapshot(client, job_id, stamps)
        except TransientError as exc:
            health.error = exc.message
            failures += 1
            if failures >= settings.max_failures:
                raise
            display.warn(f"polling failed ({exc.message}); trying again in {interval:.1f}s")
            await anyio.sleep(interval)
            interval = min(interval * 1.5, settings.max_interval)
            continue
        failures = 0
        health.answered, health.error = True, None
        changed = display.update(job, stages, tasks)
        if job.is_terminal:
            return job, stages
        interval = settings.interval if changed else min(interval * 1.5, settings.max_interval)
        await anyio.sleep(interval)


async def poll_job(client: BatchClient, job_id: str, settings: PollSettings, out: Output) -> None:
    health = _Health()
    with _Display(out, job_id) as display:
        try:
            with anyio.fail_after(settings.timeout):
                job, stages = await follow_job(client, job_id, settings, display, health)
        except TimeoutError as exc:
            if health.error:
                raise DeadlineExceeded(
                    f"gave up after {settings.timeout:g}s: the API did not answer "
                    f"({health.error}); the state of job {job_id} is unknown"
                ) from exc
            if not health.answered:
                raise DeadlineExceeded(
                    f"gave up after {settings.timeout:g}s without an answer from the API: job "
                    f"{job_id} is perhaps still running (or the API is unreachable); "
                    f"`batchflow poll {job_id}` follows it again"
                ) from exc
            raise DeadlineExceeded(
                f"job {job_id} is still running after {settings.timeout:g}s; "
                f"`batchflow poll {job_id}` follows it again"
            ) from exc
    outputs = {s.processing_stage_id: s.output_batches for s in stages}
    state = "failed" if job.error else "succeeded"
    lines = [f"job {job_id} {state}"]
    lines += [f"  {stage}: {' '.join(batches) or '-'}" for stage, batches in outputs.items()]
    payload = {"jobId": job_id, "state": state, "error": job.error, "outputBatches": outputs}
    out.result(payload, text="\n".join(lines))
    if job.error:
        raise JobFailedError(
            f"job {job_id} ended in error; see `batchflow jobs logs {job_id} --severity error`"
        )
