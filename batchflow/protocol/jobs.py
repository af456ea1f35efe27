"""Batch-processing wire models (PROTOCOL.md, BP prefix). Field names are exact.

The server stores a job definition exactly as sent and validates it through these models,
which carry the defaults the hosted service applies to absent fields.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from batchflow.protocol._base import Wire

__all__ = [
    "AggregationFormat",
    "ComputeConfiguration",
    "Job",
    "JobDefinition",
    "JobInput",
    "JobResponse",
    "JobStage",
    "JobTask",
    "JobType",
    "ListJobsResponse",
    "ListLogsResponse",
    "ListStagesResponse",
    "ListTasksResponse",
    "LogEntry",
    "LogSeverity",
    "MachineType",
    "ProcessingSpecification",
    "RestartOverrides",
]

JobType = Literal["simple-image-processing-v1", "simple-video-processing-v1"]
MachineType = Literal["cpu", "gpu"]
AggregationFormat = Literal["csv", "jsonl"]
LogSeverity = Literal["info", "warning", "error"]


class JobInput(Wire):
    """``staging-batch-input-v1``: which staged batch (and part) a job reads."""

    type: Literal["staging-batch-input-v1"] = "staging-batch-input-v1"
    batch_id: str
    part_name: str | None = None
    images_metadata_part: str | None = None


class ComputeConfiguration(Wire):
    """``compute-configuration-v2``."""

    type: Literal["compute-configuration-v2"] = "compute-configuration-v2"
    machine_type: MachineType = "cpu"
    workers_per_machine: int = Field(default=1, ge=1, le=64)


class ProcessingSpecification(Wire):
    """``workflows-processing-specification-v1``."""

    type: Literal["workflows-processing-specification-v1"] = "workflows-processing-specification-v1"
    workspace: str
    workflow_id: str = Field(min_length=1)
    workflow_parameters: dict[str, Any] = Field(default_factory=dict)
    image_input_name: str | None = None
    persist_images_outputs: bool = False
    images_outputs_to_be_persisted: list[str] = Field(default_factory=list)
    aggregation_format: AggregationFormat = "csv"
    max_video_fps: float | None = Field(default=None, alias="maxVideoFPS", gt=0)
    images_metadata_inputs_mapping: dict[str, str] | None = None


class JobDefinition(Wire):
    """A workflow job, image or video."""

    type: JobType
    job_input: JobInput
    compute_configuration: ComputeConfiguration = Field(default_factory=ComputeConfiguration)
    processing_timeout_seconds: int = Field(default=7200, ge=1)
    max_parallel_tasks: int = Field(default=4, ge=1, le=1024)
    max_image_failure_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    processing_specification: ProcessingSpecification
    notifications_url: str | None = Field(default=None, alias="notificationsURL")
    inference_backend: str | None = None


class RestartOverrides(Wire):
    """Body of ``POST /jobs/{jobId}/restart`` (absent body: no overrides)."""

    type: Literal["parameters-override-v1"] = "parameters-override-v1"
    compute_configuration: ComputeConfiguration | None = None
    max_parallel_tasks: int | None = Field(default=None, ge=1, le=1024)
    processing_timeout_seconds: int | None = Field(default=None, ge=1)
    max_image_failure_rate: float | None = Field(default=None, ge=0.0, le=1.0)


class Job(Wire):
    """One job as the API shows it."""

    job_id: str
    name: str
    job_definition: dict[str, Any]
    current_stage: str | None = None
    planned_stages: list[str] | None = None
    error: bool = False
    is_terminal: bool = False
    last_notification: dict[str, Any] | str | None = None
    created_at: datetime
    last_update: datetime
    restart_parameters_override: list[dict[str, Any]] = Field(default_factory=list)


class JobResponse(Wire):
    """``GET /jobs/{jobId}``."""

    job: Job


class ListJobsResponse(Wire):
    """``GET /jobs``."""

    jobs: list[Job]
    next_page_token: str | None = None


class JobStage(Wire):
    """One stage of a job (``processing`` or ``export``)."""

    processing_stage_id: str
    processing_stage_name: str
    tasks_number: int
    output_batches: list[str]
    start_timestamp: datetime
    notification: dict[str, Any] | str
    status_type: str
    last_event_timestamp: datetime


class ListStagesResponse(Wire):
    """``GET /jobs/{jobId}/stages``."""

    stages: list[JobStage]


class JobTask(Wire):
    """One task of a stage."""

    task_id: str
    notification: dict[str, Any] | str
    status_type: str
    progress: float | None = None
    event_timestamp: datetime


class ListTasksResponse(Wire):
    """``GET /jobs/{jobId}/stages/{stageId}/tasks``."""

    tasks: list[JobTask]
    next_page_token: str | None = None


class LogEntry(Wire):
    """One structured job log line."""

    created_at: datetime
    processing_stage_id: str | None = None
    task_id: str | None = None
    severity: LogSeverity
    reporting_module: str
    log_type: str
    payload: dict[str, Any]


class ListLogsResponse(Wire):
    """``GET /jobs/{jobId}/logs``."""

    logs: list[LogEntry]
    next_page_token: str | None = None
