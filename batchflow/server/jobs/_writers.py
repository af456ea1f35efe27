"""Result files of a processing task: CSV or JSONL, one row per item result.

Row layout (both formats): ``file_name`` (the item name) first, then the workflow's row keys.
A failed item is a row with ``file_name`` and ``error`` (``{"kind", "message"}`` in JSONL,
``kind: message`` in CSV) and no other keys, so failures stay visible next to the results. A
video item gives one row per processed frame (a failed frame: a row with ``frame_index`` and
``error``). CSV: the header is ``file_name`` + the sorted union of every row's keys (``error``
included when any item failed); non-scalar values are JSON-encoded; missing values are empty.
Rows are spooled to a JSONL temp file first, so memory stays O(1) in the item count.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

__all__ = ["ITEM_COLUMN", "RESULT_CONTENT_TYPES", "ResultWriter"]

ITEM_COLUMN = "file_name"
RESULT_CONTENT_TYPES = {"csv": "text/csv", "jsonl": "application/x-ndjson"}


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    return json.dumps(value, sort_keys=True, default=str)


class ResultWriter:
    """Append rows, then :meth:`close` writes ``path`` atomically (temp name + rename)."""

    def __init__(self, path: Path, fmt: Literal["csv", "jsonl"]) -> None:
        self.path = path
        self.format = fmt
        self._spool_path = path.with_name(f".{path.name}.spool")
        self._spool = self._spool_path.open("w", encoding="utf-8")
        self._keys: set[str] = set()

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
        else:
            self._spool.close()
            self._spool_path.unlink(missing_ok=True)

    def add(self, item_name: str, row: Mapping[str, Any]) -> None:
        """One result row of ``item_name``."""
        record = {ITEM_COLUMN: item_name, **{k: v for k, v in row.items() if k != ITEM_COLUMN}}
        self._keys.update(record)
        self._spool.write(json.dumps(record, default=str) + "\n")

    def add_error(self, item_name: str, kind: str, message: str) -> None:
        """A failed item."""
        self.add(item_name, {"error": {"kind": kind, "message": message}})

    def close(self) -> None:
        self._spool.close()
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        if self.format == "jsonl":
            os.replace(self._spool_path, tmp)
        else:
            self._write_csv(tmp)
            self._spool_path.unlink()
        os.replace(tmp, self.path)

    def _write_csv(self, target: Path) -> None:
        columns = [ITEM_COLUMN, *sorted(self._keys - {ITEM_COLUMN})]
        with (
            self._spool_path.open(encoding="utf-8") as source,
            target.open("w", encoding="utf-8", newline="") as out,
        ):
            writer = csv.writer(out)
            writer.writerow(columns)
            for line in source:
                record = json.loads(line)
                error = record.get("error")
                if isinstance(error, dict):
                    record["error"] = f"{error.get('kind')}: {error.get('message')}"
                writer.writerow([_cell(record.get(column)) for column in columns])
