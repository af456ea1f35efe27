"""Export: concurrent, resumable, verified download of output batches, and safe extraction."""

from __future__ import annotations

from batchflow.export.download import (
    EXTRACTED_MARKER,
    MAX_FAILURE_EXAMPLES,
    ExportSummary,
    FileOutcome,
    FileSource,
    export_batches,
    output_batches,
    raise_for_failures,
    safe_destination,
)
from batchflow.export.extract import (
    ExtractedArchive,
    UnsafeArchiveError,
    extract_archive,
    is_archive,
)

__all__ = [
    "EXTRACTED_MARKER",
    "MAX_FAILURE_EXAMPLES",
    "ExportSummary",
    "ExtractedArchive",
    "FileOutcome",
    "FileSource",
    "UnsafeArchiveError",
    "export_batches",
    "extract_archive",
    "is_archive",
    "output_batches",
    "raise_for_failures",
    "safe_destination",
]
