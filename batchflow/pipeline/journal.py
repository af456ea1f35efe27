"""An append-only, fsync'd JSON-lines journal per ingest: what makes re-runs resume.

Line 1 is a header ``{"kind": "header", "plan": {...}}`` holding the command's parameters (the
plan fingerprint); later lines are records such as ``{"kind": "ack", "key": "<shard key>", ...}``.
Opening tolerates a crash mid-write: a torn final line (no newline, or not JSON) is dropped and
truncated away. Memory stays O(shards): only the header and the set of acknowledged keys are
kept, other records are counted, not stored.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import anyio.to_thread

from batchflow.errors import PermanentError, UsageError

__all__ = ["Journal", "JournalMismatch"]

_HEADER = "header"
_ACK = "ack"


class JournalMismatch(UsageError):
    """The journal on disk was written by an ingest with other parameters."""


def _encode(record: Mapping[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":"), sort_keys=True).encode() + b"\n"


def _differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    keys = sorted(set(old) | set(new))
    return [k for k in keys if old.get(k) != new.get(k)]


class Journal:
    """One ingest's journal file. Use :meth:`open`; close it (or use ``with``) when done."""

    def __init__(self, path: Path, file: IO[bytes], *, fsync_every: int = 1) -> None:
        self.path = path
        self._file = file
        self.fsync_every = max(fsync_every, 1)
        self._unsynced = 0
        self.header: dict[str, Any] | None = None
        self.records = 0
        self.dropped_torn_line = False
        self._acked: set[str] = set()
        self._lock = threading.Lock()  # aappend/aack run in worker threads

    # -- opening -------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        plan: Mapping[str, Any] | None = None,
        restart: bool = False,
        fsync_every: int = 1,
    ) -> Journal:
        """Open (creating if needed) the journal at ``path`` and load its state.

        With ``plan``, a new journal starts with a header holding it and an existing one must
        hold an equal plan, else :class:`JournalMismatch` suggests ``--restart``. ``restart``
        empties the journal first. ``fsync_every`` > 1 batches fsyncs (call :meth:`sync`).
        """
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        created = not target.exists()
        file = target.open("r+b" if not created else "w+b")
        journal = cls(target, file, fsync_every=fsync_every)
        try:
            if restart:
                file.truncate(0)
            else:
                journal._load()
            if created:
                _fsync_dir(target.parent)
            if plan is not None:
                journal._check_plan(json.loads(json.dumps(dict(plan), sort_keys=True)))
        except BaseException:
            file.close()
            raise
        return journal

    def _load(self) -> None:
        self._file.seek(0)
        good_end = 0
        pending_error: tuple[int, str] | None = None
        for number, line in enumerate(self._file, start=1):
            if pending_error is not None:
                raise PermanentError(
                    f"journal {self.path} is corrupt at line {pending_error[0]}: "
                    f"{pending_error[1]}; move it away or re-run with --restart"
                )
            if not line.endswith(b"\n"):
                self.dropped_torn_line = True
                break
            try:
                record = json.loads(line)
            except ValueError as exc:
                # Only the last line may be torn; remember and fail if another line follows.
                pending_error = (number, str(exc))
                continue
            if not isinstance(record, dict):
                pending_error = (number, "not a JSON object")
                continue
            self._apply(record)
            good_end += len(line)
        if pending_error is not None:
            self.dropped_torn_line = True
        self._file.seek(good_end)
        self._file.truncate(good_end)
        if self.dropped_torn_line:
            self._flush(force=True)

    def _apply(self, record: dict[str, Any]) -> None:
        self.records += 1
        kind = record.get("kind")
        if kind == _HEADER and self.header is None:
            plan = record.get("plan")
            self.header = dict(plan) if isinstance(plan, dict) else {}
        elif kind == _ACK and isinstance(record.get("key"), str):
            self._acked.add(record["key"])

    def _check_plan(self, plan: dict[str, Any]) -> None:
        if self.header is None:
            if self.records:
                raise JournalMismatch(
                    f"journal {self.path} has no header; re-run with --restart to start over"
                )
            self.append({"kind": _HEADER, "plan": plan})
            self.sync()
            return
        changed = _differences(self.header, plan)
        if changed:
            raise JournalMismatch(
                f"journal {self.path} belongs to an ingest with other parameters "
                f"(differs in: {', '.join(changed)}); re-run with the same parameters to "
                "resume, or with --restart to start over"
            )

    # -- writing -------------------------------------------------------------------------
    def append(self, record: Mapping[str, Any]) -> None:
        """Write one record as a JSON line; flushed and fsync'd per ``fsync_every``."""
        data = dict(record)
        line = _encode(data)
        with self._lock:
            self._file.write(line)
            self._apply(data)
            self._unsynced += 1
            self._flush(force=self._unsynced >= self.fsync_every)

    def ack(self, key: str, **fields: Any) -> None:
        """Record that the shard ``key`` was acknowledged by the server."""
        self.append({**fields, "kind": _ACK, "key": key})

    async def aappend(self, record: Mapping[str, Any]) -> None:
        """:meth:`append` in a worker thread (fsync must not block the event loop)."""
        await anyio.to_thread.run_sync(self.append, record)

    async def aack(self, key: str, **fields: Any) -> None:
        """:meth:`ack` in a worker thread."""
        await anyio.to_thread.run_sync(lambda: self.ack(key, **fields))

    def sync(self) -> None:
        """Flush and fsync whatever is pending."""
        with self._lock:
            self._flush(force=True)

    def _flush(self, *, force: bool) -> None:
        self._file.flush()
        if force:
            os.fsync(self._file.fileno())
            self._unsynced = 0

    def close(self) -> None:
        if not self._file.closed:
            self.sync()
            self._file.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- queries -------------------------------------------------------------------------
    def is_acked(self, key: str) -> bool:
        return key in self._acked

    @property
    def acked(self) -> frozenset[str]:
        """Keys of every acknowledged shard."""
        return frozenset(self._acked)


def _fsync_dir(directory: Path) -> None:
    """Make a new file's directory entry durable (best effort where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
