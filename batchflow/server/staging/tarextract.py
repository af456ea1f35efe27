"""Extraction of one uploaded tar into its batch (see :mod:`batchflow.server.staging.uploads`).

The tar is read from the blob store and its members are unpacked in a worker thread by
:func:`~batchflow.server.staging.tarsafe.iter_tar` (streaming, path checks) into blobs whose
keys are fixed per (upload, member), so an extraction repeated after a crash overwrites them;
then every row of the extraction commits in one transaction. An unreadable archive deletes
the blobs it had written.
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass
from typing import Any

import anyio
from sqlalchemy import update

from batchflow.errors import BatchflowError, UsageError
from batchflow.protocol.ids import validate_file_name
from batchflow.server.core.db import utcnow
from batchflow.server.staging._threadio import BlobReadStream, write_blob_from_thread
from batchflow.server.staging.ingests import (
    IngestSpec,
    existing_names,
    fail_ingest,
    find_ingest,
    finish_shard_if_done,
    insert_ingest,
)
from batchflow.server.staging.schema import files, ingests, shards, uploads
from batchflow.server.staging.service import StagingService, guess_content_type
from batchflow.server.staging.tarsafe import TarRejection, iter_tar

__all__ = ["NOTIFICATION_CONFIG", "TarExtraction", "read_notification_config"]

NOTIFICATION_CONFIG = "notification_config.json"
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class _Staged:
    name: str
    key: str
    size: int
    sha256: str


def read_notification_config(data: bytes) -> tuple[str | None, str | None]:
    """``(ingestId, notificationsURL)`` of a tar's ``notification_config.json`` (both optional)."""
    try:
        config = json.loads(data)
    except ValueError:
        return None, None
    if not isinstance(config, dict):
        return None, None
    ingest_id = config.get("ingestId")
    url = config.get("notificationsURL")
    return (
        ingest_id if isinstance(ingest_id, str) and 0 < len(ingest_id) <= 128 else None,
        url if isinstance(url, str) and url.startswith(("http://", "https://")) else None,
    )


