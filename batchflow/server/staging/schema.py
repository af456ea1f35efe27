"""Staging tables: batches, their ingests and shards, files (also the fetch queue), uploads.

They live on the server's one :data:`~batchflow.server.core.db.metadata`. ``files`` doubles as
the ingest queue: a reference waiting to be fetched is a row with status ``pending`` and its
``source_url``; the worker turns it into ``ok`` or ``failed``. A partial unique index keeps names
unique per (batch, part) among non-failed rows, so a failed duplicate can still be recorded.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from batchflow.server.core.db import ID_TYPE as _ID
from batchflow.server.core.db import metadata, timestamp_column

__all__ = ["batches", "files", "ingests", "shards", "uploads"]


batches = Table(
    "batches",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("workspace", String(64), nullable=False),
    Column("batch_id", String(64), nullable=False),
    Column("display_name", String(256), nullable=False),
    Column("batch_type", String(32), nullable=False),
    Column("content_type", String(32), nullable=False),
    # simple | bulk | output: simple and bulk uploads never mix in one batch
    Column("upload_mode", String(16), nullable=False),
    timestamp_column("created_at"),
    timestamp_column("expires_at"),
    UniqueConstraint("workspace", "batch_id", name="uq_batches_ws_id"),
    sqlite_autoincrement=True,
)

ingests = Table(
    "ingests",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("batch_pk", ForeignKey("batches.id", ondelete="CASCADE"), nullable=False),
    Column("ingest_id", String(128), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("kind", String(32), nullable=False),  # image-references | video-references | tar
    Column("notifications_url", Text, nullable=True),
    Column("categories", JSON, nullable=False),
    Column("state", String(16), nullable=False),  # in-progress | completed | failed
    Column("error", Text, nullable=True),
    timestamp_column("created_at"),
    timestamp_column("updated_at"),
    UniqueConstraint("batch_pk", "ingest_id", name="uq_ingests_batch_id"),
    sqlite_autoincrement=True,
)

shards = Table(
    "shards",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("batch_pk", ForeignKey("batches.id", ondelete="CASCADE"), nullable=False),
    Column("ingest_pk", ForeignKey("ingests.id", ondelete="CASCADE"), nullable=False),
    Column("shard_id", String(160), nullable=False),
    Column("objects_count", Integer, nullable=False),
    Column("state", String(16), nullable=False),  # pending | in-progress | completed | failed
    timestamp_column("updated_at"),
    UniqueConstraint("batch_pk", "shard_id", name="uq_shards_batch_id"),
    sqlite_autoincrement=True,
)

files = Table(
    "files",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("batch_pk", ForeignKey("batches.id", ondelete="CASCADE"), nullable=False),
    Column("ingest_pk", ForeignKey("ingests.id", ondelete="CASCADE"), nullable=True),
    Column("shard_pk", ForeignKey("shards.id", ondelete="CASCADE"), nullable=True),
    Column("name", Text, nullable=False),
    Column("part_name", String(256), nullable=False, default=""),
    Column("status", String(16), nullable=False),  # pending | ok | failed
    Column("source_url", Text, nullable=True),
    Column("size", BigInteger, nullable=True),
    Column("sha256", String(64), nullable=True),
    Column("content_type", String(128), nullable=True),
    Column("blob_key", String(256), nullable=True),
    Column("failure_type", String(64), nullable=True),
    Column("failure_reason", Text, nullable=True),
    timestamp_column("created_at"),
    sqlite_autoincrement=True,
)
Index(
    "ux_files_live_name",
    files.c.batch_pk,
    files.c.part_name,
    files.c.name,
    unique=True,
    sqlite_where=files.c.status != "failed",
    postgresql_where=files.c.status != "failed",
)
Index("ix_files_batch_status", files.c.batch_pk, files.c.status, files.c.id)
Index("ix_files_shard_status", files.c.shard_pk, files.c.status)
Index("ix_files_pending", files.c.status, files.c.id)

uploads = Table(
    "uploads",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("upload_id", String(64), nullable=False, unique=True),
    Column("batch_pk", ForeignKey("batches.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(16), nullable=False),  # video | tar
    Column("file_name", Text, nullable=True),
    # open | receiving | received | processing | done | failed
    Column("state", String(16), nullable=False),
    Column("ingest_pk", ForeignKey("ingests.id", ondelete="SET NULL"), nullable=True),
    Column("size", BigInteger, nullable=True),
    Column("sha256", String(64), nullable=True),
    Column("error", Text, nullable=True),
    timestamp_column("created_at"),
    timestamp_column("expires_at"),
    sqlite_autoincrement=True,
)
