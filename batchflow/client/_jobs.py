"""Batch-processing calls (PROTOCOL.md, BP prefix).

Retry safety per call: GETs always. ``create_job`` always names the job (a fresh id is made when
none is given, before the first attempt), and the server answers the same id + definition with
200, so it is retried. ``abort`` and ``restart`` are retried: aborting twice leaves the job
aborted, and restart re-runs only what did not succeed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from anyio.streams.memory import MemoryObjectReceiveStream

from batchflow.client._core import ClientCore, Empty
from batchflow.client._errors import request_not_processed
from batchflow.protocol import (
    Job,
    JobDefinition,
    JobResponse,
    JobStage,
    JobTask,
    ListJobsResponse,
    ListLogsResponse,
    ListStagesResponse,
    ListTasksResponse,
    LogEntry,
    RestartOverrides,
    new_job_id,
    validate_job_id,
)
from batchflow.protocol.jobs import LogSeverity

__all__ = ["JobCalls"]


class JobCalls(ClientCore):
    """Jobs: create, inspect, follow, abort, restart."""

    async def list_jobs(
        self, *, page_size: int | None = None, page_token: str | None = None
    ) -> ListJobsResponse:
        params = {"pageSize": page_size, "nextPageToken": page_token}
        return await self.call("GET", await self.bp("jobs"), ListJobsResponse, params=params)

    @asynccontextmanager
    async def iter_jobs(
        self, *, page_size: int | None = None, buffer: int = 64
    ) -> AsyncIterator[MemoryObjectReceiveStream[Job]]:
        async with self.paginate(
            lambda token: self.list_jobs(page_size=page_size, page_token=token),
            lambda page: page.jobs,
            lambda page: page.next_page_token,
            buffer=buffer,
        ) as receive:
            yield receive

    async def create_job(
        self,
        job_id: str | None,
        definition: JobDefinition | Mapping[str, Any],
        *,
        name: str | None = None,
    ) -> str:
        """``POST /jobs/{jobId}``; returns the job id (a new ``job-...`` id if none given).

        A mapping is sent as is (camelCase keys), for job types this client does not model.
        """
        job_id = validate_job_id(job_id) if job_id is not None else new_job_id()
        body = definition.wire() if isinstance(definition, JobDefinition) else dict(definition)
        url = await self.bp("jobs", job_id)
        await self.call("POST", url, Empty, params={"name": name}, json=body)
        return job_id

    async def get_job(self, job_id: str) -> Job:
        url = await self.bp("jobs", validate_job_id(job_id))
        return (await self.call("GET", url, JobResponse)).job

    async def stages(self, job_id: str) -> list[JobStage]:
        url = await self.bp("jobs", validate_job_id(job_id), "stages")
        return (await self.call("GET", url, ListStagesResponse)).stages

    async def list_tasks(
        self,
        job_id: str,
        stage_id: str,
        *,
        page_size: int | None = None,
        page_token: str | None = None,
    ) -> ListTasksResponse:
        url = await self.bp("jobs", validate_job_id(job_id), "stages", stage_id, "tasks")
        params = {"pageSize": page_size, "nextPageToken": page_token}
        return await self.call("GET", url, ListTasksResponse, params=params)

    @asynccontextmanager
    async def iter_tasks(
        self, job_id: str, stage_id: str, *, page_size: int | None = None, buffer: int = 64
    ) -> AsyncIterator[MemoryObjectReceiveStream[JobTask]]:
        async with self.paginate(
            lambda token: self.list_tasks(job_id, stage_id, page_size=page_size, page_token=token),
            lambda page: page.tasks,
            lambda page: page.next_page_token,
            buffer=buffer,
        ) as receive:
            yield receive

    async def abort(self, job_id: str) -> None:
        url = await self.bp("jobs", validate_job_id(job_id), "abort")
        await self.call("POST", url, Empty)

    async def restart(self, job_id: str, overrides: RestartOverrides | None = None) -> None:
        """``POST /jobs/{jobId}/restart``; without overrides no body is sent at all.

        Retried only when the request surely did not reach the server: a restart whose answer
        was lost would be refused the second time (the job is running again).
        """
        url = await self.bp("jobs", validate_job_id(job_id), "restart")
        body = overrides.wire() if overrides is not None else None
        await self.call("POST", url, Empty, json=body, classify=request_not_processed)

    async def list_logs(
        self,
        job_id: str,
        *,
        severity: LogSeverity | None = None,
        page_size: int | None = None,
        page_token: str | None = None,
    ) -> ListLogsResponse:
        url = await self.bp("jobs", validate_job_id(job_id), "logs")
        params = {"pageSize": page_size, "nextPageToken": page_token, "severity": severity}
        return await self.call("GET", url, ListLogsResponse, params=params)

    @asynccontextmanager
    async def iter_logs(
        self,
        job_id: str,
        *,
        severity: LogSeverity | None = None,
        page_size: int | None = None,
        buffer: int = 64,
    ) -> AsyncIterator[MemoryObjectReceiveStream[LogEntry]]:
        async with self.paginate(
            lambda token: self.list_logs(
                job_id, severity=severity, page_size=page_size, page_token=token
            ),
            lambda page: page.logs,
            lambda page: page.next_page_token,
            buffer=buffer,
        ) as receive:
            yield receive
