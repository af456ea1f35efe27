"""The catalog database: one :data:`metadata` every part extends, and the engine it runs on.

Staging (:mod:`batchflow.server.staging.schema`) and jobs (:mod:`batchflow.server.jobs.schema`)
define their tables on :data:`metadata`; the lifespan creates what is missing. SQLite (WAL, busy
timeout, foreign keys) or PostgreSQL. Timestamps are stored as UTC; SQLite hands them back
naive, so read them through :func:`as_utc`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Integer, MetaData, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from batchflow.errors import ConfigError

__all__ = [
    "ID_TYPE",
    "as_utc",
    "check_database_url",
    "create_catalog_engine",
    "create_schema",
    "metadata",
    "timestamp_column",
    "utcnow",
]

metadata = MetaData()

ID_TYPE = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """A timestamp read from the catalog, as an aware UTC datetime."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def timestamp_column(name: str, *, nullable: bool = False) -> Column[datetime]:
    """A UTC timestamp column (read it back through :func:`as_utc`)."""
    return Column(name, DateTime(timezone=True), nullable=nullable)


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
