"""Discovery, auth, workspace isolation, error bodies and bad input (never a 500)."""

from __future__ import annotations

import httpx
import pytest

from tests.server_fixture import ServerHandle

ROUTES = [
    ("GET", "/batches"),
    ("GET", "/batches/b1"),
    ("GET", "/batches/b1/count"),
    ("GET", "/batches/b1/parts"),
    ("GET", "/batches/b1/list"),
    ("GET", "/batches/b1/shards"),
    ("POST", "/batches/b1/upload/image?fileName=a.jpg"),
    ("POST", "/batches/b1/upload/video?fileName=a.mp4"),
    ("POST", "/batches/b1/bulk-upload/image-files"),
    ("POST", "/batches/b1/bulk-upload/image-references"),
    ("POST", "/batches/b1/bulk-upload/video-references"),
]


def test_health_and_workspace_discovery(staging_server: ServerHandle) -> None:
    with httpx.Client(trust_env=False) as anon:
        assert anon.get(f"{staging_server.base_url}/healthz").status_code == 200
        answer = anon.get(f"{staging_server.base_url}/", params={"api_key": staging_server.api_key})
        assert answer.json() == {"workspace": staging_server.workspace}
        assert anon.get(f"{staging_server.base_url}/").status_code == 401
        spec = anon.get(f"{staging_server.base_url}/openapi.json").json()
        assert any("/data-staging/v1/external" in path for path in spec["paths"])


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_route_needs_the_key(staging_server: ServerHandle, method: str, path: str) -> None:
    url = staging_server.ds + path
    with httpx.Client(trust_env=False, timeout=30) as anon:
        missing = anon.request(method, url)
        wrong = anon.request(method, url, headers={"Authorization": "Bearer nope"})
        wrong_query = anon.request(method, url, params={"api_key": "nope"})
    for answer in (missing, wrong, wrong_query):
        assert answer.status_code == 401, answer.text
        assert set(answer.json()) == {"error"}


def test_query_key_and_bearer_both_work(staging_server: ServerHandle) -> None:
    with httpx.Client(trust_env=False) as anon:
        by_query = anon.get(
            f"{staging_server.ds}/batches", params={"api_key": staging_server.api_key}
        )
        by_header = anon.get(
            f"{staging_server.ds}/batches",
            headers={"Authorization": f"Bearer {staging_server.api_key}"},
        )
    assert by_query.status_code == by_header.status_code == 200
    assert "batches" in by_query.json()


def test_other_workspace_is_404(staging_server: ServerHandle, client: httpx.Client) -> None:
    url = f"{staging_server.base_url}/data-staging/v1/external/someone-else/batches"
    answer = client.get(url)
    assert answer.status_code == 404
    assert "workspace" in answer.json()["error"]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("GET", "/batches/Bad!Id", {}, 400),
        ("GET", "/batches/" + "x" * 65, {}, 400),
        ("GET", "/batches/nosuchbatch", {}, 404),
        ("GET", "/batches/nosuchbatch/count", {}, 404),
        ("GET", "/batches/nosuchbatch/list", {}, 404),
        ("GET", "/batches", {"params": {"pageSize": "abc"}}, 400),
        ("GET", "/batches", {"params": {"pageSize": "0"}}, 400),
        ("GET", "/batches", {"params": {"nextPageToken": "%%%garbage"}}, 400),
        ("POST", "/batches/b1/bulk-upload/image-references", {"content": b"{not json"}, 400),
        ("POST", "/batches/b1/bulk-upload/image-references", {"json": {}}, 400),
        ("POST", "/batches/b1/bulk-upload/image-references", {"json": [1, 2]}, 400),
        (
            "POST",
            "/batches/b1/bulk-upload/image-references",
            {"json": {"imageReferences": [{"name": "a.jpg"}]}},
            400,
        ),
        (
            "POST",
            "/batches/b1/bulk-upload/image-references",
            {"json": {"imageReferences": [], "imageReferencesURL": "http://127.0.0.1/x"}},
            400,
        ),
        (
            "POST",
            "/batches/b1/bulk-upload/image-references",
            {"json": {"imageReferences": []}},
            400,
        ),
        (
            "POST",
            "/batches/b1/bulk-upload/video-references",
            {"json": {"imageReferences": [{"name": "a.jpg", "url": "http://x/a.jpg"}]}},
            400,
        ),
        ("POST", "/batches/b1/upload/image", {}, 400),  # fileName missing
        ("POST", "/batches/b1/upload/image?fileName=a.jpg", {"content": b"raw"}, 400),
        ("POST", "/batches/b1/upload/image?fileName=../a.jpg", {"files": {"f": b"x"}}, 400),
        ("POST", "/batches/b1/upload/video?fileName=", {}, 400),
        ("GET", "/no/such/route", {}, 404),
    ],
)
def test_bad_input_is_a_clear_4xx(
    client: httpx.Client,
    staging_server: ServerHandle,
    method: str,
    path: str,
    kwargs: dict[str, object],
    status: int,
) -> None:
    answer = client.request(method, staging_server.ds + path, **kwargs)  # type: ignore[arg-type]
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) == {"error"}
    assert body["error"]
    assert "Traceback" not in body["error"]


def test_too_many_references_names_the_limit(
    client: httpx.Client, staging_server: ServerHandle, batch_id: str
) -> None:
    refs = [{"name": f"{i}.jpg", "url": f"http://127.0.0.1:1/{i}.jpg"} for i in range(20_001)]
    answer = client.post(
        f"{staging_server.ds}/batches/{batch_id}/bulk-upload/image-references",
        json={"imageReferences": refs},
    )
    assert answer.status_code == 400
    assert "20000" in answer.json()["error"]
    assert client.get(f"{staging_server.ds}/batches/{batch_id}").status_code == 404


def test_oversized_json_body_is_refused_before_reading(staging_server: ServerHandle) -> None:
    import socket

    prefix = f"/data-staging/v1/external/{staging_server.workspace}"
    path = f"{prefix}/batches/b1/bulk-upload/image-references"
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {staging_server.api_key}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100000000\r\n\r\n{"
    ).encode()
    with socket.create_connection(("127.0.0.1", staging_server.port), timeout=10) as sock:
        sock.sendall(request)
        answer = ""
        for _ in range(50):  # headers and body may come in separate segments
            chunk = sock.recv(4096).decode()
            answer += chunk
            if not chunk or answer.rstrip().endswith("}"):
                break
    assert answer.startswith("HTTP/1.1 413")
    assert '{"error":' in answer
