"""One ``batchflow serve`` per data dir: an exclusive ``flock`` on ``DATA_DIR/serve.lock``.

``serve`` takes the lock before it binds a port and holds it for the life of the process (the
kernel drops it when the process dies, however it dies); the file then holds its pid. A second
``serve`` on the same data dir fails with :class:`ConflictError` naming that pid. The embedded
service (``_embedded``) probes the lock to wait for a daemon that is starting, or too busy to
answer ``/healthz``, instead of starting a second one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from batchflow.errors import ConflictError

__all__ = ["LOCK_NAME", "hold_serve_lock", "serve_lock_held"]

LOCK_NAME = "serve.lock"
# a probe by serve_lock_held holds the lock for microseconds: a new serve waits that out, and for
# the holder's pid to be written just after it locked, this long and never longer
_SETTLE = 1.0
_STEP = 0.02


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _read_pid(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip()
    return int(text) if text.isdigit() else None


@contextlib.contextmanager
def hold_serve_lock(data_dir: Path) -> Iterator[None]:
    """Hold ``data_dir``'s serve lock, or raise :class:`ConflictError` naming its holder."""
    path = data_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + _SETTLE
        while not _try_lock(fd):
            if time.monotonic() > deadline:
                pid = _read_pid(fd)
                holder = f"pid {pid}" if pid is not None else "another process"
                raise ConflictError(
                    f"another batchflow serve ({holder}) already serves {data_dir} (it holds "
                    f"{path}): stop it or pass another --data-dir"
                )
            time.sleep(_STEP)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
        os.ftruncate(fd, 0)  # a clean exit leaves no pid behind
    finally:
        os.close(fd)  # closing releases the lock


def serve_lock_held(data_dir: Path) -> bool:
    """Whether a ``serve`` holds ``data_dir``'s lock (it is starting, serving or stopping)."""
    try:
        fd = os.open(data_dir / LOCK_NAME, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        return not _try_lock(fd)  # when the probe got it, closing below releases it at once
    finally:
        os.close(fd)
