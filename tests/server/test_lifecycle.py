"""Process-level behaviour: discovery file, generated key, restart mid-ingest, expiry, SSRF."""

from __future__ import annotations

import json
import stat
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

from tests._procs import ManagedProcess, wait_http
from tests.server._helpers import Origin, image_bytes, run_receiver, shards_done, wait_for
from tests.server_fixture import ServerHandle


def test_port_zero_writes_server_json_and_generates_a_key(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = {"BATCHFLOW_API_KEYS": "", "XDG_DATA_HOME": str(tmp_path / "xdg")}
    proc = ManagedProcess(
        [sys.executable, "-m", "batchflow", "serve", "--port", "0", "--data-dir", str(data_dir)],
        log_path=tmp_path / "serve.log",
        env=env,
    ).start()
    try:
        info_path = data_dir / "server.json"
        wait_for(lambda: info_path.exists() or not proc.alive(), timeout=60)
        info = json.loads(info_path.read_text())
        assert info["workspace"] == "local"
        assert info["pid"] == proc.proc.pid  # type: ignore[union-attr]
        key_file = data_dir / "api_key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert stat.S_IMODE((data_dir / "url_secret").stat().st_mode) == 0o600
        key = key_file.read_text().strip()
        wait_http(info["url"] + "/healthz", alive=proc.alive)
        answer = httpx.get(info["url"] + "/", headers={"Authorization": f"Bearer {key}"})
        assert answer.json() == {"workspace": "local"}
        assert str(key_file) in proc.log_tail()
        assert key not in proc.log_tail()
    finally:
        proc.stop()
    assert proc.proc is not None
    assert proc.proc.returncode == 0
    assert not (data_dir / "server.json").exists()


def test_restart_mid_ingest_stages_every_file_once(
    server_factory: Callable[..., ServerHandle], origin: Origin, catalog_url: str | None
) -> None:
    server = server_factory("--allow-url", "127.0.0.1", database_url=catalog_url)
    names = [f"slow{i:02d}.jpg" for i in range(64)]
    refs = [{"name": n, "url": origin.url(f"/slow/{n}")} for n in names]
    with server.client() as client:
        answer = client.post(
            f"{server.ds}/batches/restart/bulk-upload/image-references",
            json={"imageReferences": refs},
        )
        assert answer.status_code == 200
        wait_for(lambda: client.get(f"{server.ds}/batches/restart/count").json()["count"] > 0)
    server.kill()  # SIGKILL while fetches are in flight
    with server.client() as client:
        server.start()
        staged_before = client.get(f"{server.ds}/batches/restart/count").json()["count"]
        assert 0 < staged_before < len(names)
        wait_for(lambda: shards_done(client, server.ds, "restart"), timeout=60)
        files = client.get(f"{server.ds}/batches/restart/list", params={"pageSize": 1000}).json()[
            "filesMetadata"
        ]
        assert sorted(f["fileName"] for f in files) == names
        assert client.get(f"{server.ds}/batches/restart/count").json() == {"count": len(names)}
    blobs = [
        p for p in (server.data_dir / "blobs").rglob("*") if p.is_file() and ".tmp" not in p.parts
    ]
    assert len(blobs) == len(names)  # no orphan left by the fetches the kill interrupted


def test_expiry_sweep_and_loopback_refused_without_allow_list(
    server_factory: Callable[..., ServerHandle], origin: Origin
) -> None:
    """One strict server (no --allow-url, short TTL) for both checks: saves a start-up."""
    server = server_factory("--batch-ttl", "6s", "--sweep-interval", "0.3")
    blobs = server.data_dir / "blobs"
    with run_receiver() as receiver, server.client() as client:
        upload = client.post(
            f"{server.ds}/batches/old/upload/image",
            params={"fileName": "a.jpg"},
            files={"file": ("a.jpg", image_bytes("a"))},
        )
        assert upload.status_code == 200
        assert any(p.is_file() for p in blobs.rglob("*") if ".tmp" not in p.parts)

        refs = [
            {"name": "lo.jpg", "url": origin.url("/img/lo.jpg")},
            {"name": "name.jpg", "url": f"http://localhost:{origin.port}/img/x.jpg"},
            {"name": "v6.jpg", "url": f"http://[::1]:{origin.port}/img/x.jpg"},
        ]
        before = dict(origin.hits)
        answer = client.post(
            f"{server.ds}/batches/strict/bulk-upload/image-references",
            json={"imageReferences": refs, "notificationsURL": receiver.url},
        )
        assert answer.status_code == 200
        wait_for(lambda: shards_done(client, server.ds, "strict"))
        assert client.get(f"{server.ds}/batches/strict/count").json() == {"count": 0}
        listing = client.post(
            f"{server.ds}/batches/strict2/bulk-upload/image-references",
            json={"imageReferencesURL": origin.url("/files/none.jsonl")},
        )
        assert listing.status_code == 400
        assert "unsafe-url-detected" in listing.json()["error"]

        # expiry: the batch disappears from the API, then its blobs from the disk
        wait_for(lambda: client.get(f"{server.ds}/batches/old").status_code == 404, timeout=20)
        wait_for(lambda: not any(p.is_file() for p in blobs.rglob("*") if ".tmp" not in p.parts))
        # "strict" was created a moment after "old": it expires a moment later
        wait_for(lambda: client.get(f"{server.ds}/batches").json()["batches"] == [], timeout=20)
        # the origin was never contacted, and neither was the loopback webhook receiver
        assert origin.hits == before
        assert receiver.all() == []
