"""How a CLI command reaches a Batch API: flags, then the environment, then the local service.

``resolve_settings`` is the one place that decides. With no API URL anywhere, commands use the
embedded local service (``batchflow.cli._embedded``), started on first use.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import click

from batchflow.config import ClientSettings, env_first

if TYPE_CHECKING:
    from batchflow.client import BatchClient

__all__ = ["ApiOptions", "api_options", "resolve_settings", "run_with_client"]

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ApiOptions:
    """The connection flags every API command takes."""

    api_url: str | None
    api_key: str | None


def api_options(func: F) -> F:
    """Add ``--api-url`` and ``--api-key`` to a command (env: API_BASE_URL/BATCHFLOW_API_URL...)."""
    func = click.option(
        "--api-key",
        default=None,
        metavar="KEY",
        help="API key [env: BATCHFLOW_API_KEY, ROBOFLOW_API_KEY].",
    )(func)
    return click.option(
        "--api-url",
        default=None,
        metavar="URL",
        help="Batch API base URL [env: BATCHFLOW_API_URL, API_BASE_URL]; "
        "unset: the local embedded service.",
    )(func)


def resolve_settings(options: ApiOptions) -> ClientSettings:
    """Client settings for ``options``: explicit flags, then env, then the embedded service."""
    env = os.environ
    url = options.api_url or env_first(env, "BATCHFLOW_API_URL", "API_BASE_URL")
    if url:
        settings = ClientSettings.from_env(env, api_url=url, api_key=options.api_key)
        return _prefer_header_for_local(settings)
    from batchflow.cli._embedded import ensure_local_service

    service = ensure_local_service()
    return ClientSettings(api_url=service.url, api_key=service.api_key, key_in_header=True)


def _prefer_header_for_local(settings: ClientSettings) -> ClientSettings:
    """Against a loopback batchflow serve, send the key as a header (keeps it out of logs)."""
    host = settings.api_url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
    if host in {"127.0.0.1", "localhost", "[::1]"}:
        return ClientSettings(
            api_url=settings.api_url,
            api_key=settings.api_key,
            timeouts=settings.timeouts,
            retry=settings.retry,
            key_in_header=True,
        )
    return settings


def run_with_client(options: ApiOptions, body: Callable[[BatchClient], Awaitable[T]]) -> T:
    """Resolve the settings, open a :class:`BatchClient` and run ``body`` with it (anyio.run).

    Logging goes to stderr (warnings and up), so stdout stays clean for results.
    """
    import anyio

    from batchflow.client import BatchClient
    from batchflow.logging import configure

    configure(level="warning")
    settings = resolve_settings(options)

    async def main() -> T:
        async with BatchClient(settings) as client:
            return await body(client)

    return anyio.run(main)
