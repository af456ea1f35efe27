"""``batchflow ingest`` and ``batchflow sign``: thin click wrappers over :mod:`batchflow.ingest`.

Exit codes (from :mod:`batchflow.errors`): 0 everything went through; 2 bad input (flag, batch
id, glob, source, credentials); 3 bucket/folder/file not found, or nothing matched (unless
``--allow-empty``; nothing is created either way); 4 refused credentials or key;
5 conflict; 6 the run finished but items were skipped or shards failed (listed in the summary);
75 the API or storage stayed unreachable after retries; 130 interrupted (re-run to resume).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio
import click

from batchflow.cli._app import EXIT_INTERRUPTED
from batchflow.cli._context import ApiOptions, api_options, resolve_settings
from batchflow.cli._output import Output
from batchflow.errors import PartialFailure
from batchflow.ingest import IngestOptions, IngestProgress, IngestSummary
from batchflow.ingest import ingest as run_ingest
from batchflow.ingest import sign as run_sign
from batchflow.signing import parse_duration

__all__ = ["allow_empty_option", "ingest", "sign"]

allow_empty_option = click.option(
    "--allow-empty",
    is_flag=True,
    envvar="BATCHFLOW_ALLOW_EMPTY",
    help="Exit 0 when nothing matches (default: exit 3) [env: BATCHFLOW_ALLOW_EMPTY].",
)


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def progress_line(p: IngestProgress) -> str:
    """One line of live progress: counts, rate, and an ETA once the shard total is known."""
    rate = p.files_sent / p.elapsed if p.elapsed > 0 else 0.0
    total = "?" if p.shards_total is None else str(p.shards_total)
    parts = [
        f"listed {p.listed:,}",
        f"matched {p.matched:,}",
        f"uploaded {p.files_sent:,} files ({_human_bytes(p.bytes_sent)})",
        f"shards {p.shards_done:,}/{total}",
        f"failed {p.files_failed:,}",
        f"skipped {p.skipped:,}",
        f"{rate:,.0f} files/s",
    ]
    if p.shards_total and 0 < p.shards_done < p.shards_total and not p.done:
        eta = p.elapsed / p.shards_done * (p.shards_total - p.shards_done)
        parts.append(f"ETA {int(eta) // 60}:{int(eta) % 60:02d}")
    return " · ".join(parts)


def summary_text(s: IngestSummary) -> str:
    """The final human summary."""
    verb = "planned" if s.dry_run else "sent"
    lines = [
        f"{'dry run: ' if s.dry_run else ''}{s.source} -> batch {s.batch_id} ({s.mode})",
        f"  listed {s.listed:,}, matched {s.matched:,}, skipped {s.skipped:,}",
        f"  shards: {s.shards_total:,} total, {s.shards_sent:,} {verb}, "
        f"{s.shards_resumed:,} already done, {s.shards_duplicated:,} duplicated, "
        f"{s.shards_failed:,} failed",
        f"  files sent {s.files_sent:,} ({_human_bytes(s.bytes_sent)}), "
        f"failed {s.files_failed:,}, in {s.elapsed:.1f}s",
    ]
    if s.skipped_by_kind:
        kinds = ", ".join(f"{k}: {v}" for k, v in sorted(s.skipped_by_kind.items()))
        lines.append(f"  skipped by kind: {kinds}")
        lines.extend(f"    {r.item}: {r.reason} ({r.kind})" for r in s.skipped_examples)
    lines.extend(f"  failed {r.item}: {r.reason}" for r in s.failures)
    if s.journal:
        lines.append(f"  journal: {s.journal}")
    return "\n".join(lines)


class _Live:
    """A rich one-line live display on stderr (TTY only); a no-op otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._live: Any = None

    def __enter__(self) -> _Live:
        if self.enabled:
            from rich.console import Console
            from rich.live import Live
            from rich.text import Text

            self._live = Live(Text("starting…"), console=Console(stderr=True), transient=True)
            self._live.__enter__()
        return self

    def update(self, progress: IngestProgress) -> None:
        if self._live is not None:
            from rich.text import Text

            self._live.update(Text(progress_line(progress)))

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)


