"""``batchflow export`` against a real ``batchflow serve``: content, resume after SIGKILL,
tampered archives refused."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import anyio
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from batchflow.export import EXTRACTED_MARKER
from tests.cli.conftest import api_args, invoke, make_client
from tests.client._origin import run_app
from tests.server_fixture import ServerHandle


def payload(index: int, size: int = 3000) -> bytes:
    seed = index.to_bytes(4, "big")
    return (b"\xff\xd8\xff\xe0" + seed * (size // 4 + 1))[:size]


def stage(server: ServerHandle, batch_id: str, files: dict[str, bytes]) -> None:
    async def main() -> None:
        async with make_client(server) as client:
            limiter = anyio.CapacityLimiter(8)

            async def one(name: str, data: bytes) -> None:
                async with limiter:
                    await client.upload_image(batch_id, name, data)

            items = list(files.items())
            await one(*items[0])  # creates the batch
            async with anyio.create_task_group() as tg:
                for name, data in items[1:]:
                    tg.start_soon(one, name, data)

    anyio.run(main)


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime_ns) of every complete file under ``root``."""
    return {
        str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file() and not p.name.endswith(".part")
    }


def test_export_batch_writes_verified_files_and_rerun_skips(
    cli_server: ServerHandle, batch_id: str, tmp_path: Path
) -> None:
    files = {f"dir{i % 3}/sub/img_{i}.jpg": payload(i) for i in range(12)}
    stage(cli_server, batch_id, files)
    target = tmp_path / "out"

    first = invoke("export", "--batch-id", batch_id, "--target-dir", str(target), "--json",
                   *api_args(cli_server))  # fmt: skip
    assert first.exit_code == 0, first.stderr
    summary = first.json_lines()[-1]
    assert (summary["downloaded"], summary["skipped"], summary["failed"]) == (12, 0, 0)
    assert summary["bytes"] == sum(len(v) for v in files.values())
    events = [e for e in first.json_lines() if e.get("event") == "file"]
    assert {e["fileName"] for e in events} == set(files)
    for name, data in files.items():
        assert (target / batch_id / name).read_bytes() == data
    assert not list(target.rglob("*.part"))
    before = snapshot(target)

    again = invoke("export", "--batch-id", batch_id, "--target-dir", str(target), "--json",
                   *api_args(cli_server))  # fmt: skip
    assert again.exit_code == 0, again.stderr
    summary = again.json_lines()[-1]
    assert (summary["downloaded"], summary["skipped"]) == (0, 12)
    assert snapshot(target) == before  # nothing rewritten

    human = invoke("export", "--batch-id", batch_id, "--target-dir", str(target),
                   *api_args(cli_server))  # fmt: skip
    assert human.exit_code == 0
    assert "0 downloaded, 12 already complete, 0 failed" in human.stdout


def test_export_corrupted_local_file_is_downloaded_again(
    cli_server: ServerHandle, batch_id: str, tmp_path: Path
) -> None:
    files = {f"img_{i}.jpg": payload(i) for i in range(3)}
    stage(cli_server, batch_id, files)
    target = tmp_path / "out"
    assert invoke("export", "--batch-id", batch_id, "--target-dir", str(target),
                  *api_args(cli_server)).exit_code == 0  # fmt: skip
    damaged = target / batch_id / "img_1.jpg"
    damaged.write_bytes(b"X" * len(files["img_1.jpg"]))  # same size, other content: sha256 differs
    result = invoke("export", "--batch-id", batch_id, "--target-dir", str(target), "--json",
                    *api_args(cli_server))  # fmt: skip
    summary = result.json_lines()[-1]
    assert (summary["downloaded"], summary["skipped"]) == (1, 2)
    assert damaged.read_bytes() == files["img_1.jpg"]


