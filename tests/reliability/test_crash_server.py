"""SIGKILL ``batchflow serve`` mid-ingest and mid-job; restart; everything completes once.

The client runs as a subprocess through the fault proxy, so while the server is down it meets
502s (the proxy can not connect) and keeps retrying. The webhook receiver holds the first
delivery it gets until the server has been killed, so that event's delivery is interrupted and
must be made again after the restart, with the same ``event_id``.
"""

from __future__ import annotations

import http.server
import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.faultproxy import FaultRates
from tests.reliability._support import (
    Origin,
    Proxied,
    Sizes,
    assert_exactly_once,
    cli,
    finish,
    list_files,
    report,
    sha256,
    wait_settled,
    write_references,
)

pytestmark = pytest.mark.timeout(600)

MILD = FaultRates(error_5xx=0.05, reset=0.02, status_429=0.02, retry_after=1)
AFTER_RESTART = FaultRates(error_5xx=0.15, reset=0.05, status_429=0.05, truncate=0.05)


@dataclass
class Receiver:
    """Webhook receiver: records (body, status answered); holds the first POST until released."""

    url: str = ""
    calls: list[tuple[dict[str, Any], int]] = field(default_factory=list)
    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bodies(self, kind: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [b for b, _ in self.calls if kind is None or b.get("type") == kind]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            hold = False
            with state.lock:
                if not state.held.is_set():
                    state.held.set()
                    hold = True
            if hold:  # the server dies while this delivery is in flight
                state.release.wait(30)
                with state.lock:
                    state.calls.append((body, 0))
                self.close_connection = True
                return
            with state.lock:
                state.calls.append((body, 200))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/hook"
    try:
        yield state
    finally:
        state.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def check_event_ids(bodies: list[dict[str, Any]], key: Callable[[dict[str, Any]], Any]) -> int:
    """Every delivery of one event carries one event_id; returns the number of events."""
    ids: dict[Any, set[str]] = {}
    for body in bodies:
        ids.setdefault(key(body), set()).add(body["event_id"])
    assert all(len(v) == 1 for v in ids.values()), ids
    event_ids = [next(iter(v)) for v in ids.values()]
    assert len(set(event_ids)) == len(event_ids), "two events share an event_id"
    return len(ids)


def test_sigkill_serve_mid_ingest(
    proxied_factory: Callable[..., Proxied],
    origin: Origin,
    receiver: Receiver,
    sizes: Sizes,
    tmp_path: Path,
    state_dir: Path,
) -> None:
    posted: list[str] = []

    def on_forward(method: str, path: str, body: bytes) -> None:
        if path.endswith("/bulk-upload/image-references"):
            posted.append(path)

    proxied = proxied_factory(MILD, 5, on_forward=on_forward)
    n = sizes.references_fetched
    refs = tmp_path / "refs.jsonl"
    expected = write_references(refs, n, origin.url + "/kill")
    env = {"BATCHFLOW_STATE_DIR": str(state_dir)}
    shard = str(max(n // 20, 1))
    argv = ("ingest", str(refs), "--batch-id", "kill-serve", "--shard-size", shard,
            "--concurrency", "1", "--notifications-url", receiver.url,
            "--notification-category", "ingest-status",
            "--api-url", proxied.url, "--api-key", proxied.server.api_key)  # fmt: skip
    proc = cli(*argv, env=env)
    kills = 0

    def fetched() -> int:
        hits = dict(origin.hits)  # the origin's threads keep adding keys: copy first
        return sum(v for k, v in hits.items() if k.startswith("/kill/"))

    reruns: list[str] = []
    state = {"proc": proc}

    def resume_if_gave_up() -> None:
        """Exit 6 = retries ran out while the server was down: the documented answer is re-run."""
        ended = state["proc"]
        if ended.poll() is not None and ended.returncode == 6 and len(reruns) < 3:
            _, _, err = finish(ended)
            reruns.append(err.strip().splitlines()[-1] if err.strip() else "")
            state["proc"] = cli(*argv, env=env)

    # kill 0: while the client is still sending shards (it meets 502s until the restart)
    wait_until(lambda: len(posted) >= 3 or proc.poll() is not None, 120, "the first shards")
    sending = proc.poll() is None
    proxied.restart_server()
    kills += 1

    # kill 1: once the server has started fetching and a webhook delivery is in flight
    def fetching_and_held() -> bool:
        resume_if_gave_up()
        return fetched() > 0 and receiver.held.is_set()

    try:
        wait_until(fetching_and_held, 120, "fetching + a webhook")
    except AssertionError:
        current = state["proc"]
        ended = finish(current, timeout=5) if current.poll() is not None else None
        raise AssertionError(
            f"fetched={fetched()} held={receiver.held.is_set()} posted={len(posted)} "
            f"reruns={reruns} client={ended}\n{proxied.server.log_tail()}"
        ) from None
    proxied.restart_server()
    receiver.release.set()
    kills += 1
    # kill 2: mid-fetch again, if there is still something to fetch
    target = min(fetched() + max(n // 4, 1), n)
    wait_until(lambda: fetched() >= target or state["proc"].poll() is not None, 120, "fetches")
    if fetched() < n:
        proxied.restart_server()
        kills += 1
    code, _, err = finish(state["proc"])
    assert "Traceback" not in err
    if code == 6:
        reruns.append(err.strip().splitlines()[-1])
        code, _, err = finish(cli(*argv, env=env))
    assert code == 0, err
    if reruns:
        print("\n[reliability] re-runs after retries ran out:", reruns)
    assert wait_settled(proxied.server, "kill-serve", n, 300.0) == n
    assert_exactly_once(list_files(proxied.server, "kill-serve"), expected)
    blobs = [p for p in (proxied.server.data_dir / "blobs").rglob("*")
             if p.is_file() and ".tmp" not in p.parts]  # fmt: skip
    assert len(blobs) == n, "orphan or missing blobs after the kills"

    # webhooks: one ingest-status event per server shard, delivered (200) at least once each,
    # every delivery of an event with its one event_id; the held one was delivered again
    kind = "roboflow-data-staging-notification-v1"

    def delivered_all() -> bool:
        done = {b["shard_id"] for b, status in receiver.calls if status == 200}
        return len(done) >= len(shards_of(proxied))

    wait_until(delivered_all, 120, "every shard's webhook")
    bodies = receiver.bodies(kind)
    events = check_event_ids(bodies, lambda b: (b["ingest_id"], b["shard_id"]))
    held = receiver.calls[0][0] if receiver.calls[0][1] == 0 else next(
        b for b, status in receiver.calls if status == 0)  # fmt: skip
    again = [
        b for b, status in receiver.calls if status == 200 and b["event_id"] == held["event_id"]
    ]
    assert again, "the delivery cut by the kill was never made again"
    report("serve SIGKILL mid-ingest", {"kills": kills, "while_sending": sending,
           "reruns": len(reruns), "files": n,
           "webhook_events": events,
           "deliveries": len(bodies), **proxied.proxy.stats.snapshot()})  # fmt: skip


def shards_of(proxied: Proxied) -> list[dict[str, Any]]:
    with proxied.server.client() as http:
        shards: list[dict[str, Any]] = http.get(
            f"{proxied.server.ds}/batches/kill-serve/shards"
        ).json()["shards"]
        return shards


def png(i: int, size: int = 320) -> bytes:
    buffer = io.BytesIO()
    image = Image.new("RGB", (size, size - i % 50), ((i * 37) % 256, (i * 91) % 256, i % 256))
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def job_state(proxied: Proxied, job_id: str) -> dict[str, Any]:
    bp = f"{proxied.server.base_url}/batch-processing/v1/external/{proxied.server.workspace}"
    with proxied.server.client() as http:
        answer = http.get(f"{bp}/jobs/{job_id}")
        return dict(answer.json().get("job") or {}) if answer.status_code == 200 else {}


def test_sigkill_serve_mid_job_then_poll_and_export_through_faults(
    proxied_factory: Callable[..., Proxied],
    receiver: Receiver,
    sizes: Sizes,
    tmp_path: Path,
    state_dir: Path,
) -> None:
    proxied = proxied_factory(FaultRates(), 6)
    folder = tmp_path / "imgs"
    n = 40 if not sizes.full else 200
    for i in range(n):
        (folder / f"p{i % 4}").mkdir(parents=True, exist_ok=True)
        (folder / f"p{i % 4}" / f"im{i:04d}.png").write_bytes(png(i))
    env = {"BATCHFLOW_STATE_DIR": str(state_dir)}
    api = ("--api-url", proxied.url, "--api-key", proxied.server.api_key)
    code, _, err = finish(cli("ingest", str(folder), "--batch-id", "kill-job", *api, env=env))
    assert code == 0, err
    assert wait_settled(proxied.server, "kill-job", n, 120.0) == n
    receiver.held.set()  # job webhooks: no hold, the kill lands mid-processing instead
    code, out, err = finish(cli("run", "--workflow-id", "thumbnail", "--batch-id", "kill-job",
                                "--job-id", "job-kill1", "--max-parallel-tasks", "2",
                                "--notifications-url", receiver.url, *api, env=env))  # fmt: skip
    assert code == 0, err
    wait_until(lambda: bool(job_state(proxied, "job-kill1")), 30, "the job")
    mid_job = not job_state(proxied, "job-kill1").get("isTerminal", False)
    proxied.restart_server()
    proxied.proxy.proxy.rates = AFTER_RESTART  # from now on poll and export meet faults
    code, out, err = finish(cli("poll", "job-kill1", "--interval", "0.2", "--max-interval", "1",
                                "--timeout", "240", *api, env=env), timeout=300)  # fmt: skip
    assert code == 0, (out, err)
    assert "Traceback" not in err
    job = job_state(proxied, "job-kill1")
    assert job["isTerminal"]
    assert not job["error"], job
    target = tmp_path / "results"
    code, out, err = finish(cli("export", "--job-id", "job-kill1", "--target-dir", str(target),
                                *api, "--json", env=env))  # fmt: skip
    assert code == 0, (out, err)
    assert "Traceback" not in err
    exported = [p for p in target.rglob("*") if p.is_file()]
    assert exported, "nothing exported"
    assert not [p for p in exported if p.name.endswith(".part")]
    # every exported file matches the server's listing (size and sha256)
    batches = {p.relative_to(target).parts[0] for p in exported}
    for batch in batches:
        listing = {f["fileName"]: f for f in list_files(proxied.server, batch)}
        on_disk = {str(p.relative_to(target / batch)): p for p in (target / batch).rglob("*")
                   if p.is_file()}  # fmt: skip
        assert set(on_disk) == set(listing)
        for name, path in on_disk.items():
            assert sha256(path.read_bytes()) == listing[name]["sha256"]
    kind = "roboflow-batch-job-notification-v1"
    wait_until(lambda: bool(receiver.bodies(kind)), 60, "the job-done webhook")
    bodies = receiver.bodies(kind)
    check_event_ids(bodies, lambda b: b["job_id"])
    assert {b["job_state"] for b in bodies} == {"success"}
    report("serve SIGKILL mid-job", {"mid_job": mid_job, "images": n,
           "exported_files": len(exported), "job_webhooks": len(bodies),
           **proxied.proxy.stats.snapshot()})  # fmt: skip
