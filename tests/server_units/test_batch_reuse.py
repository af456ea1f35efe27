"""Re-creating an expired batch id before the sweeper ran: the old batch's blobs must not leak."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from batchflow.server.core.blobs import LocalBlobStore, UrlSigner
from batchflow.server.core.db import create_catalog_engine, create_schema, utcnow
from batchflow.server.core.settings import ServerSettings, sqlite_url
from batchflow.server.staging.schema import batches
from batchflow.server.staging.service import StagingService
from batchflow.server.staging.sweeper import Sweeper

pytestmark = pytest.mark.anyio


async def _bytes(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _blob_files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() and ".tmp" not in p.relative_to(root).parts}


async def test_reused_expired_batch_id_leaves_no_old_blob_after_one_sweep(
    tmp_path: Path, catalog_url: str | None
) -> None:
    settings = ServerSettings(
        data_dir=tmp_path,
        api_keys=("key",),
        public_url="http://127.0.0.1:1",
        database_url=catalog_url,
        batch_ttl=timedelta(days=1),
    )
    engine = create_catalog_engine(catalog_url or sqlite_url(tmp_path))
    try:
        await create_schema(engine)
        blobs = LocalBlobStore(settings.blobs_dir)
        staging = StagingService(engine, blobs, UrlSigner(b"secret", settings.public_url), settings)

        old = await staging.create_batch("reused", upload_mode="simple")
        old_file = await staging.add_file("reused", "old.jpg", _bytes(b"old bytes"))
        async with engine.begin() as conn:  # the batch expires; the sweeper has not run yet
            await conn.execute(
                update(batches)
                .where(batches.c.id == old.pk)
                .values(expires_at=utcnow() - timedelta(seconds=1))
            )

        new = await staging.create_batch("reused", upload_mode="simple")
        new_file = await staging.add_file("reused", "new.jpg", _bytes(b"new bytes"))
        assert new.pk != old.pk
        assert [f.name async for f in staging.iter_files("reused")] == ["new.jpg"]

        removed = await Sweeper(engine, blobs, settings).sweep_once()
        assert await blobs.stat(old_file.blob_key) is None
        assert _blob_files(settings.blobs_dir) == {settings.blobs_dir / new_file.blob_key}
        assert removed == 1
        assert [f.name async for f in staging.iter_files("reused")] == ["new.jpg"]
    finally:
        await engine.dispose()
