"""structlog setup. Only the CLI (and ``batchflow serve``) call :func:`configure`.

Library code just does ``structlog.get_logger()`` and binds context with
``structlog.contextvars.bound_contextvars``. Console rendering on a TTY, JSON lines otherwise,
always on stderr so stdout stays clean for machine-readable output.
"""

from __future__ import annotations

import logging
import sys

import structlog

__all__ = ["configure", "redact"]

_SECRET_KEYS = frozenset({"api_key", "authorization", "token", "password", "secret", "signature"})


def redact(
    _logger: object, _method: str, event_dict: structlog.types.EventDict
) -> structlog.types.EventDict:
    """Processor that blanks any value whose key names a secret."""
    for key in list(event_dict):
        if key.lower() in _SECRET_KEYS:
            event_dict[key] = "***"
    return event_dict


def configure(*, level: str = "info", json: bool | None = None) -> None:
    """Configure structlog (and stdlib logging, for uvicorn) for a process."""
    as_json = not sys.stderr.isatty() if json is None else json
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(
        level=numeric, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s"
    )
