"""The narrow ports the job engine depends on; the server core implements them.

The engine never touches the server's catalog or blob store directly: it reads staged items and
writes output batches through :class:`StagingPort`, and announces finished jobs through
:class:`Notifier` (the lead maps it to webhook outbox rows). In-memory/tmp-dir doubles live in
:mod:`batchflow.server.jobs.testing`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

__all__ = ["Notifier", "StagedItem", "StagingPort", "WorkflowExists"]


@dataclass(frozen=True, slots=True)
class StagedItem:
    """One staged file readable on local disk (``path``), as a job sees it."""

    name: str
    path: Path
    content_type: str
    size: int


class StagingPort(Protocol):
    """Read input batches and write output batches of one server.

    Contract the implementation must keep:
    - ``list_items`` returns only successfully stored files, in a stable order (by name is fine);
      ``part_name=None`` means every part.
    - ``create_output_batch`` is idempotent (an existing batch with that id is kept as is).
    - ``add_output_file`` moves or copies ``source`` in and *replaces* a file of the same name
      and part, so a task re-run after a crash never duplicates an output.
    """

    async def batch_exists(self, workspace: str, batch_id: str) -> bool: ...

    async def list_items(
        self, workspace: str, batch_id: str, part_name: str | None
    ) -> Sequence[StagedItem]: ...

    async def create_output_batch(
        self, workspace: str, batch_id: str, *, content_type: str, display_name: str
    ) -> None: ...

    async def add_output_file(
        self,
        workspace: str,
        batch_id: str,
        name: str,
        source: Path,
        *,
        content_type: str,
        part_name: str,
    ) -> None: ...


class Notifier(Protocol):
    """Told once (at least once across crashes) when a job with a notificationsURL ends."""

    async def job_finished(self, job_id: str, url: str, success: bool) -> None: ...


WorkflowExists = Callable[[str], bool]
"""``workflow_exists(workflow_id)``: the service refuses jobs naming an unknown workflow."""
