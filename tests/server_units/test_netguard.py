"""netguard: SSRF refusal before any connection, pinned fetches against a real 127.0.0.1 origin."""

from __future__ import annotations

import hashlib
import ipaddress
from pathlib import Path
from typing import Any

import httpx
import pytest

from batchflow.config import RetryPolicy
from batchflow.errors import PermanentError
from batchflow.server.core.netguard import (
    DownloadFailedError,
    DownloadTooLargeError,
    FileSink,
    UnsafeUrlError,
    UrlPolicy,
    fetch_to,
    make_fetch_client,
    redact_url,
    resolve_safe,
)
from batchflow.testing import FakeClock

from ._origin import LoopbackOnly, Origin, payload

pytestmark = pytest.mark.anyio

LOCAL = UrlPolicy.from_strings(["127.0.0.1"])
FAST = RetryPolicy(
    max_attempts=3, base_delay=0.01, max_delay=0.02, deadline=10.0, max_retry_after=0.05
)


def files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".part"))


async def fetch(client: httpx.AsyncClient, url: str, dest: Path, **kw: Any) -> Any:
    kw.setdefault("policy", LOCAL)
    kw.setdefault("max_bytes", 10_000)
    kw.setdefault("retry", FAST)
    kw.setdefault("timeout", 10.0)
    return await fetch_to(client, url, lambda: FileSink(dest), **kw)


# --- policy ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ip",
    [
        "127.0.0.1",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "ff02::1",
        "::ffff:10.0.0.1",
        "::ffff:127.0.0.1",
        "2002:a00:1::",
        "64:ff9b::a9fe:a9fe",
        "192.0.0.8",
        "198.18.0.1",
    ],
)
def test_non_public_addresses_are_refused(ip: str) -> None:
    with pytest.raises(UnsafeUrlError) as info:
        UrlPolicy().check_address("example.com", ipaddress.ip_address(ip))
    assert info.value.failure_type == "unsafe-url-detected"
    assert isinstance(info.value, PermanentError)


@pytest.mark.parametrize("ip", ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass(ip: str) -> None:
    UrlPolicy().check_address("example.com", ipaddress.ip_address(ip))


def test_allow_list_by_ip_cidr_and_host() -> None:
    policy = UrlPolicy.from_strings(["10.1.0.0/16, minio.internal.", " ", "http://[::1]:9000/"])
    assert policy.allow == ("10.1.0.0/16", "minio.internal.", "::1")
    policy.check_address("x", ipaddress.ip_address("10.1.2.3"))
    policy.check_address("x", ipaddress.ip_address("::ffff:10.1.2.3"))
    policy.check_address("x", ipaddress.ip_address("::1"))
    policy.check_address("MINIO.internal", ipaddress.ip_address("192.168.0.9"))
    with pytest.raises(UnsafeUrlError):
        policy.check_address("x", ipaddress.ip_address("10.2.0.1"))
    with pytest.raises(UnsafeUrlError):
        policy.check_address("x", ipaddress.ip_address("127.0.0.1"))


def test_error_failure_types() -> None:
    assert DownloadTooLargeError.failure_type == "file-size-limit-exceeded"
    assert DownloadFailedError.failure_type == "download-failed"


def test_redact_url_drops_query_and_credentials() -> None:
    assert redact_url("https://u:p@h.example/a/b.jpg?X-Amz-Signature=s3cr3t") == (
        "https://h.example/a/b.jpg"
    )


# --- refusal happens before any connection --------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/x.jpg",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/",
        "http://[fe80::1%25eth0]/",
        "http://localhost/",
        "http://127.1/",
        "http://0x7f000001/",
        "ftp://example.com/x.jpg",
        "file:///etc/passwd",
        "gopher://127.0.0.1:70/",
        "http://user:pw@example.com/x.jpg",
        "http:///nohost",
        "not a url",
    ],
)
async def test_unsafe_urls_refused_without_connecting(
    guarded: httpx.AsyncClient, tmp_path: Path, url: str
) -> None:
    with pytest.raises(UnsafeUrlError):
        await fetch(guarded, url, tmp_path / "x.jpg", policy=UrlPolicy())
    assert guarded.guard.requests == []  # type: ignore[attr-defined]
    assert files(tmp_path) == []


