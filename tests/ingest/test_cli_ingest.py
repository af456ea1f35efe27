"""``batchflow ingest`` / ``batchflow sign`` from the command line: bad input gives one line and
its documented exit code, never a traceback; sign writes fetchable references."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import structlog
from click.testing import CliRunner, Result

from batchflow.cli._app import cli
from batchflow.ingest import run as run_module
from tests._procs import free_port
from tests.client._origin import run_app
from tests.emulators import MotoS3, apply_env
from tests.ingest.conftest import wait_staged
from tests.server_fixture import ServerHandle


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def assert_one_line(result: Result, code: int, fragment: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ") or lines[0].startswith("Error: "), lines
    assert fragment in lines[0], lines
    assert "Traceback" not in result.output


@pytest.fixture
def nowhere(monkeypatch: pytest.MonkeyPatch) -> str:
    """An API URL nobody listens on (tests that must fail before any call)."""
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("API_BASE_URL", url)
    monkeypatch.setenv("BATCHFLOW_API_KEY", "k")
    return url


@pytest.fixture
def no_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "imgs"
    (root / "a").mkdir(parents=True)
    for i in range(5):
        (root / "a" / f"{i}.jpg").write_bytes(b"img%d" % i)
    return root


@pytest.mark.parametrize(
    ("extra", "code", "fragment"),
    [
        (["--batch-id", "Not Valid"], 2, "invalid batch id"),
        (["--batch-id", "b", "--tar-size", "501"], 2, "--tar-size"),
        (["--batch-id", "b", "--url-ttl", "8d"], 2, "7-day"),
        (["--batch-id", "b", "--url-ttl", "soon"], 2, "duration"),
    ],
)
def test_bad_flags(nowhere: str, folder: Path, extra: list[str], code: int, fragment: str) -> None:
    assert_one_line(invoke("ingest", str(folder), *extra), code, fragment)


def test_missing_folder_is_not_found(nowhere: str, tmp_path: Path) -> None:
    assert_one_line(invoke("ingest", str(tmp_path / "nope"), "--batch-id", "b"), 3, "not found")


def test_bad_glob(nowhere: str, no_aws: None) -> None:
    assert_one_line(invoke("ingest", "s3://bucket/data/[abc", "--batch-id", "b"), 2, "bad glob")


def test_missing_credentials(nowhere: str, no_aws: None) -> None:
    result = invoke("ingest", "s3://bucket/data/", "--batch-id", "b")
    assert_one_line(result, 2, "no AWS credentials")


def test_unreachable_api(nowhere: str, folder: Path) -> None:
    result = invoke("ingest", str(folder), "--batch-id", "b")
    assert_one_line(result, 75, "127.0.0.1")


async def _always_busy(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI API that answers every request 503 with a Retry-After past any retry budget."""
    headers = [(b"content-type", b"application/json"), (b"retry-after", b"30")]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": b'{"error": "busy"}'})


