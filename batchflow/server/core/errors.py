"""Exception handlers: every error answer is ``{"error": "..."}`` with the right status."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError, OperationalError
from starlette.exceptions import HTTPException

from batchflow.errors import (
    AuthError,
    BatchflowError,
    ConflictError,
    NotFoundError,
    RateLimitedError,
    TooLargeError,
    TransientError,
    UsageError,
)

__all__ = ["SignatureError", "error_response", "install_error_handlers", "status_for"]

log = structlog.get_logger(__name__)


class SignatureError(AuthError):
    """A missing, tampered or expired URL signature: 403, the URL itself is refused."""


_STATUS: tuple[tuple[type[BatchflowError], int], ...] = (
    (SignatureError, 403),
    (AuthError, 401),
    (NotFoundError, 404),
    (ConflictError, 409),
    (TooLargeError, 413),
    (UsageError, 400),
    (RateLimitedError, 429),
    (TransientError, 503),
)


def status_for(exc: BatchflowError) -> int:
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 400


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _describe(errors: Any) -> str:
    parts = []
    for error in errors:
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in {"body", "query"})
        parts.append(f"{where or 'request'}: {error.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts[:5])


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

    async def batchflow_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, BatchflowError)
        headers = None
        if isinstance(exc, TransientError) and exc.retry_after is not None:
            headers = {"Retry-After": str(int(exc.retry_after))}
        return error_response(status_for(exc), exc.message, headers)

    async def http_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and message == "Not Found":
            message = "no such route"
        return error_response(exc.status_code, message, dict(exc.headers or {}) or None)

    async def validation_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(400, _describe(exc.errors()))

    async def database_busy(_request: Request, exc: Exception) -> JSONResponse:
        log.warning("catalog.busy", error=str(exc))
        return error_response(503, "the catalog is busy, retry", {"Retry-After": "1"})

    async def integrity(_request: Request, exc: Exception) -> JSONResponse:
        log.warning("catalog.conflict", error=str(exc).splitlines()[0])
        # an unhandled unique-key race: the retry sees the other request's committed row
        return error_response(
            503, "a concurrent request changed the same data, retry", {"Retry-After": "1"}
        )

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("request.failed", path=request.url.path, exc_info=exc)
        return error_response(500, "internal server error")

    app.add_exception_handler(BatchflowError, batchflow_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(OperationalError, database_busy)
    app.add_exception_handler(IntegrityError, integrity)
    app.add_exception_handler(Exception, unexpected)
