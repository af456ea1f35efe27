"""Engine creation for the catalog: SQLite (WAL, busy timeout, foreign keys) or PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import MetaData, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from batchflow.errors import ConfigError
from batchflow.server.catalog.schema import metadata

__all__ = ["check_database_url", "create_catalog_engine", "create_schema"]

_DRIVERS = frozenset({"sqlite+aiosqlite", "postgresql+asyncpg"})


def check_database_url(url: str) -> str:
    """``url`` if it names a supported async driver, else :class:`ConfigError`."""
    try:
        driver = make_url(url).drivername
    except ArgumentError as exc:
        raise ConfigError(f"invalid --database-url: {exc}") from exc
    if driver not in _DRIVERS:
        choices = ", ".join(sorted(_DRIVERS))
        raise ConfigError(f"unsupported --database-url driver {driver!r}: use one of {choices}")
    return url


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_catalog_engine(url: str) -> AsyncEngine:
    """An async engine for ``url`` with the settings the catalog relies on."""
    try:
        if url.startswith("sqlite"):
            engine = create_async_engine(url, connect_args={"timeout": 30}, hide_parameters=True)
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
            return engine
        return create_async_engine(
            url, pool_size=10, max_overflow=10, pool_pre_ping=True, hide_parameters=True
        )
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise ConfigError(f"invalid --database-url: {exc}") from exc


async def create_schema(engine: AsyncEngine, extra: Sequence[MetaData] = ()) -> None:
    """Create every table of :data:`metadata` (and of ``extra``) that does not exist yet."""
    async with engine.begin() as conn:
        for each in (metadata, *extra):
            await conn.run_sync(each.create_all)