def test_running_out_of_retries_is_retryable_not_a_deadline(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The preflight's retry budget (10 s) is smaller than the Retry-After asked for: the client
    # gives up at once. No deadline of the user's ran out, so this is 75 ("run again"), not 8.
    with run_app(_always_busy) as url:
        monkeypatch.setenv("API_BASE_URL", url)
        monkeypatch.setenv("BATCHFLOW_API_KEY", "k")
        result = invoke("ingest", str(folder), "--batch-id", "b")
    assert_one_line(result, 75, "503 busy")
    assert "gave up after 1 attempt(s)" in result.stderr


def test_unknown_bucket(
    ingest_server: ServerHandle, moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_env(monkeypatch, moto_s3.env)
    monkeypatch.setenv("API_BASE_URL", ingest_server.base_url)
    monkeypatch.setenv("BATCHFLOW_API_KEY", ingest_server.api_key)
    result = invoke("ingest", "s3://no-such-bucket-here/x/", "--batch-id", "b")
    assert_one_line(result, 3, "no-such-bucket-here")


def test_changed_parameters_need_restart(
    ingest_server: ServerHandle, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("API_BASE_URL", ingest_server.base_url)
    monkeypatch.setenv("BATCHFLOW_API_KEY", ingest_server.api_key)
    first = invoke("ingest", str(folder), "--batch-id", "cli-plan", "--tar-size", "2")
    assert first.exit_code == 0, first.output
    assert "shards: 3 total, 3 sent" in first.stdout
    changed = invoke("ingest", str(folder), "--batch-id", "cli-plan", "--tar-size", "3")
    assert_one_line(changed, 2, "--restart")
    restarted = invoke(
        "ingest", str(folder), "--batch-id", "cli-plan", "--tar-size", "3", "--restart", "--json"
    )
    assert restarted.exit_code == 0, restarted.output
    assert json.loads(restarted.stdout.splitlines()[-1])["shards"]["total"] == 2


def test_dry_run_needs_no_api(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("API_BASE_URL", raising=False)
    monkeypatch.delenv("BATCHFLOW_API_URL", raising=False)
    result = invoke(
        "ingest", str(folder), "--batch-id", "b", "--tar-size", "2", "--dry-run", "--json"
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["status"] for e in lines if e.get("event") == "shard"] == ["planned"] * 3
    assert lines[-1]["dryRun"] is True
    assert lines[-1]["filesSent"] == 0


def test_dry_run_that_would_skip_items_exits_6_like_a_real_run(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("API_BASE_URL", raising=False)
    monkeypatch.delenv("BATCHFLOW_API_URL", raising=False)
    (folder / "huge.jpg").write_bytes(b"\0" * (20 * 1024 * 1024 + 1))  # over the image limit
    result = invoke("ingest", str(folder), "--batch-id", "b", "--dry-run", "--json")
    assert result.exit_code == 6, (result.exit_code, result.output, result.exception)
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["dryRun"] is True
    assert summary["skipped"] == 1, summary
    assert summary["filesSent"] == 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: dry run: 1 item(s) would be skipped"), lines


def test_sign_writes_fetchable_references(
    moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    apply_env(monkeypatch, moto_s3.env)
    bucket = moto_s3.create_bucket()
    client = moto_s3.client()
    bodies = {f"data/{d}/{i}.jpg": f"{d}{i}".encode() for d in ("a", "b/c") for i in range(10)}
    for key, body in bodies.items():
        client.put_object(Bucket=bucket, Key=key, Body=body)
    client.put_object(Bucket=bucket, Key="data/a/skip.txt", Body=b"no")
    out = tmp_path / "refs.jsonl"

    result = invoke("sign", f"s3://{bucket}/data/", "--url-ttl", "2h", "-o", str(out))
    assert result.exit_code == 0, result.output
    refs = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["name"] for r in refs) == sorted(k.removeprefix("data/") for k in bodies)
    with httpx.Client(trust_env=False, timeout=10) as http:
        for ref in refs[:5]:
            assert http.get(ref["url"]).content == bodies["data/" + ref["name"]]
    assert "X-Amz-Expires=7200" in refs[0]["url"]
    assert list(tmp_path.iterdir()) == [out]  # no temp file left behind

    monkeypatch.setenv("AWS_SESSION_TOKEN", "temporary-token")
    to_stdout = invoke("sign", f"s3://{bucket}/data/b/**")
    assert to_stdout.exit_code == 0, to_stdout.output
    assert len(to_stdout.stdout.splitlines()) == 10
    warnings = [line for line in to_stdout.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1
    assert "temporary credentials" in warnings[0]


def test_sign_refuses_local_folders_and_long_ttls(nowhere: str, folder: Path) -> None:
    assert_one_line(invoke("sign", str(folder)), 2, "bucket location")
    assert_one_line(invoke("sign", "s3://b/x/", "--url-ttl", "30d"), 2, "7-day")


def test_progress_line_shows_rate_and_eta_only_when_the_total_is_known() -> None:
    from batchflow.cli.ingest import progress_line
    from batchflow.ingest import IngestProgress

    running = IngestProgress(
        elapsed=10.0, listed=5000, matched=4000, skipped=1, shards_total=None, shards_done=2,
        shards_resumed=0, shards_failed=0, files_sent=2000, files_failed=0, bytes_sent=2048,
    )  # fmt: skip
    line = progress_line(running)
    assert "200 files/s" in line
    assert "shards 2/?" in line
    assert "ETA" not in line
    known = progress_line(replace(running, shards_total=4))
    assert "ETA 0:10" in known


class _BreaksAfterListing:
    """A source that, once its first page is listed, breaks ``victim`` (before any read)."""

    def __init__(self, inner: Any, victim: Path, *, into_dir: bool) -> None:
        self.inner, self.victim, self.into_dir = inner, victim, into_dir

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def list_pages(self, send: Any) -> None:
        relay_send, relay_recv = anyio.create_memory_object_stream[Any](1)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.inner.list_pages, relay_send)
            async with send, relay_recv:
                async for page in relay_recv:
                    if self.victim.is_file():
                        self.victim.unlink()
                        if self.into_dir:
                            self.victim.mkdir()
                    await send.send(page)


@pytest.mark.parametrize(
    ("videos", "into_dir"), [(True, False), (True, True), (False, False), (False, True)]
)
def test_a_file_that_breaks_after_listing_fails_alone_and_is_not_retried(
    ingest_server: ServerHandle,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    videos: bool,
    into_dir: bool,
) -> None:
    root = tmp_path / "media"
    root.mkdir()
    ext = "mp4" if videos else "jpg"
    for i in range(3):
        (root / f"f{i}.{ext}").write_bytes(b"data%d" % i * 100)
    victim = root / f"f1.{ext}"
    real_open = run_module.open_ingest_source
    monkeypatch.setattr(
        run_module,
        "open_ingest_source",
        lambda *a, **kw: _BreaksAfterListing(real_open(*a, **kw), victim, into_dir=into_dir),
    )
    monkeypatch.setenv("API_BASE_URL", ingest_server.base_url)
    monkeypatch.setenv("BATCHFLOW_API_KEY", ingest_server.api_key)
    batch = f"broken-{'v' if videos else 'i'}{int(into_dir)}"
    args = ["ingest", str(root), "--batch-id", batch, "--json"] + (["--videos"] if videos else [])
    with structlog.testing.capture_logs() as logs:
        result = invoke(*args)
    assert result.exit_code == 6, (result.exit_code, result.output, result.exception)
    assert [entry for entry in logs if entry["event"] == "retrying"] == []
    summary = json.loads(result.stdout.splitlines()[-1])
    assert (summary["filesSent"], summary["filesFailed"]) == (2, 1), summary
    [failure] = summary["failures"]
    assert failure["item"] == f"f1.{ext}", failure
    assert failure["type"] == "unreadable", failure
    reason = "Is a directory" if into_dir else "No such file or directory"
    assert str(victim) in failure["reason"], failure
    assert reason in failure["reason"], failure
    staged = wait_staged(ingest_server, batch, 2)
    assert sorted(str(f["fileName"]) for f in staged) == [f"f0.{ext}", f"f2.{ext}"]
    # the file is back: the same command stages it (the shorter tar had an id of its own)
    if into_dir:
        victim.rmdir()
    victim.write_bytes(b"data1" * 100)  # as listed before: the same shard and ingest id
    monkeypatch.setattr(run_module, "open_ingest_source", real_open)
    again = invoke(*args)
    assert again.exit_code == 0, (again.exit_code, again.output, again.exception)
    staged = wait_staged(ingest_server, batch, 3)
    assert sorted(str(f["fileName"]) for f in staged) == [f"f{i}.{ext}" for i in range(3)]