async def test_localhost_name_resolves_and_is_checked(
    origin: Origin, guarded: Any, tmp_path: Path
) -> None:
    url = f"http://localhost:{origin.port}/ok/10"
    with pytest.raises(UnsafeUrlError):
        await resolve_safe(url, UrlPolicy())
    resolved = await resolve_safe(url, UrlPolicy.from_strings(["localhost"]))
    assert resolved.host == "localhost"
    assert all(ip.is_loopback for ip in resolved.addresses)
    # allowed by name: the fetch connects to a checked IP and sends the name as Host
    result = await fetch(
        guarded, url, tmp_path / "a.jpg", policy=UrlPolicy.from_strings(["localhost"])
    )
    assert result.size == 10
    assert origin.seen[-1].headers["host"] == f"localhost:{origin.port}"
    assert all(r.url.host != "localhost" for r in guarded.guard.requests)


# --- real fetches against 127.0.0.1 ---------------------------------------------------------


async def test_fetch_success_pins_ip_and_hashes(origin: Origin, tmp_path: Path) -> None:
    dest = tmp_path / "img.jpg"
    async with make_fetch_client() as client:
        result = await fetch(client, f"{origin.base}/ok/5000", dest)
    data = payload(5000)
    assert dest.read_bytes() == data
    assert result.size == 5000
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert result.content_type == "image/jpeg"
    seen = origin.seen[-1]
    assert seen.headers["user-agent"].startswith("batchflow-serve/")
    assert seen.headers["host"] == f"127.0.0.1:{origin.port}"
    assert leftovers(tmp_path) == []


async def test_oversize_by_content_length(origin: Origin, guarded: Any, tmp_path: Path) -> None:
    with pytest.raises(DownloadTooLargeError):
        await fetch(guarded, f"{origin.base}/ok/20000", tmp_path / "a.jpg", max_bytes=19_999)
    assert files(tmp_path) == []
    assert len(origin.seen) == 1  # permanent: no retry


async def test_oversize_streamed_without_length(
    origin: Origin, guarded: Any, tmp_path: Path
) -> None:
    with pytest.raises(DownloadTooLargeError):
        await fetch(
            guarded, f"{origin.base}/nolength/300000", tmp_path / "a.jpg", max_bytes=100_000
        )
    assert files(tmp_path) == []
    result = await fetch(guarded, f"{origin.base}/nolength/777", tmp_path / "b.jpg")
    assert result.size == 777
    assert (tmp_path / "b.jpg").read_bytes() == payload(777)


async def test_404_is_download_failed_at_once(origin: Origin, guarded: Any, tmp_path: Path) -> None:
    with pytest.raises(DownloadFailedError, match="404"):
        await fetch(guarded, f"{origin.base}/status/404", tmp_path / "a.jpg")
    assert len(origin.seen) == 1
    assert files(tmp_path) == []


async def test_503_then_200_retries(origin: Origin, guarded: Any, tmp_path: Path) -> None:
    origin.script("/ok/64", "503", "drop")
    result = await fetch(guarded, f"{origin.base}/ok/64", tmp_path / "a.jpg")
    assert result.size == 64
    assert len(origin.seen) == 3
    assert leftovers(tmp_path) == []


async def test_retries_run_out(origin: Origin, guarded: Any, tmp_path: Path) -> None:
    origin.script("/ok/64", "500", "429:0", "503", "200")
    with pytest.raises(DownloadFailedError, match="3 attempts"):
        await fetch(guarded, f"{origin.base}/ok/64", tmp_path / "a.jpg")
    assert len(origin.seen) == 3


async def test_fetch_retries_on_the_engine_with_retry_after_capped(
    origin: Origin, guarded: Any, tmp_path: Path
) -> None:
    clock = FakeClock()
    policy = RetryPolicy(
        max_attempts=4, base_delay=0.01, max_delay=0.02, deadline=None, max_retry_after=30.0
    )
    origin.script("/ok/64", "429:100", "503:2", "200")
    result = await fetch(
        guarded, f"{origin.base}/ok/64", tmp_path / "a.jpg", retry=policy, clock=clock
    )
    assert result.size == 64
    assert clock.sleeps == [30.0, 2.0]  # Retry-After over the 0..0.02 s jitter, capped at 30 s
    assert len(origin.seen) == 3


