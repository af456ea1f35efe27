"""``export_batches`` over a fake FileSource: resume with Range offsets, verification,
unsafe names refused, stage selection."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream

from batchflow.client import ByteSink
from batchflow.errors import PartialFailure
from batchflow.export import (
    MAX_FAILURE_EXAMPLES,
    ExportSummary,
    UnsafeArchiveError,
    export_batches,
    output_batches,
    raise_for_failures,
)
from batchflow.protocol import FileMetadata, JobStage


class FakeSource:
    """Serves files from memory; records each download's start offset."""

    def __init__(self, files: dict[str, dict[str, bytes]], *, lie_sha: bool = False) -> None:
        self.files = files
        self.lie_sha = lie_sha
        self.starts: list[tuple[str, int]] = []

    def meta(self, batch: str, name: str, data: bytes) -> FileMetadata:
        digest = hashlib.sha256(data + (b"x" if self.lie_sha else b"")).hexdigest()
        return FileMetadata(download_url=f"mem://{batch}/{name}", file_name=name,
                            content_type="image/jpeg", size=len(data), sha256=digest)  # fmt: skip

    @asynccontextmanager
    async def iter_files(
        self, batch_id: str, /
    ) -> AsyncIterator[MemoryObjectReceiveStream[FileMetadata]]:
        items = [self.meta(batch_id, n, d) for n, d in self.files[batch_id].items()]
        send, receive = anyio.create_memory_object_stream[FileMetadata](len(items) + 1)
        with send:
            for item in items:
                send.send_nowait(item)
        with receive:
            yield receive

    async def download(self, url: str, dest: ByteSink, *, start: int = 0) -> int:
        batch, name = url.removeprefix("mem://").split("/", 1)
        self.starts.append((name, start))
        data = self.files[batch][name][start:]
        await dest.write(data)
        return len(data)


def run_export(source: FakeSource, batches: list[str], root: Path, **kwargs: Any) -> ExportSummary:
    return anyio.run(functools.partial(export_batches, source, batches, root, **kwargs))


def test_partial_file_resumes_from_its_size(tmp_path: Path) -> None:
    data = bytes(range(256)) * 100
    source = FakeSource({"b1": {"a/x.jpg": data, "y.jpg": b"yy"}})
    part = tmp_path / "b1" / "a" / ".x.jpg.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:1000])
    summary = run_export(source, ["b1"], tmp_path, concurrency=2)
    assert (tmp_path / "b1" / "a" / "x.jpg").read_bytes() == data
    assert ("a/x.jpg", 1000) in source.starts
    assert ("y.jpg", 0) in source.starts
    assert (summary.downloaded, summary.skipped, summary.failed) == (2, 0, 0)
    assert summary.bytes == len(data) - 1000 + 2
    assert not part.exists()


def test_stale_partial_of_other_content_restarts_from_zero(tmp_path: Path) -> None:
    data = b"A" * 500
    source = FakeSource({"b1": {"x.jpg": data}})
    part = tmp_path / "b1" / ".x.jpg.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"B" * 200)  # not a prefix of the real content
    summary = run_export(source, ["b1"], tmp_path)
    assert (tmp_path / "b1" / "x.jpg").read_bytes() == data
    assert source.starts == [("x.jpg", 200), ("x.jpg", 0)]
    assert summary.failed == 0


def test_checksum_mismatch_fails_the_file_and_leaves_nothing(tmp_path: Path) -> None:
    source = FakeSource({"b1": {"x.jpg": b"data"}}, lie_sha=True)
    summary = run_export(source, ["b1"], tmp_path)
    assert summary.failed == 1
    assert "do not match" in (summary.failures[0].error or "")
    assert not (tmp_path / "b1" / "x.jpg").exists()
    assert not list(tmp_path.rglob("*.part"))
    with pytest.raises(PartialFailure):
        raise_for_failures(summary)


@pytest.mark.parametrize("name", ["../escape.jpg", "/etc/escape.jpg", "a/../../escape.jpg"])
def test_unsafe_names_are_refused_and_nothing_escapes(tmp_path: Path, name: str) -> None:
    root = tmp_path / "inner" / "out"
    source = FakeSource({"b1": {name: b"evil", "ok.jpg": b"ok"}})
    summary = run_export(source, ["b1"], root)
    assert (root / "b1" / "ok.jpg").read_bytes() == b"ok"
    assert summary.failed == 1
    assert summary.failures[0].error_type is UnsafeArchiveError
    assert not list(tmp_path.rglob("escape.jpg"))
    assert [n for n, _ in source.starts] == ["ok.jpg"]
    with pytest.raises(UnsafeArchiveError, match="outside the target"):
        raise_for_failures(summary)


def test_failures_are_counted_all_but_kept_as_a_few_examples_unsafe_first(
    tmp_path: Path,
) -> None:
    files = {f"bad{i:02d}.jpg": b"data" for i in range(MAX_FAILURE_EXAMPLES + 5)}
    files["../escape.jpg"] = b"evil"  # listed last: after the examples are full
    source = FakeSource({"b1": files}, lie_sha=True)
    summary = run_export(source, ["b1"], tmp_path / "out", concurrency=1)
    assert summary.failed == MAX_FAILURE_EXAMPLES + 6
    assert len(summary.failures) == MAX_FAILURE_EXAMPLES
    assert summary.wire()["failed"] == MAX_FAILURE_EXAMPLES + 6
    with pytest.raises(UnsafeArchiveError, match=r"escape\.jpg.*and 25 more failures"):
        raise_for_failures(summary)


def test_symlink_inside_target_pointing_out_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "out"
    (root / "b1").mkdir(parents=True)
    (root / "b1" / "link").symlink_to(outside, target_is_directory=True)
    source = FakeSource({"b1": {"link/x.jpg": b"evil"}})
    summary = run_export(source, ["b1"], root)
    assert summary.failed == 1
    assert not list(outside.iterdir())


def _stage(sid: str, batches: list[str]) -> JobStage:
    now = datetime.now(UTC)
    return JobStage(processing_stage_id=sid, processing_stage_name=sid, tasks_number=1,
                    output_batches=batches, start_timestamp=now, notification={},
                    status_type="succeeded", last_event_timestamp=now)  # fmt: skip


def test_output_batches_prefers_the_export_stage() -> None:
    stages = [_stage("processing", ["j-processing"]), _stage("export", ["j-export", "j-export"])]
    assert output_batches(stages) == ["j-export"]
    stages = [_stage("processing", ["j-processing"]), _stage("export", [])]
    assert output_batches(stages) == ["j-processing"]
    assert output_batches([_stage("a", ["x", "y"]), _stage("b", ["y", "z"])]) == ["x", "y", "z"]
    assert output_batches([]) == []
