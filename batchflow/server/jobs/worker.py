"""Worker side of a processing task: run the items, write the result file and image outputs.

:func:`execute_task` is synchronous and runs in a worker process (``LocalProcessExecutor``) or a
thread (``InlineExecutor``). The work itself is done by a :class:`TaskRunner` named in
``TaskSpec.runner``; the default bridges to :mod:`batchflow.server.workflows`. Inputs are read
and outputs stored through the spec's blob store (:func:`open_task_store`); the result file and
images are written to a scratch folder of this machine first. Worker processes
run :func:`serve` (started by :mod:`multiprocessing`, spawn context): this module and its imports
stay light so a fresh worker starts fast.
"""

from __future__ import annotations

import contextlib
import importlib
import mimetypes
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Protocol, cast

from batchflow.server.core.blobs import TaskBlobStore, open_task_store
from batchflow.server.jobs._spec import TaskOutcome, TaskSpec
from batchflow.server.jobs._writers import RESULT_CONTENT_TYPES, ResultWriter
from batchflow.server.jobs.ports import OutputBlob

__all__ = [
    "ItemOutput",
    "TaskCancelledError",
    "TaskItem",
    "TaskRunner",
    "execute_task",
    "load_runner",
    "serve",
]

_ERROR_SAMPLE = 20
_FRAME_OUTPUT = re.compile(r"(.+)-\d{6}")
_PROGRESS_EVERY = 0.25


@dataclass(frozen=True, slots=True)
class ItemOutput:
    """What one item produced: rows (one per image, one per video frame), images, or an error.

    ``error`` (``{"kind", "message"}``) marks the whole item failed; ``rows`` may still hold
    per-frame rows (a failed frame is a row with an ``error`` key).
    """

    rows: tuple[Mapping[str, Any], ...] = ()
    images: tuple[tuple[str, bytes, str], ...] = ()  # (output name, data, extension)
    error: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class TaskItem:
    """One staged item as a runner sees it: a file on this machine (``path``)."""

    name: str
    path: Path
    content_type: str
    size: int


class TaskRunner(Protocol):
    """Turns staged items into outputs, in input order, with ``spec.workers`` concurrency."""

    def __call__(
        self, spec: TaskSpec, items: Iterable[TaskItem]
    ) -> Iterator[tuple[TaskItem, ItemOutput]]: ...


class TaskCancelledError(Exception):
    """Raised inside :func:`execute_task` when ``should_stop`` turned true."""


_RUNNERS: dict[str, TaskRunner] = {}


def load_runner(path: str) -> TaskRunner:
    """The runner at ``module:attribute`` (cached per process: workers are reused)."""
    runner = _RUNNERS.get(path)
    if runner is None:
        module_name, _, attribute = path.partition(":")
        runner = cast(TaskRunner, getattr(importlib.import_module(module_name), attribute))
        _RUNNERS[path] = runner
    return runner


@dataclass
class _ImageSink:
    root: Path
    wanted: frozenset[str]
    files: list[Path] = field(default_factory=list)
    taken: set[Path] = field(default_factory=set)

    def write(self, item_name: str, name: str, data: bytes, extension: str) -> None:
        if self.wanted and name not in self.wanted:
            frame = _FRAME_OUTPUT.fullmatch(name)  # video outputs are named <name>-<frame>
            if frame is None or frame.group(1) not in self.wanted:
                return
        base = self.root / "images" / item_name / name
        target = base.with_name(f"{base.name}.{extension}")
        index = 1
        while target in self.taken:  # e.g. one output per video frame
            target = base.with_name(f"{base.name}-{index}.{extension}")
            index += 1
        self.taken.add(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        self.files.append(target)


def _local_items(
    store: TaskBlobStore, spec: TaskSpec, stack: contextlib.ExitStack
) -> Iterator[TaskItem]:
    for item in spec.items:
        path = stack.enter_context(store.local_file(item.key))
        yield TaskItem(name=item.name, path=path, content_type=item.content_type, size=item.size)


def _store(
    store: TaskBlobStore, spec: TaskSpec, path: Path, name: str, *, part: str, slot: str
) -> OutputBlob:
    # keyed by the server (task and slot), never by user names: bounded length, no surprises
    key = f"{spec.output_prefix}/{spec.task_id}/{slot}"
    info = store.put_file(key, path)
    if part == "results":
        content_type = RESULT_CONTENT_TYPES[spec.aggregation_format]
    else:
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return OutputBlob(name, part, key, info.size, info.sha256, content_type)


def execute_task(
    spec: TaskSpec,
    *,
    on_progress: Callable[[float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TaskOutcome:
    """Run one task to completion; its outputs are stored under ``spec.output_prefix``.

    Output keys are fixed per (task, name): a task run again after a crash overwrites them.
    """
    started = time.monotonic()
    store = open_task_store(spec.blob_store)
    with (
        tempfile.TemporaryDirectory(prefix=f"batchflow-{spec.task_id}-") as scratch,
        contextlib.ExitStack() as inputs,
    ):
        root = Path(scratch)
        runner = load_runner(spec.runner)
        result_path = root / f"{spec.task_id}.{spec.aggregation_format}"
        images = _ImageSink(root, frozenset(spec.outputs_to_persist))
        processed = failed = done = 0
        errors: list[dict[str, Any]] = []
        total = max(len(spec.items), 1)
        last_report = 0.0
        with ResultWriter(result_path, spec.aggregation_format) as writer:
            outputs = runner(spec, _local_items(store, spec, inputs))
            try:
                for item, output in outputs:
                    if should_stop is not None and should_stop():
                        raise TaskCancelledError(spec.task_id)
                    done += 1
                    for row in output.rows:
                        writer.add(item.name, row)
                    if output.error is not None:
                        failed += 1
                        kind = str(output.error.get("kind", "workflow-failed"))
                        message = str(output.error.get("message", ""))
                        writer.add_error(item.name, kind, message)
                        if len(errors) < _ERROR_SAMPLE:
                            errors.append({"item": item.name, "kind": kind, "message": message})
                    else:
                        processed += 1
                        if spec.persist_outputs:
                            for name, data, extension in output.images:
                                images.write(item.name, name, data, extension)
                    now = time.monotonic()
                    if on_progress is not None and (now - last_report >= _PROGRESS_EVERY):
                        last_report = now
                        on_progress(done / total)
            finally:
                close = getattr(outputs, "close", None)
                if close is not None:
                    close()
        stored = tuple(
            _store(
                store,
                spec,
                path,
                path.relative_to(root).as_posix(),
                part="images",
                slot=f"i{index}",
            )
            for index, path in enumerate(images.files)
        )
        result = _store(store, spec, result_path, result_path.name, part="results", slot="result")
    if on_progress is not None:
        on_progress(1.0)
    return TaskOutcome(
        processed=processed,
        failed=failed,
        result=result,
        images=stored,
        machine_seconds=time.monotonic() - started,
        errors=tuple(errors),
    )


def serve(conn: Connection) -> None:
    """Worker process loop: receive a TaskSpec, answer progress/done/error; ``None`` quits."""
    while True:
        try:
            spec = conn.recv()
        except EOFError:
            return
        if spec is None:
            return
        try:
            outcome = execute_task(spec, on_progress=lambda f: conn.send(("progress", f)))
        except Exception as exc:  # noqa: BLE001  # reported to the scheduler as a task failure
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
        else:
            conn.send(("done", outcome))
