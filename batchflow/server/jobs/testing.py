"""Test doubles for the job engine's ports: a tmp-dir staging area and a recording notifier.

``LocalDirStaging`` keeps batches under ``root/<workspace>/<batch>/<part>/<name>`` with their
metadata in memory, and honours the :class:`~batchflow.server.jobs.ports.StagingPort` contract
(idempotent output batches, replace-on-add).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from batchflow.server.jobs.ports import StagedItem

__all__ = ["JobFinished", "LocalDirStaging", "RecordingNotifier"]

_NO_PART = "_"


@dataclass
class _Batch:
    content_type: str
    display_name: str
    output: bool
    files: dict[tuple[str, str], StagedItem] = field(default_factory=dict)  # (part, name)


class LocalDirStaging:
    """A StagingPort over a local directory (tests, demos)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.batches: dict[tuple[str, str], _Batch] = {}

    def _path(self, workspace: str, batch_id: str, part: str, name: str) -> Path:
        return self.root / workspace / batch_id / (part or _NO_PART) / name

    def add_input(
        self,
        workspace: str,
        batch_id: str,
        files: dict[str, bytes],
        *,
        content_type: str = "image/jpeg",
        part_name: str = "",
        batch_content_type: str = "images",
    ) -> list[StagedItem]:
        """Stage ``files`` (name -> bytes) into an input batch; replaces same-named files."""
        batch = self.batches.setdefault(
            (workspace, batch_id), _Batch(batch_content_type, batch_id, output=False)
        )
        staged = []
        for name, data in files.items():
            path = self._path(workspace, batch_id, part_name, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            item = StagedItem(name=name, path=path, content_type=content_type, size=len(data))
            batch.files[(part_name, name)] = item
            staged.append(item)
        return staged

    async def batch_exists(self, workspace: str, batch_id: str) -> bool:
        return (workspace, batch_id) in self.batches

    async def list_items(
        self, workspace: str, batch_id: str, part_name: str | None
    ) -> list[StagedItem]:
        batch = self.batches.get((workspace, batch_id))
        if batch is None:
            return []
        return [
            item
            for (part, _name), item in sorted(batch.files.items())
            if part_name is None or part == part_name
        ]

    async def create_output_batch(
        self, workspace: str, batch_id: str, *, content_type: str, display_name: str
    ) -> None:
        self.batches.setdefault(
            (workspace, batch_id), _Batch(content_type, display_name, output=True)
        )

    async def add_output_file(
        self,
        workspace: str,
        batch_id: str,
        name: str,
        source: Path,
        *,
        content_type: str,
        part_name: str,
    ) -> None:
        batch = self.batches[(workspace, batch_id)]
        target = self._path(workspace, batch_id, part_name, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(source, target)
        except OSError:
            shutil.copyfile(source, target)
        batch.files[(part_name, name)] = StagedItem(
            name=name, path=target, content_type=content_type, size=target.stat().st_size
        )


@dataclass(frozen=True, slots=True)
class JobFinished:
    job_id: str
    url: str
    success: bool


@dataclass
class RecordingNotifier:
    """A Notifier that remembers every call."""

    calls: list[JobFinished] = field(default_factory=list)

    async def job_finished(self, job_id: str, url: str, success: bool) -> None:
        self.calls.append(JobFinished(job_id, url, success))
