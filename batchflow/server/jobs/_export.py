"""The export stage's packing: results and images of the processing batch into archives.

One archive per ``files_per_archive`` files, members named as in the processing output batch,
read from the blob store. Packed in a scratch folder under a temp name, then stored as a blob,
so a crash never leaves a half archive to publish.
"""

from __future__ import annotations

import os
import tarfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from batchflow.server.core.blobs import TaskBlobStore, open_task_store
from batchflow.server.jobs.ports import OutputBlob, StagedItem

__all__ = ["ArchiveFormat", "archive_content_type", "export_archive", "pack_archive"]

ArchiveFormat = Literal["tar.gz", "zip"]


def archive_content_type(fmt: ArchiveFormat) -> str:
    return "application/gzip" if fmt == "tar.gz" else "application/zip"


def pack_archive(
    store: TaskBlobStore, files: Sequence[StagedItem], target: Path, fmt: ArchiveFormat
) -> Path:
    """Pack ``files`` (by their batch names) into ``target``; returns ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    if fmt == "tar.gz":
        with tarfile.open(tmp, "w:gz", compresslevel=6) as archive:
            for item in files:
                with store.local_file(item.key) as path:
                    archive.add(path, arcname=item.name, recursive=False)
    else:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for item in files:
                with store.local_file(item.key) as path:
                    archive.write(path, arcname=item.name)
    os.replace(tmp, target)
    return target


def export_archive(
    blob_store: str, files: Sequence[StagedItem], target: Path, key: str, fmt: ArchiveFormat
) -> OutputBlob:
    """Pack ``files`` into ``target`` (named as in the batch) and store it as the blob ``key``."""
    store = open_task_store(blob_store)
    name = target.name
    target = pack_archive(store, files, target, fmt)
    info = store.put_file(key, target)
    return OutputBlob(name, "archives", key, info.size, info.sha256, archive_content_type(fmt))
