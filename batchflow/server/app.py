"""The FastAPI application of ``batchflow serve``: factory, lifespan, health routes.

Extension points for other server parts (the job engine):

- tables: define them on :data:`batchflow.server.staging.schema.metadata` in a module the plugin
  imports, or give the plugin a ``metadata`` attribute (its own ``MetaData``); the lifespan
  creates missing tables of both;
- routes and background services: pass a :class:`ServerPlugin` to :func:`create_app`. Its
  ``routers()`` are mounted (add ``Depends(require_api_key)`` yourself), and ``run(ctx,
  task_status=...)`` is started with ``tg.start`` in the lifespan task group, after the
  staging services, with the :class:`ServerContext` (catalog engine, staging API, blobs...).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Protocol, runtime_checkable

import anyio
import anyio.abc
import httpx
import structlog
from fastapi import APIRouter, Depends, FastAPI, Request
from sqlalchemy import MetaData

from batchflow.config import RetryPolicy
from batchflow.server.context import ServerContext
from batchflow.server.core.auth import ApiKeys, require_api_key
from batchflow.server.core.blobs import BlobStore, LocalBlobStore, UrlSigner
from batchflow.server.core.bodylimit import JsonBodyLimit
from batchflow.server.core.db import create_catalog_engine, create_schema
from batchflow.server.core.errors import install_error_handlers
from batchflow.server.core.netguard import UrlPolicy, make_fetch_client
from batchflow.server.core.outbox import CatalogOutbox
from batchflow.server.core.settings import ServerSettings
from batchflow.server.core.webhooks import WebhookDispatcher
from batchflow.server.staging import blob_routes
from batchflow.server.staging import routes as staging_routes
from batchflow.server.staging.references import IngestWorker
from batchflow.server.staging.service import StagingService
from batchflow.server.staging.sweeper import Sweeper
from batchflow.server.staging.uploads import UploadService

__all__ = ["ServerPlugin", "create_app", "default_plugins", "open_services"]

log = structlog.get_logger(__name__)

WEBHOOK_RETRY = RetryPolicy(max_attempts=10, base_delay=0.5, max_delay=300.0, deadline=None)


@runtime_checkable
class ServerPlugin(Protocol):
    """A part of the server that brings its own routes and background service."""

    def routers(self) -> Sequence[APIRouter]: ...

    async def run(
        self,
        ctx: ServerContext,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None: ...


def default_plugins() -> list[ServerPlugin]:
    """Plugins found in the package: ``batchflow.server.jobs:server_plugin()`` when present."""
    if importlib.util.find_spec("batchflow.server.jobs") is None:
        return []
    module = importlib.import_module("batchflow.server.jobs")
    factory = getattr(module, "server_plugin", None)
    return [factory()] if callable(factory) else []


health = APIRouter()


@health.get("/healthz", tags=["health"])
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@health.get("/", dependencies=[Depends(require_api_key)], tags=["health"])
async def workspace(request: Request) -> dict[str, str]:
    ctx: ServerContext = request.app.state.ctx
    return {"workspace": ctx.settings.workspace}


def create_app(settings: ServerSettings, *, plugins: Sequence[ServerPlugin] = ()) -> FastAPI:
    """The ASGI app; its lifespan owns the catalog, the clients and every background task."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_services(settings, extra_metadata=_plugin_metadata(plugins)) as ctx:
            app.state.ctx = ctx
            async with anyio.create_task_group() as tg:
                await tg.start(ctx.ingest.run)
                await tg.start(ctx.uploads.run)
                await tg.start(ctx.dispatcher.run)
                await tg.start(Sweeper(ctx.engine, ctx.blobs, settings).run)
                for plugin in plugins:
                    await tg.start(_run_plugin, plugin, ctx)
                log.info("server.ready", workspace=settings.workspace)
                yield
                tg.cancel_scope.cancel()

    app = FastAPI(title="batchflow serve", version="1", lifespan=lifespan)
    app.state.api_keys = ApiKeys(settings.api_keys)
    install_error_handlers(app)
    app.add_middleware(JsonBodyLimit)
    app.include_router(health)
    app.include_router(staging_routes.router)
    app.include_router(blob_routes.router)
    for plugin in plugins:
        for router in plugin.routers():
            app.include_router(router)
    return app


async def _run_plugin(
    plugin: ServerPlugin,
    ctx: ServerContext,
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    await plugin.run(ctx, task_status=task_status)


@asynccontextmanager
async def open_services(
    settings: ServerSettings, *, extra_metadata: Sequence[MetaData] = ()
) -> AsyncIterator[ServerContext]:
    """Open the catalog (creating missing tables), blob store and clients; no task is started.

    The app's lifespan uses it; so can tools and tests that work on a data dir in-process.
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_catalog_engine(settings.catalog_url)
    try:
        await create_schema(engine, extra_metadata)
        local = LocalBlobStore(settings.blobs_dir)
        await local.clear_temp()
        blobs: BlobStore = local
        signer = UrlSigner(
            settings.signing_secret(),
            settings.public_url,
            default_ttl=settings.signed_url_ttl.total_seconds(),
        )
        staging = StagingService(engine, blobs, signer, settings)
        policy = UrlPolicy.from_strings(settings.allow_urls)
        publishable = settings.publishable_key()
        async with make_fetch_client() as fetch_client, _hook_client() as hook_client:
            dispatcher = WebhookDispatcher(
                CatalogOutbox(engine),
                hook_client,
                policy=WEBHOOK_RETRY,
                url_policy=policy,
                poll_interval=settings.webhook_poll_interval,
            )
            yield ServerContext(
                settings=settings,
                engine=engine,
                blobs=blobs,
                signer=signer,
                staging=staging,
                ingest=IngestWorker(
                    staging,
                    fetch_client,
                    url_policy=policy,
                    authorization=publishable,
                    on_outbox=dispatcher.wake,
                ),
                uploads=UploadService(
                    staging, authorization=publishable, on_outbox=dispatcher.wake
                ),
                dispatcher=dispatcher,
                fetch_client=fetch_client,
                url_policy=policy,
                publishable_key=publishable,
            )
    finally:
        with anyio.CancelScope(shield=True):
            await engine.dispose()


def _plugin_metadata(plugins: Sequence[ServerPlugin]) -> list[MetaData]:
    """A plugin with its own ``metadata`` attribute (a ``MetaData``) gets its tables created."""
    found = [getattr(plugin, "metadata", None) for plugin in plugins]
    return [each for each in found if isinstance(each, MetaData)]


def _hook_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=10.0), trust_env=False)
