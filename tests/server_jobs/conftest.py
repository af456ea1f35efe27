"""Fixtures: a ``batchflow serve`` with user and remote workflows, a remote stub, a receiver."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server._helpers import Receiver, run_receiver
from tests.server_fixture import ServerHandle

from ._helpers import WORKFLOW_MODULE, RemoteStub, run_remote_stub, start_with_env

MODULE = "bf_itest_flows"


def new_id(prefix: str) -> str:
    """A short unique id (job ids are at most 20 characters)."""
    return f"{prefix}-{secrets.token_hex(4)}"


@pytest.fixture(scope="session")
def flows_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("flows")
    (path / f"{MODULE}.py").write_text(WORKFLOW_MODULE)
    return path


@pytest.fixture(scope="session")
def remote_stub() -> Iterator[RemoteStub]:
    with run_remote_stub(fail_first=1) as stub:
        yield stub


@pytest.fixture(scope="session")
def workflows_file(flows_dir: Path, remote_stub: RemoteStub) -> Path:
    path = flows_dir / "workflows.toml"
    path.write_text(
        f"""
[workflows.tagger]
callable = "{MODULE}:tagger"

[workflows.slow]
callable = "{MODULE}:slow"

[workflows.remote-detect]
url = "{remote_stub.url}"
timeout = 10
concurrency = 2
retries = 3
retry_base_delay = 0.05
retry_max_delay = 0.2
"""
    )
    return path


def make_job_server(data_dir: Path, workflows_file: Path) -> ServerHandle:
    """A server that knows the test workflows (not started)."""
    return ServerHandle(
        data_dir=data_dir,
        extra_args=(
            "--allow-url", "127.0.0.1",
            "--workflows-file", str(workflows_file),
            "--job-workers", "2",
        ),
    )  # fmt: skip


@pytest.fixture(scope="session")
def job_server(
    tmp_path_factory: pytest.TempPathFactory, flows_dir: Path, workflows_file: Path
) -> Iterator[ServerHandle]:
    """A session-wide SQLite server with the user and remote workflows."""
    handle = make_job_server(tmp_path_factory.mktemp("jobsrv") / "data", workflows_file)
    start_with_env(handle, {"PYTHONPATH": str(flows_dir)})
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def fresh_job_server(
    tmp_path: Path, flows_dir: Path, workflows_file: Path
) -> Iterator[Callable[..., ServerHandle]]:
    """Servers of one test on its own data dir (kill / restart tests); killed at teardown."""
    started: list[ServerHandle] = []

    def make(restart: ServerHandle | None = None) -> ServerHandle:
        """A new server, or ``restart`` started again on its data dir (after a kill)."""
        handle = restart or make_job_server(tmp_path / "data", workflows_file)
        if restart is None:
            started.append(handle)
        else:
            handle.stop()
        return start_with_env(handle, {"PYTHONPATH": str(flows_dir)})

    yield make
    for handle in started:
        handle.kill()


@pytest.fixture
def client(job_server: ServerHandle) -> Iterator[httpx.Client]:
    with job_server.client() as c:
        yield c


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with run_receiver(fail_first=1) as state:
        yield state


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Attach the log tail of the job servers a failing test used."""
    report = yield
    if report.failed:
        for name, value in getattr(item, "funcargs", {}).items():
            if isinstance(value, ServerHandle) and name != "staging_server":
                report.sections.append((f"batchflow serve log ({name})", value.log_tail()))
    return report
