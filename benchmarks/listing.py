"""Workload ``listing``: is ``batchflow ingest`` of a bucket bound by the listing?

A local S3 bucket of N images (20k; ``rclone serve s3`` by default, ``BENCH_S3=moto`` for
moto; seeding is not measured). Baseline: a bare aioboto3
``list_objects_v2`` paginator over the same prefix with the same page size (1000), run as its
own Python process (``python -m benchmarks.listing --list-child``) so both sides pay interpreter
start-up; its in-process listing time is recorded too. Subject: ``batchflow ingest
s3://bucket/imgs/`` into a fresh ``batchflow serve`` (``--allow-url 127.0.0.1``). Two times: the
client command's wall time until it exits (every shard accepted), and the time until the server
has fetched and staged everything (``count == N``): that second part is server work (it GETs
every object from the store), reported separately. Ratio: ingest command / bare listing process.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._bucket import SharedBucket, shared_bucket
from benchmarks._common import Case, Report, RunConfig
from benchmarks._procs import BIN, PY, REPO, Serve, run_measured, serve

__all__ = ["FULL_OBJECTS", "QUICK_OBJECTS", "ingest_cli", "list_child_argv", "run"]

FULL_OBJECTS = 20_000
QUICK_OBJECTS = 200
PAGE = 1000
STAGE_TIMEOUT = {False: 120.0, True: 60.0}


def list_child_argv(shared: SharedBucket) -> list[str]:
    return [PY, "-m", "benchmarks.listing", "--list-child", "--bucket", shared.bucket,
            "--prefix", shared.prefix]  # fmt: skip


def ingest_cli(shared: SharedBucket, server: Serve, batch_id: str, state: Path) -> Any:
    """Run ``batchflow ingest`` (the installed entry script) against ``server``; Measured."""
    env = {**shared.moto.env, **server.env, "BATCHFLOW_STATE_DIR": str(state)}
    argv = [str(BIN / "batchflow"), "ingest", shared.url, "--batch-id", batch_id, "--json"]
    return run_measured(argv, env=env, cwd=REPO, timeout=900)


def _staging(
    report: Report, server: Serve, batch: str, n: int, start: float, timeout: float
) -> None:
    """Time until the server staged all ``n`` (once; bounded: a slow server is a result too)."""
    try:
        done, count = server.wait_count(batch, n, timeout=timeout)
    except RuntimeError as exc:
        report.fail("batchflow serve staging", str(exc))
        return
    seconds = done - start
    report.add(Case("batchflow serve", "staging rate", "objects/s", [count / seconds],
                    extra={"staged": count, "of": n, "seconds": round(seconds, 2)}))  # fmt: skip
    if count >= n:
        report.add(Case("batchflow serve", "until staged (count == N)", "s", [seconds]))
    else:
        report.notes.append(
            f"the server had staged {count:,} of {n:,} objects {seconds:.0f} s after the ingest "
            f"started (stopped waiting): its staging rate is the number, not 'until staged'"
        )


def run(config: RunConfig) -> Report:
    n = QUICK_OBJECTS if config.quick else FULL_OBJECTS
    report = Report("listing", "bucket ingest vs a bare paginated listing", config)
    scratch = config.scratch_dir / "listing"
    shared = shared_bucket(n, config.scratch_dir)
    report.parameters = {
        "objects": n,
        "pageSize": PAGE,
        "store": f"{shared.store} on 127.0.0.1 (see benchmarks/_bucket.py)",
        "seedSeconds": round(shared.seed_seconds, 2),
        "ingest": "batchflow ingest s3://bucket/imgs/ --json (default shard 20000, concurrency 4)",
    }
    list_wall: list[float] = []
    list_inner: list[float] = []
    cli_wall: list[float] = []
    rss: list[float] = []
    # Interleaved (listing, ingest) pairs: load from other tenants drifts over minutes, and a
    # pair sees about the same machine; the paired ratios are kept next to the medians.
    for i in range(config.repeat):
        measured = run_measured(list_child_argv(shared), env=shared.moto.env, cwd=REPO)
        if not measured.ok:
            report.fail("aioboto3 listing", "listing process failed", **measured.failure())
            break
        data = json.loads(measured.tail.splitlines()[-1])
        if data["objects"] != n:
            report.fail("aioboto3 listing", f"listed {data['objects']} objects, expected {n}")
        list_wall.append(measured.wall)
        list_inner.append(data["seconds"])
        # a fresh server per sample: the previous one may still be fetching objects
        with serve(scratch, name=f"serve{i}") as server:
            batch = f"listing-{i}-{secrets.token_hex(3)}"
            start = time.perf_counter()
            measured = ingest_cli(shared, server, batch, scratch / f"state-{batch}")
            if not measured.ok:
                report.fail("batchflow ingest", "command failed", **measured.failure())
                break
            cli_wall.append(measured.wall)
            rss.append(measured.peak_rss / 2**20)
            if i == 0:
                _staging(report, server, batch, n, start, STAGE_TIMEOUT[config.quick])
    if list_wall:
        report.add(Case("aioboto3 list_objects_v2", "process wall", "s", list_wall))
        report.add(Case("aioboto3 list_objects_v2", "listing only", "s", list_inner))
    if cli_wall:
        report.add(Case("batchflow ingest", "command wall (accepted)", "s", cli_wall))
        report.add(Case("batchflow ingest", "peak RSS", "MiB", rss))
        pairs = [c / lw for c, lw in zip(cli_wall, list_wall, strict=False)]
        report.add(Case("ingest / listing", "paired ratio", "x", pairs))
    report.ratio(
        "ingest / listing (process wall)",
        report.find("batchflow ingest", "command wall (accepted)"),
        report.find("aioboto3 list_objects_v2", "process wall"),
        "1.0 = the ingest command costs no more than listing the bucket",
    )
    report.ratio(
        "ingest / listing only",
        report.find("batchflow ingest", "command wall (accepted)"),
        report.find("aioboto3 list_objects_v2", "listing only"),
        "vs the listing loop alone (no interpreter start-up or imports)",
    )
    report.ratio(
        "staged / listing (process wall)",
        report.find("batchflow serve", "until staged (count == N)"),
        report.find("aioboto3 list_objects_v2", "process wall"),
        "server side: fetching every object from the store and indexing it (first sample)",
    )
    return report


async def _list(bucket: str, prefix: str) -> int:
    import aioboto3

    count = 0
    async with aioboto3.Session().client("s3") as client:
        paginator = client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(
            Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": PAGE}
        ):
            count += len(page.get("Contents", ()))
    return count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--list-child", action="store_true", required=True)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--prefix", default="")
    args = parser.parse_args()
    import anyio

    start = time.perf_counter()
    count = anyio.run(_list, args.bucket, args.prefix)
    print(json.dumps({"objects": count, "seconds": time.perf_counter() - start}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
