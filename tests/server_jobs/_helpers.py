"""Helpers for job tests over real HTTP: staging uploads, job definitions, polling, outputs."""

from __future__ import annotations

import csv
import io
import json
import os
import tarfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.server_fixture import ServerHandle

JOB_TIMEOUT = 60.0
_ENV_LOCK = threading.Lock()


def bp(server: ServerHandle) -> str:
    """The batch-processing prefix URL of ``server``."""
    return f"{server.base_url}/batch-processing/v1/external/{server.workspace}"


def start_with_env(handle: ServerHandle, env: Mapping[str, str]) -> ServerHandle:
    """Start ``handle`` with extra environment variables (ManagedProcess copies os.environ)."""
    with _ENV_LOCK:
        saved = {key: os.environ.get(key) for key in env}
        os.environ.update(env)
        try:
            return handle.start()
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


# --- staging ---------------------------------------------------------------------------------


def upload_images(
    client: httpx.Client, server: ServerHandle, batch: str, files: Mapping[str, bytes]
) -> None:
    """Stage each file through ``upload/image`` (multipart, synchronous)."""
    for name, data in files.items():
        response = client.post(
            f"{server.ds}/batches/{batch}/upload/image",
            params={"fileName": name},
            files={"file": (name, data, "image/jpeg")},
        )
        assert response.status_code == 200, response.text


def _put_signed(client: httpx.Client, details: Mapping[str, Any], data: bytes) -> None:
    response = client.put(
        details["uploadURL"], content=data, headers=details.get("extensionHeaders") or {}
    )
    assert response.status_code in {200, 201, 204}, response.text


