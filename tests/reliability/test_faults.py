"""Ingest, poll and export through the fault proxy: every file present exactly once.

The mix is the issue's: 10% 5xx, 5% resets (after the server acted), 2% stalls past the client's
read timeout, 3% 429 with ``Retry-After`` and 2% truncated bodies, seeded so a run replays. The
API, signed upload PUTs and signed blob downloads all cross the proxy (``--public-url``); the
server's own fetches of reference URLs go straight to the local origin.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from batchflow.client import BatchClient
from batchflow.export.download import export_batches
from batchflow.ingest import IngestOptions, ingest
from tests.reliability._support import (
    ISSUE_RATES,
    Origin,
    Proxied,
    Sizes,
    assert_exactly_once,
    fetch,
    list_files,
    list_shards,
    report,
    sha256,
    wait_settled,
    write_references,
)

pytestmark = pytest.mark.timeout(900)


@pytest.mark.anyio
async def test_references_ingest_accepted_once_through_faults(
    proxied_factory: Callable[..., Proxied], origin: Origin, sizes: Sizes, tmp_path: Path
) -> None:
    """The big ingest (10k CI / 100k full): every shard accepted exactly once.

    The server fetches each reference after accepting it (tens of files per second on SQLite),
    so this test checks acceptance: the server's shard listing holds one shard per client shard,
    distinct ingest ids, and object counts summing to N (a retried shard accepted twice would
    add a shard and N more). The next test follows a smaller ingest through to every byte.
    """
    proxied = proxied_factory(ISSUE_RATES, 8)
    refs = tmp_path / "refs.jsonl"
    await anyio.to_thread.run_sync(write_references, refs, sizes.references, origin.url)
    shard = max(sizes.references // 40, 100)
    options = IngestOptions(batch_id="faults-refs", shard_size=shard, concurrency=4)
    summary = await ingest(str(refs), options, settings=proxied.settings())
    assert summary.ok, summary
    assert summary.shards_failed == 0
    assert summary.shards_total == -(-sizes.references // shard)
    shards = await anyio.to_thread.run_sync(list_shards, proxied.server, "faults-refs")
    assert len(shards) == summary.shards_total
    ingest_ids = Counter(s["statusMetadata"]["ingestId"] for s in shards)
    assert len(ingest_ids) == len(shards), "one ingest id accepted twice"
    assert sum(int(s["shardObjectsCount"]) for s in shards) == sizes.references
    stats = proxied.proxy.stats.snapshot()
    assert stats["faults_total"], "the proxy injected nothing: the test proves nothing"
    report(
        "references ingest (accepted)",
        {
            "refs": sizes.references,
            "shards": summary.shards_total,
            "duplicated": summary.shards_duplicated,
            **stats,
        },
    )


@pytest.mark.anyio
async def test_references_fetched_exactly_once_through_faults(
    proxied_factory: Callable[..., Proxied], origin: Origin, sizes: Sizes, tmp_path: Path
) -> None:
    proxied = proxied_factory(ISSUE_RATES, 9)
    n = sizes.references_fetched
    refs = tmp_path / "refs.jsonl"
    expected = await anyio.to_thread.run_sync(write_references, refs, n, origin.url)
    options = IngestOptions(batch_id="faults-fetch", shard_size=max(n // 20, 10), concurrency=4)
    summary = await ingest(str(refs), options, settings=proxied.settings())
    assert summary.ok, summary
    staged = await anyio.to_thread.run_sync(wait_settled, proxied.server, "faults-fetch", n, 600.0)
    assert staged == n
    files = await anyio.to_thread.run_sync(list_files, proxied.server, "faults-fetch")
    assert_exactly_once(files, expected)
    shards = await anyio.to_thread.run_sync(list_shards, proxied.server, "faults-fetch")
    assert all(s["statusName"] == "completed" for s in shards)
    stats = proxied.proxy.stats.snapshot()
    assert stats["faults_total"]
    report(
        "references ingest (fetched)",
        {
            "files": n,
            "shards": summary.shards_total,
            "duplicated": summary.shards_duplicated,
            **stats,
        },
    )


def make_folder(root: Path, n: int) -> dict[str, str]:
    expected: dict[str, str] = {}
    for i in range(n):
        name = f"sub{i % 7}/img-{i:05d}.jpg"
        data = b"\xff\xd8\xff\xe0" + os.urandom(64 + i % 512)
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        expected[name] = sha256(data)
    return expected


@pytest.mark.anyio
async def test_folder_ingest_and_export_through_faults(
    proxied_factory: Callable[..., Proxied], sizes: Sizes, tmp_path: Path
) -> None:
    proxied = proxied_factory(ISSUE_RATES, 11)
    folder = tmp_path / "photos"
    expected = await anyio.to_thread.run_sync(make_folder, folder, sizes.folder_files)
    options = IngestOptions(batch_id="faults-folder", tar_size=25, concurrency=4)
    summary = await ingest(str(folder), options, settings=proxied.settings())
    assert summary.ok, summary
    staged = await anyio.to_thread.run_sync(
        wait_settled, proxied.server, "faults-folder", sizes.folder_files, 300.0
    )
    assert staged == sizes.folder_files
    files = await anyio.to_thread.run_sync(list_files, proxied.server, "faults-folder")
    assert_exactly_once(files, expected)
    ingest_stats = proxied.proxy.stats.snapshot()

    # export the batch back through the same proxy (downloads cross it via --public-url)
    target = tmp_path / "export"
    async with BatchClient(proxied.settings()) as client:
        result = await export_batches(client, ["faults-folder"], target, concurrency=8)
    assert result.failed == 0, result.failures
    got = {
        str(p.relative_to(target / "faults-folder")): sha256(p.read_bytes())
        for p in (target / "faults-folder").rglob("*")
        if p.is_file()
    }
    assert got == expected  # every file once, right bytes, no .part left behind
    # every signed blob URL goes through the proxy, none reaches the server directly
    assert all(proxied.url in str(f["downloadURL"]) for f in files)
    stats = proxied.proxy.stats.snapshot()
    report("folder ingest", {"files": sizes.folder_files, "shards": summary.shards_total,
                             **ingest_stats})  # fmt: skip
    report("export", {"files": len(got), **stats})
    # spot-check one file over the proxy-less path too
    sample = files[0]
    direct = str(sample["downloadURL"]).replace(proxied.url, proxied.server.base_url)
    assert sha256(fetch(direct)) == sample["sha256"]
