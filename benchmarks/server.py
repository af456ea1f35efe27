"""Workload ``server``: what ``batchflow serve`` sustains on this machine.

- accept: one ``bulk-upload/image-references`` POST of N refs (20,000, the per-request limit):
  references accepted per second (the request's wall time; a fresh server per sample).
- index: M refs pointing at a local origin (``http.server`` in its own process on 127.0.0.1),
  time from the POST until ``count == M``: references fetched, stored and indexed per second.
- job: the built-in ``image-metadata`` workflow over those M staged images via
  ``batchflow run --wait``: images per hour (wall time of the command, start-up included).
- export: ``BatchClient.download`` of staged files at concurrency 4 into memory: MB/s for a
  batch of 4 MiB files, files/s for the small images.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import httpx

from benchmarks._common import Case, Report, RunConfig
from benchmarks._procs import BIN, PY, REPO, Serve, free_port, run_measured, serve
from tests._procs import ManagedProcess, wait_http

__all__ = ["run"]

SIZES = {
    False: {"accept": 20_000, "index": 500, "big": 16},
    True: {"accept": 500, "index": 40, "big": 2},
}
BIG_BYTES = 4 * 2**20
INDEX_TIMEOUT = 300.0


def _origin_files(scratch: Path, small: int, big: int) -> Path:
    from benchmarks.peers import _images

    root = _images(scratch, small)
    for i in range(big):
        path = root / "big" / f"big-{i:03d}.jpg"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(os.urandom(BIG_BYTES))
    return root


def _post_refs(server: Serve, batch: str, refs: list[dict[str, str]]) -> float:
    url = f"{server.ds}/batches/{batch}/bulk-upload/image-references"
    with server.http() as client:
        start = time.perf_counter()
        resp = client.post(url, json={"imageReferences": refs}, timeout=300)
        elapsed = time.perf_counter() - start
    if resp.status_code != 200:
        raise RuntimeError(f"POST refs -> {resp.status_code}: {resp.text[:300]}")
    return elapsed


def _refs(origin: str, names: list[str]) -> list[dict[str, str]]:
    return [{"name": n.replace("/", "-"), "url": f"{origin}/{n}"} for n in names]


def run(config: RunConfig) -> Report:
    sizes = SIZES[config.quick]
    report = Report("server", "batchflow serve: accept, index, image-metadata job, export", config)
    report.parameters = {**sizes, "bigFileBytes": BIG_BYTES, "downloadConcurrency": 4,
                         "origin": "python -m http.server on 127.0.0.1 (own process)",
                         "catalog": "SQLite (embedded default)"}  # fmt: skip
    scratch = config.scratch_dir / "server"
    root = _origin_files(config.scratch_dir, sizes["index"], sizes["big"])
    port = free_port()
    origin_proc = ManagedProcess(
        [PY, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(root), str(port)],
        log_path=scratch / "origin.log",
    ).start()
    origin = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{origin}/", timeout=30, alive=origin_proc.alive)
        _accept(report, config, scratch, origin, sizes["accept"])
        _index_job_export(report, config, scratch, origin, sizes)
    finally:
        origin_proc.stop()
    return report


def _accept(report: Report, config: RunConfig, scratch: Path, origin: str, n: int) -> None:
    # names need not exist at the origin: acceptance is measured, the fetches are not awaited
    refs = _refs(origin, [f"missing/img-{i:06d}.jpg" for i in range(n)])
    rates: list[float] = []
    for i in range(config.repeat):
        with serve(scratch, name=f"accept{i}") as server:
            try:
                elapsed = _post_refs(server, f"accept-{i}", refs)
            except (RuntimeError, httpx.HTTPError) as exc:
                report.fail("accept", str(exc), serverLog=server.log_tail(10))
                return
            rates.append(n / elapsed)
    report.add(Case("references POST", "accepted", "refs/s", rates, {"refsPerRequest": n}))


def _index_job_export(
    report: Report, config: RunConfig, scratch: Path, origin: str, sizes: dict[str, int]
) -> None:
    m = sizes["index"]
    names = [f"img-{i:06d}.png" if i % 10 == 9 else f"img-{i:06d}.jpg" for i in range(m)]
    index_rates: list[float] = []
    with serve(scratch, name="index") as server:
        batch = ""
        for i in range(config.repeat):
            batch = f"index-{i}-{secrets.token_hex(3)}"
            start = time.perf_counter()
            try:
                _post_refs(server, batch, _refs(origin, names))
                done, count = server.wait_count(batch, m, timeout=INDEX_TIMEOUT)
            except (RuntimeError, httpx.HTTPError) as exc:
                report.fail("index", str(exc), serverLog=server.log_tail(10))
                return
            if count < m:
                report.fail("index", f"{count} of {m} staged after {INDEX_TIMEOUT:.0f} s")
                return
            index_rates.append(m / (done - start))
        report.add(Case("references -> staged", "indexed", "refs/s", index_rates, {"refs": m}))
        _job(report, server, batch, m, scratch)
        big_batch = f"big-{secrets.token_hex(3)}"
        big_names = [f"big/big-{i:03d}.jpg" for i in range(sizes["big"])]
        _post_refs(server, big_batch, _refs(origin, big_names))
        _, count = server.wait_count(big_batch, len(big_names), timeout=INDEX_TIMEOUT)
        if count < len(big_names):
            report.fail("export", f"big files: {count} of {len(big_names)} staged")
            return
        _export(report, config, server, big_batch, "export 4 MiB files", "MB/s")
        _export(report, config, server, batch, "export small images", "files/s")


def _job(report: Report, server: Serve, batch: str, m: int, scratch: Path) -> None:
    argv = [str(BIN / "batchflow"), "run", "--workflow-id", "image-metadata", "--batch-id", batch,
            "--wait", "--poll-interval", "0.2", "--wait-timeout", "900", "--json"]  # fmt: skip
    measured = run_measured(argv, env=server.env, cwd=REPO, timeout=960,
                            log=scratch / "job.log")  # fmt: skip
    if not measured.ok:
        report.fail("image-metadata job", "batchflow run --wait failed", **measured.failure(),
                    serverLog=server.log_tail(10))  # fmt: skip
        report.pending.append(
            "image-metadata job throughput: the job run failed (see failures) - no number"
        )
        return
    params = {"images": m, "wallSeconds": round(measured.wall, 3)}
    rate = m / measured.wall * 3600
    report.add(Case("image-metadata job", "throughput", "images/hour", [rate], params))


def _export(
    report: Report, config: RunConfig, server: Serve, batch: str, subject: str, unit: str
) -> None:
    import anyio

    samples: list[float] = []
    for _ in range(config.repeat):
        total, files, seconds = anyio.run(_download_all, server, batch)
        samples.append(total / seconds / 1e6 if unit == "MB/s" else files / seconds)
    report.add(Case(subject, "download", unit, samples))


class _Counter:
    def __init__(self) -> None:
        self.bytes = 0

    async def write(self, data: bytes, /) -> object:
        self.bytes += len(data)
        return None


async def _download_all(server: Serve, batch: str) -> tuple[int, int, float]:
    import anyio

    from batchflow.client import BatchClient
    from batchflow.config import ClientSettings

    settings = ClientSettings(api_url=server.base_url, api_key=server.api_key, key_in_header=True)
    async with BatchClient(settings, concurrency=8, workspace=server.workspace) as client:
        urls: list[str] = []
        async with client.iter_files(batch) as files:
            urls.extend([f.download_url async for f in files])
        sink = _Counter()
        limiter = anyio.CapacityLimiter(4)

        async def one(url: str) -> None:
            async with limiter:
                await client.download(url, sink)

        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for url in urls:
                tg.start_soon(one, url)
        return sink.bytes, len(urls), time.perf_counter() - start
