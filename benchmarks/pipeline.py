"""Workload ``pipeline``: constant memory at scale (100k, 1M, 10M synthetic objects).

Each N runs in a fresh ``python -m benchmarks.pipeline --child`` process: a lazy
``SyntheticSource(N)`` goes through the real ingest engine (``batchflow.ingest.IngestEngine``:
list -> filter -> shard 20k -> presign with ``S3Signer`` -> ``ReferencesSender`` POSTs over real
HTTP -> fsync'd journal ack) into the sink server (its own process). Measured: references/s
and the child's peak RSS (``wait4`` rusage). A second line per N (``sign-only``) runs the same
engine with a sender that signs and builds the request body but does not send it, which
separates the HTTP hop from listing + signing (up to 1M: the engine line covers 10M). Wall-clock
refs/s and refs per CPU-second of the child are both recorded: other tenants of a shared
machine slow the first, much less the second. 1M and 10M run once (they take minutes).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import Case, Report, RunConfig
from benchmarks._procs import PY, REPO, Measured, run_measured, sink

__all__ = ["run"]

FULL_SIZES = (100_000, 1_000_000, 10_000_000)
QUICK_SIZES = (1_000, 5_000)
SHARD = 20_000
BUCKET = "bench-bucket"


def run(config: RunConfig) -> Report:
    sizes = QUICK_SIZES if config.quick else FULL_SIZES
    shard = 1_000 if config.quick else SHARD
    report = Report("pipeline", "list -> sign -> shard -> upload at scale", config)
    report.parameters = {
        "sizes": list(sizes),
        "shardSize": shard,
        "concurrency": 4,
        "signer": "S3Signer (SigV4, static keys)",
        "sink": "benchmarks._sink (ThreadingHTTPServer, separate process)",
        "repeatPerSize": {str(n): _repeats(n, config) for n in sizes},
    }
    scratch = Path(tempfile.mkdtemp(prefix="pipeline-", dir=_mk(config.scratch_dir)))
    with sink(scratch) as url:
        for mode in ("engine", "sign-only"):
            for n in sizes:
                if mode == "sign-only" and n >= 5_000_000:
                    continue  # the engine line covers 10M; this one only splits the cost
                rates: list[float] = []
                cpu_rates: list[float] = []
                rss: list[float] = []
                walls: list[float] = []
                for _ in range(_repeats(n, config)):
                    data, measured = _child(n, shard, url, mode, scratch)
                    if data is None:
                        report.fail(f"{mode} N={n}", "child process failed", **measured.failure())
                        break
                    rates.append(n / data["seconds"])
                    cpu_rates.append(n / data["cpuSeconds"])
                    walls.append(measured.wall)
                    rss.append(measured.peak_rss / 2**20)
                    if data.get("sinkReferences") is not None and data["sinkReferences"] != n:
                        report.fail(
                            f"{mode} N={n}",
                            f"sink received {data['sinkReferences']} references, expected {n}",
                        )
                if not rates:
                    continue
                params = {"n": n, "mode": mode}
                report.add(Case(f"{mode} N={n:,}", "throughput", "refs/s", rates, params))
                report.add(
                    Case(f"{mode} N={n:,}", "CPU throughput", "refs/CPU-s", cpu_rates, params)
                )
                report.add(Case(f"{mode} N={n:,}", "peak RSS", "MiB", rss, params))
                report.add(Case(f"{mode} N={n:,}", "process wall", "s", walls, params))
    small, big = sizes[0], sizes[-1]
    for mode in ("engine", "sign-only"):
        top = big if mode == "engine" else max(n for n in sizes if n < 5_000_000)
        report.ratio(
            f"{mode}: RSS N={top:,} / N={small:,}",
            report.find(f"{mode} N={top:,}", "peak RSS"),
            report.find(f"{mode} N={small:,}", "peak RSS"),
            "peak RSS of the ingest process must stay flat (ratio ~1)",
        )
        report.ratio(
            f"{mode}: throughput N={top:,} / N={small:,}",
            report.find(f"{mode} N={top:,}", "throughput"),
            report.find(f"{mode} N={small:,}", "throughput"),
            "references/s should not fall with N",
        )
    mid = max(n for n in sizes if n < 5_000_000)
    report.ratio(
        f"engine / sign-only throughput at N={mid:,}",
        report.find(f"engine N={mid:,}", "throughput"),
        report.find(f"sign-only N={mid:,}", "throughput"),
        "share of throughput left after the HTTP hop to the sink",
    )
    shutil.rmtree(scratch, ignore_errors=True)
    _plot(report, sizes, config)
    return report


def _mk(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _repeats(n: int, config: RunConfig) -> int:
    """1M and 10M run once in the full run (minutes each on a busy 2-core machine)."""
    return 1 if n >= 1_000_000 else config.repeat


def _child(
    n: int, shard: int, url: str, mode: str, scratch: Path
) -> tuple[dict[str, Any] | None, Measured]:
    out = scratch / f"child-{mode}-{n}.json"
    argv = [PY, "-m", "benchmarks.pipeline", "--child", "--n", str(n), "--shard", str(shard),
            "--sink", url, "--mode", mode, "--out", str(out), "--state", str(scratch)]  # fmt: skip
    measured = run_measured(argv, cwd=REPO, timeout=1800)
    if not measured.ok or not out.exists():
        return None, measured
    data: dict[str, Any] = json.loads(out.read_text())
    out.unlink()
    return data, measured


def _plot(report: Report, sizes: tuple[int, ...], config: RunConfig) -> None:
    from benchmarks._plot import line_plot

    series_rss: dict[str, list[tuple[float, float]]] = {}
    series_rate: dict[str, list[tuple[float, float]]] = {}
    for mode in ("engine", "sign-only"):
        for n in sizes:
            rss = report.find(f"{mode} N={n:,}", "peak RSS")
            rate = report.find(f"{mode} N={n:,}", "throughput")
            if rss is not None:
                series_rss.setdefault(mode, []).append((n, rss.median))
            if rate is not None:
                series_rate.setdefault(mode, []).append((n, rate.median))
    if series_rss:
        report.plots.append(
            line_plot(
                config.results_dir / "pipeline_rss.png",
                series_rss,
                title="Peak RSS of the ingest process vs objects",
                xlabel="objects (N)",
                ylabel="peak RSS (MiB)",
                logx=True,
                ymin=0,
            )
        )
    if series_rate:
        report.plots.append(
            line_plot(
                config.results_dir / "pipeline_throughput.png",
                series_rate,
                title="Ingest throughput vs objects",
                xlabel="objects (N)",
                ylabel="references/s",
                logx=True,
                ymin=0,
            )
        )


# ----------------------------------------------------------------------------- the child


class _SignOnly:
    """A ShardSender that presigns and serialises the request body, then drops it."""

    def __init__(self, refs_sender: Any) -> None:
        self.refs = refs_sender

    async def send(self, shard: Any, ingest_id: str) -> Any:
        from batchflow.ingest import ShardResult
        from batchflow.protocol.staging import ReferencesIngestRequest

        refs = await self.refs.references(shard.items)
        body = ReferencesIngestRequest(image_references=refs, ingest_id=ingest_id)
        json.dumps(body.wire(), ensure_ascii=False, separators=(",", ":"))  # as httpx does
        return ShardResult(files=len(refs), bytes=0)


async def _child_main(args: argparse.Namespace) -> dict[str, Any]:
    from anyio import CapacityLimiter

    from batchflow.client import BatchClient
    from batchflow.config import ClientSettings
    from batchflow.ingest import IngestEngine, IngestOptions, ReferencesSender, SkipLog
    from batchflow.ingest.engine import canonical_source
    from batchflow.pipeline import Journal
    from batchflow.signing import S3Signer
    from batchflow.testing import SyntheticSource

    source = SyntheticSource(args.n)
    options = IngestOptions(batch_id="bench-pipeline", shard_size=args.shard, concurrency=4)
    signer = S3Signer(access_key="AKIABENCHMARK", secret_key="bench/secret", region="eu-west-1")
    settings = ClientSettings(api_url=args.sink, api_key="bench", key_in_header=True)
    journal_file = Path(args.state) / f"journal-{args.mode}-{args.n}-{time.time_ns()}.jsonl"
    journal = Journal.open(
        journal_file, plan=options.plan("signed-references", canonical_source(source))
    )
    before = _stats(args.sink)
    start, cpu_start = time.perf_counter(), time.process_time()
    async with BatchClient(settings, concurrency=8, workspace="bench") as client:
        sender: Any = ReferencesSender(
            client, options, signer=signer, bucket=BUCKET, limiter=CapacityLimiter(2)
        )
        if args.mode == "sign-only":
            sender = _SignOnly(sender)
        engine = IngestEngine(
            source, options, "signed-references", sender=sender, skips=SkipLog(), journal=journal
        )
        summary = await engine.run()
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    journal.close()
    journal_file.unlink()
    after = _stats(args.sink)
    return {
        "n": args.n,
        "mode": args.mode,
        "seconds": seconds,
        "cpuSeconds": cpu_seconds,
        "filesSent": summary.files_sent,
        "shards": summary.shards_total,
        "sinkReferences": (
            None if args.mode == "sign-only" else after["references"] - before["references"]
        ),
        "selfPeakRssKiB": _self_rss(),
    }


def _stats(url: str) -> dict[str, int]:
    import httpx

    stats: dict[str, int] = httpx.get(f"{url}/stats", timeout=10, trust_env=False).json()
    return stats


def _self_rss() -> int:
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", action="store_true", required=True)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--shard", type=int, default=SHARD)
    parser.add_argument("--sink", required=True)
    parser.add_argument("--mode", choices=("engine", "sign-only"), default="engine")
    parser.add_argument("--out", required=True)
    parser.add_argument("--state", required=True)
    args = parser.parse_args()
    import anyio

    result = anyio.run(_child_main, args)
    if result["filesSent"] != args.n:
        raise SystemExit(f"sent {result['filesSent']} of {args.n}")
    Path(args.out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
