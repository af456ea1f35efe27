"""``batchflow export`` of a batch (or a job) that holds no file: one clear line, exit 3, and
no target folder, unless ``--allow-empty``; against a real ``batchflow serve``."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from batchflow.protocol import Reference
from tests._procs import free_port
from tests.cli.conftest import api_args, invoke, make_client
from tests.server_fixture import ServerHandle


def stage_nothing(server: ServerHandle, batch_id: str) -> None:
    """A batch that exists but holds no file: its one reference points where nobody listens."""

    async def main() -> None:
        async with make_client(server) as client:
            url = f"http://127.0.0.1:{free_port()}/gone.jpg"
            await client.ingest_image_references(batch_id, [Reference(name="gone.jpg", url=url)])
            with anyio.fail_after(60):
                while True:
                    shards = (await client.list_shards(batch_id)).shards
                    if shards and all(s.status_name in ("completed", "failed") for s in shards):
                        break
                    await anyio.sleep(0.1)
            assert await client.count(batch_id) == 0

    anyio.run(main)


@pytest.fixture
def empty_batch(cli_server: ServerHandle, batch_id: str) -> str:
    stage_nothing(cli_server, batch_id)
    return batch_id


def test_export_of_an_empty_batch_exits_3_and_writes_nothing(
    cli_server: ServerHandle, empty_batch: str, tmp_path: Path
) -> None:
    target = tmp_path / "out"
    result = invoke("export", "--batch-id", empty_batch, "--target-dir", str(target),
                    *api_args(cli_server))  # fmt: skip
    assert result.exit_code == 3, result.stdout + result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: batch '{empty_batch}' has no files to export (use --allow-empty to accept that)"
    ]
    assert not target.exists()


def test_export_of_an_empty_batch_with_allow_empty_exits_0(
    cli_server: ServerHandle, empty_batch: str, tmp_path: Path
) -> None:
    target = tmp_path / "out"
    result = invoke("export", "--batch-id", empty_batch, "--target-dir", str(target), "--json",
                    "--allow-empty", *api_args(cli_server))  # fmt: skip
    assert result.exit_code == 0, result.stdout + result.stderr
    summary = result.json_lines()[-1]
    assert (summary["batches"], summary["downloaded"], summary["failed"]) == ([empty_batch], 0, 0)
    assert not target.exists()


def test_export_of_a_missing_batch_is_still_not_found(
    cli_server: ServerHandle, batch_id: str, tmp_path: Path
) -> None:
    result = invoke("export", "--batch-id", batch_id, "--target-dir", str(tmp_path / "out"),
                    "--allow-empty", *api_args(cli_server))  # fmt: skip
    assert result.exit_code == 3, result.stdout + result.stderr
    assert "no files to export" not in result.stderr


def test_export_of_a_job_whose_outputs_hold_no_file_exits_3(
    cli_server: ServerHandle, empty_batch: str, tmp_path: Path
) -> None:
    api = api_args(cli_server)
    job_id = "job-e" + empty_batch[-11:]
    ran = invoke("run", "--workflow-id", "image-metadata", "--batch-id", empty_batch,
                 "--job-id", job_id, "--wait", "--poll-interval", "0.2", "--wait-timeout", "120",
                 "--json", *api)  # fmt: skip
    assert ran.exit_code == 0, ran.stdout + ran.stderr  # a job over nothing succeeds...
    target = tmp_path / "out"
    result = invoke("export", "--job-id", job_id, "--target-dir", str(target), *api)
    assert result.exit_code == 3, result.stdout + result.stderr  # ...but exports nothing
    assert result.stderr.strip().splitlines() == [
        f"error: job '{job_id}' has no files to export (its output batch '{job_id}-export' "
        "is empty; use --allow-empty to accept that)"
    ]
    assert not target.exists()