async def test_fetch_stops_at_the_deadline(origin: Origin, guarded: Any, tmp_path: Path) -> None:
    clock = FakeClock()
    policy = RetryPolicy(max_attempts=10, base_delay=0.01, deadline=10.0, max_retry_after=60.0)
    origin.script("/ok/64", "503:6", "503:6", "200")
    with pytest.raises(DownloadFailedError, match="gave up after 2 attempts"):
        await fetch(guarded, f"{origin.base}/ok/64", tmp_path / "a.jpg", retry=policy, clock=clock)
    assert clock.sleeps == [6.0]  # a second 6 s wait would end at 12 s, past the 10 s deadline
    assert len(origin.seen) == 2


async def test_redirect_chain_followed(origin: Origin, guarded: Any, tmp_path: Path) -> None:
    result = await fetch(guarded, f"{origin.base}/redirect/4", tmp_path / "a.jpg")
    assert result.size == 100
    assert [s.path for s in origin.seen] == [
        "/redirect/4",
        "/redirect/3",
        "/redirect/2",
        "/redirect/1",
        "/redirect/0",
        "/ok/100",
    ]


async def test_redirect_loop_fails(origin: Origin, guarded: Any, tmp_path: Path) -> None:
    with pytest.raises(DownloadFailedError, match="redirects"):
        await fetch(guarded, f"{origin.base}/loop", tmp_path / "a.jpg")
    assert len(origin.seen) == 6
    assert files(tmp_path) == []


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.2:{port}/ok/5",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]:{port}/",
        "file:///etc/passwd",
    ],
)
async def test_redirect_to_unsafe_target_refused(
    origin: Origin, guarded: Any, tmp_path: Path, target: str
) -> None:
    url = httpx.URL(f"{origin.base}/to", params={"url": target.format(port=origin.port)})
    with pytest.raises(UnsafeUrlError):
        await fetch(guarded, str(url), tmp_path / "a.jpg")
    assert [r.url.host for r in guarded.guard.requests] == ["127.0.0.1"]
    assert files(tmp_path) == []


async def test_connect_refused_is_retried_then_fails(guarded: Any, tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DownloadFailedError) as info:
        await fetch(guarded, f"http://127.0.0.1:{port}/x.jpg", tmp_path / "a.jpg")
    assert len(guarded.guard.requests) == 3
    assert info.value.__cause__ is not None


async def test_attempt_timeout(origin: Origin, tmp_path: Path) -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        import anyio

        await anyio.sleep(5)
        return httpx.Response(200)

    async with httpx.AsyncClient(transport=httpx.MockTransport(slow)) as client:
        with pytest.raises(DownloadFailedError, match="no answer"):
            await fetch(client, f"{origin.base}/ok/1", tmp_path / "a.jpg", timeout=0.05)
    assert files(tmp_path) == []


async def test_https_pins_ip_but_verifies_the_name(
    tls_origin: tuple[Origin, Any], tmp_path: Path
) -> None:
    origin, trust = tls_origin  # the certificate names only "localhost", no IP
    transport = LoopbackOnly(verify=trust)
    async with httpx.AsyncClient(transport=transport, trust_env=False) as client:
        url = f"https://localhost:{origin.port}/ok/321"
        result = await fetch(
            client, url, tmp_path / "a.jpg", policy=UrlPolicy.from_strings(["localhost"])
        )
        assert result.size == 321
        assert all(r.url.host in {"127.0.0.1", "::1"} for r in transport.requests)
        assert transport.requests[-1].extensions["sni_hostname"] == "localhost"
        # the same IP under a name the certificate does not cover fails verification
        other = f"https://127.0.0.1:{origin.port}/ok/1"
        before = len(transport.requests)
        with pytest.raises(DownloadFailedError, match="certificate"):
            await fetch(client, other, tmp_path / "b.jpg")
        assert len(transport.requests) == before + 1  # a bad certificate is not retried
    assert origin.seen[0].headers["host"] == f"localhost:{origin.port}"


async def test_timeout_mid_body_leaves_no_temp_file(origin: Origin, tmp_path: Path) -> None:
    import anyio

    class Trickle(httpx.AsyncByteStream):
        async def __aiter__(self) -> Any:
            yield b"x" * 1000
            await anyio.sleep(5)
            yield b"never"

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=Trickle())

    dest = tmp_path / "a.jpg"
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(DownloadFailedError, match="no answer"):
            await fetch(client, f"{origin.base}/ok/1", dest, timeout=0.2)
    assert files(tmp_path) == []
