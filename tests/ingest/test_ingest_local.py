"""End to end: a local folder of images staged as streamed tars into a real ``batchflow serve``."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from batchflow.errors import UsageError
from batchflow.ingest import IngestOptions, ingest
from tests._procs import free_port
from tests.faultproxy import ThreadedFaultProxy
from tests.ingest.conftest import fetch, settings_for, sha256, wait_staged
from tests.server_fixture import ServerHandle

pytestmark = pytest.mark.anyio


def make_tree(root: Path, count: int, seed: int = 7) -> dict[str, bytes]:
    """``count`` small images in nested folders; the same basenames recur in every folder."""
    rng = random.Random(seed)
    folders = ["", "a", "a/b", "c", "c/d/e", "f g", "ünï"]
    files: dict[str, bytes] = {}
    for i in range(count):
        folder = folders[i % len(folders)]
        name = f"{folder}/img{i // len(folders):03d}.jpg" if folder else f"img{i:03d}.jpg"
        data = rng.randbytes(rng.randint(10, 3000))
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        files[name] = data
    return files


async def test_local_folder_every_file_once_with_its_sha256(
    ingest_server: ServerHandle, tmp_path: Path
) -> None:
    root = tmp_path / "photos"
    files = make_tree(root, 600)
    (root / "a" / "notes.txt").write_text("not an image")
    big = root / "c" / "huge.jpg"  # sparse: over 20 MiB without writing 20 MiB
    with big.open("wb") as handle:
        handle.truncate(21 * 1024 * 1024)
    (root / "a" / "bad\x01name.jpg").write_bytes(b"x")
    events: list[tuple[str, dict[str, object]]] = []

    summary = await ingest(
        str(root),
        IngestOptions(batch_id="local-e2e", concurrency=3),
        settings=settings_for(ingest_server),
        on_event=lambda kind, fields: events.append((kind, dict(fields))),
    )

    assert summary.mode == "local-images"
    assert summary.matched == 602
    assert summary.skipped_by_kind == {"file-size-limit-exceeded": 1, "invalid-file-name": 1}
    assert summary.shards_total == 3  # 600 images in tars of 256
    assert summary.shards_sent == 3
    assert summary.files_sent == 600
    assert not summary.ok
    assert len(set(summary.ingest_ids)) == 3
    skipped = {str(f["item"]) for kind, f in events if kind == "skipped"}
    assert skipped == {"c/huge.jpg", "a/bad\x01name.jpg"}

    staged = wait_staged(ingest_server, "local-e2e", 600)
    names = [str(f["fileName"]) for f in staged]
    assert len(names) == len(set(names)) == 600
    assert {n: f["sha256"] for n, f in zip(names, staged, strict=True)} == {
        n: sha256(d) for n, d in files.items()
    }
    for meta in random.Random(1).sample(staged, 25):  # the bytes behind the metadata too
        assert fetch(str(meta["downloadURL"])) == files[str(meta["fileName"])]


async def test_rerun_sends_nothing_and_dry_run_sends_nothing(
    ingest_server: ServerHandle, tmp_path: Path
) -> None:
    root = tmp_path / "imgs"
    make_tree(root, 30)
    settings = settings_for(ingest_server)
    dry = await ingest(
        str(root), IngestOptions(batch_id="local-dry", tar_size=8, dry_run=True), settings=None
    )
    assert (dry.shards_total, dry.shards_sent, dry.files_sent) == (4, 0, 0)
    first = await ingest(
        str(root), IngestOptions(batch_id="local-rerun", tar_size=8), settings=settings
    )
    assert (first.shards_sent, first.files_sent) == (4, 30)
    again = await ingest(
        str(root), IngestOptions(batch_id="local-rerun", tar_size=8), settings=settings
    )
    assert (again.shards_resumed, again.shards_sent, again.files_sent) == (4, 0, 0)
    assert again.ingest_ids == first.ingest_ids
    assert len(wait_staged(ingest_server, "local-rerun", 30)) == 30
    with ingest_server.client() as http:
        missing = http.get(f"{ingest_server.ds}/batches/local-dry/count")
    assert missing.status_code == 404 or missing.json()["count"] == 0
    assert os.listdir(Path(os.environ["BATCHFLOW_STATE_DIR"]) / "ingests")


async def test_local_videos_go_up_one_by_one(ingest_server: ServerHandle, tmp_path: Path) -> None:
    root = tmp_path / "clips"
    videos = {f"{d}/clip{i}.mp4": os.urandom(2000 + i) for d in ("a", "b") for i in range(3)}
    for name, data in videos.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    (root / "a" / "still.jpg").write_bytes(b"not a video")

    summary = await ingest(
        str(root), IngestOptions(batch_id="local-videos", videos=True, tar_size=4),
        settings=settings_for(ingest_server),
    )  # fmt: skip
    assert summary.mode == "local-videos"
    assert summary.ok, summary.as_dict()
    assert (summary.shards_total, summary.shards_sent, summary.files_sent) == (2, 2, 6)
    staged = wait_staged(ingest_server, "local-videos", 6)
    assert {str(f["fileName"]): f["sha256"] for f in staged} == {
        n: sha256(d) for n, d in videos.items()
    }


async def test_a_video_put_whose_answer_was_lost_is_re_sent_and_counts_as_sent(
    server_factory: Callable[..., ServerHandle], tmp_path: Path
) -> None:
    """The server stores the first PUT, the proxy drops its answer, the client sends it again."""
    port = free_port()
    server = server_factory("--public-url", f"http://127.0.0.1:{port}")
    puts: list[str] = []

    def lose_first_put_answer(method: str, path: str) -> str | None:
        if method != "PUT":
            return None
        puts.append(path)
        return "reset" if len(puts) == 1 else None

    root = tmp_path / "clips"
    root.mkdir()
    video = os.urandom(5000)
    (root / "clip.mp4").write_bytes(video)
    with ThreadedFaultProxy(server.base_url, port=port, decide=lose_first_put_answer) as proxy:
        summary = await ingest(
            str(root), IngestOptions(batch_id="lost-answer", videos=True),
            settings=settings_for(server),
        )  # fmt: skip
        assert proxy.stats.faults["reset"] == 1
    assert len(puts) == 2, puts
    assert puts[0] == puts[1]  # the same upload URL, twice
    assert summary.ok, summary.as_dict()
    assert summary.files_sent == 1
    staged = wait_staged(server, "lost-answer", 1)
    assert [(f["fileName"], f["sha256"]) for f in staged] == [("clip.mp4", sha256(video))]


async def test_a_journal_for_a_batch_the_api_does_not_have_is_not_trusted(
    ingest_server: ServerHandle, server_factory: Callable[..., ServerHandle], tmp_path: Path
) -> None:
    """Same command against a server without the batch (expired, wiped, another API)."""
    root = tmp_path / "imgs"
    make_tree(root, 10)
    options = IngestOptions(batch_id="local-moved", tar_size=8)
    first = await ingest(str(root), options, settings=settings_for(ingest_server))
    assert first.shards_sent == 2
    elsewhere = server_factory()
    with pytest.raises(UsageError, match="--restart"):
        await ingest(str(root), options, settings=settings_for(elsewhere))
    restarted = await ingest(
        str(root), IngestOptions(batch_id="local-moved", tar_size=8, restart=True),
        settings=settings_for(elsewhere),
    )  # fmt: skip
    assert (restarted.shards_sent, restarted.files_sent) == (2, 10)
