"""FastAPI routes of the batch-processing API (PROTOCOL.md, BP prefix).

The router carries no auth: the app adds it as a router-level dependency. The JobService comes
from :func:`get_job_service` (``app.state.job_service``, or ``app.dependency_overrides``).
Routes raise typed batchflow errors; the server's one table (``core/errors.py``, installed by
``install_error_handlers``) turns them into ``{"error": "..."}`` answers with their status.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, get_args

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from batchflow.errors import TransientError, UsageError
from batchflow.protocol.jobs import (
    JobResponse,
    ListStagesResponse,
    LogSeverity,
    RestartOverrides,
)
from batchflow.server.jobs.service import JobService

__all__ = ["PREFIX", "get_job_service", "router"]

PREFIX = "/batch-processing/v1/external/{workspace}"
router = APIRouter(prefix=PREFIX)
_SEVERITIES = get_args(LogSeverity)


def get_job_service(request: Request) -> JobService:
    """The JobService of this request: ``request.state.job_service`` (set by the plugin's
    router dependency) or ``app.state.job_service``; 503 until the job engine runs."""
    service = getattr(request.state, "job_service", None) or getattr(
        request.app.state, "job_service", None
    )
    if not isinstance(service, JobService):
        raise TransientError("the job engine is not running yet", retry_after=1)
    return service


Service = Annotated[JobService, Depends(get_job_service)]
PageSize = Annotated[str | None, Query(alias="pageSize")]
PageToken = Annotated[str | None, Query(alias="nextPageToken")]


def _page_size(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError as exc:
        raise UsageError(f"invalid pageSize {value!r}: not an integer") from exc


def _with_token(body: dict[str, Any]) -> dict[str, Any]:
    """``nextPageToken: null`` on the last page, where PROTOCOL.md leaves the key out.

    Only for the jobs and tasks listings: inference-cli 1.8.3 declares the key there as
    ``Optional[str]`` without a default (``ListBatchJobsResponse``,
    ``ListJobStageTasksResponse``), which pydantic 2 requires. Its logs model has a default, so
    logs follow PROTOCOL.md. Proved by tests/compat/test_listings.py
    (``test_last_pages_parse_in_the_reference_client_models``).
    """
    body.setdefault("nextPageToken", None)
    return body


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise UsageError(f"invalid JSON body: {exc}") from exc


@router.get("/jobs")
async def list_jobs(
    workspace: str, service: Service, page_size: PageSize = None, token: PageToken = None
) -> JSONResponse:
    page = await service.list_jobs(workspace, _page_size(page_size), token)
    return JSONResponse(_with_token(page.wire()))


@router.post("/jobs/{job_id}")
async def create_job(
    workspace: str,
    job_id: str,
    request: Request,
    service: Service,
    name: Annotated[str | None, Query()] = None,
) -> JSONResponse:
    body = await _json_body(request)
    if not isinstance(body, dict):
        raise UsageError("the body must be a JSON object (a job definition)")
    await service.create_job(workspace, job_id, body, name)
    return JSONResponse({})


@router.get("/jobs/{job_id}")
async def get_job(workspace: str, job_id: str, service: Service) -> JSONResponse:
    return JSONResponse(JobResponse(job=await service.get_job(workspace, job_id)).wire())


@router.get("/jobs/{job_id}/stages")
async def list_stages(workspace: str, job_id: str, service: Service) -> JSONResponse:
    stages = await service.list_stages(workspace, job_id)
    return JSONResponse(ListStagesResponse(stages=stages).wire())


@router.get("/jobs/{job_id}/stages/{stage_id}/tasks")
async def list_tasks(
    *,
    workspace: str,
    job_id: str,
    stage_id: str,
    service: Service,
    page_size: PageSize = None,
    token: PageToken = None,
) -> JSONResponse:
    page = await service.list_tasks(workspace, job_id, stage_id, _page_size(page_size), token)
    return JSONResponse(_with_token(page.wire()))


@router.post("/jobs/{job_id}/abort")
async def abort_job(workspace: str, job_id: str, service: Service) -> JSONResponse:
    await service.abort(workspace, job_id)
    return JSONResponse({})


@router.post("/jobs/{job_id}/restart")
async def restart_job(
    workspace: str, job_id: str, request: Request, service: Service
) -> JSONResponse:
    body = await _json_body(request)
    overrides = None
    if body is not None:
        try:
            overrides = RestartOverrides.model_validate(body)
        except ValidationError as exc:
            raise UsageError(f"invalid restart overrides: {exc.errors()[0]['msg']}") from exc
    await service.restart(workspace, job_id, overrides)
    return JSONResponse({})


@router.get("/jobs/{job_id}/logs")
async def list_logs(
    *,
    workspace: str,
    job_id: str,
    service: Service,
    severity: Annotated[str | None, Query()] = None,
    page_size: PageSize = None,
    token: PageToken = None,
) -> JSONResponse:
    if severity is not None and severity not in _SEVERITIES:
        raise UsageError(f"invalid severity {severity!r}: use info, warning or error")
    page = await service.list_logs(
        workspace,
        job_id,
        severity,  # type: ignore[arg-type]  # checked just above
        _page_size(page_size),
        token,
    )
    return JSONResponse(page.wire())
