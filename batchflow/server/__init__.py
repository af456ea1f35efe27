"""``batchflow serve``: a self-hosted Batch API (data staging, jobs, webhooks).

``create_app`` and ``ServerSettings`` are loaded lazily so that importing a submodule (e.g. the
workflows) does not pull in FastAPI and the catalog.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from batchflow.server.app import ServerPlugin, create_app
    from batchflow.server.context import ServerContext
    from batchflow.server.core.settings import ServerSettings
    from batchflow.server.staging.service import StagingService

__all__ = ["ServerContext", "ServerPlugin", "ServerSettings", "StagingService", "create_app"]

_LAZY = {
    "create_app": "batchflow.server.app",
    "ServerPlugin": "batchflow.server.app",
    "ServerContext": "batchflow.server.context",
    "ServerSettings": "batchflow.server.core.settings",
    "StagingService": "batchflow.server.staging",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'batchflow.server' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
