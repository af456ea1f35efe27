"""API-key check of ``batchflow serve``: ``api_key`` query parameter or a Bearer header."""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from fastapi import Request

from batchflow.errors import AuthError

__all__ = ["ApiKeys", "require_api_key"]


class ApiKeys:
    """The accepted keys, compared in constant time."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._keys = tuple(key.encode() for key in keys if key)

    def accepts(self, key: str | None) -> bool:
        if not key:
            return False
        candidate = key.encode()
        found = False
        for known in self._keys:
            found |= hmac.compare_digest(known, candidate)
        return found


def presented_key(request: Request) -> str | None:
    """The key the request carries: the Bearer header wins over the query parameter."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.query_params.get("api_key")


async def require_api_key(request: Request) -> None:
    """FastAPI dependency: 401 unless the request carries an accepted key."""
    keys: ApiKeys = request.app.state.api_keys
    if not keys.accepts(presented_key(request)):
        raise AuthError("missing or invalid API key")
