"""Export streams: a batch of many files is listed page by page and the run keeps no record per
file (counted with ``gc`` at every page the listing asks for, against a real server)."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from anyio.streams.memory import MemoryObjectReceiveStream

from batchflow.client import BatchClient, ByteSink
from batchflow.export import FileOutcome, export_batches
from batchflow.ingest import IngestOptions, ingest
from batchflow.protocol import FileMetadata, ListFilesResponse
from tests.ingest.conftest import settings_for, wait_staged
from tests.server_fixture import ServerHandle

FILES = 300
PAGE = 10


def _live(kind: type) -> int:
    return sum(1 for obj in gc.get_objects() if type(obj) is kind)


class PagedSource:
    """A FileSource over a real client, small pages; counts what is alive at each page fetch."""

    def __init__(self, client: BatchClient) -> None:
        self.client = client
        self.pages = 0
        self.most_outcomes = 0
        self.most_metadata = 0

    async def _page(self, batch_id: str, token: str | None) -> ListFilesResponse:
        self.pages += 1
        self.most_outcomes = max(self.most_outcomes, _live(FileOutcome))
        self.most_metadata = max(self.most_metadata, _live(FileMetadata))
        return await self.client.list_files(batch_id, page_size=PAGE, page_token=token)

    @asynccontextmanager
    async def iter_files(
        self, batch_id: str, /
    ) -> AsyncIterator[MemoryObjectReceiveStream[FileMetadata]]:
        async with self.client.paginate(
            lambda token: self._page(batch_id, token),
            lambda page: page.files_metadata,
            lambda page: page.next_page_token,
            buffer=PAGE,
        ) as receive:
            yield receive

    async def download(self, url: str, dest: ByteSink, *, start: int = 0) -> int:
        return await self.client.download(url, dest, start=start)


@pytest.mark.anyio
async def test_export_of_many_files_holds_about_one_page_never_all_of_them(
    server_factory: Callable[..., ServerHandle], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BATCHFLOW_STATE_DIR", str(tmp_path / "state"))
    server = server_factory()
    root = tmp_path / "imgs"
    root.mkdir()
    for i in range(FILES):
        (root / f"img{i:04d}.jpg").write_bytes(b"\xff\xd8\xff" + i.to_bytes(4, "big"))
    staged = await ingest(
        str(root), IngestOptions(batch_id="many", tar_size=100), settings=settings_for(server)
    )
    assert staged.ok, staged.as_dict()
    assert len(wait_staged(server, "many", FILES)) == FILES

    async with BatchClient(settings_for(server)) as client:
        source = PagedSource(client)
        summary = await export_batches(source, ["many"], tmp_path / "out", concurrency=2)
    assert (summary.downloaded, summary.failed) == (FILES, 0)
    assert len(list((tmp_path / "out" / "many").iterdir())) == FILES
    assert source.pages >= FILES // PAGE  # it was listed page by page
    # What is alive when the next page is asked for: files in flight, never one per file done.
    assert source.most_outcomes <= PAGE, source.most_outcomes
    assert source.most_metadata <= 4 * PAGE, source.most_metadata
