"""Remote workflows against a real HTTP stub on 127.0.0.1: body, retries, timeouts, concurrency."""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from batchflow.server.workflows import (
    RemoteSettings,
    RemoteWorkflow,
    WorkflowError,
    WorkflowRegistry,
    WorkItem,
    WorkResult,
    process_video,
    run_items,
)

PNG_BYTES = b"\x89PNG\r\n\x1a\n" + b"fake-png-body"


class Stub:
    """Scripted answers per path; records calls, bodies, headers and peak concurrency."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: dict[str, int] = {}
        self.bodies: list[dict] = []
        self.headers: list[dict[str, str]] = []
        self.in_flight = 0
        self.peak = 0
        self.gate = threading.Condition(self.lock)
        self.stop = threading.Event()
        self.concurrency_target = 3

    def answer(self, path: str, body: dict) -> tuple[int, dict[str, str], bytes]:
        with self.lock:
            count = self.calls[path] = self.calls.get(path, 0) + 1
        ok = json.dumps(
            {
                "outputs": [
                    {
                        "count": len(body["inputs"]),
                        "nested": {"boxes": [[1, 2, 3, 4]]},
                        "visualization": {
                            "type": "base64",
                            "value": base64.b64encode(PNG_BYTES).decode(),
                        },
                    },
                    {"ignored": True},
                ]
            }
        ).encode()
        if path == "/flaky" and count == 1:
            return 503, {"Retry-After": "0"}, b"warming up"
        if path == "/ratelimited" and count == 1:
            return 429, {"Retry-After": "0"}, b"slow down"
        if path == "/down":
            return 502, {}, b"bad gateway"
        if path == "/bad":
            return 400, {}, b"invalid inputs"
        if path == "/notjson":
            return 200, {}, b"<html>"
        if path == "/slow":
            self.stop.wait(2.0)
            return 200, {}, ok
        if path == "/concurrent":
            with self.gate:
                self.in_flight += 1
                self.peak = max(self.peak, self.in_flight)
                self.gate.notify_all()
                self.gate.wait_for(lambda: self.in_flight >= self.concurrency_target, timeout=0.3)
            with self.gate:
                self.in_flight -= 1
        return 200, {"Content-Type": "application/json"}, ok


@pytest.fixture
def stub():
    state = Stub()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with state.lock:
                state.bodies.append(body)
                state.headers.append(dict(self.headers))
            status, headers, payload = state.answer(self.path, body)
            try:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, format, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        state.stop.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def _remote(stub, path, **kwargs):
    settings = {"retries": 3, "retry_base_delay": 0.01, "retry_max_delay": 0.05, "timeout": 5.0}
    settings.update(kwargs)
    return RemoteWorkflow(RemoteSettings(workflow_id="remote", url=stub.base + path, **settings))


@pytest.fixture
def item(tmp_path):
    path = tmp_path / "cat.jpg"
    Image.new("RGB", (16, 12), (200, 10, 10)).save(path)
    return WorkItem("cat.jpg", path, "image/jpeg")


def test_request_shape_and_row_after_a_503(stub, item, tmp_path):
    flows = tmp_path / "flows.toml"
    flows.write_text(
        f"""
[workflows.remote-det]
url = "{stub.base}/flaky"
timeout = 5
concurrency = 2
retries = 3
retry_base_delay = 0.01
headers = {{ "X-Api-Key" = "secret-header" }}
image_input_name = "picture"
api_key = "body-key"
"""
    )
    with WorkflowRegistry.load(flows) as registry:
        workflow = registry.resolve("remote-det")
        [(_, result)] = list(run_items(workflow, [item], {"confidence": 0.4}))
    assert isinstance(result, WorkResult)
    assert stub.calls["/flaky"] == 2
    body = stub.bodies[-1]
    assert body["api_key"] == "body-key"
    assert body["inputs"]["confidence"] == 0.4
    assert body["inputs"]["picture"] == {
        "type": "base64",
        "value": base64.b64encode(item.path.read_bytes()).decode(),
    }
    assert stub.headers[-1]["X-Api-Key"] == "secret-header"
    assert dict(result.row) == {
        "file_name": "cat.jpg",
        "count": 2,
        "nested": {"boxes": [[1, 2, 3, 4]]},
    }
    [image] = result.images
    assert (image.name, image.data, image.extension) == ("visualization", PNG_BYTES, "png")


def test_429_is_retried(stub, item):
    workflow = _remote(stub, "/ratelimited")
    try:
        result = workflow.process_image(item, None, {})
    finally:
        workflow.close()
    assert result.row["count"] == 1
    assert stub.calls["/ratelimited"] == 2


@pytest.mark.parametrize(
    ("path", "calls", "fragment"),
    [
        ("/down", 3, "HTTP 502"),
        ("/bad", 1, "HTTP 400"),
        ("/notjson", 1, "not JSON"),
    ],
)
def test_failures_become_remote_failed(stub, item, path, calls, fragment):
    workflow = _remote(stub, path, retries=2)
    try:
        [(_, result)] = list(run_items(workflow, [item], {}))
    finally:
        workflow.close()
    assert isinstance(result, WorkflowError)
    assert result.kind == "remote-failed"
    assert fragment in result.message
    assert stub.calls[path] == calls


def test_timeout_is_retried_then_fails(stub, item):
    workflow = _remote(stub, "/slow", retries=1, timeout=0.2)
    try:
        with pytest.raises(WorkflowError) as caught:
            workflow.process_image(item, None, {})
    finally:
        workflow.close()
    assert caught.value.kind == "remote-failed"
    assert "timed out" in caught.value.message
    assert stub.calls["/slow"] == 2


def test_connection_refused_is_remote_failed(item):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = RemoteSettings(
        "remote", f"http://127.0.0.1:{port}/x", retries=1, retry_base_delay=0.01
    )
    workflow = RemoteWorkflow(settings)
    try:
        with pytest.raises(WorkflowError, match="connection failed"):
            workflow.process_image(item, None, {})
    finally:
        workflow.close()


def test_concurrency_bound_is_respected(stub, tmp_path):
    items = []
    for index in range(9):
        path = tmp_path / f"img-{index}.jpg"
        Image.new("RGB", (8, 8), (index, 0, 0)).save(path)
        items.append(WorkItem(path.name, path, "image/jpeg"))
    workflow = _remote(stub, "/concurrent", concurrency=3)
    try:
        results = list(run_items(workflow, items, {}))  # concurrency from the workflow: 3
    finally:
        workflow.close()
    assert [item.name for item, _ in results] == [item.name for item in items]
    assert all(isinstance(result, WorkResult) for _, result in results)
    assert stub.calls["/concurrent"] == 9
    assert stub.peak == 3


def test_video_frames_are_sent_as_jpeg(stub, make_video):
    path = make_video("clip.mp4")
    workflow = _remote(stub, "/ok", concurrency=2)
    try:
        results = list(process_video(workflow, WorkItem("clip.mp4", path, "video/mp4"), {}, 2))
    finally:
        workflow.close()
    assert [r.row["frame_index"] for r in results] == [0, 5, 10, 15]
    assert next(r.images[0].name for r in results) == "visualization-000000"
    sent = base64.b64decode(stub.bodies[0]["inputs"]["image"]["value"])
    with Image.open(io.BytesIO(sent)) as img:
        assert (img.format, img.size) == ("JPEG", (64, 48))
