"""``batchflow batches list|show|count|shards|files``: inspect staged batches.

Each prints an aligned table (or ``key: value`` lines), or with ``--json`` one JSON object per
row (lists) or one JSON object (show, count), with the wire's camelCase field names.
"""

from __future__ import annotations

from typing import Any

import click

from batchflow.cli._context import ApiOptions, api_options, run_with_client
from batchflow.cli._output import Output
from batchflow.client import BatchClient
from batchflow.protocol._base import Wire

__all__ = ["batches", "json_option", "rows_of"]

json_option = click.option("--json", "json_flag", is_flag=True, help="Print JSON.")


def rows_of(items: list[Any]) -> list[dict[str, Any]]:
    """Wire dicts (camelCase, JSON-ready) of pydantic models."""
    return [item.wire() if isinstance(item, Wire) else dict(item) for item in items]


@click.group()
def batches() -> None:
    """Inspect staged batches (data staging)."""


@batches.command("list")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Show at most N.")
@api_options
@json_option
def list_(limit: int | None, api: ApiOptions, json_flag: bool) -> None:
    """List the workspace's batches."""

    async def body(client: BatchClient) -> list[dict[str, Any]]:
        found: list[Any] = []
        async with client.iter_batches() as receive:
            async for batch in receive:
                found.append(batch)
                if limit is not None and len(found) >= limit:
                    break
        return rows_of(found)

    rows = run_with_client(api, body)
    columns = ["batchId", "displayName", "batchType", "batchContentType", "createdDate"]
    Output.create(json_flag).table(rows, columns)


@batches.command()
@click.argument("batch_id")
@api_options
@json_option
def show(batch_id: str, api: ApiOptions, json_flag: bool) -> None:
    """Show one batch and its parts."""

    async def body(client: BatchClient) -> dict[str, Any]:
        batch = (await client.get_batch(batch_id)).wire()
        batch["parts"] = rows_of(await client.parts(batch_id))
        return batch

    payload = run_with_client(api, body)
    out = Output.create(json_flag)
    if out.json_mode:
        out.result(payload)
        return
    parts = payload.pop("parts")
    out.result(payload)
    for part in parts:
        click.echo(f"part: {part.get('partName')} ({part.get('contentType')})")


@batches.command()
@click.argument("batch_id")
@click.option("--part-name", default=None, help="Count only this part.")
@api_options
@json_option
def count(batch_id: str, part_name: str | None, api: ApiOptions, json_flag: bool) -> None:
    """Count the files of a batch (or of one part)."""

    async def body(client: BatchClient) -> int:
        return await client.count(batch_id, part_name)

    total = run_with_client(api, body)
    payload = {"batchId": batch_id, "partName": part_name, "count": total}
    Output.create(json_flag).result(payload, text=str(total))


@batches.command()
@click.argument("batch_id")
@api_options
@json_option
def shards(batch_id: str, api: ApiOptions, json_flag: bool) -> None:
    """List the ingest shards of a batch and their status."""

    async def body(client: BatchClient) -> list[dict[str, Any]]:
        found: list[Any] = []
        async with client.iter_shards(batch_id) as receive:
            found.extend([shard async for shard in receive])
        return rows_of(found)

    rows = run_with_client(api, body)
    columns = ["shardId", "statusName", "statusType", "shardObjectsCount", "eventTimestamp"]
    Output.create(json_flag).table(rows, columns)


@batches.command()
@click.argument("batch_id")
@click.option("--part-name", default=None, help="List only this part.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Show at most N.")
@api_options
@json_option
def files(
    batch_id: str,
    part_name: str | None,
    limit: int | None,
    api: ApiOptions,
    json_flag: bool,
) -> None:
    """List the files of a batch (names, parts, sizes; download URLs with --json)."""

    async def body(client: BatchClient) -> list[dict[str, Any]]:
        found: list[Any] = []
        async with client.iter_files(batch_id, part_name=part_name) as receive:
            async for meta in receive:
                found.append(meta)
                if limit is not None and len(found) >= limit:
                    break
        return rows_of(found)

    rows = run_with_client(api, body)
    Output.create(json_flag).table(rows, ["fileName", "partName", "contentType", "size"])