def test_export_killed_midway_resumes_only_missing_files(
    cli_server: ServerHandle, batch_id: str, tmp_path: Path
) -> None:
    total = 60
    files = {f"part/img_{i:03d}.jpg": payload(i, 40_000) for i in range(total)}
    stage(cli_server, batch_id, files)
    target = tmp_path / "out"
    argv = [sys.executable, "-m", "batchflow", "export", "--batch-id", batch_id, "--json",
            "--target-dir", str(target), "--concurrency", "1", *api_args(cli_server)]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        seen = 0
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while seen < 5 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if json.loads(line).get("status") == "downloaded":
                seen += 1
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert seen == 5
    complete = snapshot(target)
    assert 5 <= len(complete) < total, "the export should have been killed mid-way"

    result = invoke("export", "--batch-id", batch_id, "--target-dir", str(target), "--json",
                    *api_args(cli_server))  # fmt: skip
    assert result.exit_code == 0, result.stderr
    summary = result.json_lines()[-1]
    assert summary["skipped"] == len(complete)
    assert summary["downloaded"] == total - len(complete)
    events = [e for e in result.json_lines() if e.get("event") == "file"]
    fetched = {e["fileName"] for e in events if e["status"] != "skipped"}
    assert len(fetched) == total - len(complete)
    assert not fetched & {name.split("/", 1)[1] for name in complete}
    after = snapshot(target)
    assert {k: after[k] for k in complete} == complete  # complete files untouched
    for name, data in files.items():
        assert (target / batch_id / name).read_bytes() == data
    assert not list(target.rglob("*.part"))


def _tar(members: dict[str, bytes], gz: bool = False) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz" if gz else "w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def archives_origin() -> object:
    blobs = {
        "evil.tar": _tar({"ok.txt": b"fine", "../../../escape.txt": b"pwned"}),
        "good.tar.gz": _tar({"rows/results.jsonl": b'{"a": 1}\n'}, gz=True),
    }

    async def serve(request: Request) -> Response:
        return Response(blobs[request.path_params["name"]], media_type="application/x-tar")

    with run_app(Starlette(routes=[Route("/files/{name}", serve)])) as base:
        yield base, blobs


def test_export_extract_refuses_tampered_archive(
    cli_server: ServerHandle,
    batch_id: str,
    tmp_path: Path,
    archives_origin: tuple[str, dict[str, bytes]],
) -> None:
    base, blobs = archives_origin
    refs = [{"name": name, "url": f"{base}/files/{name}"} for name in blobs]

    async def ingest() -> None:
        async with make_client(cli_server) as client:
            await client.ingest_image_references(batch_id, refs, ingest_id="arch-" + batch_id)
            for _ in range(300):  # ingest is asynchronous: wait until both are indexed
                if await client.count(batch_id) >= len(refs):
                    break
                await anyio.sleep(0.1)

    anyio.run(ingest)
    target = tmp_path / "deep" / "out"
    result = invoke("export", "--batch-id", batch_id, "--target-dir", str(target), "--extract",
                    *api_args(cli_server))  # fmt: skip
    assert result.exit_code == 1, result.stdout + result.stderr
    assert "evil.tar" in result.stderr
    assert "outside" in result.stderr
    assert not list(tmp_path.rglob("escape.txt"))
    assert not (target / batch_id / "evil").exists()  # nothing of the refused archive
    good = target / batch_id / "good" / "rows" / "results.jsonl"
    assert good.read_bytes() == b'{"a": 1}\n'
    marker = target / batch_id / "good" / EXTRACTED_MARKER
    assert marker.exists()
    stamp = marker.stat().st_mtime_ns

    again = invoke("export", "--batch-id", batch_id, "--target-dir", str(target), "--extract",
                   "--json", *api_args(cli_server))  # fmt: skip
    assert again.exit_code == 1
    assert marker.stat().st_mtime_ns == stamp  # the good archive is not extracted twice
    assert not list(tmp_path.rglob("escape.txt"))


def test_export_needs_exactly_one_source(tmp_path: Path) -> None:
    result = invoke("export", "--target-dir", str(tmp_path), "--api-url", "http://127.0.0.1:9")
    assert result.exit_code == 2
    assert "exactly one of --job-id and --batch-id" in result.stderr
