"""The one error tree of batchflow.

Every vendor error (httpx, botocore, aiohttp, azure.core, sqlalchemy) is translated into one of
these exactly once, at the boundary where it is raised, with ``raise ... from exc`` (httpx's in
``batchflow.httperrors``, the only module that catches them). Retry logic decides on the class
(``transient``), never on message text. The CLI maps each class to an exit code (documented in
the README).

    BatchflowError                      exit 1
    ├── UsageError                      exit 2   bad flag, bad id, bad glob, malformed input
    │   └── ConfigError                 exit 2   missing/invalid credentials or settings
    ├── AuthError                       exit 4   401/403: wrong or missing API key / credentials
    ├── NotFoundError                   exit 3   unknown batch, job, bucket, container, path
    │   └── NothingMatched              exit 3   a listing or batch yielded no item at all
    ├── ConflictError                   exit 5   409: id reused with other content
    ├── TooLargeError                   exit 2   413: body or file over a limit
    ├── PermanentError                  exit 1   any other non-retryable failure (4xx, garbage)
    │   └── LocalFileError                       a local file vanished, is unreadable or changed
    ├── TransientError                  exit 75  retryable: 5xx, 429, resets, timeouts
    │   ├── RateLimitedError                     429/503 with an optional Retry-After
    │   ├── NetworkError                         connect/read/write failures, timeouts
    │   └── RetriesExhausted                     the retry budget ran out on a transient error
    ├── PartialFailure                  exit 6   the run finished but some items failed
    ├── JobFailedError                  exit 7   a job ended in error
    └── DeadlineExceeded                exit 8   a deadline the user set (``--timeout``) ran out
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "BatchflowError",
    "ConfigError",
    "ConflictError",
    "DeadlineExceeded",
    "JobFailedError",
    "LocalFileError",
    "NetworkError",
    "NotFoundError",
    "NothingMatched",
    "PartialFailure",
    "PermanentError",
    "RateLimitedError",
    "RetriesExhausted",
    "TooLargeError",
    "TransientError",
    "UsageError",
]


class BatchflowError(Exception):
    """Base of every error batchflow raises on purpose."""

    exit_code: int = 1
    transient: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(BatchflowError):
    """The caller asked for something malformed: fix the input and run again."""

    exit_code = 2


class ConfigError(UsageError):
    """Settings or credentials are missing or invalid."""


class AuthError(BatchflowError):
    """The API key or cloud credentials were refused."""

    exit_code = 4


class NotFoundError(BatchflowError):
    """The named batch, job, bucket, container or path does not exist."""

    exit_code = 3


class NothingMatched(NotFoundError):
    """A source matched no object, or a batch holds no file: nothing was created or written."""


class ConflictError(BatchflowError):
    """An id was reused with different content."""

    exit_code = 5


class TooLargeError(BatchflowError):
    """A body or a file is over a limit."""

    exit_code = 2


class PermanentError(BatchflowError):
    """A failure that retrying will not fix."""


class LocalFileError(PermanentError):
    """A local file could not be read while it was being sent: retrying will not bring it back.

    ``path`` names the file; the message says why (the OS reason, or that it changed size).
    """

    def __init__(self, message: str, *, path: object) -> None:
        super().__init__(message)
        self.path = path


class TransientError(BatchflowError):
    """A failure that may succeed when retried."""

    exit_code = 75
    transient = True

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimitedError(TransientError):
    """The server asked us to slow down (429/503), possibly with Retry-After seconds."""


class NetworkError(TransientError):
    """A connection could not be made, was reset, or timed out."""


class RetriesExhausted(TransientError):
    """Retrying a transient error ran out of budget (time); chained from the last error.

    Still transient, so still exit 75 ("run again"): the budget is the retry policy's own
    bound, not a deadline the user asked for (that is :class:`DeadlineExceeded`).
    """


class PartialFailure(BatchflowError):
    """The work finished but some items failed; they are listed in the summary."""

    exit_code = 6


class JobFailedError(BatchflowError):
    """A batch job ended in error."""

    exit_code = 7


class DeadlineExceeded(BatchflowError):
    """A deadline the user set (such as ``poll --timeout``) ran out before the work finished."""

    exit_code = 8
