"""SSRF-safe fetching of reference URLs into files.

Every hop (the first URL and each redirect) is resolved once, every resolved address is checked
against :class:`UrlPolicy`, and the connection goes to the *checked* IP (the URL host is rewritten
to it, the original name travels in ``Host`` and, for https, as the TLS SNI/certificate name), so
DNS rebinding can not swap the address between the check and the connect. Bodies stream to a
temp file next to the destination with a running sha256 and size cap, then fsync + rename.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import re
import secrets
import socket
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

import anyio
import httpx

from batchflow import __version__
from batchflow.config import RetryPolicy
from batchflow.errors import (
    BatchflowError,
    ConfigError,
    NetworkError,
    PermanentError,
    RateLimitedError,
    TransientError,
    UsageError,
)
from batchflow.httperrors import connect_failed, parse_retry_after, parse_url, translate_httpx
from batchflow.pipeline.retry import SYSTEM_CLOCK, Clock, retry_call

__all__ = [
    "DEFAULT_FETCH_RETRY",
    "MAX_REDIRECTS",
    "DownloadFailedError",
    "DownloadTooLargeError",
    "ByteSink",
    "FetchResult",
    "FileSink",
    "IPAddress",
    "ResolvedUrl",
    "UnsafeUrlError",
    "UrlPolicy",
    "fetch_to",
    "make_fetch_client",
    "redact_url",
    "resolve_safe",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_REDIRECTS = 5
#: Small on purpose: a bad reference must not hold a fetch worker for long.
DEFAULT_FETCH_RETRY = RetryPolicy(
    max_attempts=3, base_delay=0.2, max_delay=2.0, deadline=30.0, max_retry_after=5.0
)
_CHUNK = 64 * 1024
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Not "global" in practice but missed by some Python versions' tables.
_EXTRA_BLOCKED = (ipaddress.ip_network("100.64.0.0/10"), ipaddress.ip_network("192.0.0.0/24"))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SPACE = re.compile(r"\s")


class UnsafeUrlError(PermanentError):
    """The URL is not http(s), hides credentials, or resolves to a non-public address."""

    failure_type = "unsafe-url-detected"


class DownloadTooLargeError(PermanentError):
    """The body is over the byte limit (by ``Content-Length`` or as streamed)."""

    failure_type = "file-size-limit-exceeded"


class DownloadFailedError(PermanentError):
    """The download failed for good: 4xx, too many redirects, or transient errors ran out."""

    failure_type = "download-failed"


@dataclass(frozen=True, slots=True)
class FetchResult:
    """What was fetched: size and SHA-256 of the body, the origin's Content-Type."""

    size: int
    sha256: str
    content_type: str | None


