"""``batchflow batches ...`` against a real ``batchflow serve``: JSON and tables."""

from __future__ import annotations

import json

from tests.cli.conftest import api_args, invoke
from tests.cli.test_export_cli import payload, stage
from tests.server_fixture import ServerHandle


def test_batches_commands_print_json_and_tables(cli_server: ServerHandle, batch_id: str) -> None:
    files = {f"x/img_{i}.jpg": payload(i, 100 + i) for i in range(3)}
    stage(cli_server, batch_id, files)
    api = api_args(cli_server)

    listed = invoke("batches", "list", "--json", *api)
    assert listed.exit_code == 0, listed.stderr
    rows = listed.json_lines()
    mine = [row for row in rows if row["batchId"] == batch_id]
    assert len(mine) == 1
    assert mine[0]["batchType"] == "simple-batch"
    assert mine[0]["batchContentType"] == "images"

    shown = json.loads(invoke("batches", "show", batch_id, "--json", *api).stdout)
    assert shown["batchId"] == batch_id
    assert isinstance(shown["parts"], list)

    counted = json.loads(invoke("batches", "count", batch_id, "--json", *api).stdout)
    assert counted == {"batchId": batch_id, "partName": None, "count": 3}
    assert invoke("batches", "count", batch_id, *api).stdout.strip() == "3"

    listed_files = invoke("batches", "files", batch_id, "--json", *api).json_lines()
    assert {row["fileName"]: row["size"] for row in listed_files} == {
        name: len(data) for name, data in files.items()
    }
    assert all(row["downloadURL"].startswith(cli_server.base_url) for row in listed_files)
    table = invoke("batches", "files", batch_id, "--limit", "2", *api).stdout.splitlines()
    assert table[0].split() == ["fileName", "partName", "contentType", "size"]
    assert len(table) == 3

    shards = invoke("batches", "shards", batch_id, "--json", *api)
    assert shards.exit_code == 0
    assert shards.json_lines() == []  # simple uploads have no ingest shards

    text = invoke("batches", "list", *api).stdout
    assert batch_id in text
    assert text.splitlines()[0].split()[0] == "batchId"


def test_unknown_batch_exits_3(cli_server: ServerHandle) -> None:
    result = invoke("batches", "show", "no-such-batch", *api_args(cli_server))
    assert result.exit_code == 3
    assert result.stderr.startswith("error: ")


def test_invalid_batch_id_exits_2(cli_server: ServerHandle) -> None:
    result = invoke("batches", "count", "Not Valid", *api_args(cli_server))
    assert result.exit_code == 2
    assert "invalid batch id" in result.stderr
