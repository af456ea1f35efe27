"""The narrow ports the job engine depends on; the server core implements them.

The engine never touches the server's catalog or blob store directly: it reads staged items and
writes output batches through :class:`StagingPort`, and announces finished jobs through
:class:`Notifier` (the lead maps it to webhook outbox rows). A tmp-dir double lives in
:mod:`batchflow.testing.jobs`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Notifier", "OutputBlob", "StagedItem", "StagingPort", "WorkflowExists"]


@dataclass(frozen=True, slots=True)
class StagedItem:
    """One staged file as a job sees it: its bytes are the blob ``key`` of the port's store."""

    name: str
    key: str
    content_type: str
    size: int


@dataclass(frozen=True, slots=True)
class OutputBlob:
    """A file a task stored as the blob ``key``, to become ``part_name/name`` of a batch."""

    name: str
    part_name: str
    key: str
    size: int
    sha256: str
    content_type: str


class StagingPort(Protocol):
    """Read input batches and write output batches of one server.

    ``blob_store`` is the :attr:`~batchflow.server.core.blobs.BlobStore.locator` of the store
    that holds every item's key; tasks open it with
    :func:`~batchflow.server.core.blobs.open_task_store`, wherever they run.

    Contract the implementation must keep:
    - ``list_items`` returns only successfully stored files, in a stable order (by name is fine);
      ``part_name=None`` means every part.
    - ``create_output_batch`` is idempotent (an existing batch with that id is kept as is).
    - ``output_prefix`` is a key prefix for new blobs of that output batch (they go when the
      batch expires).
    - ``add_output_blob`` records a stored blob and *replaces* a file of the same name and
      part, so a task re-run after a crash never duplicates an output.
    """

    blob_store: str

    async def batch_exists(self, workspace: str, batch_id: str) -> bool: ...

    async def list_items(
        self, workspace: str, batch_id: str, part_name: str | None
    ) -> Sequence[StagedItem]: ...

    async def create_output_batch(
        self, workspace: str, batch_id: str, *, content_type: str, display_name: str
    ) -> None: ...

    async def output_prefix(self, workspace: str, batch_id: str) -> str: ...

    async def add_output_blob(self, workspace: str, batch_id: str, blob: OutputBlob) -> None: ...


class Notifier(Protocol):
    """Told once (at least once across crashes) when a job with a notificationsURL ends."""

    async def job_finished(self, job_id: str, url: str, success: bool) -> None: ...


WorkflowExists = Callable[[str], bool]
"""``workflow_exists(workflow_id)``: the service refuses jobs naming an unknown workflow."""