def upload_tar(
    client: httpx.Client, server: ServerHandle, batch: str, files: Mapping[str, bytes]
) -> None:
    """Stage ``files`` as one bulk tar (signed PUT) and wait until it is extracted."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    response = client.post(f"{server.ds}/batches/{batch}/bulk-upload/image-files")
    assert response.status_code == 200, response.text
    _put_signed(client, response.json()["signedURLDetails"], buffer.getvalue())
    wait_count(client, server, batch, len(files))


def upload_video(
    client: httpx.Client, server: ServerHandle, batch: str, name: str, data: bytes
) -> None:
    """Stage one video through ``upload/video`` (signed PUT) and wait until it is listed."""
    response = client.post(f"{server.ds}/batches/{batch}/upload/video", params={"fileName": name})
    assert response.status_code == 200, response.text
    _put_signed(client, response.json()["signedURLDetails"], data)
    wait_count(client, server, batch, 1)


def wait_count(client: httpx.Client, server: ServerHandle, batch: str, count: int) -> None:
    def check() -> bool:
        response = client.get(f"{server.ds}/batches/{batch}/count")
        return response.status_code == 200 and response.json()["count"] >= count

    wait_for(check, timeout=30)


def list_files(
    client: httpx.Client, server: ServerHandle, batch: str, part: str | None = None
) -> list[dict[str, Any]]:
    """Every file of a batch (all pages)."""
    out: list[dict[str, Any]] = []
    token: str | None = None
    for _ in range(100):
        params: dict[str, Any] = {"pageSize": 100}
        if part is not None:
            params["partName"] = part
        if token:
            params["nextPageToken"] = token
        response = client.get(f"{server.ds}/batches/{batch}/list", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        out += body["filesMetadata"]
        token = body.get("nextPageToken")
        if not token:
            return out
    raise AssertionError("too many pages")


def download_files(
    client: httpx.Client, server: ServerHandle, batch: str, part: str | None = None
) -> dict[str, bytes]:
    """``{fileName: bytes}`` of a batch, downloaded through the signed URLs."""
    out: dict[str, bytes] = {}
    for meta in list_files(client, server, batch, part):
        response = client.get(meta["downloadURL"])
        assert response.status_code == 200, response.text
        out[meta["fileName"]] = response.content
    return out


# --- jobs ------------------------------------------------------------------------------------


def definition(
    batch: str,
    workflow: str = "image-metadata",
    *,
    workspace: str = "ws-test",
    spec: Mapping[str, Any] | None = None,
    **top: Any,
) -> dict[str, Any]:
    """A JobDefinition as the reference client sends it (optional fields absent)."""
    body: dict[str, Any] = {
        "type": "simple-image-processing-v1",
        "jobInput": {"type": "staging-batch-input-v1", "batchId": batch},
        "computeConfiguration": {"type": "compute-configuration-v2", "machineType": "cpu"},
        "maxParallelTasks": 2,
        "processingSpecification": {
            "type": "workflows-processing-specification-v1",
            "workspace": workspace,
            "workflowId": workflow,
            "aggregationFormat": "jsonl",
            **(spec or {}),
        },
    }
    body.update(top)
    return body


def create_job(
    client: httpx.Client, server: ServerHandle, job_id: str, body: Mapping[str, Any]
) -> None:
    response = client.post(f"{bp(server)}/jobs/{job_id}", json=dict(body))
    assert response.status_code == 200, response.text
    assert response.json() == {}


def get_job(client: httpx.Client, server: ServerHandle, job_id: str) -> dict[str, Any]:
    response = client.get(f"{bp(server)}/jobs/{job_id}")
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()["job"]
    return job


def wait_terminal(
    client: httpx.Client, server: ServerHandle, job_id: str, timeout: float = JOB_TIMEOUT
) -> dict[str, Any]:
    """Poll GET job until ``isTerminal``."""
    result: dict[str, Any] = wait_for(
        lambda: (job := get_job(client, server, job_id))["isTerminal"] and job,
        timeout=timeout,
        interval=0.1,
    )
    return result


def stages(client: httpx.Client, server: ServerHandle, job_id: str) -> dict[str, dict[str, Any]]:
    response = client.get(f"{bp(server)}/jobs/{job_id}/stages")
    assert response.status_code == 200, response.text
    return {s["processingStageId"]: s for s in response.json()["stages"]}


def tasks(
    client: httpx.Client,
    server: ServerHandle,
    job_id: str,
    stage: str = "processing",
    *,
    planned: bool = True,
) -> list[dict[str, Any]]:
    """Tasks of a stage; with ``planned=False`` an unplanned stage has none (not a 404)."""
    response = client.get(
        f"{bp(server)}/jobs/{job_id}/stages/{stage}/tasks", params={"pageSize": 1000}
    )
    if not planned and response.status_code == 404:
        return []
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["tasks"]
    return found


def logs(client: httpx.Client, server: ServerHandle, job_id: str) -> list[dict[str, Any]]:
    response = client.get(f"{bp(server)}/jobs/{job_id}/logs", params={"pageSize": 1000})
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["logs"]
    return found


def result_rows(files: Mapping[str, bytes]) -> list[dict[str, Any]]:
    """Rows of every ``.jsonl`` / ``.csv`` result file."""
    rows: list[dict[str, Any]] = []
    for name, data in sorted(files.items()):
        if name.endswith(".jsonl"):
            rows += [json.loads(line) for line in data.decode().splitlines() if line.strip()]
        elif name.endswith(".csv"):
            rows += list(csv.DictReader(io.StringIO(data.decode())))
    return rows


def untar(data: bytes) -> dict[str, bytes]:
    members: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            handle = tar.extractfile(member)
            if handle is not None:
                members[member.name] = handle.read()
    return members


def wait_for(check: Any, *, timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Poll ``check`` until it returns a truthy value (bounded in time)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")


# --- user workflows --------------------------------------------------------------------------

WORKFLOW_MODULE = '''
"""User workflows for the integration tests (imported by batchflow serve's workers)."""
import os
import time


def _record(params, item):
    log_dir = params.get("log_dir")
    if log_dir:
        path = os.path.join(log_dir, f"{os.getpid()}-{time.monotonic_ns()}.call")
        with open(path, "w") as handle:
            handle.write(item.name)


def tagger(item, image, params):
    """Row: size of the decoded image and a tag; names with 'bad' raise."""
    _record(params, item)
    if "bad" in item.name:
        raise ValueError(f"refusing {item.name}")
    if image is None:  # a file, not a video frame: the workflow opens it itself
        from PIL import Image

        with Image.open(item.path) as opened:
            width, height = opened.size
    else:
        width, height = image.size
    return {"tag": params.get("tag", "none"), "pixels": width * height}


def slow(item, image, params):
    """Sleeps ``delay`` seconds per item (for timeout, abort and kill tests)."""
    time.sleep(float(params.get("delay", 1.0)))
    _record(params, item)
    return {"slept": True}
'''


def calls(log_dir: Any) -> list[str]:
    """Item names the user workflows were called with (one file per call)."""
    return sorted(path.read_text() for path in log_dir.glob("*.call"))


@dataclass
class RemoteStub:
    """An inference-server-like workflow route; answers 503 to the first ``fail_first`` calls."""

    port: int = 0
    fail_first: int = 1
    seen: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/infer/workflows/ws/detect"


@contextmanager
def run_remote_stub(fail_first: int = 1) -> Iterator[RemoteStub]:
    import base64
    import hashlib
    from http.server import BaseHTTPRequestHandler

    from tests.server._helpers import serve_http

    state = RemoteStub(fail_first=fail_first)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            with state.lock:
                status = 503 if len(state.seen) < state.fail_first else 200
                state.seen.append(body)
                state.statuses.append(status)
            if status != 200:
                payload = b'{"message": "warming up"}'
            else:
                image = base64.b64decode(body["inputs"]["image"]["value"])
                digest = hashlib.sha256(image).hexdigest()
                payload = json.dumps(
                    {"outputs": [{"predictions": {"count": 1, "digest": digest}, "model": "stub"}]}
                ).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            if status == 503:
                self.send_header("Retry-After", "0")
            self.end_headers()
            self.wfile.write(payload)

    with serve_http(Handler) as port:
        state.port = port
        yield state
