"""The resume journal: durable appends, torn-line tolerance, plan checks, O(shards) state."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchflow.errors import PermanentError, UsageError
from batchflow.pipeline import Journal, JournalMismatch, journal_path, state_dir

PLAN = {"batch": "b1", "source": "s3://bucket/prefix/**", "shardSize": 20000}


def test_new_journal_writes_header_then_acks(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "ingest.jsonl"
    with Journal.open(path, plan=PLAN) as journal:
        assert journal.header == PLAN
        journal.ack("k1", ingestId="i1", count=3)
        journal.append({"kind": "failed", "name": "x.jpg"})
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0] == {"kind": "header", "plan": PLAN}
    assert lines[1] == {"kind": "ack", "key": "k1", "ingestId": "i1", "count": 3}
    assert lines[2]["kind"] == "failed"

    with Journal.open(path, plan=dict(PLAN)) as again:
        assert again.acked == frozenset({"k1"})
        assert again.is_acked("k1")
        assert not again.is_acked("k2")
        assert again.records == 3
        again.ack("k2")
    with Journal.open(path, plan=PLAN) as third:
        assert third.acked == {"k1", "k2"}


@pytest.mark.parametrize(
    "torn", [b'{"kind":"ack","key":"k3"', b'{"kind":"ack","ke', b"\x00\x00garb"]
)
def test_torn_last_line_is_dropped_and_truncated(tmp_path: Path, torn: bytes) -> None:
    path = tmp_path / "j.jsonl"
    with Journal.open(path, plan=PLAN) as journal:
        journal.ack("k1")
        journal.ack("k2")
    good = path.read_bytes()
    path.write_bytes(good + torn)
    with Journal.open(path, plan=PLAN) as journal:
        assert journal.dropped_torn_line
        assert journal.acked == {"k1", "k2"}
        journal.ack("k3")
    assert path.read_bytes() == good + b'{"key":"k3","kind":"ack"}\n'


def test_bad_json_final_line_with_newline_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with Journal.open(path, plan=PLAN) as journal:
        journal.ack("k1")
    good = path.read_bytes()
    path.write_bytes(good + b"{not json\n")
    with Journal.open(path, plan=PLAN) as journal:
        assert journal.dropped_torn_line
        assert journal.acked == {"k1"}
    assert path.read_bytes() == good


def test_corruption_in_the_middle_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with Journal.open(path, plan=PLAN) as journal:
        journal.ack("k1")
    path.write_bytes(path.read_bytes() + b"{bad\n" + b'{"kind":"ack","key":"k2"}\n')
    with pytest.raises(PermanentError, match="corrupt at line 3"):
        Journal.open(path, plan=PLAN)


def test_plan_mismatch_names_fields_and_suggests_restart(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    Journal.open(path, plan=PLAN).close()
    other = {**PLAN, "shardSize": 100, "extra": True}
    with pytest.raises(JournalMismatch) as info:
        Journal.open(path, plan=other)
    assert isinstance(info.value, UsageError)
    message = str(info.value)
    assert "shardSize" in message
    assert "extra" in message
    assert "--restart" in message


def test_restart_empties_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with Journal.open(path, plan=PLAN) as journal:
        journal.ack("k1")
    other = {**PLAN, "shardSize": 5}
    with Journal.open(path, plan=other, restart=True) as journal:
        assert journal.acked == frozenset()
        assert journal.header == other
    with Journal.open(path, plan=other) as journal:
        assert journal.acked == frozenset()


def test_batched_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    calls: list[int] = []
    real = os.fsync

    def counting_fsync(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    path = tmp_path / "j.jsonl"
    journal = Journal.open(path, fsync_every=10)
    calls.clear()
    for i in range(25):
        journal.ack(f"k{i}")
    assert len(calls) == 2
    journal.close()
    assert len(calls) == 3
    assert len(path.read_text().splitlines()) == 25


def test_memory_is_per_shard_not_per_record(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with Journal.open(path, plan=PLAN, fsync_every=1000) as journal:
        for i in range(2000):
            journal.append({"kind": "file", "name": f"f{i}"})
        journal.ack("only")
    with Journal.open(path, plan=PLAN) as journal:
        assert journal.records == 2002
        assert journal.acked == {"only"}


@pytest.mark.anyio
async def test_async_append(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with Journal.open(path, plan=PLAN) as journal:
        await journal.aack("k1", n=1)
        await journal.aappend({"kind": "note"})
        assert journal.is_acked("k1")
    assert len(path.read_text().splitlines()) == 3


def test_state_dir_precedence(tmp_path: Path) -> None:
    assert state_dir({"BATCHFLOW_STATE_DIR": str(tmp_path / "s"), "XDG_STATE_HOME": "/x"}) == (
        tmp_path / "s"
    )
    assert state_dir({"XDG_STATE_HOME": "/xdg", "HOME": "/h"}) == Path("/xdg/batchflow")
    assert state_dir({"XDG_STATE_HOME": "relative", "HOME": "/h"}) == Path(
        "/h/.local/state/batchflow"
    )
    assert state_dir({"HOME": "/h"}) == Path("/h/.local/state/batchflow")


def test_journal_path_is_stable_per_batch_and_source(tmp_path: Path) -> None:
    one = journal_path("b1", "s3://bucket/a/**", base=tmp_path)
    assert one == journal_path("b1", "s3://bucket/a/**", base=tmp_path)
    assert one.parent == tmp_path / "ingests"
    assert one.name.startswith("b1-")
    assert one.suffix == ".jsonl"
    assert one != journal_path("b1", "s3://bucket/b/**", base=tmp_path)
    assert one != journal_path("b2", "s3://bucket/a/**", base=tmp_path)


@pytest.mark.anyio
async def test_concurrent_async_acks_stay_whole_lines(tmp_path: Path) -> None:
    import anyio

    path = tmp_path / "j.jsonl"
    with Journal.open(path, plan=PLAN, fsync_every=7) as journal:
        async with anyio.create_task_group() as tg:
            for i in range(60):
                tg.start_soon(journal.aappend, {"kind": "ack", "key": f"k{i}", "pad": "x" * 500})
    lines = path.read_text().splitlines()
    assert len(lines) == 61
    assert all(json.loads(line)["kind"] in {"header", "ack"} for line in lines)
    with Journal.open(path, plan=PLAN) as again:
        assert again.acked == {f"k{i}" for i in range(60)}
