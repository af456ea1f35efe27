"""Hostile input against ``batchflow serve``: nobody let in, nothing fetched that should not be.

One server (workspace ``ws-a``) for the module. It may fetch from 127.0.0.2 only (the "public"
origin and the webhook receiver live there); 127.0.0.1 plays the internal network, so every way
of naming it must be refused without a single request reaching it.
"""

from __future__ import annotations

import http.server
import io
import json
import socket
import tarfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from batchflow.server.core.blobs import UrlSigner
from tests.reliability._support import list_files, origin_bytes, report
from tests.server_fixture import ServerHandle

pytestmark = pytest.mark.timeout(300)

WS = "ws-a"
SECRET_BATCH = "secret-batch-a1"


@dataclass
class Listener:
    """A loopback HTTP server recording hits; ``redirects`` maps a path to a Location."""

    host: str
    port: int = 0
    hits: Counter[str] = field(default_factory=Counter)
    hooks: list[dict[str, Any]] = field(default_factory=list)
    redirects: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@pytest.fixture(scope="module")
def listeners() -> Iterator[tuple[Listener, Listener]]:
    """(internal on 127.0.0.1, public on 127.0.0.2)."""
    made: list[tuple[http.server.ThreadingHTTPServer, threading.Thread]] = []
    out = []
    for host in ("127.0.0.1", "127.0.0.2"):
        state = Listener(host)
        lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            st = state
            guard = lock

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                with self.guard:
                    self.st.hits[path] += 1
                if path in self.st.redirects:
                    self.send_response(302)
                    self.send_header("Location", self.st.redirects[path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = origin_bytes(path)
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with self.guard:
                    self.st.hooks.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        httpd = http.server.ThreadingHTTPServer((host, 0), Handler)
        httpd.daemon_threads = True
        state.port = int(httpd.server_address[1])
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        made.append((httpd, thread))
        out.append(state)
    try:
        yield out[0], out[1]
    finally:
        for httpd, thread in made:
            httpd.shutdown()
            httpd.server_close()
            thread.join(10)


@pytest.fixture(scope="module")
def hostile_server(
    tmp_path_factory: pytest.TempPathFactory, listeners: tuple[Listener, Listener]
) -> Iterator[ServerHandle]:
    handle = ServerHandle(
        data_dir=tmp_path_factory.mktemp("hostile") / "data",
        workspace=WS,
        extra_args=("--allow-url", "127.0.0.2/32"),
    )
    handle.start()
    try:
        with handle.client() as http:
            answer = http.post(
                f"{handle.ds}/batches/{SECRET_BATCH}/upload/image",
                params={"fileName": "a.jpg"},
                files={"a.jpg": ("a.jpg", b"\xff\xd8\xff\xe0secret", "image/jpeg")},
            )
            assert answer.status_code == 200, answer.text
        yield handle
    finally:
        handle.stop()


def routes(server: ServerHandle) -> list[tuple[str, str]]:
    """Every (method, path template) the server's OpenAPI schema lists."""
    with httpx.Client(trust_env=False, timeout=30) as http:
        spec = http.get(f"{server.base_url}/openapi.json").json()
    return [
        (method.upper(), path)
        for path, ops in spec["paths"].items()
        for method in ops
        if method in {"get", "post", "put", "patch", "delete"}
    ]


def fill(path: str, workspace: str) -> str:
    out = path.replace("{workspace}", workspace)
    while "{" in out:
        start, end = out.index("{"), out.index("}")
        out = out[:start] + "x1" + out[end + 1 :]
    return out


def test_wrong_or_missing_key_on_every_route(hostile_server: ServerHandle) -> None:
    found = routes(hostile_server)
    assert len(found) >= 10, found
    tried = 0
    with httpx.Client(trust_env=False, timeout=30) as anon:
        for method, path in found:
            if path == "/healthz":
                continue
            url = hostile_server.base_url + fill(path, WS)
            attempts = {
                "missing": anon.request(method, url),
                "bearer": anon.request(method, url, headers={"Authorization": "Bearer nope"}),
                "query": anon.request(method, url, params={"api_key": "nope"}),
                "empty": anon.request(method, url, headers={"Authorization": "Bearer"}),
                "prefix": anon.request(
                    method, url, headers={"Authorization": f"Bearer {hostile_server.api_key[:-1]}"}
                ),
                "basic": anon.request(method, url, auth=(hostile_server.api_key, "")),
            }
            for name, answer in attempts.items():
                tried += 1
                assert answer.status_code == 401, (method, path, name, answer.text)
                assert SECRET_BATCH not in answer.text
    report("auth", {"routes": len(found) - 1, "attempts": tried})


def test_other_workspace_sees_nothing_on_every_route(hostile_server: ServerHandle) -> None:
    tried = 0
    with hostile_server.client() as http:
        for method, path in routes(hostile_server):
            if "{workspace}" not in path:
                continue
            for other in ("ws-b", "WS-A", "ws-a ", "ws-a%2F..", "local"):
                url = hostile_server.base_url + fill(path, other).replace("x1", SECRET_BATCH, 1)
                answer = http.request(method, url)
                tried += 1
                assert answer.status_code in {400, 404}, (method, url, answer.status_code)
                assert SECRET_BATCH not in answer.text
        batches = http.get(f"{hostile_server.ds}/batches").json()["batches"]
    assert [b["batchId"] for b in batches] == [SECRET_BATCH]
    report("workspaces", {"attempts": tried})


def _resolves_to_loopback(name: str) -> bool:
    try:
        infos = socket.getaddrinfo(name, 80)
    except OSError:
        return False
    return any(info[4][0] in {"127.0.0.1", "::1"} for info in infos)


def unsafe_urls(internal: Listener) -> dict[str, str]:
    """name -> URL, every one aiming at the internal listener or another non-public place."""
    p = internal.port
    urls = {
        "dotted.jpg": f"http://127.0.0.1:{p}/dotted.jpg",
        "short.jpg": f"http://127.1:{p}/short.jpg",
        "hex.jpg": f"http://0x7f.1:{p}/hex.jpg",
        "hexfull.jpg": f"http://0x7f000001:{p}/hexfull.jpg",
        "decimal.jpg": f"http://2130706433:{p}/decimal.jpg",
        "octal.jpg": f"http://0177.0.0.1:{p}/octal.jpg",
        "zero.jpg": f"http://0.0.0.0:{p}/zero.jpg",
        "mapped.jpg": f"http://[::ffff:127.0.0.1]:{p}/mapped.jpg",
        "v6loop.jpg": f"http://[::1]:{p}/v6loop.jpg",
        "localhost.jpg": f"http://localhost:{p}/localhost.jpg",
        "userinfo.jpg": f"http://127.0.0.2@127.0.0.1:{p}/userinfo.jpg",
        "private10.jpg": "http://10.0.0.1/private10.jpg",
        "private192.jpg": "http://192.168.0.1/private192.jpg",
        "private172.jpg": "http://172.16.0.1/private172.jpg",
        "linklocal.jpg": "http://169.254.1.1/linklocal.jpg",
        "metadata.jpg": "http://169.254.169.254/latest/meta-data/metadata.jpg",
        "metadata-v6.jpg": "http://[fd00:ec2::254]/metadata-v6.jpg",
        "cgnat.jpg": "http://100.64.0.1/cgnat.jpg",
    }
    # names that resolve to loopback here (a name that does not resolve proves nothing)
    for name in ("localhost.", "ip6-localhost", "localhost.localdomain", "ip6-loopback"):
        if _resolves_to_loopback(name):
            urls[f"{name}.jpg"] = f"http://{name}:{p}/{name}.jpg"
    return urls


def _wait_hooks(receiver: Listener, ingest_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for hook in list(receiver.hooks):
            kind = hook["notification"]["type"]
            if hook.get("ingest_id") == ingest_id and kind == "ingest-files-status-notification-v1":
                return hook
        time.sleep(0.1)
    raise AssertionError(f"no files-status webhook for {ingest_id}")


def test_references_to_internal_addresses_are_refused(
    hostile_server: ServerHandle, listeners: tuple[Listener, Listener]
) -> None:
    internal, public = listeners
    urls = unsafe_urls(internal)
    # redirects from the allowed origin into the internal one, direct and two hops deep
    public.redirects["/hop.jpg"] = f"http://127.0.0.1:{internal.port}/hop-target.jpg"
    public.redirects["/hop2.jpg"] = f"{public.url}/hop2b.jpg"
    public.redirects["/hop2b.jpg"] = f"http://localhost:{internal.port}/hop2-target.jpg"
    public.redirects["/hopmeta.jpg"] = "http://169.254.169.254/latest/meta-data/"
    urls |= {name: f"{public.url}/{name}" for name in ("hop.jpg", "hop2.jpg", "hopmeta.jpg")}
    urls["fine.jpg"] = f"{public.url}/fine.jpg"  # the control: allowed, must be staged
    body = {
        "imageReferences": [{"name": n, "url": u} for n, u in urls.items()],
        "ingestId": "ssrf-1",
        "notificationsURL": f"{public.url}/hook",
        "notificationCategories": ["files-status"],
    }
    with hostile_server.client() as http:
        answer = http.post(f"{hostile_server.ds}/batches/ssrf/bulk-upload/image-references",
                           json=body)  # fmt: skip
        assert answer.status_code == 200, answer.text
    hook = _wait_hooks(public, "ssrf-1")
    note = hook["notification"]
    assert note["ingested_files"] == ["fine.jpg"]
    failed = {f["file_name"]: f["type"] for f in note["failed_files"]}
    assert set(failed) == set(urls) - {"fine.jpg"}
    wrong = {n: t for n, t in failed.items() if t != "unsafe-url-detected"}
    assert not wrong, f"refused for another reason (or fetched): {wrong}"
    assert not internal.hits, f"the internal listener was reached: {dict(internal.hits)}"
    assert [f["fileName"] for f in list_files(hostile_server, "ssrf")] == ["fine.jpg"]
    report("ssrf", {"urls_refused": len(failed), "internal_hits": sum(internal.hits.values())})


def _signer(server: ServerHandle) -> UrlSigner:
    secret = (server.data_dir / "url_secret").read_text().strip().encode()
    return UrlSigner(secret, server.base_url)


def test_tampered_expired_and_forged_blob_urls(hostile_server: ServerHandle) -> None:
    files = list_files(hostile_server, SECRET_BATCH)
    good = str(files[0]["downloadURL"])
    with httpx.Client(trust_env=False, timeout=30) as anon:
        assert anon.get(good).status_code == 200
        path, query = good.split("?", 1)
        params = dict(p.split("=", 1) for p in query.split("&"))
        sig, expires = params["sig"], params["expires"]
        flipped = sig[:-1] + ("0" if sig[-1] != "0" else "1")
        signer = _signer(hostile_server)
        blob_path = "/" + path.split("/", 3)[3]
        stale = int(time.time()) - 10
        forged_expired = signer._sig("GET", blob_path, stale)
        put_sig = signer.sign("PUT", blob_path, ttl=600).split("?", 1)[1]
        bad = {
            "no-sig": path,
            "flipped": f"{path}?expires={expires}&sig={flipped}",
            "later": f"{path}?expires={int(expires) + 3600}&sig={sig}",
            "expired": f"{path}?expires={stale}&sig={forged_expired}",
            "other-path": f"{path}x?expires={expires}&sig={sig}",
            "put-sig-on-get": f"{path}?{put_sig}",
            "upper-sig": f"{path}?expires={expires}&sig={sig.upper()}",
            "neg-expiry": f"{path}?expires=-1&sig={sig}",
            "huge-expiry": f"{path}?expires={'9' * 400}&sig={sig}",
        }
        for name, url in bad.items():
            answer = anon.get(url)
            assert answer.status_code in {401, 403}, (name, answer.status_code, answer.text)
            assert b"secret" not in answer.content, name
        # a valid signature over a path that climbs out of the blob store
        for raw in ("/blobs/../url_secret", "/blobs/%2e%2e/url_secret", "/blobs/..%2Furl_secret",
                    "/blobs/.tmp/x", "/blobs//etc/passwd", "/blobs/%2Fetc%2Fpasswd"):  # fmt: skip
            signed = signer.sign("GET", raw, ttl=600)
            answer = anon.get(signed)
            assert answer.status_code in {400, 401, 403, 404}, (raw, answer.status_code)
            assert signer.public_url not in answer.text
            assert "bf" not in answer.text[:3]
        # signed upload URLs: a GET signature does not open a PUT
        upload_path = "/uploads/" + quote("nope")
        get_sig = signer.sign("GET", upload_path, ttl=600).split("?", 1)[1]
        answer = anon.put(f"{hostile_server.base_url}{upload_path}?{get_sig}", content=b"x")
        assert answer.status_code in {401, 403}
    report("signed urls", {"tampered": len(bad) + 7})


def _tar(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def _member(
    name: str, data: bytes = b"\xff\xd8\xff\xe0x", **kw: Any
) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    for key, value in kw.items():
        setattr(info, key, value)
    if info.type in (tarfile.REGTYPE, tarfile.AREGTYPE):
        info.size = len(data)
        return info, data
    return info, None


def test_tar_members_that_escape_or_are_special_are_refused(
    hostile_server: ServerHandle, listeners: tuple[Listener, Listener]
) -> None:
    _internal, public = listeners
    config = {"ingestId": "tar-evil", "notificationsURL": f"{public.url}/hook"}
    members = [
        _member("notification_config.json", json.dumps(config).encode()),
        _member("good.jpg"),
        _member("a/../../escape1.jpg"),
        _member("./../escape2.jpg"),
        _member("sub/../../../escape3.jpg"),
        _member("/tmp/escape4.jpg"),
        _member("//escape5.jpg"),
        _member("..\\escape6.jpg"),
        _member("link1.jpg", type=tarfile.SYMTYPE, linkname="/etc/passwd"),
        _member("link2.jpg", type=tarfile.SYMTYPE, linkname="../../url_secret"),
        _member("hard1.jpg", type=tarfile.LNKTYPE, linkname="good.jpg"),
        _member("hard2.jpg", type=tarfile.LNKTYPE, linkname="../../../url_secret"),
        _member("chr.jpg", type=tarfile.CHRTYPE, devmajor=1, devminor=3),
        _member("blk.jpg", type=tarfile.BLKTYPE, devmajor=8, devminor=0),
        _member("fifo.jpg", type=tarfile.FIFOTYPE),
        _member("dir.jpg", type=tarfile.DIRTYPE),
        _member("nul\x00byte.jpg"),
    ]
    with hostile_server.client() as http:
        details = http.post(f"{hostile_server.ds}/batches/tar-evil/bulk-upload/image-files").json()[
            "signedURLDetails"
        ]
        answer = httpx.put(details["uploadURL"], content=_tar(members),
                           headers=details.get("extensionHeaders") or {})  # fmt: skip
        assert answer.status_code == 200, answer.text
    hook = _wait_hooks(public, "tar-evil")
    staged = sorted(hook["notification"]["ingested_files"])
    # ``good.jpg`` always; a name with a NUL byte may be cut by the tar layer to a safe name
    assert "good.jpg" in staged
    assert all(".." not in n and not n.startswith("/") and "\\" not in n for n in staged), staged
    assert not [n for n in staged if n.startswith(("link", "hard", "chr", "blk", "fifo"))], staged
    root = hostile_server.data_dir.parent
    escaped = list(root.rglob("escape*"))
    assert not escaped, escaped
    report("tar members", {"members": len(members) - 1, "staged": len(staged)})


def test_oversize_bodies_are_refused(hostile_server: ServerHandle, tmp_path: Path) -> None:
    with hostile_server.client() as http:
        big_json = b'{"imageReferences": [' + b" " * (64 * 1024 * 1024) + b"]}"
        answer = http.post(
            f"{hostile_server.ds}/batches/big/bulk-upload/image-references",
            content=big_json, headers={"Content-Type": "application/json"},
        )  # fmt: skip
        assert answer.status_code == 413, answer.status_code
        refs = [{"name": f"n{i}.jpg", "url": f"http://127.0.0.2/{i}.jpg"} for i in range(20_001)]
        answer = http.post(
            f"{hostile_server.ds}/batches/big/bulk-upload/image-references",
            json={"imageReferences": refs},
        )
        assert answer.status_code in {400, 413}, answer.status_code
        sparse = tmp_path / "huge.jpg"
        with sparse.open("wb") as handle:
            handle.truncate(21 * 1024 * 1024)
        with sparse.open("rb") as handle:
            answer = http.post(
                f"{hostile_server.ds}/batches/big/upload/image",
                params={"fileName": "huge.jpg"},
                files={"huge.jpg": ("huge.jpg", handle, "image/jpeg")},
            )
        assert answer.status_code == 413, answer.status_code
        assert "error" in answer.json()
        assert list_files(hostile_server, "big") == []
