"""``--connect-timeout`` / ``--read-timeout`` (and their env vars) reach the client's httpx."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from batchflow.cli import batches as batches_cli
from batchflow.cli._context import ApiOptions, resolve_settings
from batchflow.client import BatchClient
from batchflow.config import Timeouts
from tests.cli.conftest import invoke
from tests.client._origin import run_app

STALL_SECONDS = 3.0


async def _stalls_then_refuses(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An API that says nothing for a while, then 404: only a short read timeout gives 75."""
    await anyio.sleep(STALL_SECONDS)
    await send({"type": "http.response.start", "status": 404,
                "headers": [(b"content-type", b"application/json")]})  # fmt: skip
    await send({"type": "http.response.body", "body": b'{"error": "no such thing"}'})


@pytest.mark.parametrize("how", ["flag", "env"])
def test_a_short_read_timeout_gives_up_on_a_silent_api_with_exit_75(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.jpg").write_bytes(b"x")
    args = ["ingest", str(tmp_path / "imgs"), "--batch-id", "b", "--api-key", "k"]
    if how == "flag":
        args += ["--read-timeout", "0.2"]
    else:
        monkeypatch.setenv("BATCHFLOW_READ_TIMEOUT", "0.2")
    with run_app(_stalls_then_refuses) as url:
        result = invoke(*args, "--api-url", url)
    # With the default 60 s read timeout the 404 would arrive: exit 3, not a timeout.
    assert result.exit_code == 75, (result.exit_code, result.stdout, result.stderr)
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: cannot reach the Batch API"), line
    assert "timed out" in line


def test_flags_and_env_reach_the_settings_flag_first(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[ApiOptions] = []

    def capture(options: ApiOptions, body: Any) -> list[Any]:
        seen.append(options)
        return []

    monkeypatch.setattr(batches_cli, "run_with_client", capture)
    monkeypatch.setenv("BATCHFLOW_CONNECT_TIMEOUT", "1.5")
    monkeypatch.setenv("BATCHFLOW_READ_TIMEOUT", "99")
    result = invoke("batches", "list", "--api-url", "http://127.0.0.1:9", "--read-timeout", "2.5")
    assert result.exit_code == 0, result.stderr
    assert seen == [ApiOptions("http://127.0.0.1:9", None, connect_timeout=1.5, read_timeout=2.5)]
    settings = resolve_settings(seen[0])
    assert settings.timeouts == Timeouts(connect=1.5, read=2.5)


@pytest.mark.anyio
async def test_the_settings_timeouts_are_the_clients_httpx_timeouts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("BATCHFLOW_CONNECT_TIMEOUT", raising=False)
    monkeypatch.delenv("BATCHFLOW_READ_TIMEOUT", raising=False)
    settings = resolve_settings(ApiOptions("http://127.0.0.1:9", "k", connect_timeout=0.5))
    assert settings.timeouts == Timeouts(connect=0.5)  # the rest stay at their defaults
    async with BatchClient(settings) as client:
        timeout = client.http.timeout
    assert (timeout.connect, timeout.read) == (0.5, Timeouts().read)


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["--connect-timeout", "0"], {}),
        (["--read-timeout", "soon"], {}),
        ([], {"BATCHFLOW_READ_TIMEOUT": "-1"}),
    ],
)
def test_a_bad_timeout_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, args: list[str], env: dict[str, str]
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = invoke("batches", "list", "--api-url", "http://127.0.0.1:9", *args)
    assert result.exit_code == 2, (result.exit_code, result.stderr)
    assert "timeout" in result.stderr
    assert "Traceback" not in result.stderr
