"""Streaming, safe iteration over an uploaded tar (plain, gz, bz2 or xz).

Nothing is ever extracted: members are read in one forward pass (``tarfile`` mode ``r|*``) and
handed out as file objects, or as :class:`TarRejection` records the caller turns into failed
files. Only a broken archive as a whole raises (:class:`BadArchiveError`). Blocking: iterate in a
worker thread (e.g. inside ``anyio.to_thread.run_sync``).
"""

from __future__ import annotations

import io
import lzma
import re
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from batchflow.errors import PermanentError, UsageError
from batchflow.protocol import validate_file_name

__all__ = [
    "IMAGE_SUFFIXES",
    "NOTIFICATION_CONFIG",
    "NOTIFICATION_CONFIG_MAX_BYTES",
    "VIDEO_SUFFIXES",
    "BadArchiveError",
    "TarMember",
    "TarRejection",
    "iter_tar",
]

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
)
VIDEO_SUFFIXES: frozenset[str] = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"})
NOTIFICATION_CONFIG = "notification_config.json"
NOTIFICATION_CONFIG_MAX_BYTES = 64 * 1024

UNSAFE = "unsafe-archive-member"
UNSUPPORTED = "unsupported-file-type"
TOO_LARGE = "file-size-limit-exceeded"
TOO_MANY = "too-many-members"
INVALID_NAME = "invalid-file-name"

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_DRIVE = re.compile(r"^[A-Za-z]:")
_ARCHIVE_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError)


class BadArchiveError(PermanentError):
    """The archive is corrupt or truncated; members yielded before stay valid."""

    failure_type = "invalid-archive"


@dataclass(frozen=True, slots=True)
class TarMember:
    """A regular file accepted from the archive (its normalised name and size in bytes)."""

    name: str
    size: int


@dataclass(frozen=True, slots=True)
class TarRejection:
    """A member that was skipped, with a protocol failure type and a human reason."""

    name: str
    failure_type: str
    reason: str


class _GuardedRaw(io.RawIOBase):
    """Member data whose read errors (a truncated archive) surface as BadArchiveError."""

    def __init__(self, inner: IO[bytes], name: str) -> None:
        self._inner = inner
        self._name = name

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        try:
            data = self._inner.read(len(view))
        except _ARCHIVE_ERRORS as exc:
            raise BadArchiveError(f"archive is corrupt or truncated in {self._name!r}") from exc
        view[: len(data)] = data
        return len(data)


def _name_problem(name: str) -> str | None:
    """Why a (normalised) member name is unsafe, or None."""
    if not name:
        return "empty name"
    if name.startswith("/") or _DRIVE.match(name):
        return "absolute path"
    if "\\" in name:
        return "backslash in name"
    if _CONTROL.search(name):
        return "control character in name"
    if ".." in name.split("/"):
        return "'..' path segment"
    return None


def _type_problem(info: tarfile.TarInfo) -> str | None:
    if info.issym():
        return "symbolic link"
    if info.islnk():
        return "hard link"
    if info.ischr() or info.isblk():
        return "device file"
    if info.isfifo():
        return "fifo"
    if info.type == tarfile.GNUTYPE_SPARSE or info.sparse is not None:
        return "sparse file"
    if not info.isreg():
        return f"unsupported member type {info.type!r}"
    return None


def _normalise(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name


def _check(
    info: tarfile.TarInfo, name: str, max_member_bytes: int, allowed: frozenset[str]
) -> TarRejection | None:
    """The rejection for a non-directory member, if any (limits on count are applied outside)."""
    problem = _name_problem(name) or _type_problem(info)
    if problem is not None:
        return TarRejection(name, UNSAFE, problem)
    try:
        name.encode("utf-8")
        validate_file_name(name)
    except UnicodeEncodeError:
        return TarRejection(name, INVALID_NAME, "name is not valid UTF-8")
    except UsageError as exc:
        return TarRejection(name, INVALID_NAME, exc.message)
    if name == NOTIFICATION_CONFIG:
        limit = min(max_member_bytes, NOTIFICATION_CONFIG_MAX_BYTES)
    else:
        suffix = PurePosixPath(name).suffix.lower()
        if suffix not in allowed:
            return TarRejection(name, UNSUPPORTED, f"file type {suffix or '(none)'!r} not accepted")
        limit = max_member_bytes
    if info.size > limit:
        return TarRejection(name, TOO_LARGE, f"{info.size} bytes is over the {limit} byte limit")
    return None


def iter_tar(
    source: Path | IO[bytes],
    *,
    max_members: int = 500,
    max_member_bytes: int = 20971520,
    allowed_suffixes: frozenset[str] = IMAGE_SUFFIXES,
) -> Iterator[tuple[TarMember, IO[bytes]] | TarRejection]:
    """Yield ``(member, data)`` for each acceptable file and a rejection for each other one.

    Directories are skipped. A top-level ``notification_config.json`` is yielded as a member
    and does not count toward ``max_members``. ``data`` is valid only until the next step.
    """
    try:
        if isinstance(source, Path):
            archive = tarfile.open(source, mode="r|*")  # noqa: SIM115 - closed in the finally
        else:
            archive = tarfile.open(fileobj=source, mode="r|*")  # noqa: SIM115 - as above
    except _ARCHIVE_ERRORS as exc:
        raise BadArchiveError(f"not a readable tar archive: {exc}") from exc
    try:
        counted = 0
        while True:
            try:
                info = archive.next()
            except _ARCHIVE_ERRORS as exc:
                raise BadArchiveError(f"archive is corrupt or truncated: {exc}") from exc
            # stream mode keeps every header otherwise: O(members) memory
            archive.members = []  # type: ignore[attr-defined]
            if info is None:
                break
            if info.isdir():
                continue
            name = _normalise(info.name)
            if name != NOTIFICATION_CONFIG:
                counted += 1
                if counted > max_members:
                    yield TarRejection(name, TOO_MANY, f"archive has more than {max_members} files")
                    continue
            rejection = _check(info, name, max_member_bytes, allowed_suffixes)
            if rejection is not None:
                yield rejection
                continue
            try:
                data = archive.extractfile(info)
            except _ARCHIVE_ERRORS as exc:
                raise BadArchiveError(f"archive is corrupt at {name!r}: {exc}") from exc
            if data is None:  # not a regular file after all; _type_problem should prevent it
                yield TarRejection(name, UNSAFE, "member has no data")
                continue
            with io.BufferedReader(_GuardedRaw(data, name)) as reader:
                yield TarMember(name=name, size=info.size), reader
        _check_end_marker(archive)
    finally:
        archive.close()


def _check_end_marker(archive: tarfile.TarFile) -> None:
    """tarfile ends quietly on a missing end-of-archive block: call that truncated.

    In stream mode the reader's position after the final header read is ``offset + 512`` only
    when a full (zero) end block was there.
    """
    position = getattr(archive.fileobj, "pos", None)
    if isinstance(position, int) and position - archive.offset < tarfile.BLOCKSIZE:
        raise BadArchiveError("archive is truncated: it ends without an end-of-archive block")
