"""Streaming listings of local folders, S3, GCS, Azure and references JSONL, with globs.

``open_source(uri, extensions=IMAGE_EXTENSIONS)`` returns a ``Source``; run its
``list_pages(send)`` as a producer task and read tuples of ``ObjectRef`` from the other end of a
small memory object stream. Items passed over (unreadable folders, malformed lines) go to the
``on_skip`` callback as ``SkippedItem``; fatal problems raise ``batchflow.errors``.
"""

from __future__ import annotations

from batchflow.sources._open import open_source
from batchflow.sources._types import (
    DEFAULT_PAGE_SIZE,
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    ObjectRef,
    OnSkip,
    Scope,
    SkipKind,
    SkippedItem,
    Source,
    SourceStatistics,
    matches_extension,
    normalize_extensions,
)
from batchflow.sources.azure import AzureSource
from batchflow.sources.gcs import GcsSource
from batchflow.sources.glob import GlobMatcher, Selection, compile_glob, split_glob
from batchflow.sources.local import LocalSource
from batchflow.sources.references import ReferencesSource
from batchflow.sources.s3 import S3Source

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "AzureSource",
    "GcsSource",
    "GlobMatcher",
    "LocalSource",
    "ObjectRef",
    "OnSkip",
    "ReferencesSource",
    "S3Source",
    "Scope",
    "Selection",
    "SkipKind",
    "SkippedItem",
    "Source",
    "SourceStatistics",
    "compile_glob",
    "matches_extension",
    "normalize_extensions",
    "open_source",
    "split_glob",
]
