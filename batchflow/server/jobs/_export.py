"""The export stage's packing: results and images of the processing batch into archives.

One archive per ``files_per_archive`` files, members named as in the processing output batch.
Written to a temp name and renamed, so a crash never leaves a half archive to publish.
"""

from __future__ import annotations

import os
import tarfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from batchflow.server.jobs.ports import StagedItem

__all__ = ["ArchiveFormat", "archive_content_type", "pack_archive"]

ArchiveFormat = Literal["tar.gz", "zip"]


def archive_content_type(fmt: ArchiveFormat) -> str:
    return "application/gzip" if fmt == "tar.gz" else "application/zip"


def pack_archive(files: Sequence[StagedItem], target: Path, fmt: ArchiveFormat) -> Path:
    """Pack ``files`` (by their batch names) into ``target``; returns ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    if fmt == "tar.gz":
        with tarfile.open(tmp, "w:gz", compresslevel=6) as archive:
            for item in files:
                archive.add(item.path, arcname=item.name, recursive=False)
    else:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for item in files:
                archive.write(item.path, arcname=item.name)
    os.replace(tmp, target)
    return target
