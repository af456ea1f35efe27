"""The ingest engine with an in-memory source and a recording sender: sharding invariants,
failure handling, fail-fast and journal resume (no server needed)."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchflow.errors import PartialFailure, PermanentError, UsageError
from batchflow.ingest import IngestEngine, IngestOptions, ShardResult, SkipLog
from batchflow.pipeline import Journal, Shard
from batchflow.sources import ObjectRef
from batchflow.testing import MemorySource


class Recorder:
    """A ShardSender that records what it was given; fails the shards listed in ``fail``."""

    def __init__(self, fail: frozenset[int] = frozenset()) -> None:
        self.sent: list[tuple[int, str, tuple[str, ...]]] = []
        self.fail = fail

    async def send(self, shard: Shard[ObjectRef], ingest_id: str) -> ShardResult:
        await anyio.lowlevel.checkpoint()
        if shard.index in self.fail:
            raise PermanentError(f"shard {shard.index} refused")
        self.sent.append((shard.index, ingest_id, tuple(r.name for r in shard.items)))
        return ShardResult(files=len(shard.items), bytes=sum(r.size or 0 for r in shard.items))


def refs(names: list[str]) -> list[ObjectRef]:
    return [ObjectRef(key=f"k/{n}", name=n, size=len(n), url=f"https://h/{n}") for n in names]


def run(
    names: list[str],
    options: IngestOptions,
    sender: Recorder,
    *,
    page_size: int = 7,
    journal: Journal | None = None,
) -> IngestEngine:
    source = MemorySource(refs(names), page_size=page_size, scheme="references", description="m")
    engine = IngestEngine(
        source, options, "references", sender=sender, skips=SkipLog(fail_fast=options.fail_fast),
        journal=journal,
    )  # fmt: skip
    anyio.run(engine.run)
    return engine


name_lists = st.lists(
    st.text(alphabet="abcxyz/é_", min_size=1, max_size=8).map(lambda s: f"n/{s}.jpg"),
    unique=True,
    max_size=120,
).filter(lambda names: all("//" not in n for n in names))


@settings(max_examples=60, deadline=None)
@given(
    names=name_lists,
    shard_size=st.integers(1, 40),
    concurrency=st.integers(1, 5),
    page_size=st.integers(1, 20),
)
def test_sharding_covers_every_item_exactly_once_in_order(
    names: list[str], shard_size: int, concurrency: int, page_size: int
) -> None:
    options = IngestOptions(batch_id="b", shard_size=shard_size, concurrency=concurrency)
    sender = Recorder()
    engine = run(names, options, sender, page_size=page_size)
    by_index = sorted(sender.sent)
    assert [i for i, _, _ in by_index] == list(range(len(by_index)))
    flat = [n for _, _, shard in by_index for n in shard]
    assert flat == names  # every item once, in listing order
    assert len(set(flat)) == len(flat)
    assert all(len(s) == shard_size for _, _, s in by_index[:-1])
    ids = [i for _, i, _ in by_index]
    assert len(set(ids)) == len(ids)
    summary = engine.summary()
    assert summary.ingest_ids == tuple(ids)
    assert (summary.shards_total, summary.files_sent) == (len(ids), len(names))
    # the same listing with other page sizes/concurrency gives the same shards and ids
    again = Recorder()
    run(names, IngestOptions(batch_id="b", shard_size=shard_size), again, page_size=3)
    assert sorted(again.sent) == by_index


def test_a_failed_shard_is_recorded_the_rest_goes_on_and_a_rerun_sends_only_it(
    tmp_path: Path,
) -> None:
    names = [f"f{i:03d}.jpg" for i in range(50)]
    options = IngestOptions(batch_id="b", shard_size=10, concurrency=3)
    plan = options.plan("references", "m")
    with Journal.open(tmp_path / "j.jsonl", plan=plan) as journal:
        engine = run(names, options, Recorder(fail=frozenset({2})), journal=journal)
    summary = engine.summary()
    assert (summary.shards_sent, summary.shards_failed, summary.files_failed) == (4, 1, 10)
    assert summary.failures[0].kind == "shard-failed"
    assert "shard 2 refused" in summary.failures[0].reason
    assert not summary.ok

    rerun = Recorder()
    with Journal.open(tmp_path / "j.jsonl", plan=plan) as journal:
        second = run(names, options, rerun, journal=journal).summary()
    assert [i for i, _, _ in rerun.sent] == [2]
    assert (second.shards_resumed, second.shards_sent, second.shards_failed) == (4, 1, 0)


def test_fail_fast_stops_at_the_first_failed_shard() -> None:
    names = [f"f{i:03d}.jpg" for i in range(50)]
    options = IngestOptions(batch_id="b", shard_size=10, concurrency=1, fail_fast=True)
    with pytest.raises(PermanentError, match="shard 0 refused"):
        run(names, options, Recorder(fail=frozenset({0})))


def test_fail_fast_stops_at_the_first_skipped_item() -> None:
    options = IngestOptions(batch_id="b", shard_size=10, fail_fast=True)
    with pytest.raises(PartialFailure, match="invalid-file-name"):
        run(["ok.jpg", "../evil.jpg", "z.jpg"], options, Recorder())


def test_invalid_names_and_duplicates_are_skipped_not_sent() -> None:
    sender = Recorder()
    engine = run(
        ["a.jpg", "/abs.jpg", "a.jpg", "b\\c.jpg", "d.jpg"], IngestOptions(batch_id="b"), sender
    )
    summary = engine.summary()
    assert dict(summary.skipped_by_kind) == {"invalid-file-name": 2, "duplicate-file-name": 1}
    assert [n for _, _, s in sender.sent for n in s] == ["a.jpg", "d.jpg"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_id": "Bad Id"}, "invalid batch id"),
        ({"batch_id": "b", "shard_size": 20_001}, "--shard-size"),
        ({"batch_id": "b", "tar_size": 501}, "--tar-size"),
        ({"batch_id": "b", "concurrency": 0}, "--concurrency"),
        ({"batch_id": "b", "url_ttl": 8 * 86400}, "7-day"),
        ({"batch_id": "b", "notifications_url": "ftp://x"}, "http"),
    ],
)
def test_options_are_validated(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        IngestOptions(**kwargs)  # type: ignore[arg-type]
