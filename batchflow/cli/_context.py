"""How a CLI command reaches a Batch API: flags, then the environment, then the local service.

``resolve_settings`` is the one place that decides. With no API URL anywhere, commands use the
embedded local service (``batchflow.cli._embedded``), started on first use.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

import click

from batchflow.config import ClientSettings, Timeouts, env_first

if TYPE_CHECKING:
    from batchflow.client import BatchClient

__all__ = ["ApiOptions", "api_options", "resolve_settings", "run_with_client"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ApiOptions:
    """The connection flags every API command takes (``None``: the environment or default)."""

    api_url: str | None
    api_key: str | None
    connect_timeout: float | None = None
    read_timeout: float | None = None

    def timeouts(self, base: Timeouts) -> Timeouts:
        """``base`` with the timeouts given here."""
        if self.connect_timeout is not None:
            base = replace(base, connect=self.connect_timeout)
        if self.read_timeout is not None:
            base = replace(base, read=self.read_timeout)
        return base


_SECONDS = click.FloatRange(min=0, min_open=True)


def api_options(func: Callable[..., T]) -> Callable[..., T]:
    """Add the connection flags to a command; it receives them as one ``api: ApiOptions``.

    ``--api-url``, ``--api-key`` (env: BATCHFLOW_API_URL/API_BASE_URL, BATCHFLOW_API_KEY/
    ROBOFLOW_API_KEY), ``--connect-timeout``, ``--read-timeout`` (env: BATCHFLOW_CONNECT_TIMEOUT,
    BATCHFLOW_READ_TIMEOUT).
    """

    @functools.wraps(func)
    def command(**kwargs: Any) -> T:
        api = ApiOptions(
            api_url=kwargs.pop("api_url"),
            api_key=kwargs.pop("api_key"),
            connect_timeout=kwargs.pop("connect_timeout"),
            read_timeout=kwargs.pop("read_timeout"),
        )
        return func(api=api, **kwargs)

    options = [
        click.option(
            "--api-url",
            default=None,
            metavar="URL",
            help="Batch API base URL [env: BATCHFLOW_API_URL, API_BASE_URL]; "
            "unset: the local embedded service.",
        ),
        click.option(
            "--api-key",
            default=None,
            metavar="KEY",
            help="API key [env: BATCHFLOW_API_KEY, ROBOFLOW_API_KEY].",
        ),
        click.option(
            "--connect-timeout",
            type=_SECONDS,
            default=None,
            envvar="BATCHFLOW_CONNECT_TIMEOUT",
            metavar="SECONDS",
            help=f"Give up connecting after this long [env: BATCHFLOW_CONNECT_TIMEOUT; "
            f"default {Timeouts().connect:g}].",
        ),
        click.option(
            "--read-timeout",
            type=_SECONDS,
            default=None,
            envvar="BATCHFLOW_READ_TIMEOUT",
            metavar="SECONDS",
            help=f"Give up waiting for an answer's next bytes after this long "
            f"[env: BATCHFLOW_READ_TIMEOUT; default {Timeouts().read:g}].",
        ),
    ]
    for option in reversed(options):  # listed in --help in this order
        command = option(command)
    return command


def resolve_settings(options: ApiOptions) -> ClientSettings:
    """Client settings for ``options``: explicit flags, then env, then the embedded service."""
    env = os.environ
    url = options.api_url or env_first(env, "BATCHFLOW_API_URL", "API_BASE_URL")
    if url:
        settings = ClientSettings.from_env(env, api_url=url, api_key=options.api_key)
        settings = _prefer_header_for_local(settings)
    else:
        from batchflow.cli._embedded import ensure_local_service

        service = ensure_local_service()
        settings = ClientSettings(api_url=service.url, api_key=service.api_key, key_in_header=True)
    return replace(settings, timeouts=options.timeouts(settings.timeouts))


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
