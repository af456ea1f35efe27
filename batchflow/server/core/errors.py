"""The one error -> HTTP answer table of the server, for staging and jobs routes alike.

Routes and services raise typed errors of the batchflow tree (``batchflow/errors.py``); nothing
else picks a status. :data:`ERROR_STATUS` maps each class to its status (first ``isinstance``
match wins, so subclasses come first); a retryable error's ``retry_after`` becomes a
``Retry-After`` header of whole seconds, rounded up. Every error answer is ``{"error": "..."}``.
Framework errors (an unknown route, a validation error) and catalog contention are answered
through the same table; anything else is a bare 500 (logged).
"""

from __future__ import annotations

import math
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

__all__ = [
    "ERROR_STATUS",
    "SignatureError",
    "answer_for",
    "error_response",
    "install_error_handlers",
    "retry_after_header",
    "status_for",
]

log = structlog.get_logger(__name__)


class SignatureError(AuthError):
    """A missing, tampered or expired URL signature: 403, the URL itself is refused."""


#: Most specific first. The last row catches every other class of the tree (PermanentError,
#: PartialFailure, JobFailedError, DeadlineExceeded): the request, as sent, will not succeed.
ERROR_STATUS: tuple[tuple[type[BatchflowError], int], ...] = (
    (SignatureError, 403),
    (AuthError, 401),
    (NotFoundError, 404),
    (ConflictError, 409),
    (TooLargeError, 413),
    (UsageError, 400),
    (RateLimitedError, 429),
    (TransientError, 503),
    (BatchflowError, 400),
)


def status_for(exc: BatchflowError) -> int:
    """The HTTP status of ``exc`` per :data:`ERROR_STATUS`."""
    for cls, status in ERROR_STATUS:
        if isinstance(exc, cls):
            return status
    raise AssertionError("unreachable: BatchflowError is the last row")  # pragma: no cover


def retry_after_header(exc: BatchflowError) -> dict[str, str] | None:
    """``{"Retry-After": "<seconds>"}`` for a retryable error that says when, else None."""
    if isinstance(exc, TransientError) and exc.retry_after is not None:
        return {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
    return None


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def answer_for(exc: BatchflowError) -> JSONResponse:
    """The answer to a request that failed with ``exc``: status, ``Retry-After``, message."""
    return error_response(status_for(exc), exc.message, retry_after_header(exc))


def _describe(errors: Any) -> str:
    parts = []
    for error in errors:
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in {"body", "query"})
        parts.append(f"{where or 'request'}: {error.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts[:5])


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on ``app`` (every router of the server relies on them)."""

    async def batchflow_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, BatchflowError)
        return answer_for(exc)

    async def http_error(_request: Request, exc: Exception) -> JSONResponse:
        # Starlette's own answers (no such route, wrong method): their status is kept.
        assert isinstance(exc, HTTPException)
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and message == "Not Found":
            message = "no such route"
        return error_response(exc.status_code, message, dict(exc.headers or {}) or None)

    async def validation_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return answer_for(UsageError(_describe(exc.errors())))

    async def database_busy(_request: Request, exc: Exception) -> JSONResponse:
        log.warning("catalog.busy", error=str(exc))
        return answer_for(TransientError("the catalog is busy, retry", retry_after=1))

    async def integrity(_request: Request, exc: Exception) -> JSONResponse:
        log.warning("catalog.conflict", error=str(exc).splitlines()[0])
        # an unhandled unique-key race: the retry sees the other request's committed row
        return answer_for(
            TransientError("a concurrent request changed the same data, retry", retry_after=1)
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
