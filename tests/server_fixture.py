"""Pytest plugin: real ``batchflow serve`` subprocesses on SQLite and PostgreSQL.

``staging_server`` is session-scoped and parametrized by catalog (one server per backend);
``server_factory`` starts throwaway servers (restart/kill tests, other flags). PostgreSQL runs use
a fresh database ``bf_<random>`` created through asyncpg and dropped afterwards.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests._procs import ManagedProcess, free_port, wait_http

PG_ADMIN_DSN = os.environ.get("BATCHFLOW_TEST_PG_URL", "postgresql://127.0.0.1:5432/test")
PG_SERVER = PG_ADMIN_DSN.split("://", 1)[1].rsplit("/", 1)[0]


@dataclass
class ServerHandle:
    """One ``batchflow serve`` process and how to reach it."""

    data_dir: Path
    api_key: str = field(default_factory=lambda: "key-" + secrets.token_hex(8))
    workspace: str = "ws-test"
    database_url: str | None = None
    extra_args: tuple[str, ...] = ()
    port: int = 0
    proc: ManagedProcess | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ds(self) -> str:
        """The data-staging prefix URL."""
        return f"{self.base_url}/data-staging/v1/external/{self.workspace}"

    def start(self) -> ServerHandle:
        self.port = free_port()
        argv = [
            sys.executable, "-m", "batchflow", "serve",
            "--port", str(self.port),
            "--data-dir", str(self.data_dir),
            "--api-key", self.api_key,
            "--workspace", self.workspace,
            "--log-level", "warning",
            *self.extra_args,
        ]  # fmt: skip
        if self.database_url:
            argv += ["--database-url", self.database_url]
        self.proc = ManagedProcess(
            argv, log_path=self.data_dir.parent / f"{self.data_dir.name}.log"
        )
        self.proc.start()
        try:
            wait_http(f"{self.base_url}/healthz", timeout=60, alive=self.proc.alive)
            deadline = time.monotonic() + 30
            while not (self.data_dir / "server.json").exists() and time.monotonic() < deadline:
                time.sleep(0.02)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"server did not start: {exc}\n{self.log_tail()}") from exc
        return self

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def restart(self) -> ServerHandle:
        self.stop()
        return self.start()

    def log_tail(self, lines: int = 60) -> str:
        return self.proc.log_tail(lines) if self.proc is not None else ""

    def client(self, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.api_key}"}
        return httpx.Client(headers=headers, timeout=30, trust_env=False, **kwargs)


def _pg(coro_factory: Callable[[Any], Any]) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            await coro_factory(conn)
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A throwaway PostgreSQL database; yields its SQLAlchemy async URL."""
    name = "bf_" + secrets.token_hex(6)
    _pg(lambda conn: conn.execute(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+asyncpg://{PG_SERVER}/{name}"
    finally:
        _pg(lambda conn: conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def catalog_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None (SQLite in the data dir) or a fresh PostgreSQL database of this test alone."""
    if request.param == "sqlite":
        yield None
        return
    name = "bf_" + secrets.token_hex(6)
    _pg(lambda conn: conn.execute(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+asyncpg://{PG_SERVER}/{name}"
    finally:
        _pg(lambda conn: conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(
    scope="session", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def staging_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerHandle]:
    """A session-wide server per catalog backend (tests use their own batch ids)."""
    database_url = None
    if request.param == "postgres":
        database_url = request.getfixturevalue("pg_database")
    handle = ServerHandle(
        data_dir=tmp_path_factory.mktemp(f"serve-{request.param}") / "data",
        database_url=database_url,
        extra_args=("--allow-url", "127.0.0.1", "--shard-size", "10"),
    )
    handle.start()
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., ServerHandle]]:
    """Start extra servers with custom flags; all are stopped at teardown."""
    started: list[ServerHandle] = []

    def make(*extra_args: str, database_url: str | None = None) -> ServerHandle:
        handle = ServerHandle(
            data_dir=tmp_path / f"srv{len(started)}",
            database_url=database_url,
            extra_args=tuple(extra_args),
        )
        started.append(handle)
        return handle.start()

    yield make
    for handle in started:
        handle.kill()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Attach the server log tail to failing tests that used a server."""
    report = yield
    if report.failed:
        funcargs = getattr(item, "funcargs", {})
        handle = funcargs.get("staging_server")
        if isinstance(handle, ServerHandle):
            report.sections.append(("batchflow serve log", handle.log_tail()))
    return report
