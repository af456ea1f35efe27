"""Test doubles for the job engine's ports: a tmp-dir staging area and a recording notifier.

``LocalDirStaging`` keeps blobs in a local blob store at ``root`` (keys
``<workspace>/<batch>/<part>/<name>`` for inputs) with the batches' metadata in memory, and
honours the :class:`~batchflow.server.jobs.ports.StagingPort` contract (idempotent output
batches, replace-on-add).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from batchflow.server.core.blobs import LocalBlobStore
from batchflow.server.jobs.ports import OutputBlob, StagedItem

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
        self.blob_store = LocalBlobStore(root).locator
        self.batches: dict[tuple[str, str], _Batch] = {}

    def path(self, item: StagedItem) -> Path:
        """The file behind ``item`` (tests read outputs from it)."""
        return self.root / item.key

    def read(self, item: StagedItem) -> bytes:
        return self.path(item).read_bytes()

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
            key = f"{workspace}/{batch_id}/{part_name or _NO_PART}/{name}"
            path = self.root / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            item = StagedItem(name=name, key=key, content_type=content_type, size=len(data))
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

    async def output_prefix(self, workspace: str, batch_id: str) -> str:
        return f"{workspace}/{batch_id}/_outputs"

    async def add_output_blob(self, workspace: str, batch_id: str, blob: OutputBlob) -> None:
        batch = self.batches[(workspace, batch_id)]
        batch.files[(blob.part_name, blob.name)] = StagedItem(
            name=blob.name, key=blob.key, content_type=blob.content_type, size=blob.size
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
