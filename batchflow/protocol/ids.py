"""Identifier and name validation shared by the client and the server (PROTOCOL.md)."""

from __future__ import annotations

import re
import secrets
import string

from batchflow.errors import UsageError

__all__ = [
    "MAX_BATCH_ID",
    "MAX_JOB_ID",
    "MAX_NAME_BYTES",
    "new_job_id",
    "validate_batch_id",
    "validate_file_name",
    "validate_job_id",
]

MAX_BATCH_ID = 64
MAX_JOB_ID = 20
MAX_NAME_BYTES = 1024
_ID = re.compile(r"^[a-z0-9_-]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ALPHABET = string.ascii_lowercase + string.digits


def _validate_id(kind: str, value: str, limit: int) -> str:
    if not value or len(value) > limit or not _ID.fullmatch(value):
        raise UsageError(
            f"invalid {kind} {value!r}: use 1-{limit} characters from a-z, 0-9, '_' and '-'"
        )
    return value


def validate_batch_id(value: str) -> str:
    """Return ``value`` if it is a valid batch id, else raise :class:`UsageError`."""
    return _validate_id("batch id", value, MAX_BATCH_ID)


def validate_job_id(value: str) -> str:
    """Return ``value`` if it is a valid job id, else raise :class:`UsageError`."""
    return _validate_id("job id", value, MAX_JOB_ID)


def new_job_id() -> str:
    """A fresh job id shaped like the reference client's: ``job-`` + 12 lowercase alphanumerics."""
    return "job-" + "".join(secrets.choice(_ALPHABET) for _ in range(12))


def validate_file_name(value: str) -> str:
    """Return ``value`` if it is a safe relative file name inside a batch.

    Refused: empty, over 1024 UTF-8 bytes, control characters, a leading ``/`` or ``\\``,
    backslashes, and empty, ``.`` or ``..`` path segments.
    """
    if not value:
        raise UsageError("invalid file name '': a name must not be empty")
    if len(value.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise UsageError(f"invalid file name {value[:40]!r}...: longer than {MAX_NAME_BYTES} bytes")
    if _CONTROL.search(value):
        raise UsageError(f"invalid file name {value!r}: control characters are not allowed")
    if value.startswith("/") or "\\" in value:
        raise UsageError(f"invalid file name {value!r}: use a relative path with '/' separators")
    if any(part in {"", ".", ".."} for part in value.split("/")):
        raise UsageError(f"invalid file name {value!r}: empty, '.' and '..' segments are refused")
    return value
