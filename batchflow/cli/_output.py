"""What commands print: JSON lines (``--json`` or not a TTY) or human text, never both.

Results go to stdout; progress, notes and warnings go to stderr, so ``--json`` output can be
piped into ``jq`` untouched.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import click

__all__ = ["Output"]


def _default(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


@dataclass(slots=True)
class Output:
    """One command's printer."""

    json_mode: bool
    _notes_said: set[str] = field(default_factory=set)

    @classmethod
    def create(cls, json_flag: bool) -> Output:
        """JSON when asked for, or when stdout is not a terminal and the caller wants events."""
        return cls(json_mode=json_flag)

    @property
    def interactive(self) -> bool:
        """Whether a live (rich) display may be drawn on stderr."""
        return not self.json_mode and sys.stderr.isatty()

    def event(self, kind: str, **fields: Any) -> None:
        """A progress event: a JSON line on stdout in JSON mode, nothing otherwise."""
        if self.json_mode:
            line = json.dumps({"event": kind, **fields}, default=_default, ensure_ascii=False)
            click.echo(line)

    def result(self, payload: Mapping[str, Any], *, text: str | None = None) -> None:
        """The command's final answer: JSON in JSON mode, else ``text`` (or key: value lines)."""
        if self.json_mode:
            click.echo(json.dumps(payload, default=_default, ensure_ascii=False))
            return
        if text is not None:
            click.echo(text)
            return
        for key, value in payload.items():
            click.echo(f"{key}: {value}")

    def table(self, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
        """Rows as JSON lines, or an aligned text table."""
        if self.json_mode:
            for row in rows:
                click.echo(json.dumps(dict(row), default=_default, ensure_ascii=False))
            return
        cells = [
            [str(row.get(col, "") if row.get(col) is not None else "") for col in columns]
            for row in rows
        ]
        widths = [max([len(col), *(len(r[i]) for r in cells)]) for i, col in enumerate(columns)]
        click.echo("  ".join(col.ljust(widths[i]) for i, col in enumerate(columns)).rstrip())
        for r in cells:
            click.echo("  ".join(r[i].ljust(widths[i]) for i in range(len(columns))).rstrip())

    def note(self, message: str, *, once: bool = False) -> None:
        """A human note on stderr (also in JSON mode: stderr is not parsed)."""
        if once:
            if message in self._notes_said:
                return
            self._notes_said.add(message)
        click.echo(message, err=True)

    def warn(self, message: str) -> None:
        """A warning on stderr, and as an event in JSON mode."""
        click.echo(f"warning: {message}", err=True)
        self.event("warning", message=message)
