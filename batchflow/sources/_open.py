"""``open_source(uri)``: one location string to the Source that lists it.

Rules (first match wins):

- ``s3://bucket[/path]``, ``gs://bucket[/path]``, ``az://container[/path]``: a bucket listing;
  ``path`` may contain a glob (see ``batchflow.sources.glob``), otherwise it is a plain prefix
  (everything under it, like ``aws s3 ls --recursive``). Names are keys relative to the folder
  of the literal prefix.
- ``http://`` / ``https://`` URL whose path ends in ``.jsonl``: a references file.
- a local path (plain or ``file://``, percent-decoded) ending in ``.jsonl`` that is not a
  folder: a references file.
- any other local path: a folder (everything under it) or a glob under its literal folder.

Anything else (other schemes, an http URL that is not ``.jsonl``, an empty bucket, a missing
folder) is a ``UsageError``/``NotFoundError`` with one clear line.
"""

from __future__ import annotations

import os
from urllib.parse import unquote, urlsplit

import httpx

from batchflow.errors import NotFoundError, UsageError
from batchflow.sources._types import DEFAULT_PAGE_SIZE, OnSkip, Source, normalize_extensions
from batchflow.sources.azure import AzureSource
from batchflow.sources.gcs import GcsSource
from batchflow.sources.glob import GLOB_CHARS, Selection, compile_glob, has_glob, split_glob
from batchflow.sources.local import LocalSource
from batchflow.sources.references import ReferencesSource
from batchflow.sources.s3 import S3Source

__all__ = ["open_source"]

_BUCKET_SCHEMES = ("s3", "gs", "az")


def open_source(
    uri: str,
    *,
    extensions: frozenset[str] | set[str] | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
    on_skip: OnSkip | None = None,
    follow_symlinks: bool = False,
    http_client: httpx.AsyncClient | None = None,
) -> Source:
    """The Source for ``uri``; raises UsageError for malformed URIs/globs (nothing is listed yet).

    ``extensions`` (e.g. ``IMAGE_EXTENSIONS``) filters names case-insensitively; ``on_skip``
    receives the items a source passes over (see ``SkippedItem``); ``page_size`` bounds each
    page sent and each store request.
    """
    exts = normalize_extensions(extensions)
    if not uri or not uri.strip():
        raise UsageError("empty source location")
    scheme, sep, rest = uri.partition("://")
    scheme = scheme.lower() if sep else ""
    if scheme in _BUCKET_SCHEMES:
        return _bucket_source(scheme, rest, uri, exts, page_size)
    if scheme in ("http", "https"):
        if not urlsplit(uri).path.lower().endswith(".jsonl"):
            raise UsageError(f"'{uri}': an http(s) source must be a references .jsonl URL")
        return ReferencesSource(
            uri, extensions=exts, page_size=page_size, on_skip=on_skip, http_client=http_client
        )
    if scheme == "file":
        path = unquote(urlsplit(uri).path)
    elif sep and scheme.isalnum() and len(scheme) > 1:
        raise UsageError(f"unsupported source scheme '{scheme}://' in '{uri}'")
    else:
        path = uri
    if path.lower().endswith(".jsonl") and not has_glob(path) and not os.path.isdir(path):
        return ReferencesSource(path, extensions=exts, page_size=page_size, on_skip=on_skip)
    return _local_source(
        path,
        uri,
        exts=exts,
        page_size=page_size,
        on_skip=on_skip,
        follow_symlinks=follow_symlinks,
    )


def _bucket_source(
    scheme: str, rest: str, uri: str, exts: frozenset[str] | None, page_size: int
) -> Source:
    bucket, _, path = rest.partition("/")
    if not bucket:
        raise UsageError(f"'{uri}': missing bucket/container name")
    if any(c in bucket for c in GLOB_CHARS):
        raise UsageError(f"'{uri}': the bucket/container name cannot contain a glob")
    selection = Selection.parse(path, exts)
    if scheme == "s3":
        return S3Source(bucket, selection, page_size=page_size, description=uri)
    if scheme == "gs":
        return GcsSource(bucket, selection, page_size=page_size, description=uri)
    return AzureSource(bucket, selection, page_size=page_size, description=uri)


def _local_source(
    path: str,
    uri: str,
    *,
    exts: frozenset[str] | None,
    page_size: int,
    on_skip: OnSkip | None,
    follow_symlinks: bool,
) -> LocalSource:
    norm = path.replace(os.sep, "/") if os.sep != "/" else path
    literal, pattern = split_glob(norm)
    root = norm if pattern is None else (literal or ".")
    matcher = None if pattern is None else compile_glob(pattern)
    if not os.path.exists(root):
        raise NotFoundError(f"folder '{root}' not found")
    if not os.path.isdir(root):
        raise UsageError(f"'{root}' is not a folder (give a folder, a glob or a .jsonl file)")
    return LocalSource(
        root,
        matcher=matcher,
        extensions=exts,
        follow_symlinks=follow_symlinks,
        page_size=page_size,
        on_skip=on_skip,
        description=uri,
    )
