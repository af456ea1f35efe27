"""Concurrent, resumable, verified download of batches into a folder.

Every file of each batch goes to ``DIR/<batch_id>/<fileName>``: written to ``.<name>.part``
next to it, resumed with ``Range`` when that partial file exists, verified (size, and SHA-256
when the listing gives ``size``/``sha256`` as ``batchflow serve`` does), then renamed into place.
A file already in place with the listed size (and digest) is skipped, so re-running an export
downloads only what is missing. File names are checked before anything is written: absolute
names and ``..`` segments are refused, nothing lands outside ``DIR``.

With ``extract``, archives (:func:`~batchflow.export.extract.is_archive`) are extracted with
path checks into ``DIR/<batch_id>/<archive name without suffix>/`` as soon as they are in place;
a marker file there makes a re-run skip archives already extracted.

Listing, downloads and extraction are bounded streams and the run keeps counters plus the first
few failures, never a record per file: memory does not grow with the number of files.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import anyio
import anyio.to_thread
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from batchflow.client import ByteSink
from batchflow.errors import (
    BatchflowError,
    NothingMatched,
    PartialFailure,
    PermanentError,
    UsageError,
)
from batchflow.export.extract import UnsafeArchiveError, extract_archive, is_archive, remove_tree
from batchflow.pipeline import collapse_errors, peek
from batchflow.protocol import FileMetadata, JobStage, validate_batch_id, validate_file_name

__all__ = [
    "EXTRACTED_MARKER",
    "MAX_FAILURE_EXAMPLES",
    "ExportSummary",
    "FileOutcome",
    "FileSource",
    "Status",
    "export_batches",
    "output_batches",
    "raise_for_failures",
    "safe_destination",
]

EXTRACTED_MARKER = ".batchflow-extracted.json"
MAX_FAILURE_EXAMPLES = 20
_HASH_CHUNK = 1 << 20
Status = Literal["downloaded", "resumed", "skipped", "extracted", "failed"]


class FileSource(Protocol):
    """What export needs from a Batch API client (``BatchClient`` fits)."""

    def iter_files(
        self, batch_id: str, /
    ) -> AbstractAsyncContextManager[MemoryObjectReceiveStream[FileMetadata]]: ...

    async def download(self, url: str, dest: ByteSink, *, start: int = 0) -> int: ...


@dataclass(frozen=True, slots=True)
class FileOutcome:
    """What happened to one file (or one archive, for ``extracted``)."""

    batch_id: str
    name: str
    status: Status
    bytes: int = 0
    error: str | None = None
    error_type: type[BatchflowError] | None = None


@dataclass(frozen=True, slots=True)
class ExportSummary:
    """Totals of one export; ``failures`` holds the first few (``failed`` counts them all)."""

    target_dir: Path
    batches: tuple[str, ...]
    downloaded: int
    skipped: int
    failed: int
    extracted: int
    bytes: int
    seconds: float
    failures: tuple[FileOutcome, ...] = ()

    @property
    def rate(self) -> float:
        """Bytes per second over the whole run."""
        return self.bytes / self.seconds if self.seconds > 0 else 0.0

    def wire(self) -> dict[str, object]:
        return {
            "targetDir": str(self.target_dir),
            "batches": list(self.batches),
            "downloaded": self.downloaded,
            "skipped": self.skipped,
            "failed": self.failed,
            "extracted": self.extracted,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "bytesPerSecond": round(self.rate),
            "failures": [
                {"batchId": f.batch_id, "fileName": f.name, "error": f.error} for f in self.failures
            ],
        }


def output_batches(stages: Sequence[JobStage]) -> list[str]:
    """The batches to export for a job: the ``export`` stage's output batches when that stage
    exists and has any, else every stage's output batches (in stage order, without repeats)."""
    for stage in stages:
        names = {stage.processing_stage_id, stage.processing_stage_name}
        if "export" in names and stage.output_batches:
            return list(dict.fromkeys(stage.output_batches))
    found = [batch for stage in stages for batch in stage.output_batches]
    return list(dict.fromkeys(found))


