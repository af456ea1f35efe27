"""Opaque page tokens: base64url of the last row's monotonically increasing id.

Rows are listed in id order and new rows get larger ids, so a token stays valid while data is
appended.
"""

from __future__ import annotations

import base64
import binascii

from batchflow.errors import UsageError

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "decode_token",
    "encode_token",
    "next_token",
    "page_size",
]

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def encode_token(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")


def decode_token(token: str | None) -> int:
    """The id after which the next page starts (0 without a token); 400 on garbage."""
    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise UsageError("invalid nextPageToken") from exc
    prefix, _, number = text.partition(":")
    if prefix != "id" or not number.isdigit():
        raise UsageError("invalid nextPageToken")
    return int(number)


def page_size(value: int | None) -> int:
    """``pageSize`` clamped to 1..1000 (default 100); 400 when not positive."""
    if value is None:
        return DEFAULT_PAGE_SIZE
    if value < 1:
        raise UsageError("pageSize must be a positive integer")
    return min(value, MAX_PAGE_SIZE)


def next_token(ids: list[int], limit: int) -> str | None:
    """A token when the page was full (there may be more), else None."""
    return encode_token(ids[-1]) if ids and len(ids) >= limit else None
