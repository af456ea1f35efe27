"""Real signature checks: Azurite verifies our blob SAS URLs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from azure.storage.blob import BlobServiceClient

from batchflow.signing import AzureSasSigner, azure_signer_from_environment, sign_many
from tests._procs import ManagedProcess, free_port, wait_port

AZURITE = (
    Path(__file__).resolve().parents[2]
    / "tools"
    / "node"
    / "node_modules"
    / ".bin"
    / "azurite-blob"
)
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
CONTAINER = "images"
BLOBS = {
    "plain.jpg": b"plain bytes",
    "dir/sub/a b+c.txt": b"spaces and plus",
    "unicodé/日本語 😀.bin": bytes(range(256)),
    "q?hash#eq=amp&.txt": b"query-looking",
    "percent%20lit~tilde.txt": b"percent",
}


@dataclass(frozen=True)
class Azurite:
    connection_string: str


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    assert AZURITE.exists(), f"Azurite is not installed at {AZURITE}"
    root = tmp_path_factory.mktemp("azurite")
    port = free_port()
    proc = ManagedProcess(
        argv=[
            str(AZURITE),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--location",
            str(root / "data"),
            "--silent",
            "--skipApiVersionCheck",
        ],
        log_path=root / "azurite.log",
    ).start()
    try:
        wait_port(port, timeout=60, alive=proc.alive)
        conn = (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
            f"BlobEndpoint=http://127.0.0.1:{port}/{ACCOUNT};"
        )
        with BlobServiceClient.from_connection_string(conn) as service:
            container = service.create_container(CONTAINER)
            for name, body in BLOBS.items():
                container.upload_blob(name, body)
        yield Azurite(connection_string=conn)
    finally:
        proc.kill()  # Azurite ignores SIGTERM for ~10 s; its data is a throwaway tmp dir


@pytest.mark.parametrize("blob", sorted(BLOBS))
def test_sas_url_is_accepted(azurite: Azurite, blob: str) -> None:
    signer = azure_signer_from_environment(connection_string=azurite.connection_string)
    url = signer.sign(CONTAINER, blob, expires_in=600)
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200, response.text
    assert response.content == BLOBS[blob]


def test_tampered_or_wrong_blob_is_refused(azurite: Azurite) -> None:
    signer = azure_signer_from_environment(connection_string=azurite.connection_string)
    url = signer.sign(CONTAINER, "plain.jpg", expires_in=600)
    head, sig = url.rsplit("&sig=", 1)
    flipped = ("A" if sig[0] != "A" else "B") + sig[1:]
    assert httpx.get(f"{head}&sig={flipped}", timeout=10).status_code == 403
    swapped = url.replace("/plain.jpg?", "/dir/sub/a%20b%2Bc.txt?")
    assert httpx.get(swapped, timeout=10).status_code == 403
    wrong_key = AzureSasSigner(
        account_name=ACCOUNT, account_key="AAAA" + KEY[4:], account_url=signer.account_url
    )
    assert (
        httpx.get(wrong_key.sign(CONTAINER, "plain.jpg", expires_in=600), timeout=10).status_code
        == 403
    )


def test_expired_sas_is_refused(azurite: Azurite) -> None:
    signer = azure_signer_from_environment(connection_string=azurite.connection_string)
    old = datetime.now(UTC) - timedelta(hours=2)
    assert (
        httpx.get(
            signer.sign(CONTAINER, "plain.jpg", expires_in=60, now=old), timeout=10
        ).status_code
        == 403
    )
    alive = signer.sign(CONTAINER, "plain.jpg", expires_in=3 * 3600, now=old)
    assert httpx.get(alive, timeout=10).status_code == 200


@pytest.mark.anyio
async def test_sign_many_urls_all_fetch(azurite: Azurite) -> None:
    signer = azure_signer_from_environment(connection_string=azurite.connection_string)
    names = sorted(BLOBS)
    urls = await sign_many(signer, CONTAINER, names, expires_in=3600)
    async with httpx.AsyncClient(timeout=10) as client:
        for name, url in zip(names, urls, strict=True):
            response = await client.get(url)
            assert response.status_code == 200
            assert response.content == BLOBS[name]
