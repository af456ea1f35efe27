"""BatchClient against a scripted API (httpx.MockTransport): the protocol's edge cases."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream

from batchflow.client import USER_AGENT, BatchClient
from batchflow.config import RetryPolicy
from batchflow.errors import (
    AuthError,
    ConflictError,
    LocalFileError,
    NetworkError,
    NotFoundError,
    PermanentError,
    RateLimitedError,
    RetriesExhausted,
    UsageError,
)
from batchflow.protocol import (
    ComputeConfiguration,
    JobDefinition,
    JobInput,
    ProcessingSpecification,
    Reference,
    RestartOverrides,
)
from batchflow.testing import FakeClock
from tests.client._fakes import BP, DS, Api, make

BATCH = {
    "displayName": "b1",
    "batchId": "b1",
    "batchType": "simple-batch",
    "batchContentType": "images",
    "createdDate": "2026-01-01T00:00:00Z",
    "expiryDate": "2026-01-08T00:00:00Z",
}


async def drain(streams: AbstractAsyncContextManager[MemoryObjectReceiveStream[Any]]) -> int:
    """Consume a paginated stream to the end; return how many items came."""
    async with streams as receive:
        return len([item async for item in receive])


def file_meta(i: int) -> dict[str, object]:
    return {
        "downloadURL": f"http://blobs.test/f{i}",
        "fileName": f"f{i}.jpg",
        "contentType": "image/jpeg",
    }


@pytest.mark.anyio
async def test_workspace_is_discovered_once(api: Api) -> None:
    api.on("GET", f"{DS}/batches/b1", httpx.Response(200, json={"batch": BATCH}))
    api.on("GET", f"{DS}/batches/b1/count", httpx.Response(200, json={"count": 12}))
    async with make(api) as client:
        assert await client.workspace() == "ws"
        batch = await client.get_batch("b1")
        assert batch.batch_id == "b1"
        assert await client.count("b1") == 12
        assert await client.count("b1", part_name="p1") == 12
    assert len(api.calls("GET", "/")) == 1
    assert api.calls("GET", f"{DS}/batches/b1/count")[1].url.params["partName"] == "p1"
    assert api.requests[0].headers["user-agent"] == USER_AGENT


@pytest.mark.anyio
async def test_query_auth_by_default(api: Api) -> None:
    api.on("GET", f"{DS}/batches/b1/parts", httpx.Response(200, json={"batchParts": []}))
    async with make(api) as client:
        assert await client.parts("b1") == []
    for request in api.requests:
        assert request.url.params["api_key"] == "sekret"
        assert "authorization" not in request.headers


@pytest.mark.anyio
async def test_header_auth_keeps_key_out_of_urls(api: Api) -> None:
    api.on("GET", f"{DS}/batches/b1/parts", httpx.Response(200, json={"batchParts": []}))
    async with make(api, key_in_header=True) as client:
        await client.parts("b1")
    for request in api.requests:
        assert request.headers["authorization"] == "Bearer sekret"
        assert "api_key" not in request.url.params
        assert "sekret" not in str(request.url)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("on_disk", "declared", "fragment"),
    [
        (None, None, "No such file or directory"),  # gone before the size is known
        (None, 3, "No such file or directory"),  # gone before it is opened
        (b"abc", 2, "changed size"),  # grew since it was listed
        (b"abc", 4, "changed size"),  # shrank
    ],
)
async def test_a_file_body_that_cannot_be_read_fails_for_good_not_as_a_network_error(
    api: Api, tmp_path: Path, on_disk: bytes | None, declared: int | None, fragment: str
) -> None:
    api.on("PUT", "/o", httpx.Response(200))
    path = tmp_path / "clip.mp4"
    if on_disk is not None:
        path.write_bytes(on_disk)
    clock = FakeClock()
    async with make(api, clock=clock) as client:
        with pytest.raises(LocalFileError) as info:
            await client.put_signed("http://storage.test/o?sig=1", None, path, size=declared)
    assert str(path) in info.value.message
    assert fragment in info.value.message
    assert info.value.path == path
    assert clock.sleeps == []  # not retried


@pytest.mark.anyio
async def test_signed_urls_elsewhere_never_get_the_key(api: Api) -> None:
    api.on("PUT", "/bucket/obj", httpx.Response(200))
    async with make(api, key_in_header=True) as client:
        await client.put_signed(
            "http://storage.test/bucket/obj?sig=1", {"x-goog-meta": "1"}, b"abc"
        )
    put = api.calls("PUT", "/bucket/obj")[0]
    assert "authorization" not in put.headers
    assert put.url.params["sig"] == "1"
    assert put.headers["x-goog-meta"] == "1"
    assert put.headers["content-length"] == "3"
    assert put.content == b"abc"


@pytest.mark.anyio
async def test_own_signed_urls_get_no_query_key(api: Api) -> None:
    """Adding ``api_key`` to a URL the server signed would break its signature."""
    api.on("GET", "/blobs/b1/x", httpx.Response(200, content=b"data"))
    api.on("PUT", "/blobs/b1/y", httpx.Response(200))
    async with make(api) as client:
        await client.download("http://api.test/blobs/b1/x?expires=1&sig=s", Sink())
        await client.put_signed("http://api.test/blobs/b1/y?sig=s", None, b"abc")
    for request in api.calls("GET", "/blobs/b1/x") + api.calls("PUT", "/blobs/b1/y"):
        assert "api_key" not in request.url.params
        assert request.url.params["sig"] == "s"
    async with make(api, key_in_header=True) as client:
        await client.download("http://api.test/blobs/b1/x?expires=1&sig=s", Sink())
    assert api.calls("GET", "/blobs/b1/x")[-1].headers["authorization"] == "Bearer sekret"


@pytest.mark.anyio
async def test_401_is_auth_error_not_retried(api: Api) -> None:
    api.on("GET", "/", httpx.Response(401, json={"error": "bad key"}))
    async with make(api) as client:
        with pytest.raises(AuthError, match="GET /: 401 bad key") as info:
            await client.workspace()
    assert "sekret" not in str(info.value)
    assert len(api.requests) == 1


@pytest.mark.anyio
async def test_retry_on_503_with_retry_after(api: Api) -> None:
    clock = FakeClock()
    busy = httpx.Response(503, json={"error": "busy"}, headers={"Retry-After": "2"})
    api.on("GET", f"{DS}/batches/b1", busy, busy, httpx.Response(200, json={"batch": BATCH}))
    async with make(api, clock=clock) as client:
        assert (await client.get_batch("b1")).batch_id == "b1"
    assert clock.sleeps == [2.0, 2.0]
    assert len(api.calls("GET", f"{DS}/batches/b1")) == 3


@pytest.mark.anyio
async def test_retry_on_429_and_connection_reset(api: Api) -> None:
    clock = FakeClock()
    api.on(
        "GET",
        f"{DS}/batches",
        httpx.Response(429, json={"error": "slow down"}, headers={"Retry-After": "1"}),
        httpx.ReadError("connection reset by peer"),
        httpx.Response(200, json={"batches": [BATCH]}),
    )
    async with make(api, clock=clock) as client:
        page = await client.list_batches(page_size=10)
    assert [b.batch_id for b in page.batches] == ["b1"]
    assert clock.sleeps[0] == 1.0
    assert len(clock.sleeps) == 2
    assert api.calls("GET", f"{DS}/batches")[0].url.params["pageSize"] == "10"


@pytest.mark.anyio
async def test_retries_are_bounded(api: Api) -> None:
    api.on("GET", f"{DS}/batches/b1", httpx.ConnectError("refused"))
    async with make(api, retry=RetryPolicy(max_attempts=3, base_delay=0.01)) as client:
        with pytest.raises(NetworkError, match="refused"):
            await client.get_batch("b1")
    assert len(api.calls("GET", f"{DS}/batches/b1")) == 3


@pytest.mark.anyio
async def test_deadline_stops_retrying(api: Api) -> None:
    busy = httpx.Response(503, json={"error": "busy"}, headers={"Retry-After": "50"})
    api.on("GET", f"{DS}/batches/b1", busy)
    policy = RetryPolicy(max_attempts=10, deadline=120.0)
    async with make(api, retry=policy) as client:
        with pytest.raises(RetriesExhausted) as info:
            await client.get_batch("b1")
    assert isinstance(info.value.__cause__, RateLimitedError)
    assert info.value.exit_code == 75
    assert len(api.calls("GET", f"{DS}/batches/b1")) == 3


@pytest.mark.anyio
async def test_iter_files_walks_three_pages(api: Api) -> None:
    def pages(request: httpx.Request) -> httpx.Response:
        token = request.url.params.get("nextPageToken")
        start = {None: 0, "t1": 3, "t2": 6}[token]
        body: dict[str, object] = {"filesMetadata": [file_meta(i) for i in range(start, start + 3)]}
        if start < 6:
            body["nextPageToken"] = f"t{start // 3 + 1}"
        return httpx.Response(200, json=body)

    api.on("GET", f"{DS}/batches/b1/list", pages)
    async with make(api) as client, client.iter_files("b1", page_size=3, buffer=1) as files:
        names = [f.file_name async for f in files]
    assert names == [f"f{i}.jpg" for i in range(9)]
    calls = api.calls("GET", f"{DS}/batches/b1/list")
    assert [c.url.params.get("nextPageToken") for c in calls] == [None, "t1", "t2"]
    assert all(c.url.params["pageSize"] == "3" for c in calls)


@pytest.mark.anyio
async def test_leaving_iteration_early_stops_the_producer(api: Api) -> None:
    def endless(request: httpx.Request) -> httpx.Response:
        n = int(request.url.params.get("nextPageToken") or 0)
        body = {
            "filesMetadata": [file_meta(n * 10 + i) for i in range(10)],
            "nextPageToken": str(n + 1),
        }
        return httpx.Response(200, json=body)

    api.on("GET", f"{DS}/batches/b1/list", endless)
    with anyio.fail_after(5):
        async with make(api) as client:
            async with client.iter_files("b1", buffer=0) as files:
                first = [await files.receive() for _ in range(15)]
            assert len(first) == 15
    assert len(api.calls("GET", f"{DS}/batches/b1/list")) <= 3


@pytest.mark.anyio
async def test_failing_page_raises_from_the_block(api: Api) -> None:
    api.on(
        "GET",
        f"{BP}/jobs",
        httpx.Response(200, json={"jobs": [], "nextPageToken": "t1"}),
        httpx.Response(404, json={"error": "workspace gone"}),
    )
    async with make(api) as client:
        with pytest.raises(NotFoundError, match="workspace gone"):
            await drain(client.iter_jobs())


@pytest.mark.anyio
async def test_consumer_error_inside_the_block_is_raised_as_itself(api: Api) -> None:
    body = {"batches": [BATCH], "nextPageToken": "t"}
    api.on("GET", f"{DS}/batches", httpx.Response(200, json=body))

    async def use(client: BatchClient) -> None:
        async with client.iter_batches() as batches:
            await batches.receive()
            raise KeyError("mine")

    async with make(api) as client:
        with pytest.raises(KeyError, match="mine"):
            await use(client)


@pytest.mark.anyio
async def test_repeated_page_token_is_an_error(api: Api) -> None:
    api.on(
        "GET",
        f"{DS}/batches/b1/shards",
        httpx.Response(200, json={"shards": [], "nextPageToken": "same"}),
    )
    async with make(api) as client:
        with pytest.raises(PermanentError, match="pagination loop"):
            await drain(client.iter_shards("b1"))


@pytest.mark.anyio
@pytest.mark.parametrize(
    "body",
    [b"<html>hello</html>", b'{"batch": {"batchId": 3}}', b"[1, 2]", b""],
)
async def test_garbage_answers_are_permanent_errors(api: Api, body: bytes) -> None:
    api.on(
        "GET",
        f"{DS}/batches/b1",
        httpx.Response(200, content=body, headers={"content-type": "text/html"}),
    )
    async with make(api) as client:
        with pytest.raises(PermanentError, match=f"unexpected answer from GET {DS}/batches/b1"):
            await client.get_batch("b1")
    assert len(api.calls("GET", f"{DS}/batches/b1")) == 1


@pytest.mark.anyio
async def test_ingest_body_field_names(api: Api) -> None:
    api.on(
        "POST",
        f"{DS}/batches/b1/bulk-upload/image-references",
        httpx.Response(200, json={"ingestId": "abc", "shardIds": ["s1"], "duplicated": False}),
    )
    async with make(api) as client:
        answer = await client.ingest_image_references(
            "b1",
            [
                Reference(name="a/x.jpg", url="https://s3/x"),
                {"name": "b/x.jpg", "url": "https://s3/y"},
            ],
            ingest_id="abc",
            notifications_url="https://hook.test/n",
            categories=["ingest-status", "files-status"],
            display_name="My batch",
        )
    assert answer.ingest_id == "abc"
    assert answer.shard_ids == ["s1"]
    request = api.calls("POST", f"{DS}/batches/b1/bulk-upload/image-references")[0]
    assert json.loads(request.content) == {
        "imageReferences": [
            {"name": "a/x.jpg", "url": "https://s3/x"},
            {"name": "b/x.jpg", "url": "https://s3/y"},
        ],
        "ingestId": "abc",
        "notificationsURL": "https://hook.test/n",
        "notificationCategories": ["ingest-status", "files-status"],
    }
    assert request.url.params["displayName"] == "My batch"


@pytest.mark.anyio
async def test_video_ingest_by_url(api: Api) -> None:
    api.on(
        "POST",
        f"{DS}/batches/v1/bulk-upload/video-references",
        httpx.Response(200, json={"ingestId": "i"}),
    )
    async with make(api) as client:
        await client.ingest_video_references("v1", refs_url="https://x/refs.jsonl")
        with pytest.raises(UsageError, match="either"):
            await client.ingest_video_references("v1")
        with pytest.raises(UsageError, match="invalid batch id"):
            await client.ingest_video_references("Bad Id", refs_url="https://x")
    request = api.calls("POST", f"{DS}/batches/v1/bulk-upload/video-references")[0]
    assert json.loads(request.content) == {"videoReferencesURL": "https://x/refs.jsonl"}


@pytest.mark.anyio
async def test_ingest_retry_depends_on_ingest_id(api: Api) -> None:
    path = f"{DS}/batches/b1/bulk-upload/image-references"
    ok = httpx.Response(200, json={"ingestId": "x", "duplicated": True})
    busy = httpx.Response(503, json={"error": "busy"})
    api.on("POST", path, busy, ok)
    async with make(api) as client:
        assert (await client.ingest_image_references("b1", refs_url="u", ingest_id="x")).duplicated
        api.on("POST", path, busy, ok)
        with pytest.raises(RateLimitedError):  # no ingest id: a 503 may have been processed
            await client.ingest_image_references("b1", refs_url="u")
        api.on("POST", path, httpx.ConnectError("refused"), ok)
        await client.ingest_image_references("b1", refs_url="u")  # never sent: safe to retry
    assert len(api.calls("POST", path)) == 5


@pytest.mark.anyio
async def test_too_many_references_refused_locally(api: Api) -> None:
    refs = [{"name": f"{i}.jpg", "url": "u"} for i in range(20_001)]
    async with make(api) as client:
        with pytest.raises(UsageError, match="limit is 20000"):
            await client.ingest_image_references("b1", refs)
    assert api.calls("POST", f"{DS}/batches/b1/bulk-upload/image-references") == []


def _definition() -> JobDefinition:
    return JobDefinition(
        type="simple-image-processing-v1",
        job_input=JobInput(batch_id="b1"),
        compute_configuration=ComputeConfiguration(machine_type="gpu", workers_per_machine=2),
        processing_specification=ProcessingSpecification(workspace="ws", workflow_id="wf"),
        notifications_url="https://hook.test/j",
    )


@pytest.mark.anyio
async def test_create_job_body_and_retry(api: Api) -> None:
    path = f"{BP}/jobs/job-1"
    api.on("POST", path, httpx.Response(500, json={"error": "oops"}), httpx.Response(200, json={}))
    async with make(api) as client:
        assert await client.create_job("job-1", _definition(), name="nightly") == "job-1"
    calls = api.calls("POST", path)
    assert len(calls) == 2
    assert calls[0].content == calls[1].content
    body = json.loads(calls[1].content)
    assert body["type"] == "simple-image-processing-v1"
    assert body["jobInput"] == {"type": "staging-batch-input-v1", "batchId": "b1"}
    assert body["computeConfiguration"]["machineType"] == "gpu"
    assert body["computeConfiguration"]["workersPerMachine"] == 2
    assert body["processingSpecification"]["workflowId"] == "wf"
    assert body["notificationsURL"] == "https://hook.test/j"
    assert calls[1].url.params["name"] == "nightly"


@pytest.mark.anyio
async def test_create_job_without_id_makes_one_and_maps_conflict(api: Api) -> None:
    api.on("POST", f"{BP}/jobs/job-x", httpx.Response(409, json={"error": "job id reused"}))
    async with make(api) as client:
        with pytest.raises(ConflictError, match="reused"):
            await client.create_job("job-x", {"type": "trt-compilation-v1", "modelId": "m/1"})
        with pytest.raises(NotFoundError):  # generated id has no route in the script
            await client.create_job(None, _definition())
    # exact path: a generated id may itself start with "job-x" (1 in 36)
    generated = [r for r in api.requests if r.method == "POST" and r.url.path != f"{BP}/jobs/job-x"]
    assert generated[0].url.path.startswith(f"{BP}/jobs/job-")
    assert len(generated[0].url.path.rsplit("/", 1)[1]) == 16
    assert json.loads(api.calls("POST", f"{BP}/jobs/job-x")[0].content)["modelId"] == "m/1"


@pytest.mark.anyio
async def test_restart_without_overrides_sends_no_body(api: Api) -> None:
    path = f"{BP}/jobs/job-1/restart"
    api.on("POST", path, httpx.Response(200, json={}))
    async with make(api) as client:
        await client.restart("job-1")
        await client.restart("job-1", RestartOverrides(max_parallel_tasks=2))
    bare, with_body = api.calls("POST", path)
    assert bare.content == b""
    assert "content-type" not in bare.headers
    assert bare.headers.get("content-length", "0") == "0"
    assert json.loads(with_body.content) == {
        "type": "parameters-override-v1",
        "maxParallelTasks": 2,
    }


@pytest.mark.anyio
async def test_job_reads_abort_and_logs(api: Api) -> None:
    job = {
        "jobId": "job-1",
        "name": "n",
        "jobDefinition": {},
        "createdAt": "2026-01-01T00:00:00Z",
        "lastUpdate": "2026-01-01T00:00:00Z",
        "isTerminal": True,
    }
    stage = {
        "processingStageId": "processing",
        "processingStageName": "Processing",
        "tasksNumber": 1,
        "outputBatches": ["out-1"],
        "startTimestamp": "2026-01-01T00:00:00Z",
        "notification": "done",
        "statusType": "success",
        "lastEventTimestamp": "2026-01-01T00:00:00Z",
    }
    task = {
        "taskId": "t0",
        "notification": {},
        "statusType": "success",
        "eventTimestamp": "2026-01-01T00:00:00Z",
    }
    log = {
        "createdAt": "2026-01-01T00:00:00Z",
        "severity": "error",
        "reportingModule": "m",
        "logType": "x",
        "payload": {"a": 1},
    }
    api.on("GET", f"{BP}/jobs/job-1", httpx.Response(200, json={"job": job}))
    api.on("GET", f"{BP}/jobs/job-1/stages", httpx.Response(200, json={"stages": [stage]}))
    api.on(
        "GET",
        f"{BP}/jobs/job-1/stages/processing/tasks",
        httpx.Response(200, json={"tasks": [task]}),
    )
    api.on("GET", f"{BP}/jobs/job-1/logs", httpx.Response(200, json={"logs": [log]}))
    api.on("POST", f"{BP}/jobs/job-1/abort", httpx.Response(503), httpx.Response(200, json={}))
    async with make(api) as client:
        assert (await client.get_job("job-1")).is_terminal
        stages = await client.stages("job-1")
        assert stages[0].output_batches == ["out-1"]
        async with client.iter_tasks("job-1", "processing") as tasks:
            assert [t.task_id async for t in tasks] == ["t0"]
        async with client.iter_logs("job-1", severity="error") as logs:
            assert [entry.payload async for entry in logs] == [{"a": 1}]
        await client.abort("job-1")
    assert api.calls("GET", f"{BP}/jobs/job-1/logs")[0].url.params["severity"] == "error"
    assert len(api.calls("POST", f"{BP}/jobs/job-1/abort")) == 2


@pytest.mark.anyio
async def test_upload_image_multipart(api: Api, tmp_path: Path) -> None:
    path = f"{DS}/batches/b1/upload/image"
    api.on("POST", path, httpx.Response(200, json={}))
    image = tmp_path / "cat.png"
    image.write_bytes(b"\x89PNG" + bytes(range(256)) * 2000)

    async def chunks() -> AsyncIterator[bytes]:
        yield b"abc"
        yield b"def"

    async with make(api) as client:
        await client.upload_image("b1", "dir/cat.png", image, display_name="d")
        await client.upload_image("b1", "raw.jpg", b"JPEGDATA")
        await client.upload_image("b1", "stream.jpg", chunks())
    from_path, from_bytes, from_stream = api.calls("POST", path)
    assert from_path.url.params["fileName"] == "dir/cat.png"
    assert from_path.url.params["displayName"] == "d"
    for request, name, kind, data in (
        (from_path, "cat.png", "image/png", image.read_bytes()),
        (from_bytes, "raw.jpg", "image/jpeg", b"JPEGDATA"),
        (from_stream, "stream.jpg", "image/jpeg", b"abcdef"),
    ):
        content_type = request.headers["content-type"]
        assert content_type.startswith("multipart/form-data; boundary=")
        boundary = content_type.split("boundary=")[1].encode()
        body = request.content
        head = (
            f'Content-Disposition: form-data; name="file"; filename="{name}"\r\n'
            f"Content-Type: {kind}\r\n\r\n"
        )
        assert (
            body
            == b"--" + boundary + b"\r\n" + head.encode() + data + b"\r\n--" + boundary + b"--\r\n"
        )
    assert int(from_path.headers["content-length"]) == len(from_path.content)
    assert int(from_bytes.headers["content-length"]) == len(from_bytes.content)


@pytest.mark.anyio
async def test_video_upload_flow(api: Api, tmp_path: Path) -> None:
    api.on(
        "POST",
        f"{DS}/batches/b1/upload/video",
        httpx.Response(
            200,
            json={
                "signedURLDetails": {
                    "uploadURL": "http://storage.test/v/1?sig=s",
                    "extensionHeaders": {"x-h": "v"},
                }
            },
        ),
    )
    api.on("PUT", "/v/1", httpx.Response(503), httpx.Response(200))
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00" * 300_000)
    async with make(api) as client:
        details = await client.upload_video("b1", "clip.mp4", video)
    assert details.extension_headers == {"x-h": "v"}
    puts = api.calls("PUT", "/v/1")
    assert len(puts) == 2  # a file body is replayable: retried
    assert puts[1].content == video.read_bytes()
    assert puts[1].headers["x-h"] == "v"


@pytest.mark.anyio
async def test_bulk_image_upload_url(api: Api) -> None:
    answer = {"signedURLDetails": {"uploadURL": "http://storage.test/t.tar"}}
    api.on("POST", f"{DS}/batches/b1/bulk-upload/image-files", httpx.Response(200, json=answer))
    async with make(api) as client:
        details = await client.start_bulk_image_upload("b1", display_name="x")
    assert details.upload_url == "http://storage.test/t.tar"
    assert details.extension_headers == {}


class FailingStream(httpx.AsyncByteStream):
    """Sends ``data[:cut]`` then fails like a dropped connection."""

    def __init__(self, data: bytes, cut: int) -> None:
        self.data = data
        self.cut = cut

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.data[: self.cut // 2]
        yield self.data[self.cut // 2 : self.cut]
        raise httpx.ReadError("connection reset")


class Sink:
    def __init__(self) -> None:
        self.data = bytearray()

    async def write(self, data: bytes) -> int:
        self.data += data
        return len(data)


DATA = bytes(range(256)) * 400


@pytest.mark.anyio
async def test_download_resumes_with_range(api: Api) -> None:
    def serve(request: httpx.Request) -> httpx.Response:
        wanted = request.headers.get("range")
        if wanted is None:
            return httpx.Response(200, stream=FailingStream(DATA, 40_000))
        start = int(wanted.removeprefix("bytes=").rstrip("-"))
        return httpx.Response(
            206,
            content=DATA[start:],
            headers={"Content-Range": f"bytes {start}-{len(DATA) - 1}/{len(DATA)}"},
        )

    api.on("GET", "/out/result.zip", serve)
    sink = Sink()
    async with make(api) as client:
        written = await client.download("http://blobs.test/out/result.zip?sig=1", sink)
    assert written == len(DATA)
    assert bytes(sink.data) == DATA
    first, second = api.calls("GET", "/out/result.zip")
    assert "range" not in first.headers
    assert second.headers["range"] == "bytes=40000-"


@pytest.mark.anyio
async def test_download_from_offset_and_server_ignoring_range(api: Api) -> None:
    api.on("GET", "/f", httpx.Response(200, content=DATA))
    sink = Sink()
    async with make(api) as client:
        written = await client.download("http://blobs.test/f", sink, start=1000)
        assert written == len(DATA) - 1000
        assert bytes(sink.data) == DATA[1000:]
        api.on("GET", "/f", httpx.Response(416))
        assert await client.download("http://blobs.test/f", sink, start=len(DATA)) == 0
        api.on(
            "GET", "/f", httpx.Response(206, content=b"x", headers={"Content-Range": "bytes 5-5/9"})
        )
        with pytest.raises(PermanentError, match="Content-Range"):
            await client.download("http://blobs.test/f", sink, start=3)
        api.on("GET", "/f", httpx.Response(404, json={"error": "expired"}))
        with pytest.raises(NotFoundError, match="expired"):
            await client.download("http://blobs.test/f", sink)


@pytest.mark.anyio
async def test_client_needs_context_manager(api: Api) -> None:
    client = make(api)
    with pytest.raises(RuntimeError, match="async with"):
        await client.workspace()
