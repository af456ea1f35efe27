"""The one paging rule of every listing (staging and jobs): page size and opaque tokens.

A token is base64url of ``id:<last row id>``. Rows are listed in id order and new rows get
larger ids, so a token stays valid while data is appended. Queries fetch ``size + 1`` rows and
:func:`page_of` cuts the page: the last page carries no token.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import TypeVar

from batchflow.errors import UsageError

T = TypeVar("T")

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "decode_token",
    "encode_token",
    "page_of",
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


def page_of(rows: Sequence[T], size: int, pk: Callable[[T], int]) -> tuple[list[T], str | None]:
    """``rows`` fetched with ``limit=size + 1``: the page, and the next page's token or None."""
    page = list(rows[:size])
    return page, encode_token(pk(page[-1])) if len(rows) > size else None
