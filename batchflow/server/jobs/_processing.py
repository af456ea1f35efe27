"""The processing stage of a job: plan tasks over the input batch, run them, publish results.

Tasks run through the :class:`~batchflow.server.jobs.executors.Executor`, at most
``maxParallelTasks`` at once. A watcher checks the machine-time budget
(``processingTimeoutSeconds``, summed over tasks) and aborts from the API every
``watch_interval`` and flushes task progress; either stop cancels the running tasks. A task's
output is published into the stage's output batch (images first, its result file last) before
the task is marked succeeded, so a crash in between only re-runs it (names are deterministic
and replace the earlier copy).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread
from sqlalchemy import update

from batchflow.server.jobs._spec import TaskFailedError, TaskOutcome, TaskSpec
from batchflow.server.jobs._store import (
    insert_stage,
    job_notification,
    shielded,
    stage_move,
    task_move,
    write_log,
)
from batchflow.server.jobs.ports import StagedItem
from batchflow.server.jobs.records import (
    TaskRecord,
    job_state,
    machine_seconds_spent,
    stage_tasks,
    unsucceeded_count,
)
from batchflow.server.jobs.schema import stages, tasks, utcnow
from batchflow.server.jobs.states import JobState, StageId, TaskStatus

if TYPE_CHECKING:
    from batchflow.server.jobs._run import JobRun

__all__ = ["ProcessingStage", "plan_chunks"]


def plan_chunks(count: int, items_per_task: int, max_parallel: int) -> list[range]:
    """Contiguous, near-equal index ranges: ``max(ceil(n/per_task), min(n, parallel))``."""
    if count <= 0:
        return []
    number = max(math.ceil(count / items_per_task), min(count, max_parallel))
    base, extra = divmod(count, number)
    ranges, start = [], 0
    for index in range(number):
        size = base + (1 if index < extra else 0)
        ranges.append(range(start, start + size))
        start += size
    return ranges


class StopReason(StrEnum):
    """Why the watcher stopped a processing run (the stopped tasks' ``notification.reason``)."""

    TIMEOUT = "timeout"
    ABORTED = "aborted"


@dataclass
class _Control:
    """Live state of a processing run, shared by the task coroutines and the watcher."""

    done_seconds: float
    running: dict[int, float] = field(default_factory=dict)  # task pk -> start (monotonic)
    progress: dict[int, float] = field(default_factory=dict)
    reason: StopReason | None = None  # once the watcher stopped the run


class ProcessingStage:
    """The ``processing`` stage of one :class:`JobRun`."""

    def __init__(self, job_run: JobRun) -> None:
        self.job_run = job_run
        self.ctx = job_run.ctx
        self.job = job_run.job
        self.pk = job_run.pk
        self.definition = job_run.definition

    async def plan(self) -> bool:
        spec = self.definition.processing_specification
        job_input = self.definition.job_input
        workspace, job_id = self.job.workspace, self.job.job_id
        if not await self.ctx.staging.batch_exists(workspace, job_input.batch_id):
            await self.job_run.fail(
                JobState.PENDING, "input-batch-missing", {"batchId": job_input.batch_id}
            )
            return False
        items = await self.ctx.staging.list_items(
            workspace, job_input.batch_id, job_input.part_name
        )
        chunks = plan_chunks(
            len(items), self.ctx.items_per_task, self.definition.max_parallel_tasks
        )
        output_batch = f"{job_id}-processing"
        await self.ctx.staging.create_output_batch(
            workspace,
            output_batch,
            content_type="mixed" if spec.persist_images_outputs else "metadata",
            display_name=f"{job_id} processing results",
        )
        async with shielded(self.ctx.engine.begin()) as conn:
            if not await self.job_run.transition(conn, JobState.PENDING, JobState.PROCESSING):
                return False
            await insert_stage(
                conn,
                self.pk,
                StageId.PROCESSING,
                output_batch,
                [[items[i].name for i in chunk] for chunk in chunks],
            )
            await write_log(
                conn,
                self.pk,
                "info" if items else "warning",
                "processing-planned" if items else "empty-input",
                {"items": len(items), "tasks": len(chunks), "outputBatch": output_batch},
                stage_id=StageId.PROCESSING,
            )
        return True

    async def run(self) -> bool:
        stage = await self.job_run.stage(StageId.PROCESSING)
        if stage is None:  # pragma: no cover - planned in the same transaction as the state
            await self.job_run.fail(
                JobState.PROCESSING, "internal-error", {"reason": "no processing stage"}
            )
            return False
        job_input = self.definition.job_input
        items = await self.ctx.staging.list_items(
            self.job.workspace, job_input.batch_id, job_input.part_name
        )
        by_name = {item.name: item for item in items}
        async with shielded(self.ctx.engine.begin()) as conn:
            pending = await stage_tasks(conn, stage.pk, {TaskStatus.PENDING})
            spent = await machine_seconds_spent(conn, self.pk)
            await conn.execute(stage_move(TaskStatus.RUNNING).where(stages.c.id == stage.pk))
            if self.definition.compute_configuration.machine_type == "gpu" and not self.ctx.has_gpu:
                await write_log(
                    conn,
                    self.pk,
                    "warning",
                    "gpu-unavailable",
                    {"message": "no GPU on this server: the job runs on CPU"},
                    stage_id=StageId.PROCESSING,
                )
        control = _Control(done_seconds=spent - self.job.machine_seconds_base)
        limiter = anyio.CapacityLimiter(self.definition.max_parallel_tasks)
        async with anyio.create_task_group() as group:
            group.start_soon(self._watch, group.cancel_scope, control)
            async with anyio.create_task_group() as workers:
                for task in pending:
                    workers.start_soon(
                        self._run_task, task, stage.output_batches[0], by_name, control, limiter
                    )
            group.cancel_scope.cancel()
        return await self._close(stage.pk, control)

    async def _watch(self, scope: anyio.CancelScope, control: _Control) -> None:
        """Every ``watch_interval``: check the timeout budget and aborts, flush progress."""
        timeout = self.definition.processing_timeout_seconds
        flushed: dict[int, float] = {}
        while True:
            await anyio.sleep(self.ctx.watch_interval)
            now = time.monotonic()
            used = control.done_seconds + sum(now - t0 for t0 in control.running.values())
            if used > timeout:
                control.reason = StopReason.TIMEOUT
                scope.cancel()
                return
            async with shielded(self.ctx.engine.begin()) as conn:
                if await job_state(conn, self.pk) is not JobState.PROCESSING:
                    control.reason = StopReason.ABORTED
                    scope.cancel()
                    return
                for task_pk, value in list(control.progress.items()):
                    if flushed.get(task_pk) != value and task_pk in control.running:
                        flushed[task_pk] = value
                        await conn.execute(
                            update(tasks)
                            .where(tasks.c.id == task_pk, tasks.c.status == TaskStatus.RUNNING)
                            .values(progress=value, updated_at=utcnow())
                        )

    async def _run_task(
        self,
        task: TaskRecord,
        output_batch: str,
        by_name: dict[str, StagedItem],
        control: _Control,
        limiter: anyio.CapacityLimiter,
    ) -> None:
        async with limiter:
            names = task.items
            found = tuple(by_name[name] for name in names if name in by_name)
            missing = len(names) - len(found)
            if not await self.job_run.start_task(task):
                return
            prefix = await self.ctx.staging.output_prefix(self.job.workspace, output_batch)
            spec = self._task_spec(task.task_id, found, prefix)
            control.running[task.pk] = time.monotonic()
            try:
                outcome = await self.ctx.executor.run_task(
                    spec, on_progress=lambda value: control.progress.__setitem__(task.pk, value)
                )
            except TaskFailedError as exc:
                elapsed = time.monotonic() - control.running.pop(task.pk)
                control.done_seconds += elapsed
                await self.job_run.finish_task(
                    task, TaskStatus.FAILED, {"reason": str(exc)}, machine_seconds=elapsed
                )
                await self.job_run.log(
                    "error", "task-failed", {"reason": str(exc)},
                    stage_id=StageId.PROCESSING, task_id=task.task_id,
                )  # fmt: skip
                return
            control.running.pop(task.pk, None)
            control.done_seconds += outcome.machine_seconds
            failed = outcome.failed + missing
            rate = failed / len(names) if names else 0.0
            counts = {"processed": outcome.processed, "failed": failed, "items": len(names)}
            if rate > self.definition.max_image_failure_rate:
                await self.job_run.finish_task(
                    task, TaskStatus.FAILED, {"reason": "failure-rate-exceeded", **counts},
                    machine_seconds=outcome.machine_seconds, processed=outcome.processed,
                    failed=failed,
                )  # fmt: skip
                await self.job_run.log(
                    "error",
                    "failure-rate-exceeded",
                    {
                        **counts,
                        "failureRate": rate,
                        "maxImageFailureRate": self.definition.max_image_failure_rate,
                        "errors": list(outcome.errors),
                    },
                    stage_id=StageId.PROCESSING,
                    task_id=task.task_id,
                )
                return
            await self._publish(output_batch, outcome)
            await self.job_run.finish_task(
                task, TaskStatus.SUCCEEDED, counts,
                machine_seconds=outcome.machine_seconds, processed=outcome.processed,
                failed=failed, result_file=outcome.result.name,
            )  # fmt: skip
            if failed:
                await self.job_run.log(
                    "warning", "items-failed", {**counts, "errors": list(outcome.errors)},
                    stage_id=StageId.PROCESSING, task_id=task.task_id,
                )  # fmt: skip

    def _task_spec(self, task_id: str, items: tuple[StagedItem, ...], prefix: str) -> TaskSpec:
        spec = self.definition.processing_specification
        compute = self.definition.compute_configuration
        return TaskSpec(
            job_id=self.job.job_id,
            task_id=task_id,
            workflow_id=spec.workflow_id,
            job_type=self.definition.type,
            items=items,
            params=dict(spec.workflow_parameters),
            max_video_fps=spec.max_video_fps,
            machine_type=compute.machine_type,
            workers=compute.workers_per_machine,
            aggregation_format=spec.aggregation_format,
            persist_outputs=spec.persist_images_outputs,
            outputs_to_persist=tuple(spec.images_outputs_to_be_persisted),
            blob_store=self.ctx.staging.blob_store,
            output_prefix=prefix,
            workflows_file=self.ctx.workflows_file,
            image_input_name=spec.image_input_name,
            runner=self.ctx.runner,
        )

    async def _publish(self, batch: str, outcome: TaskOutcome) -> None:
        """Images first, the result file last: its presence means the task's output is whole."""
        for blob in (*outcome.images, outcome.result):
            await self.ctx.staging.add_output_blob(self.job.workspace, batch, blob)

    async def _close(self, stage_pk: int, control: _Control) -> bool:
        now = utcnow()
        mono = time.monotonic()
        reason = control.reason
        async with shielded(self.ctx.engine.begin()) as conn:
            stopped = TaskStatus.FAILED if reason is StopReason.TIMEOUT else TaskStatus.ABORTED
            for task_pk, started in control.running.items():
                await conn.execute(
                    task_move(stopped, TaskStatus.RUNNING)
                    .where(tasks.c.id == task_pk)
                    .values(
                        notification={"reason": reason or "stopped"},
                        machine_seconds=tasks.c.machine_seconds + (mono - started),
                        updated_at=now,
                    )
                )
            if reason is not None:
                await conn.execute(
                    task_move(TaskStatus.ABORTED)  # whatever is still pending or running
                    .where(tasks.c.stage_pk == stage_pk)
                    .values(notification={"reason": reason}, updated_at=now)
                )
            unsucceeded = await unsucceeded_count(conn, stage_pk)
            if reason is StopReason.TIMEOUT:
                status = TaskStatus.FAILED
            elif reason is StopReason.ABORTED:
                status = TaskStatus.ABORTED
            else:
                status = TaskStatus.SUCCEEDED if unsucceeded == 0 else TaskStatus.FAILED
            await conn.execute(
                update(stages)
                .where(stages.c.id == stage_pk)
                .values(notification={"failedTasks": unsucceeded}, updated_at=now)
            )
            # an API abort may have set the stage aborted already: it stays so
            await conn.execute(stage_move(status).where(stages.c.id == stage_pk))
            if reason is StopReason.TIMEOUT:
                if await self.job_run.transition(
                    conn,
                    JobState.PROCESSING,
                    JobState.FAILED,
                    error=True,
                    notification=job_notification(JobState.FAILED, reason="processing-timeout"),
                ):
                    await write_log(
                        conn,
                        self.pk,
                        "error",
                        "processing-timeout",
                        {
                            "processingTimeoutSeconds": self.definition.processing_timeout_seconds,
                            "machineSeconds": control.done_seconds
                            + sum(mono - t for t in control.running.values()),
                        },
                        stage_id=StageId.PROCESSING,
                    )
                return False
            if reason is StopReason.ABORTED:
                return False
            return await self.job_run.transition(
                conn,
                JobState.PROCESSING,
                JobState.EXPORT,
                error=unsucceeded > 0,
                notification=job_notification(JobState.EXPORT),
            )
