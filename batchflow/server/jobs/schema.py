"""Catalog tables of the job engine, on their own :data:`metadata`.

The server calls ``metadata.create_all`` on this one too (tables are prefixed ``bp_`` so they
never clash with the staging catalog). Works on SQLite and PostgreSQL. Timestamps are UTC;
SQLite hands them back naive, so read them through :func:`as_utc`.

States and statuses (``bp_jobs.state``, ``bp_stages.status``, ``bp_tasks.status``) and the moves
allowed between them are in :mod:`batchflow.server.jobs.states`; rows are read as the frozen
records of :mod:`batchflow.server.jobs.records`.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from batchflow.server.core.db import ID_TYPE, as_utc, timestamp_column, utcnow

__all__ = [
    "as_utc",
    "jobs",
    "logs",
    "metadata",
    "stages",
    "tasks",
    "utcnow",
]

metadata = MetaData()

_ID = ID_TYPE
_ts = timestamp_column


jobs = Table(
    "bp_jobs",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("workspace", String(64), nullable=False),
    Column("job_id", String(20), nullable=False),
    Column("name", String(256), nullable=False),
    Column("definition", JSON, nullable=False),  # as sent
    Column("digest", String(64), nullable=False),  # of the normalised definition
    Column("state", String(16), nullable=False),
    Column("error", Boolean, nullable=False, default=False),
    Column("is_terminal", Boolean, nullable=False, default=False),
    Column("current_stage", String(32), nullable=True),
    Column("restart_overrides", JSON, nullable=False),
    Column("last_notification", JSON, nullable=True),
    Column("run", Integer, nullable=False, default=0),  # restarts so far
    # machine seconds already spent when the current run started (timeout budget baseline)
    Column("machine_seconds_base", Float, nullable=False, default=0.0),
    Column("notified", Boolean, nullable=False, default=False),
    _ts("created_at"),
    _ts("last_update"),
    UniqueConstraint("workspace", "job_id", name="uq_bp_jobs_ws_id"),
    sqlite_autoincrement=True,
)
Index("ix_bp_jobs_terminal", jobs.c.is_terminal, jobs.c.id)

stages = Table(
    "bp_stages",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("job_pk", ForeignKey("bp_jobs.id", ondelete="CASCADE"), nullable=False),
    Column("stage_id", String(32), nullable=False),  # processing | export
    Column("status", String(16), nullable=False),  # pending | running | succeeded | failed...
    Column("tasks_number", Integer, nullable=False),
    Column("output_batches", JSON, nullable=False),
    Column("notification", JSON, nullable=False),
    _ts("started_at"),
    _ts("updated_at"),
    UniqueConstraint("job_pk", "stage_id", name="uq_bp_stages_job_stage"),
    sqlite_autoincrement=True,
)

tasks = Table(
    "bp_tasks",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("job_pk", ForeignKey("bp_jobs.id", ondelete="CASCADE"), nullable=False),
    Column("stage_pk", ForeignKey("bp_stages.id", ondelete="CASCADE"), nullable=False),
    Column("task_id", String(32), nullable=False),
    Column("items", JSON, nullable=False),  # item names (processing) or file names (export)
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("progress", Float, nullable=False, default=0.0),
    Column("processed", Integer, nullable=False, default=0),
    Column("failed", Integer, nullable=False, default=0),
    Column("machine_seconds", Float, nullable=False, default=0.0),
    Column("result_file", Text, nullable=True),  # name in the stage's output batch
    Column("notification", JSON, nullable=False),
    _ts("updated_at"),
    UniqueConstraint("stage_pk", "task_id", name="uq_bp_tasks_stage_task"),
    sqlite_autoincrement=True,
)
Index("ix_bp_tasks_job_status", tasks.c.job_pk, tasks.c.status)

logs = Table(
    "bp_logs",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("job_pk", ForeignKey("bp_jobs.id", ondelete="CASCADE"), nullable=False),
    Column("stage_id", String(32), nullable=True),
    Column("task_id", String(32), nullable=True),
    Column("severity", String(16), nullable=False),  # info | warning | error
    Column("reporting_module", String(64), nullable=False),
    Column("log_type", String(64), nullable=False),
    Column("payload", JSON, nullable=False),
    _ts("created_at"),
    sqlite_autoincrement=True,
)
Index("ix_bp_logs_job", logs.c.job_pk, logs.c.id)