def safe_destination(root: Path, batch_id: str, name: str) -> Path:
    """``root/batch_id/name`` after checking that it stays inside ``root``."""
    try:
        validate_batch_id(batch_id)
        validate_file_name(name)
    except UsageError as exc:
        raise UnsafeArchiveError(f"refused file {name!r} of batch {batch_id!r}: {exc}") from exc
    dest = root / batch_id / name
    if not dest.resolve().is_relative_to(root.resolve()):
        raise UnsafeArchiveError(
            f"refused file {name!r} of batch {batch_id!r}: it resolves outside {root}"
        )
    return dest


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _matches(path: Path, meta: FileMetadata) -> bool:
    """Whether ``path`` holds the listed file (size, then digest, when the listing has them)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return False
    if meta.size is not None and size != meta.size:
        return False
    return not meta.sha256 or _sha256(path) == meta.sha256.lower()


@dataclass(frozen=True, slots=True)
class _Plan:
    dest: Path
    part: Path
    start: int
    complete: bool


def _plan(root: Path, batch_id: str, meta: FileMetadata) -> _Plan:
    """Where a file goes, whether it is already there, and where a partial download stops."""
    dest = safe_destination(root, batch_id, meta.file_name)
    part = dest.with_name(f".{dest.name}.part")
    if _matches(dest, meta):
        return _Plan(dest, part, dest.stat().st_size, complete=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    start = part.stat().st_size if part.exists() else 0
    if meta.size is not None and start > meta.size:
        start = 0
    if start == 0:
        part.unlink(missing_ok=True)
    return _Plan(dest, part, start, complete=False)


def _finish(plan: _Plan, meta: FileMetadata) -> int | None:
    """Verify the partial file; when it matches, fsync and rename it into place."""
    if not _matches(plan.part, meta):
        got = plan.part.stat().st_size if plan.part.exists() else 0
        plan.part.unlink(missing_ok=True)
        return got
    with plan.part.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(plan.part, plan.dest)
    return None


_Archives = MemoryObjectSendStream[tuple[str, Path]]


@dataclass
class _Run:
    """One export's state: counters and the first failures, never one record per file."""

    source: FileSource
    root: Path
    extract: bool
    on_event: Callable[[FileOutcome], None] | None
    counts: Counter[Status] = field(default_factory=Counter)
    bytes: int = 0
    failures: list[FileOutcome] = field(default_factory=list)

    def record(self, outcome: FileOutcome) -> None:
        self.counts[outcome.status] += 1
        if outcome.status in {"downloaded", "resumed"}:
            self.bytes += outcome.bytes
        if outcome.status == "failed":
            self._keep_failure(outcome)
        if self.on_event is not None:
            self.on_event(outcome)

    def _keep_failure(self, outcome: FileOutcome) -> None:
        if len(self.failures) < MAX_FAILURE_EXAMPLES:
            self.failures.append(outcome)
        elif outcome.error_type is UnsafeArchiveError and not any(
            f.error_type is UnsafeArchiveError for f in self.failures
        ):
            self.failures[-1] = outcome  # raise_for_failures names an unsafe one first

    async def work(
        self,
        receive: MemoryObjectReceiveStream[tuple[str, FileMetadata]],
        archives: _Archives,
        first: tuple[str, FileMetadata] | None = None,
    ) -> None:
        async with receive, archives:
            if first is not None:
                await self.one(*first, archives)
            async for batch_id, meta in receive:
                await self.one(batch_id, meta, archives)

    async def one(self, batch_id: str, meta: FileMetadata, archives: _Archives) -> None:
        try:
            outcome = await self.fetch(batch_id, meta, archives)
        except BatchflowError as exc:
            outcome = FileOutcome(
                batch_id, meta.file_name, "failed", error=exc.message, error_type=type(exc)
            )
        except OSError as exc:
            outcome = FileOutcome(
                batch_id, meta.file_name, "failed", error=f"{meta.file_name}: {exc}",
                error_type=PermanentError,
            )  # fmt: skip
        self.record(outcome)

    async def fetch(self, batch_id: str, meta: FileMetadata, archives: _Archives) -> FileOutcome:
        outcome = await self._fetch(batch_id, meta)
        if self.extract and is_archive(Path(meta.file_name)):
            await archives.send((batch_id, safe_destination(self.root, batch_id, meta.file_name)))
        return outcome

    async def _fetch(self, batch_id: str, meta: FileMetadata) -> FileOutcome:
        plan = await anyio.to_thread.run_sync(_plan, self.root, batch_id, meta)
        if plan.complete:
            return FileOutcome(batch_id, meta.file_name, "skipped", plan.start)
        async with await anyio.open_file(plan.part, "ab") as sink:
            written = await self.source.download(meta.download_url, sink, start=plan.start)
        mismatch = await anyio.to_thread.run_sync(_finish, plan, meta)
        if mismatch is None:
            status: Status = "resumed" if plan.start else "downloaded"
            return FileOutcome(batch_id, meta.file_name, status, written)
        if plan.start:  # a stale partial of another version: start over once
            fresh = _Plan(plan.dest, plan.part, 0, complete=False)
            async with await anyio.open_file(plan.part, "wb") as sink:
                written = await self.source.download(meta.download_url, sink)
            mismatch = await anyio.to_thread.run_sync(_finish, fresh, meta)
            if mismatch is None:
                return FileOutcome(batch_id, meta.file_name, "downloaded", written)
        raise PermanentError(
            f"{batch_id}/{meta.file_name}: downloaded {mismatch} bytes that do not match the "
            f"listing (size {meta.size}, sha256 {meta.sha256 or 'not given'})"
        )

    async def extract_from(self, receive: MemoryObjectReceiveStream[tuple[str, Path]]) -> None:
        async with receive:
            async for batch_id, archive in receive:
                await self.extract_one(batch_id, archive)

    async def extract_one(self, batch_id: str, archive: Path) -> None:
        name = archive.name
        try:
            done = await anyio.to_thread.run_sync(_extract, archive)
        except BatchflowError as exc:
            self.record(FileOutcome(batch_id, name, "failed", error=exc.message,
                                    error_type=type(exc)))  # fmt: skip
            return
        except OSError as exc:
            self.record(FileOutcome(batch_id, name, "failed", error=f"{name}: {exc}",
                                    error_type=PermanentError))  # fmt: skip
            return
        if done is not None:
            self.record(FileOutcome(batch_id, name, "extracted", done))


