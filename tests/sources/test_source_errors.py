"""Location parsing and the one-place translation of vendor errors into batchflow.errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from batchflow.errors import (
    AuthError,
    BatchflowError,
    ConfigError,
    NetworkError,
    NotFoundError,
    PermanentError,
    RateLimitedError,
    TransientError,
    UsageError,
)
from batchflow.sources import (
    AzureSource,
    GcsSource,
    LocalSource,
    ReferencesSource,
    S3Source,
    Source,
    open_source,
)
from batchflow.sources.azure import container_client_from_env, translate_azure_error
from batchflow.sources.gcs import translate_gcs_error
from batchflow.sources.s3 import s3_client_kwargs, translate_s3_error
from tests.emulators import MotoS3
from tests.sources._helpers import collect

# ------------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("uri", "cls", "bucket", "list_prefix", "base"),
    [
        ("s3://b1x/photos/", S3Source, "b1x", "photos/", "photos/"),
        ("s3://b1x", S3Source, "b1x", "", ""),
        ("S3://b1x/a/*.jpg", S3Source, "b1x", "a/", "a/"),
        ("gs://g/a/img*.png", GcsSource, "g", "a/img", "a/"),
        ("az://cont/x/**/y", AzureSource, "cont", "x/", "x/"),
        ("az://cont/x/y", AzureSource, "cont", "x/y", "x/"),
    ],
)
def test_bucket_uris(uri: str, cls: type, bucket: str, list_prefix: str, base: str) -> None:
    source = open_source(uri)
    assert isinstance(source, cls)
    assert isinstance(source, Source)
    assert source.bucket == bucket
    assert source.description == uri
    selection = source.selection  # type: ignore[attr-defined]
    assert (selection.list_prefix, selection.base) == (list_prefix, base)


def test_local_and_references_rules(tmp_path: Path) -> None:
    (tmp_path / "dir.jsonl").mkdir()
    (tmp_path / "refs.JSONL").write_text("")
    assert isinstance(open_source(str(tmp_path)), LocalSource)
    assert isinstance(open_source(f"file://{tmp_path}"), LocalSource)
    assert isinstance(open_source(str(tmp_path / "dir.jsonl")), LocalSource)
    assert isinstance(open_source(str(tmp_path / "refs.JSONL")), ReferencesSource)
    assert isinstance(open_source("https://h.example/x/refs.jsonl?sig=1"), ReferencesSource)
    space = tmp_path / "with space"
    space.mkdir()
    local = open_source("file://" + str(space).replace(" ", "%20"))
    assert isinstance(local, LocalSource)
    assert local.root == str(space)


@pytest.mark.parametrize(
    ("uri", "match"),
    [
        ("", "empty"),
        ("s3://", "missing bucket"),
        ("gs:///path", "missing bucket"),
        ("az://c*/x", "cannot contain a glob"),
        ("ftp://host/x", "unsupported source scheme"),
        ("https://host/folder/", "jsonl"),
        ("s3://bkt/a/[b", "unclosed"),
        ("s3://bkt/a/[z-a]", "empty range"),
    ],
)
def test_bad_uris(uri: str, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        open_source(uri)


def test_page_size_bounds() -> None:
    with pytest.raises(UsageError, match="page size"):
        open_source("s3://bkt/x", page_size=0)


def test_extensions_are_normalised(tmp_path: Path) -> None:
    source = open_source(str(tmp_path), extensions={"JPG", ".Png"})
    assert isinstance(source, LocalSource)
    assert source.extensions == frozenset({".jpg", ".png"})


# ----------------------------------------------------------------------------- S3 errors


def _client_error(code: str, status: int) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": code},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "ListObjectsV2")


@pytest.mark.parametrize(
    ("exc", "cls"),
    [
        (_client_error("NoSuchBucket", 404), NotFoundError),
        (_client_error("AccessDenied", 403), AuthError),
        (_client_error("InvalidAccessKeyId", 403), AuthError),
        (_client_error("SignatureDoesNotMatch", 403), AuthError),
        (_client_error("SlowDown", 503), RateLimitedError),
        (_client_error("InternalError", 500), TransientError),
        (_client_error("InvalidArgument", 400), PermanentError),
        (NoCredentialsError(), ConfigError),
        (PartialCredentialsError(provider="env", cred_var="AWS_SECRET_ACCESS_KEY"), ConfigError),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), NetworkError),
        (ConnectTimeoutError(endpoint_url="http://127.0.0.1:1"), NetworkError),
        (ReadTimeoutError(endpoint_url="http://127.0.0.1:1"), NetworkError),
        (ParamValidationError(report="bad"), UsageError),
    ],
)
def test_s3_errors(exc: Exception, cls: type[BatchflowError]) -> None:
    err = translate_s3_error(exc, "bkt")
    assert type(err) is cls
    if cls is NotFoundError:
        assert str(err) == "bucket 'bkt' not found"


def test_s3_client_settings() -> None:
    local = s3_client_kwargs({"AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_REGION": "auto"})
    assert local["endpoint_url"] == "http://127.0.0.1:9000"
    assert local["region_name"] == "auto"
    assert local["config"].s3 == {"addressing_style": "path"}
    specific = s3_client_kwargs(
        {"AWS_ENDPOINT_URL": "http://a", "AWS_ENDPOINT_URL_S3": "https://r2.example.com"}
    )
    assert specific["endpoint_url"] == "https://r2.example.com"
    assert specific["config"].s3 is None
    forced = s3_client_kwargs(
        {"AWS_ENDPOINT_URL": "https://x.io", "AWS_S3_ADDRESSING_STYLE": "path"}
    )
    assert forced["config"].s3 == {"addressing_style": "path"}
    assert "endpoint_url" not in s3_client_kwargs({})


@pytest.mark.anyio
async def test_s3_missing_credentials_is_config_error(
    moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_s3.endpoint_url)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(ConfigError, match="no AWS credentials"):
        await collect(open_source("s3://whatever-bucket/x/"))


# ---------------------------------------------------------------------------- GCS errors


@pytest.mark.anyio
async def test_gcs_unreadable_credentials_file_is_config_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing-key.json"))
    with pytest.raises(ConfigError, match=r"missing-key\.json") as info:
        await collect(open_source("gs://bkt/x/"))
    assert isinstance(info.value.__cause__, FileNotFoundError)


def _response_error(status: int) -> aiohttp.ClientResponseError:
    return aiohttp.ClientResponseError(
        request_info=None,  # type: ignore[arg-type]
        history=(),
        status=status,
        message="msg",
    )


@pytest.mark.parametrize(
    ("exc", "cls"),
    [
        (_response_error(404), NotFoundError),
        (_response_error(401), AuthError),
        (_response_error(403), AuthError),
        (_response_error(429), RateLimitedError),
        (_response_error(502), TransientError),
        (_response_error(400), PermanentError),
        (aiohttp.ClientConnectionError("refused"), NetworkError),
        (aiohttp.ServerDisconnectedError(), NetworkError),
        (TimeoutError(), NetworkError),
    ],
)
def test_gcs_errors(exc: BaseException, cls: type[BatchflowError]) -> None:
    assert type(translate_gcs_error(exc, "bkt")) is cls


# -------------------------------------------------------------------------- Azure errors


def _http_error(status: int) -> HttpResponseError:
    err = HttpResponseError(message="boom")
    err.status_code = status
    return err


@pytest.mark.parametrize(
    ("exc", "cls"),
    [
        (ResourceNotFoundError("ContainerNotFound"), NotFoundError),
        (ClientAuthenticationError("bad key"), AuthError),
        (ServiceRequestError("refused"), NetworkError),
        (ServiceResponseError("reset"), NetworkError),
        (_http_error(403), AuthError),
        (_http_error(503), RateLimitedError),
        (_http_error(500), TransientError),
        (_http_error(409), PermanentError),
    ],
)
def test_azure_errors(exc: HttpResponseError, cls: type[BatchflowError]) -> None:
    err = translate_azure_error(exc, "cont")
    assert type(err) is cls
    if cls is NotFoundError:
        assert str(err) == "container 'cont' not found"


def test_azure_env_rules() -> None:
    with pytest.raises(ConfigError, match="no Azure storage account"):
        container_client_from_env("c", {})
    with pytest.raises(ConfigError, match="no Azure credentials"):
        container_client_from_env("c", {"AZURE_STORAGE_ACCOUNT": "acct"})
    sas = container_client_from_env(
        "c", {"AZURE_STORAGE_ACCOUNT": "acct", "AZURE_STORAGE_SAS_TOKEN": "?sv=1&sig=x"}
    )
    assert sas.url.startswith("https://acct.blob.core.windows.net/c")
    custom = container_client_from_env(
        "c",
        {
            "AZURE_STORAGE_ACCOUNT_URL": "http://127.0.0.1:1/acct",
            "AZURE_STORAGE_ACCOUNT": "acct",
            "AZURE_STORAGE_KEY": "a2V5",
        },
    )
    assert custom.url.startswith("http://127.0.0.1:1/acct/c")
