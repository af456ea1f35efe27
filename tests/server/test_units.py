"""Small pure pieces: durations, page tokens, URL signatures, key checks."""

from __future__ import annotations

import time
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from batchflow.errors import ConfigError, UsageError
from batchflow.server.core.auth import ApiKeys
from batchflow.server.core.blobs import UrlSigner
from batchflow.server.core.paging import decode_token, encode_token, page_of, page_size
from batchflow.server.core.settings import parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("7d", 7 * 86400), ("12h", 43200), ("30m", 1800), ("45", 45), ("2w", 1209600)],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "x", "-1d", "0", "3y"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_duration(text)


def test_page_tokens_round_trip_and_refuse_garbage() -> None:
    assert decode_token(None) == 0
    assert decode_token(encode_token(12345)) == 12345
    assert page_of([1, 2, 3, 4], 3, int) == ([1, 2, 3], encode_token(3))  # one more was there
    assert page_of([1, 2, 3], 3, int) == ([1, 2, 3], None)  # the last page says so
    assert page_of([], 3, int) == ([], None)
    for garbage in ["!!", encode_token(1)[:-2] + "zz", "aWQ6LTE"]:  # "id:-1"
        with pytest.raises(UsageError):
            decode_token(garbage)
    assert page_size(None) == 100
    assert page_size(5000) == 1000
    with pytest.raises(UsageError):
        page_size(0)


def test_url_signer() -> None:
    signer = UrlSigner(b"secret", "http://h:1/", default_ttl=60)
    url = signer.blob_url("b1/abc")
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert url.startswith("http://h:1/blobs/b1/abc?")
    assert signer.verify("GET", parts.path, query["expires"], query["sig"])
    assert not signer.verify("PUT", parts.path, query["expires"], query["sig"])
    assert not signer.verify("GET", "/blobs/b1/other", query["expires"], query["sig"])
    assert not signer.verify("GET", parts.path, str(int(query["expires"]) + 1), query["sig"])
    assert not signer.verify("GET", parts.path, None, query["sig"])
    assert not signer.verify("GET", parts.path, "abc", query["sig"])
    other = UrlSigner(b"other", "http://h:1")
    assert not other.verify("GET", parts.path, query["expires"], query["sig"])
    old = signer.sign("GET", "/blobs/x", ttl=-5)
    old_query = {k: v[0] for k, v in parse_qs(urlsplit(old).query).items()}
    assert int(old_query["expires"]) < time.time()
    assert not signer.verify("GET", "/blobs/x", old_query["expires"], old_query["sig"])


def test_api_keys() -> None:
    keys = ApiKeys(["a", "", "b"])
    assert keys.accepts("a")
    assert keys.accepts("b")
    assert not keys.accepts("")
    assert not keys.accepts(None)
    assert not keys.accepts("ab")
    assert not ApiKeys([]).accepts("a")


def test_database_url_check() -> None:
    from batchflow.server.core.db import check_database_url

    assert check_database_url("postgresql+asyncpg://127.0.0.1/x").startswith("postgresql")
    for bad in ["postgresql://127.0.0.1/x", "not a url", "mysql+aiomysql://h/x"]:
        with pytest.raises(ConfigError):
            check_database_url(bad)


@pytest.mark.anyio
async def test_unexpected_errors_are_a_bare_500(tmp_path: object) -> None:
    from pathlib import Path

    import httpx

    from batchflow.server.app import create_app
    from batchflow.server.core.settings import ServerSettings

    assert isinstance(tmp_path, Path)
    app = create_app(ServerSettings(data_dir=tmp_path, api_keys=("k",), public_url="http://x"))

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals /etc/passwd")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        answer = await client.get("/boom")
        assert answer.status_code == 500
        assert answer.json() == {"error": "internal server error"}
        missing = await client.get("/healthz/nope")
        assert missing.status_code == 404
        assert set(missing.json()) == {"error"}
        wrong_method = await client.delete("/healthz")
        assert wrong_method.status_code == 405
        assert set(wrong_method.json()) == {"error"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workspace", "Bad!"], "--workspace"),
        (["--database-url", "mysql+aiomysql://h/x"], "--database-url"),
        (["--batch-ttl", "soon"], "duration"),
    ],
)
def test_serve_refuses_bad_flags(tmp_path: object, args: list[str], message: str) -> None:
    from click.testing import CliRunner

    from batchflow.cli._app import cli

    result = CliRunner().invoke(cli, ["serve", "--data-dir", str(tmp_path), "--port", "0", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_serve_refuses_a_busy_port(tmp_path: object) -> None:
    import socket

    from click.testing import CliRunner

    from batchflow.cli._app import cli

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(
            cli, ["serve", "--data-dir", str(tmp_path), "--port", str(port)]
        )
    assert result.exit_code == 2, result.output
    assert "can not listen" in result.output