@click.command()
@click.argument("source")
@click.option("--batch-id", required=True, help="Batch to stage into (a-z, 0-9, '_', '-').")
@click.option("--videos", is_flag=True, help="Stage videos instead of images.")
@click.option("--notifications-url", default=None, metavar="URL", help="Webhook for ingest events.")
@click.option(
    "--notification-category",
    "categories",
    multiple=True,
    type=click.Choice(["ingest-status", "files-status"]),
    help="Webhook categories (repeatable).",
)
@click.option("--concurrency", type=int, default=4, show_default=True, help="Shards in flight.")
@click.option(
    "--shard-size", type=int, default=20_000, show_default=True, help="References per request."
)
@click.option(
    "--tar-size", type=int, default=256, show_default=True, help="Local files per shard (<= 500)."
)
@click.option(
    "--url-ttl", default="24h", show_default=True, help="Signed URL validity (e.g. 90m, 7d)."
)
@click.option(
    "--dry-run", is_flag=True, help="List and shard, send nothing (exit 6 if any would be skipped)."
)
@click.option("--json", "json_flag", is_flag=True, help="JSON event lines and a JSON summary.")
@click.option("--fail-fast", is_flag=True, help="Stop at the first skipped item or failed shard.")
@click.option("--restart", is_flag=True, help="Ignore the journal of an earlier run.")
@click.option("--display-name", default=None, help="Batch display name.")
@allow_empty_option
@api_options
def ingest(  # noqa: PLR0917  # click passes every flag
    source: str,
    batch_id: str,
    videos: bool,
    notifications_url: str | None,
    categories: tuple[str, ...],
    concurrency: int,
    shard_size: int,
    tar_size: int,
    url_ttl: str,
    dry_run: bool,
    json_flag: bool,
    fail_fast: bool,
    restart: bool,
    display_name: str | None,
    allow_empty: bool,
    api: ApiOptions,
) -> None:
    """Stage SOURCE (folder, s3:// gs:// az:// location or glob, references .jsonl) into a batch.

    Re-running the same command resumes: shards acknowledged earlier are not sent again.
    """
    options = IngestOptions(
        batch_id=batch_id,
        videos=videos,
        shard_size=shard_size,
        tar_size=tar_size,
        concurrency=concurrency,
        url_ttl=parse_duration(url_ttl),
        notifications_url=notifications_url,
        categories=tuple(categories),  # type: ignore[arg-type]  # click.Choice checked them
        dry_run=dry_run,
        fail_fast=fail_fast,
        restart=restart,
        display_name=display_name,
        allow_empty=allow_empty,
    )
    output = Output.create(json_flag)
    settings = None if dry_run else resolve_settings(api)
    warned: set[str] = set()

    def warn(message: str) -> None:
        if message not in warned:
            warned.add(message)
            output.warn(message)

    with _Live(output.interactive) as live:

        def progress(p: IngestProgress) -> None:
            live.update(p)
            if output.json_mode and not p.done:
                output.event("progress", **p.as_dict())

        try:
            summary = anyio.run(
                lambda: run_ingest(
                    source,
                    options,
                    settings=settings,
                    on_event=lambda kind, fields: output.event(kind, **fields),
                    on_warning=warn,
                    on_progress=progress,
                )
            )
        except KeyboardInterrupt:
            # click would turn this into "Aborted!" and exit 1; acknowledged shards are in the
            # journal (each ack is written whole and fsync'd), so say how to go on.
            output.note("interrupted: re-run the same command to resume")
            raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
    output.result(summary.as_dict(), text=summary_text(summary))
    if summary.dry_run and summary.skipped:
        raise PartialFailure(
            f"dry run: {summary.skipped} item(s) would be skipped (see the summary); "
            "the rest would go through"
        )
    if not summary.ok:
        raise PartialFailure(
            f"{summary.skipped} item(s) skipped and {summary.files_failed} file(s) failed "
            f"in {summary.shards_failed} shard(s); the rest went through (see the summary)"
        )


@click.command()
@click.argument("source")
@click.option(
    "--url-ttl", default="24h", show_default=True, help="URL validity (e.g. 3600, 90m, 7d)."
)
@click.option(
    "--output",
    "-o",
    "output_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write to FILE (atomically) instead of stdout.",
)
@click.option("--videos", is_flag=True, help="List videos instead of images.")
@allow_empty_option
def sign(
    source: str, url_ttl: str, output_path: Path | None, videos: bool, allow_empty: bool
) -> None:
    """Write signed references ({"name", "url"} JSON lines) for a bucket location or glob."""
    ttl = parse_duration(url_ttl)
    out = Output.create(False)
    said: set[str] = set()

    def warn(message: str) -> None:
        if message not in said:
            said.add(message)
            out.warn(message)

    def skipped(fields: Any) -> None:
        out.note(f"skipped {fields['item']}: {fields['reason']} ({fields['type']})")

    if output_path is None:
        stream = sys.stdout
        count = anyio.run(
            lambda: run_sign(
                source,
                stream,
                url_ttl=ttl,
                videos=videos,
                allow_empty=allow_empty,
                on_warning=warn,
                on_skip=skipped,
            )
        )
        stream.flush()
        out.note(f"signed {count:,} object(s), valid {ttl} s")
        return
    target = output_path.resolve()
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            count = anyio.run(
                lambda: run_sign(
                    source,
                    handle,
                    url_ttl=ttl,
                    videos=videos,
                    allow_empty=allow_empty,
                    on_warning=warn,
                    on_skip=skipped,
                )
            )
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).replace(target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    out.note(f"signed {count:,} object(s), valid {ttl} s -> {target}")
