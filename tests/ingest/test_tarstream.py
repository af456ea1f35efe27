from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchflow.ingest.tarstream import FileChangedError, TarEntry, plan_tar, read_plan_bytes


def _entries(tmp_path: Path, sizes: list[int], names: list[str]) -> list[TarEntry]:
    entries = []
    for index, (size, name) in enumerate(zip(sizes, names, strict=True)):
        path = tmp_path / f"f{index}"
        path.write_bytes(bytes([index % 251]) * size)
        entries.append(TarEntry(name=name, size=size, path=path))
    return entries


def test_streamed_tar_is_exact_size_and_readable(tmp_path: Path) -> None:
    names = ["a/x.jpg", "b/x.jpg", "ünï cödé/" + "long-" * 40 + ".png", "c/empty.jpg"]
    entries = _entries(tmp_path, [1000, 513, 70_000, 0], names)
    plan = plan_tar(entries, config={"ingestId": "abc"})
    data = read_plan_bytes(plan)
    assert len(data) == plan.size
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tf:
        members = tf.getmembers()
        assert [m.name for m in members] == ["notification_config.json", *names]
        config = tf.extractfile(members[0])
        assert config is not None
        assert json.loads(config.read()) == {"ingestId": "abc"}
        for member, entry in zip(members[1:], entries, strict=True):
            body = tf.extractfile(member)
            assert body is not None
            assert entry.path is not None
            assert body.read() == entry.path.read_bytes()


def test_same_entries_give_identical_bytes(tmp_path: Path) -> None:
    entries = _entries(tmp_path, [10, 20], ["a.jpg", "b.jpg"])
    assert read_plan_bytes(plan_tar(entries)) == read_plan_bytes(plan_tar(entries))


def test_a_file_that_grew_is_refused(tmp_path: Path) -> None:
    entries = _entries(tmp_path, [10], ["a.jpg"])
    assert entries[0].path is not None
    entries[0].path.write_bytes(b"x" * 11)
    with pytest.raises(FileChangedError, match="changed size"):
        read_plan_bytes(plan_tar(entries))


def test_a_vanished_file_is_refused(tmp_path: Path) -> None:
    entries = _entries(tmp_path, [10], ["a.jpg"])
    assert entries[0].path is not None
    entries[0].path.unlink()
    with pytest.raises(FileChangedError, match="cannot read"):
        read_plan_bytes(plan_tar(entries))


@settings(max_examples=30, deadline=None)
@given(sizes=st.lists(st.integers(min_value=0, max_value=3000), min_size=1, max_size=6))
def test_planned_size_matches_stream_for_any_sizes(sizes: list[int]) -> None:
    entries = [TarEntry(name=f"d/{i}.jpg", size=s, data=b"z" * s) for i, s in enumerate(sizes)]
    plan = plan_tar(entries)
    assert len(read_plan_bytes(plan)) == plan.size


def test_small_files_are_coalesced_and_big_files_span_blocks(tmp_path: Path) -> None:
    small = _entries(tmp_path, [1000] * 300, [f"s/{i}.jpg" for i in range(300)])
    big_path = tmp_path / "big"
    big_path.write_bytes(bytes(range(256)) * (3 * 4096 + 7))  # ~3 MiB, not block aligned
    big = TarEntry(name="b/big.jpg", size=big_path.stat().st_size, path=big_path)
    plan = plan_tar([*small, big])

    async def blocks() -> list[bytes]:
        return [block async for block in plan.stream()]

    parts = anyio.run(blocks)
    assert len(parts) <= 6  # ~3.5 MiB in ~1 MiB blocks, not one write per header or file
    data = b"".join(parts)
    assert len(data) == plan.size
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tf:
        member = tf.getmember("b/big.jpg")
        body = tf.extractfile(member)
        assert body is not None
        assert body.read() == big_path.read_bytes()
        assert len(tf.getmembers()) == 301
