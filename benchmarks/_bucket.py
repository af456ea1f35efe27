"""The shared test bucket: one local S3 server and one seeded bucket per harness run.

``listing`` and ``peers`` measure against the same bucket, so it is seeded once (not measured)
and kept until the harness exits. Objects are small real JPEG/PNG images (a pool of distinct
bodies cycled) under ``imgs/dNN/``, so staging and image jobs get decodable files.

The store is ``rclone serve s3`` by default (``BENCH_S3=moto`` for moto_server). Measured on
this 2-core machine, moto takes ~90 PUT/s, ~70 GET/s and ~4 s to list 2,000 keys, against
~1,000 writes/s (files written straight into its folder), ~500 GET/s and ~1.6 s for rclone: with
moto, 20k objects take minutes to seed and the server's staging time measures moto, not
batchflow. rclone also verifies every SigV4 signature, so a wrong presigned URL fails the run.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks._procs import Moto, moto, rclone_s3

__all__ = ["SharedBucket", "shared_bucket"]

_POOL = 64


@dataclass(frozen=True, slots=True)
class SharedBucket:
    moto: Moto
    """The store's endpoint and credentials (moto or rclone)."""
    store: str
    bucket: str
    prefix: str
    count: int
    seed_seconds: float

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


_CACHE: dict[int, SharedBucket] = {}
_STACK = contextlib.ExitStack()
atexit.register(_STACK.close)


def key_of(i: int) -> str:
    suffix = "png" if i % 10 == 9 else "jpg"
    return f"imgs/d{i % 100:02d}/img-{i:06d}.{suffix}"


def shared_bucket(count: int, scratch: Path) -> SharedBucket:
    """A moto bucket holding ``count`` images (seeded on first use, reused afterwards)."""
    if count in _CACHE:
        return _CACHE[count]
    from batchflow.samples import make_image_bytes

    scratch.mkdir(parents=True, exist_ok=True)
    jpg = [make_image_bytes(i) for i in range(_POOL)]
    png = [make_image_bytes(i, fmt="PNG") for i in range(_POOL)]
    bucket = f"bench-{count}"
    keys = [key_of(i) for i in range(count)]
    bodies = [(png if i % 10 == 9 else jpg)[i % _POOL] for i in range(count)]
    store = os.environ.get("BENCH_S3", "rclone")
    start = time.perf_counter()
    if store == "moto":
        server = _STACK.enter_context(moto(scratch))
        server.seed(bucket, keys, bodies)
    else:
        data = scratch / f"s3data-{os.getpid()}"
        _STACK.callback(shutil.rmtree, data, True)
        for key, body in zip(keys, bodies, strict=True):
            path = data / bucket / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)
        server = _STACK.enter_context(rclone_s3(scratch, data))
    shared = SharedBucket(server, store, bucket, "imgs/", count, time.perf_counter() - start)
    _CACHE[count] = shared
    return shared