def _archive_stem(name: str) -> str:
    lower = name.lower()
    for suffix in (".tar.gz", ".tgz", ".tar", ".zip"):
        if lower.endswith(suffix):
            return name[: -len(suffix)] or f"{name}.extracted"  # a file named just ".tar"
    return name


def _extract(archive: Path) -> int | None:
    """Extract ``archive`` next to itself unless already done; the bytes written, or None."""
    try:
        stat = archive.stat()
    except FileNotFoundError:
        return None  # its download failed, already recorded
    target = archive.with_name(_archive_stem(archive.name))
    marker = target / EXTRACTED_MARKER
    stamp = {"archive": archive.name, "size": stat.st_size, "mtimeNs": stat.st_mtime_ns}
    try:
        if json.loads(marker.read_text()) == stamp:
            return None
    except (OSError, ValueError):
        pass
    existed = target.exists()
    try:
        result = extract_archive(archive, target)
    except BatchflowError:
        if not existed:
            remove_tree(target)
        raise
    marker.write_text(json.dumps(stamp))
    return result.bytes


async def _produce(
    source: FileSource,
    batch_ids: Sequence[str],
    send: MemoryObjectSendStream[tuple[str, FileMetadata]],
) -> None:
    async with send:
        for batch_id in batch_ids:
            async with source.iter_files(batch_id) as receive:
                async for meta in receive:
                    await send.send((batch_id, meta))


def _no_files(batch_ids: Sequence[str]) -> NothingMatched:
    names = ", ".join(f"'{b}'" for b in batch_ids)
    what = f"batch {names} has" if len(batch_ids) == 1 else f"batches {names} have"
    return NothingMatched(f"{what} no files to export (use --allow-empty to accept that)")


def _make_root(target_dir: Path) -> Path:
    target_dir.mkdir(parents=True, exist_ok=True)
    return target_dir.resolve()


async def export_batches(
    source: FileSource,
    batch_ids: Sequence[str],
    target_dir: Path,
    *,
    concurrency: int = 8,
    extract: bool = False,
    on_event: Callable[[FileOutcome], None] | None = None,
    allow_empty: bool = False,
) -> ExportSummary:
    """Download every file of ``batch_ids`` into ``target_dir`` (see the module docstring).

    Failed files do not stop the others; they are in the summary (see :func:`raise_for_failures`).
    Batches with no file at all raise :class:`NothingMatched` (unless ``allow_empty``: an
    empty summary) before ``target_dir`` is created.
    """
    for batch_id in batch_ids:
        validate_batch_id(batch_id)
    run: _Run | None = None
    started = time.monotonic()
    workers = max(1, concurrency)
    extractors = max(1, min(workers, 4)) if extract else 0
    send, receive = anyio.create_memory_object_stream[tuple[str, FileMetadata]](workers * 2)
    archives_send, archives_receive = anyio.create_memory_object_stream[tuple[str, Path]](workers)
    async with collapse_errors(), anyio.create_task_group() as tg:
        tg.start_soon(_produce, source, list(batch_ids), send)
        with receive, archives_send, archives_receive:
            first = await peek(receive)
            if first is not None:
                root = await anyio.to_thread.run_sync(_make_root, target_dir)
                run = _Run(source, root, extract, on_event)
                tg.start_soon(run.work, receive.clone(), archives_send.clone(), first)
                for _ in range(workers - 1):
                    tg.start_soon(run.work, receive.clone(), archives_send.clone())
                for _ in range(extractors):
                    tg.start_soon(run.extract_from, archives_receive.clone())
    if run is None:
        if not allow_empty:
            raise _no_files(batch_ids)
        run = _Run(source, target_dir, extract, on_event)
    counts = run.counts
    return ExportSummary(
        target_dir=target_dir,
        batches=tuple(batch_ids),
        downloaded=counts["downloaded"] + counts["resumed"],
        skipped=counts["skipped"],
        failed=counts["failed"],
        extracted=counts["extracted"],
        bytes=run.bytes,
        seconds=time.monotonic() - started,
        failures=tuple(run.failures),
    )


def raise_for_failures(summary: ExportSummary) -> None:
    """Raise when files failed: an unsafe name or archive first (exit 1), else PartialFailure."""
    if not summary.failures:
        return
    unsafe = [f for f in summary.failures if f.error_type is UnsafeArchiveError]
    first = (unsafe or list(summary.failures))[0]
    more = f" (and {summary.failed - 1} more failures)" if summary.failed > 1 else ""
    if unsafe:
        raise UnsafeArchiveError(f"{first.error}{more}; nothing was written outside the target")
    raise PartialFailure(
        f"{summary.failed} files failed, e.g. {first.error}{more}; re-run to retry them"
    )
