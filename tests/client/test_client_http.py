"""BatchClient over real HTTP (uvicorn on 127.0.0.1): bodies a real parser accepts, resumes.

A tiny Starlette app stands in for the parts of the API whose wire details matter here
(multipart parsing, streamed PUT bodies, a connection dropped mid-download); the full API is
covered by the integration tests against ``batchflow serve``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from batchflow.client import BatchClient
from batchflow.config import ClientSettings, RetryPolicy
from batchflow.errors import AuthError
from batchflow.testing import FakeClock
from tests.client._origin import run_app

DATA = bytes(range(256)) * 1000
UPLOAD = "/data-staging/v1/external/ws/batches/b1/upload/image"


@dataclass
class Seen:
    uploads: dict[str, tuple[str | None, str | None, bytes, list[str]]] = field(
        default_factory=dict
    )
    puts: dict[str, tuple[bytes, str | None]] = field(default_factory=dict)
    full_gets: int = 0
    ranges: list[str] = field(default_factory=list)


def build_app(seen: Seen) -> Starlette:
    async def root(request: Request) -> Response:
        if request.headers.get("authorization") != "Bearer k":
            return JSONResponse({"error": "bad key"}, status_code=401)
        return JSONResponse({"workspace": "ws"})

    async def upload(request: Request) -> Response:
        async with request.form() as form:
            files = [v for v in form.values() if isinstance(v, UploadFile)]
            if len(files) != 1:
                return JSONResponse({"error": "one file part expected"}, status_code=400)
            data = await files[0].read()
            seen.uploads[request.query_params["fileName"]] = (
                files[0].filename,
                files[0].content_type,
                data,
                list(form.keys()),
            )
        return JSONResponse({})

    async def put(request: Request) -> Response:
        body = b"".join([chunk async for chunk in request.stream()])
        seen.puts[request.path_params["name"]] = (body, request.headers.get("content-length"))
        return Response(status_code=200)

    async def blob(request: Request) -> Response:
        wanted = request.headers.get("range")
        if wanted is None:
            seen.full_gets += 1
            if seen.full_gets == 1:

                async def dropped() -> AsyncIterator[bytes]:
                    yield DATA[:50_000]
                    raise RuntimeError("simulated crash in the middle of the body")

                return StreamingResponse(dropped(), headers={"content-length": str(len(DATA))})
            return Response(DATA)
        seen.ranges.append(wanted)
        start = int(wanted.removeprefix("bytes=").rstrip("-"))
        return Response(
            DATA[start:],
            status_code=206,
            headers={"content-range": f"bytes {start}-{len(DATA) - 1}/{len(DATA)}"},
        )

    return Starlette(
        routes=[
            Route("/", root),
            Route(UPLOAD, upload, methods=["POST"]),
            Route("/put/{name}", put, methods=["PUT"]),
            Route("/blob", blob),
        ]
    )


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, Seen]]:
    seen = Seen()
    with run_app(build_app(seen)) as base:
        yield base, seen


def client(base: str, key: str = "k") -> BatchClient:
    settings = ClientSettings(
        api_url=base,
        api_key=key,
        key_in_header=True,
        retry=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.01, deadline=30),
    )
    return BatchClient(settings, clock=FakeClock())


@pytest.mark.anyio
async def test_multipart_uploads_parse_on_a_real_server(
    served: tuple[str, Seen], tmp_path: Path
) -> None:
    base, seen = served
    image = tmp_path / "big.png"
    image.write_bytes(DATA * 3)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(DATA), 7000):
            yield DATA[i : i + 7000]

    async with client(base) as c:
        await c.upload_image("b1", "photos/big.png", image)
        await c.upload_image("b1", 'odd "name".jpg', b"\xff\xd8jpeg")
        await c.upload_image("b1", "streamed.jpg", chunks())
    assert seen.uploads["photos/big.png"] == ("big.png", "image/png", DATA * 3, ["file"])
    assert seen.uploads['odd "name".jpg'][2] == b"\xff\xd8jpeg"
    assert seen.uploads["streamed.jpg"][2] == DATA


@pytest.mark.anyio
async def test_streamed_put_with_and_without_size(served: tuple[str, Seen]) -> None:
    base, seen = served

    async def chunks() -> AsyncIterator[bytes]:
        yield DATA[:1000]
        yield DATA[1000:]

    async with client(base) as c:
        await c.put_signed(f"{base}/put/sized", {}, chunks(), size=len(DATA))
        await c.put_signed(f"{base}/put/chunked", None, chunks())
    assert seen.puts["sized"] == (DATA, str(len(DATA)))
    assert seen.puts["chunked"][0] == DATA


class Sink:
    def __init__(self) -> None:
        self.data = bytearray()

    async def write(self, data: bytes) -> int:
        self.data += data
        return len(data)


@pytest.mark.anyio
async def test_download_resumes_after_a_dropped_connection(served: tuple[str, Seen]) -> None:
    base, seen = served
    sink = Sink()
    async with client(base) as c:
        written = await c.download(f"{base}/blob", sink)
    assert written == len(DATA)
    assert bytes(sink.data) == DATA
    assert seen.full_gets == 1
    assert len(seen.ranges) == 1
    assert int(seen.ranges[0].removeprefix("bytes=").rstrip("-")) > 0


@pytest.mark.anyio
async def test_wrong_key_is_an_auth_error(served: tuple[str, Seen]) -> None:
    base, _ = served
    async with client(base, key="wrong") as c:
        with pytest.raises(AuthError, match="bad key"):
            await c.workspace()
