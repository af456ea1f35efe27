"""batchflow: an async pipeline orchestrator for high-volume ingest into batch processing."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
