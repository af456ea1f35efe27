"""Base classes for wire models: camelCase on the wire, snake_case in Python."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

__all__ = ["SnakeWire", "Wire"]


class Wire(BaseModel):
    """A Batch API body: camelCase aliases, populated by either name, unknown fields ignored."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="ignore",
        frozen=True,
    )

    def wire(self) -> dict[str, Any]:
        """The JSON-ready dict sent on the wire (aliases, optional ``None`` fields left out)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class SnakeWire(BaseModel):
    """A webhook body: the hosted service sends these in snake_case."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    def wire(self) -> dict[str, Any]:
        """The JSON-ready dict sent on the wire."""
        return self.model_dump(mode="json", exclude_none=True)
