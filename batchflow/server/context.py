"""The services of one running server, shared by routes and background tasks.

``request.app.state.ctx`` holds the :class:`ServerContext`; the job engine receives it in its
plugin hooks (see :mod:`batchflow.server.app`).
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from batchflow.server.core.blobs import BlobStore, UrlSigner
from batchflow.server.core.netguard import UrlPolicy
from batchflow.server.core.settings import ServerSettings
from batchflow.server.core.webhooks import WebhookDispatcher
from batchflow.server.staging.references import IngestWorker
from batchflow.server.staging.service import StagingService
from batchflow.server.staging.uploads import UploadService

__all__ = ["ServerContext"]


@dataclass(frozen=True, slots=True)
class ServerContext:
    """Everything a route or a background service needs."""

    settings: ServerSettings
    engine: AsyncEngine
    blobs: BlobStore
    signer: UrlSigner
    staging: StagingService
    ingest: IngestWorker
    uploads: UploadService
    dispatcher: WebhookDispatcher
    fetch_client: httpx.AsyncClient
    url_policy: UrlPolicy
    publishable_key: str
