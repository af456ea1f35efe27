"""Validity rules and the sign_many driver."""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from batchflow.errors import UsageError
from batchflow.signing import (
    DEFAULT_TTL_SECONDS,
    MAX_TTL_SECONDS,
    S3Signer,
    Signer,
    parse_duration,
    sign_many,
    validate_ttl,
)


def test_ttl_bounds() -> None:
    assert DEFAULT_TTL_SECONDS == 86400
    assert validate_ttl(1) == 1
    assert validate_ttl(MAX_TTL_SECONDS) == 604800
    for bad in (0, -5, 604801):
        with pytest.raises(UsageError):
            validate_ttl(bad)
    with pytest.raises(UsageError):
        validate_ttl(True)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("24h", 86400),
        ("90m", 5400),
        ("7d", 604800),
        ("3600", 3600),
        (" 1w ", 604800),
        ("45s", 45),
        ("1.5h", 5400),
        ("2H", 7200),
    ],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "24x", "-1h", "1e3", "8d", "0", "0.5s", "1 h 2"])
def test_parse_duration_rejects_garbage(text: str) -> None:
    with pytest.raises(UsageError, match=r"duration|validity"):
        parse_duration(text)


class _RecordingSigner:
    """Light or heavy signer that records which thread signed each key."""

    scheme = "s3"

    def __init__(self, *, cpu_heavy: bool) -> None:
        self.cpu_heavy = cpu_heavy
        self.threads: set[int] = set()
        self.active = 0
        self.max_active = 0
        self.lock = threading.Lock()

    def sign(self, bucket: str, key: str, *, expires_in: int, now: datetime | None = None) -> str:
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            self.threads.add(threading.get_ident())
        try:
            return f"https://x/{bucket}/{key}?e={expires_in}"
        finally:
            with self.lock:
                self.active -= 1

    def warnings(self, expires_in: int, now: datetime | None = None) -> tuple[str, ...]:
        return ()


def test_signers_satisfy_protocol() -> None:
    assert isinstance(_RecordingSigner(cpu_heavy=False), Signer)
    assert isinstance(S3Signer(access_key="a", secret_key="b"), Signer)


@pytest.mark.anyio
async def test_sign_many_light_inline_in_order_and_yields() -> None:
    signer = _RecordingSigner(cpu_heavy=False)
    keys = [f"k{i}" for i in range(2000)]
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        await anyio.lowlevel.checkpoint()
        before = ticks
        urls = await sign_many(signer, "b", keys, expires_in=60)
        tg.cancel_scope.cancel()
    assert urls == [f"https://x/b/{k}?e=60" for k in keys]
    assert signer.threads == {threading.get_ident()}
    assert ticks - before >= 3  # the loop ran between chunks


@pytest.mark.anyio
async def test_sign_many_heavy_runs_in_threads_bounded_by_limiter() -> None:
    signer = _RecordingSigner(cpu_heavy=True)
    limiter = anyio.CapacityLimiter(2)
    keys = [f"k{i}" for i in range(500)]
    results: dict[int, list[str]] = {}

    async def batch(n: int) -> None:
        results[n] = await sign_many(signer, "b", keys, expires_in=60, limiter=limiter)

    async with anyio.create_task_group() as tg:
        for n in range(4):
            tg.start_soon(batch, n)
    for n in range(4):
        assert results[n] == [f"https://x/b/{k}?e=60" for k in keys]
    assert threading.get_ident() not in signer.threads
    assert signer.max_active <= 2


@pytest.mark.anyio
async def test_sign_many_validates_ttl() -> None:
    with pytest.raises(UsageError):
        await sign_many(_RecordingSigner(cpu_heavy=False), "b", ["k"], expires_in=10**7)


def test_all_signers_satisfy_protocol() -> None:
    from batchflow.signing import AzureSasSigner, GcsSigner

    azure = AzureSasSigner(account_name="acct", account_key="a2V5")
    gcs = GcsSigner.from_hmac("GOOG1ID", "secret")
    for signer in (azure, gcs):
        assert isinstance(signer, Signer)
    assert (azure.scheme, azure.cpu_heavy, gcs.scheme, gcs.cpu_heavy) == ("az", False, "gs", False)


def test_signer_from_environment_dispatch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from batchflow.signing import AzureSasSigner, GcsSigner, signer_from_environment

    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", f"{tmp_path}/config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", f"{tmp_path}/credentials")

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AK")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "SK")
    monkeypatch.setenv("GCS_HMAC_ACCESS_ID", "GOOG1ID")
    monkeypatch.setenv("GCS_HMAC_SECRET", "secret")
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT", "acct")
    monkeypatch.setenv("AZURE_STORAGE_KEY", "a2V5")
    assert isinstance(signer_from_environment("s3"), S3Signer)
    assert isinstance(signer_from_environment("gs"), GcsSigner)
    assert isinstance(signer_from_environment("az"), AzureSasSigner)
    with pytest.raises(UsageError, match="ftp"):
        signer_from_environment("ftp")