@dataclass(frozen=True, slots=True)
class UrlPolicy:
    """Which non-public targets are allowed anyway: host names, IPs or CIDRs (``allow``)."""

    allow: tuple[str, ...] = ()
    _hosts: frozenset[str] = field(init=False, repr=False, compare=False)
    _networks: tuple[IPNetwork, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for item in self.allow:
            text = item.strip().lower().rstrip(".")
            if not text:
                continue
            try:
                networks.append(ipaddress.ip_network(text.strip("[]"), strict=False))
            except ValueError:
                hosts.add(text)
        object.__setattr__(self, "_hosts", frozenset(hosts))
        object.__setattr__(self, "_networks", tuple(networks))

    @classmethod
    def from_strings(cls, items: Iterable[str]) -> UrlPolicy:
        """A policy from flag/env values; comma-separated items are split, URLs give their host."""
        parts = (part.strip() for item in items for part in item.split(","))
        return cls(allow=tuple(_host_of(part) for part in parts if part))

    def check_address(self, host: str, ip: IPAddress) -> None:
        """Raise :class:`UnsafeUrlError` unless ``ip`` is public or allowed (by host or IP)."""
        if host.lower().rstrip(".") in self._hosts or self._allowed_ip(ip):
            return
        if _is_unsafe(ip):
            raise UnsafeUrlError(f"{host} resolves to a non-public address ({ip})")

    def _allowed_ip(self, ip: IPAddress) -> bool:
        candidates: list[IPAddress] = [ip]
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            candidates.append(ip.ipv4_mapped)
        return any(
            c in net for c in candidates for net in self._networks if c.version == net.version
        )


def _host_of(item: str) -> str:
    if "://" not in item:
        return item
    try:
        return parse_url(item).host or item
    except UsageError:
        return item


def _is_unsafe(ip: IPAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return _is_unsafe(embedded)
        if ip.scope_id:
            return True
    return (
        not ip.is_global
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_reserved
        or ip.is_multicast
        or ip.is_unspecified
        or any(ip in net for net in _EXTRA_BLOCKED if net.version == ip.version)
    )


@dataclass(frozen=True, slots=True)
class ResolvedUrl:
    """A URL whose host resolved to ``addresses``, all of them checked."""

    url: httpx.URL
    host: str
    addresses: tuple[IPAddress, ...]

    def request(
        self, client: httpx.AsyncClient, method: str, ip: IPAddress, **kwargs: Any
    ) -> httpx.Request:
        """A request pinned to ``ip``: URL host rewritten, ``Host`` and SNI kept as the name."""
        headers = httpx.Headers(kwargs.pop("headers", None))
        headers["Host"] = self.url.netloc.decode("ascii")
        extensions: dict[str, Any] = dict(kwargs.pop("extensions", None) or {})
        if self.url.scheme == "https":
            extensions["sni_hostname"] = self.host
        pinned = self.url.copy_with(host=str(ip))
        return client.build_request(
            method, pinned, headers=headers, extensions=extensions, **kwargs
        )


def redact_url(url: str | httpx.URL) -> str:
    """``scheme://host[:port]/path`` only: query strings of signed URLs carry credentials."""
    try:
        with translate_httpx("redact"):
            return str(parse_url(url).copy_with(query=None, fragment=None, userinfo=b""))
    except (BatchflowError, TypeError, ValueError):
        return "<invalid url>"


def _parse(url: str | httpx.URL) -> httpx.URL:
    try:
        parsed = parse_url(url)
    except UsageError as exc:
        raise UnsafeUrlError(exc.message) from exc
    if parsed.scheme not in {"http", "https"}:
        raise UnsafeUrlError(f"only http and https URLs are fetched, not {parsed.scheme!r}")
    if parsed.userinfo:
        raise UnsafeUrlError("URLs with user credentials are refused")
    if not parsed.raw_host or _SPACE.search(parsed.host):
        raise UnsafeUrlError(f"URL has no usable host: {redact_url(parsed)}")
    return parsed


async def resolve_safe(url: str | httpx.URL, policy: UrlPolicy) -> ResolvedUrl:
    """Parse, resolve and check ``url``; raise :class:`UnsafeUrlError` before any connection."""
    parsed = _parse(url)
    host = parsed.raw_host.decode("ascii").lower()
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses: tuple[IPAddress, ...] = (literal,)
    else:
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            if exc.errno == socket.EAI_AGAIN:
                raise NetworkError(f"could not resolve {host}: {exc}") from exc
            raise DownloadFailedError(f"could not resolve {host}: {exc}") from exc
        except (UnicodeError, ValueError) as exc:
            raise UnsafeUrlError(f"invalid host name {host!r}") from exc
        except OSError as exc:
            raise DownloadFailedError(f"could not resolve {host}: {exc}") from exc
        found: dict[IPAddress, None] = {}
        for info in infos:
            found[ipaddress.ip_address(str(info[4][0]))] = None
        addresses = tuple(found)
        if not addresses:
            raise DownloadFailedError(f"{host} resolved to no address")
    for ip in addresses:
        policy.check_address(host, ip)
    return ResolvedUrl(url=parsed, host=host, addresses=addresses)


def _mapped_httpx_errors(url: httpx.URL) -> contextlib.AbstractContextManager[None]:
    """httpx errors, translated once (``batchflow.httperrors``), narrowed to fetch errors."""
    return translate_httpx(redact_url(url), refine=_as_fetch_error)


def _as_fetch_error(error: BatchflowError) -> BatchflowError:
    """Transient stays transient (retried); a bad scheme is unsafe; the rest failed for good."""
    if isinstance(error, ConfigError):  # httpx: unsupported protocol
        return UnsafeUrlError(error.message)
    if _caused_by(error, ssl.SSLCertVerificationError):
        return DownloadFailedError(f"{error.message} (TLS certificate not valid)")
    return error if error.transient else DownloadFailedError(error.message)


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _check_status(response: httpx.Response, where: str) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    if status in {408, 429} or status >= 500:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        raise RateLimitedError(f"{where}: HTTP {status}", retry_after=retry_after)
    raise DownloadFailedError(f"{where}: HTTP {status}")


async def _send(client: httpx.AsyncClient, target: ResolvedUrl) -> httpx.Response:
    """GET pinned to each checked address in turn until one connects."""
    where = redact_url(target.url)
    last: BatchflowError | None = None
    for ip in target.addresses[:4]:
        try:
            with translate_httpx(where):
                return await client.send(target.request(client, "GET", ip), stream=True)
        except BatchflowError as exc:
            last = exc
            if not connect_failed(exc):
                break
    assert last is not None
    final = _as_fetch_error(last)
    if final is last:
        raise last
    raise final from last


def _check_size(size: int, max_bytes: int, where: str) -> None:
    if size > max_bytes:
        raise DownloadTooLargeError(f"{where}: body is over {max_bytes} bytes")


class ByteSink(Protocol):
    """Where a fetched body goes: entered per attempt, a clean exit keeps it, an error drops it.

    A :class:`~batchflow.server.core.blobs.BlobWriter` is one; :class:`FileSink` is another.
    """

    async def __aenter__(self) -> Any: ...

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    async def write(self, data: bytes) -> None: ...


class FileSink:
    """A local scratch file, written under a temp name and renamed into place on a clean exit.

    Not fsync'd: it holds a download to be read and deleted at once (staged bytes go to a
    :class:`~batchflow.server.core.blobs.BlobWriter`, which is durable).
    """

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self._tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(6)}.part")
        self._handle: anyio.AsyncFile[bytes] | None = None

    async def __aenter__(self) -> Self:
        self._handle = await anyio.open_file(self._tmp, "wb")
        return self

    async def write(self, data: bytes) -> None:
        assert self._handle is not None
        await self._handle.write(data)

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._handle is not None
        try:
            await self._handle.aclose()
            if kind is None:
                await anyio.to_thread.run_sync(os.replace, self._tmp, self.dest)
        finally:
            with contextlib.suppress(OSError):
                self._tmp.unlink()


async def _stream_to(
    response: httpx.Response, url: httpx.URL, sink: ByteSink, max_bytes: int
) -> FetchResult:
    where = redact_url(url)
    length = response.headers.get("content-length")
    if length is not None and length.strip().isdigit() and int(length) > max_bytes:
        raise DownloadTooLargeError(f"{where}: Content-Length {length} is over {max_bytes} bytes")
    digest = hashlib.sha256()
    size = 0
    async with sink:
        with _mapped_httpx_errors(url):
            async for chunk in response.aiter_bytes(_CHUNK):
                size += len(chunk)
                _check_size(size, max_bytes, where)
                digest.update(chunk)
                await sink.write(chunk)
    return FetchResult(
        size=size, sha256=digest.hexdigest(), content_type=response.headers.get("content-type")
    )


async def _fetch_once(
    client: httpx.AsyncClient,
    url: str,
    open_sink: Callable[[], ByteSink],
    policy: UrlPolicy,
    max_bytes: int,
) -> FetchResult:
    current = _parse(url)
    for _hop in range(MAX_REDIRECTS + 1):
        target = await resolve_safe(current, policy)
        response = await _send(client, target)
        try:
            location = response.headers.get("location")
            if response.status_code in _REDIRECTS and location:
                with _mapped_httpx_errors(current):
                    current = _parse(current.join(location))
                continue
            _check_status(response, redact_url(current))
            return await _stream_to(response, current, open_sink(), max_bytes)
        finally:
            await response.aclose()
    raise DownloadFailedError(f"{redact_url(url)}: more than {MAX_REDIRECTS} redirects")


async def fetch_to(
    client: httpx.AsyncClient,
    url: str,
    open_sink: Callable[[], ByteSink],
    *,
    policy: UrlPolicy,
    max_bytes: int,
    timeout: float = 60.0,  # noqa: ASYNC109 - per attempt, applied with anyio.fail_after
    retry: RetryPolicy | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> FetchResult:
    """Download ``url`` safely into a fresh ``open_sink()`` per attempt; raise one of the
    three errors above.

    ``timeout`` bounds each attempt (redirects + body). Transient failures (connect errors,
    timeouts, 408/429/5xx) are retried per ``retry`` by the one retry engine; other 4xx fail at
    once; running out of attempts or of the deadline is a :class:`DownloadFailedError`.
    """
    failures: list[TransientError] = []

    async def attempt() -> FetchResult:
        try:
            with anyio.fail_after(timeout):
                return await _fetch_once(client, url, open_sink, policy, max_bytes)
        except TimeoutError as exc:
            error = NetworkError(f"{redact_url(url)}: no answer within {timeout}s")
            failures.append(error)
            raise error from exc
        except TransientError as exc:
            failures.append(exc)
            raise

    try:
        return await retry_call(attempt, policy=retry or DEFAULT_FETCH_RETRY, clock=clock)
    except TransientError:  # out of attempts or of time (RetriesExhausted)
        last = failures[-1]
        message = f"{last} (gave up after {len(failures)} attempts)"
        raise DownloadFailedError(message) from last


def make_fetch_client(*, max_connections: int = 64) -> httpx.AsyncClient:
    """The client for :func:`fetch_to`: no env proxies, no auto-redirects, bounded pool."""
    return httpx.AsyncClient(
        trust_env=False,
        follow_redirects=False,
        timeout=httpx.Timeout(connect=10.0, read=30.0, write=30.0, pool=30.0),
        limits=httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=min(max_connections, 32),
            keepalive_expiry=30.0,
        ),
        headers={"User-Agent": f"batchflow-serve/{__version__}", "Accept-Encoding": "identity"},
    )
