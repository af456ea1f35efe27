"""Extract downloaded result archives (tar, tar.gz, zip) with path checks.

Nothing is written outside the target folder: absolute names, ``..`` segments, links, devices
and other special members are refused *before* anything of the archive is written, and each
file goes to a temporary name first and is renamed into place when complete.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from batchflow.errors import PermanentError

__all__ = ["ExtractedArchive", "UnsafeArchiveError", "extract_archive", "is_archive"]

_ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")
_CHUNK = 1 << 20


class UnsafeArchiveError(PermanentError):
    """An archive member would land outside the target or is not a regular file."""


@dataclass(frozen=True, slots=True)
class ExtractedArchive:
    """What one archive produced."""

    archive: Path
    files: int
    bytes: int


def is_archive(path: Path) -> bool:
    """Whether ``path`` names an archive :func:`extract_archive` understands."""
    name = path.name.lower()
    return name.endswith(_ARCHIVE_SUFFIXES)


def _safe_relative(name: str, archive: Path) -> PurePosixPath:
    if not name or "\\" in name or "\x00" in name:
        raise UnsafeArchiveError(f"{archive.name}: refused member {name!r} (unsafe name)")
    path = PurePosixPath(name)
    if path.is_absolute() or any(part == ".." for part in path.parts):
        raise UnsafeArchiveError(
            f"{archive.name}: refused member {name!r}: it would be written outside the target"
        )
    parts = [part for part in path.parts if part not in {"", "."}]
    if not parts:
        raise UnsafeArchiveError(f"{archive.name}: refused member {name!r} (empty name)")
    return PurePosixPath(*parts)


def _write_member(source: IO[bytes], dest: Path) -> int:
    dest.parent.mkdir(parents=True, exist_ok=True)
    temp = dest.with_name(f".{dest.name}.part")
    written = 0
    with temp.open("wb") as out:
        while chunk := source.read(_CHUNK):
            out.write(chunk)
            written += len(chunk)
        out.flush()
        os.fsync(out.fileno())
    temp.replace(dest)
    return written


def _check_zip(zf: zipfile.ZipFile, archive: Path) -> list[tuple[PurePosixPath, zipfile.ZipInfo]]:
    checked = []
    for info in zf.infolist():
        if info.is_dir():
            _safe_relative(info.filename, archive)
            continue
        mode = (info.external_attr >> 16) & 0o170000
        if mode and mode != 0o100000:
            raise UnsafeArchiveError(
                f"{archive.name}: refused member {info.filename!r}: not a regular file"
            )
        checked.append((_safe_relative(info.filename, archive), info))
    return checked


def _check_tar(tf: tarfile.TarFile, archive: Path) -> list[tuple[PurePosixPath, tarfile.TarInfo]]:
    checked = []
    for member in tf.getmembers():
        if member.isdir():
            _safe_relative(member.name, archive)
            continue
        if not member.isfile():
            raise UnsafeArchiveError(
                f"{archive.name}: refused member {member.name!r}: links and special files"
                " are not extracted"
            )
        checked.append((_safe_relative(member.name, archive), member))
    return checked


def _check_targets(relatives: list[PurePosixPath], root: Path, archive: Path) -> None:
    for relative in relatives:
        if not (root / relative).resolve().is_relative_to(root):  # a symlink already in the target
            raise UnsafeArchiveError(
                f"{archive.name}: refused member {str(relative)!r}: it resolves outside {root}"
            )


def extract_archive(archive: Path, target: Path) -> ExtractedArchive:
    """Extract ``archive`` into ``target`` after checking every member; return what was written.

    Raises :class:`UnsafeArchiveError` (nothing written) when any member is unsafe, and
    :class:`PermanentError` when the archive is corrupt.
    """
    target.mkdir(parents=True, exist_ok=True)
    root = target.resolve()
    files = total = 0
    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                zip_members = _check_zip(zf, archive)
                _check_targets([rel for rel, _ in zip_members], root, archive)
                for relative, info in zip_members:
                    with zf.open(info) as source:
                        total += _write_member(source, root / relative)
                    files += 1
        else:
            with tarfile.open(archive, "r:*") as tf:
                tar_members = _check_tar(tf, archive)
                _check_targets([rel for rel, _ in tar_members], root, archive)
                for relative, member in tar_members:
                    data = tf.extractfile(member)
                    if data is None:  # pragma: no cover - regular files always have data
                        continue
                    with data:
                        total += _write_member(data, root / relative)
                    files += 1
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
        raise PermanentError(
            f"{archive.name}: corrupt archive ({exc}); delete it and export again"
        ) from exc
    return ExtractedArchive(archive=archive, files=files, bytes=total)


def remove_tree(path: Path) -> None:
    """Remove a folder tree if it exists (used to clean a half-extracted folder)."""
    shutil.rmtree(path, ignore_errors=True)