class TarExtraction:
    """One extraction run of one received tar upload."""

    def __init__(
        self,
        staging: StagingService,
        *,
        upload_pk: int,
        upload_id: str,
        batch_pk: int,
        digest: str,
        ingest_pk: int | None,
        tar_key: str,
        authorization: str | None,
    ) -> None:
        self.staging = staging
        self.upload_pk = upload_pk
        self.upload_id = upload_id
        self.batch_pk = batch_pk
        self.digest = digest
        self.ingest_pk = ingest_pk
        self.tar_key = tar_key
        self.authorization = authorization
        self.config: tuple[str | None, str | None] = (None, None)

    async def run(self) -> None:
        ingest_pk, shard_pk = await self._begin()
        staged: list[_Staged] = []
        rejected: list[TarRejection] = []
        # A crash or cancel before the commit leaves blobs that the next run overwrites.
        try:
            await anyio.to_thread.run_sync(self._unpack, staged, rejected)
        except (BatchflowError, tarfile.TarError, OSError, EOFError) as exc:
            await self._fail(ingest_pk, "invalid-archive", f"unreadable tar: {exc}")
            await self._discard(staged)
            return
        ingest_id, url = self.config
        if ingest_id is not None and not await self._adopt_id(ingest_pk, ingest_id):
            await self._discard(staged)
            return
        await self._commit(
            ingest_pk=ingest_pk,
            shard_pk=shard_pk,
            staged=staged,
            rejected=rejected,
            ingest_id=ingest_id,
            url=url,
        )

    async def _discard(self, staged: list[_Staged]) -> None:
        for item in staged:
            await self.staging.blobs.delete(item.key)

    async def _begin(self) -> tuple[int, int]:
        async with self.staging.engine.begin() as conn:
            ingest_pk = self.ingest_pk
            if ingest_pk is None:
                spec = IngestSpec(ingest_id=f"tar-{self.upload_id}", digest=self.digest, kind="tar")
                ingest_pk = await insert_ingest(conn, self.batch_pk, spec)
                await conn.execute(
                    shards.insert().values(
                        batch_pk=self.batch_pk,
                        ingest_pk=ingest_pk,
                        shard_id=f"tar-{self.upload_id}",
                        objects_count=0,
                        state="in-progress",
                        updated_at=utcnow(),
                    )
                )
            await conn.execute(
                update(uploads)
                .where(uploads.c.id == self.upload_pk)
                .values(state="processing", ingest_pk=ingest_pk)
            )
            shard_pk = await conn.scalar(
                shards.select()
                .with_only_columns(shards.c.id)
                .where(shards.c.ingest_pk == ingest_pk)
            )
        assert shard_pk is not None
        return ingest_pk, int(shard_pk)

    def _unpack(self, staged: list[_Staged], rejected: list[TarRejection]) -> None:
        """Worker thread: stream the tar's members into their blobs (hashed on the way)."""
        with io.BufferedReader(BlobReadStream(self.staging.blobs, self.tar_key), _CHUNK) as tar:
            for item in iter_tar(tar):
                if isinstance(item, TarRejection):
                    rejected.append(item)
                    continue
                member, stream = item
                if member.name == NOTIFICATION_CONFIG:
                    self.config = read_notification_config(stream.read(64 * 1024))
                    continue
                key = f"b{self.batch_pk}/t{self.upload_pk}-{len(staged)}"
                info = write_blob_from_thread(self.staging.blobs, key, stream)
                staged.append(_Staged(member.name, key, info.size, info.sha256))

    async def _fail(self, ingest_pk: int, error_type: str, reason: str) -> None:
        async with self.staging.engine.begin() as conn:
            await fail_ingest(conn, ingest_pk, error_type, reason, authorization=self.authorization)
            await conn.execute(
                update(uploads)
                .where(uploads.c.id == self.upload_pk)
                .values(state="failed", error=reason)
            )

    async def _adopt_id(self, ingest_pk: int, ingest_id: str) -> bool:
        """Take the tar's own ingestId; False when it names an earlier ingest (handled here)."""
        async with self.staging.engine.begin() as conn:
            existing = await find_ingest(conn, self.batch_pk, ingest_id)
            if existing is None or existing.id == ingest_pk:
                return True
            if existing.digest == self.digest:  # the same tar sent again: a no-op
                await conn.execute(ingests.delete().where(ingests.c.id == ingest_pk))
                await conn.execute(
                    update(uploads)
                    .where(uploads.c.id == self.upload_pk)
                    .values(state="done", ingest_pk=existing.id, error="duplicated")
                )
                return False
        await self._fail(
            ingest_pk, "ingest-id-conflict", f"ingestId {ingest_id!r} was used with other content"
        )
        return False

    async def _commit(
        self,
        *,
        ingest_pk: int,
        shard_pk: int,
        staged: list[_Staged],
        rejected: list[TarRejection],
        ingest_id: str | None,
        url: str | None,
    ) -> None:
        keys = [item.key for item in staged]
        unused: list[str] = []
        now = utcnow()
        common = {
            "batch_pk": self.batch_pk,
            "ingest_pk": ingest_pk,
            "shard_pk": shard_pk,
            "part_name": "",
            "created_at": now,
        }
        async with self.staging.engine.begin() as conn:
            if ingest_id is not None or url is not None:
                values: dict[str, Any] = {"notifications_url": url}
                if ingest_id is not None:
                    values["ingest_id"] = ingest_id
                await conn.execute(
                    update(ingests).where(ingests.c.id == ingest_pk).values(**values)
                )
            taken = await existing_names(conn, self.batch_pk, [item.name for item in staged])
            rows: list[dict[str, Any]] = [
                _failed(item.name, item.failure_type, item.reason) for item in rejected
            ]
            for item, key in zip(staged, keys, strict=True):
                try:
                    validate_file_name(item.name)
                except UsageError as exc:
                    rows.append(_failed(item.name, "invalid-file-name", exc.message))
                    unused.append(key)
                    continue
                if item.name in taken:
                    rows.append(_failed(item.name, "duplicate-file-name", "already in the batch"))
                    unused.append(key)
                    continue
                taken.add(item.name)
                rows.append(
                    {
                        "name": item.name,
                        "status": "ok",
                        "size": item.size,
                        "sha256": item.sha256,
                        "content_type": guess_content_type(item.name),
                        "blob_key": key,
                        "failure_type": None,
                        "failure_reason": None,
                    }
                )
            if rows:
                defaults = {"size": None, "sha256": None, "content_type": None, "blob_key": None}
                await conn.execute(files.insert(), [common | defaults | row for row in rows])
            await conn.execute(
                update(shards).where(shards.c.id == shard_pk).values(objects_count=len(rows))
            )
            await finish_shard_if_done(conn, shard_pk, authorization=self.authorization)
            await conn.execute(
                update(uploads).where(uploads.c.id == self.upload_pk).values(state="done")
            )
        for key in unused:
            await self.staging.blobs.delete(key)


def _failed(name: str, failure_type: str, reason: str) -> dict[str, Any]:
    return {
        "name": name,
        "status": "failed",
        "failure_type": failure_type,
        "failure_reason": reason,
    }
