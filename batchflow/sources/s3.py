"""S3 (and S3-compatible: R2, MinIO, moto) listing with aioboto3's list_objects_v2 paginator.

Settings come from the usual AWS environment/profile chain. ``AWS_ENDPOINT_URL_S3`` or
``AWS_ENDPOINT_URL`` points at another store; path-style addressing is used for IP/localhost
endpoints or when ``AWS_S3_ADDRESSING_STYLE=path``; ``AWS_REGION`` (or ``AWS_DEFAULT_REGION``)
may be ``auto`` for R2. Only the literal prefix of the glob is listed. botocore errors are
translated once here into ``batchflow.errors``.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import aioboto3
from anyio.abc import ObjectSendStream
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
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
from batchflow.sources._base import Counters, PageBuffer, check_page_size
from batchflow.sources._types import DEFAULT_PAGE_SIZE, ObjectRef, Scope, SourceStatistics
from batchflow.sources.glob import Selection

__all__ = ["S3Source", "s3_client_kwargs", "translate_s3_error"]

_AUTH_CODES = frozenset(
    {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "AllAccessDisabled",
        "AccountProblem",
    }
)
_THROTTLE_CODES = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded"}
)


def _is_local_host(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def s3_client_kwargs(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Keyword arguments for ``session.client("s3", ...)`` derived from the environment."""
    env = os.environ if env is None else env
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None
    style = env.get("AWS_S3_ADDRESSING_STYLE")
    if style is None and endpoint is not None:
        host = urlsplit(endpoint).hostname or ""
        if _is_local_host(host):
            style = "path"
    s3_config: Any = {"addressing_style": style} if style else None
    kwargs: dict[str, Any] = {
        "config": Config(
            signature_version="s3v4",
            s3=s3_config,
            retries={"max_attempts": 5, "mode": "standard"},
            connect_timeout=10,
            read_timeout=60,
        )
    }
    if endpoint:
        kwargs["endpoint_url"] = endpoint
    if region:
        kwargs["region_name"] = region
    return kwargs


def translate_s3_error(exc: Exception, bucket: str) -> BatchflowError:
    """The batchflow error for a botocore failure while listing ``bucket``."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        message = error.get("Message") or code or str(exc)
        if code == "NoSuchBucket" or (status == 404 and code in ("", "404", "NotFound")):
            return NotFoundError(f"bucket '{bucket}' not found")
        if code in _AUTH_CODES or status in (401, 403):
            return AuthError(f"access to bucket '{bucket}' refused: {code}: {message}")
        if code in _THROTTLE_CODES or status in (429, 503):
            return RateLimitedError(f"S3 throttled listing '{bucket}': {code}")
        if code == "InvalidBucketName":
            return UsageError(f"invalid bucket name '{bucket}'")
        if status >= 500:
            return TransientError(f"S3 error listing '{bucket}': {code} ({status})")
        return PermanentError(f"S3 error listing '{bucket}': {code}: {message}")
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return ConfigError(
            "no AWS credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE"
        )
    if isinstance(exc, NoRegionError):
        return ConfigError("no AWS region configured: set AWS_REGION")
    if isinstance(exc, ParamValidationError):
        return UsageError(f"invalid S3 request for bucket '{bucket}': {exc}")
    if isinstance(exc, BotoConnectionError | HTTPClientError):
        return NetworkError(f"cannot reach S3 for bucket '{bucket}': {exc}")
    return PermanentError(f"S3 error listing '{bucket}': {exc}")


class S3Source:
    """Objects in ``s3://bucket/path`` where ``path`` may end in a glob."""

    scheme = "s3"

    def __init__(
        self,
        bucket: str,
        selection: Selection,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        session: aioboto3.Session | None = None,
        client_kwargs: Mapping[str, Any] | None = None,
        description: str | None = None,
    ) -> None:
        self.bucket = bucket
        self.selection = selection
        self.page_size = check_page_size(page_size)
        self.description = description or f"s3://{bucket}/{selection.list_prefix}"
        self._session = session
        self._client_kwargs = dict(client_kwargs) if client_kwargs is not None else None
        self._counters = Counters()

    def statistics(self) -> SourceStatistics:
        return self._counters.snapshot()

    @property
    def scope(self) -> Scope:
        return self.selection.scope(f"s3://{self.bucket}/")

    async def list_pages(self, send: ObjectSendStream[Sequence[ObjectRef]]) -> None:
        async with send:
            buffer = PageBuffer(send, self.page_size, self._counters)
            session = self._session or aioboto3.Session()
            kwargs = self._client_kwargs if self._client_kwargs is not None else s3_client_kwargs()
            try:
                async with session.client("s3", **kwargs) as client:
                    paginator = client.get_paginator("list_objects_v2")
                    pages = paginator.paginate(
                        Bucket=self.bucket,
                        Prefix=self.selection.list_prefix,
                        PaginationConfig={"PageSize": self.page_size},
                    )
                    async for page in pages:
                        await self._take_page(page, buffer)
            except (ClientError, BotoCoreError) as exc:
                raise translate_s3_error(exc, self.bucket) from exc
            await buffer.flush()

    async def _take_page(self, page: Mapping[str, Any], buffer: PageBuffer) -> None:
        for obj in page.get("Contents", ()):
            self._counters.listed += 1
            key = obj["Key"]
            name = self.selection.name_of(key)
            if name is None:
                continue
            etag = obj.get("ETag")
            await buffer.add(
                ObjectRef(
                    key=key,
                    name=name,
                    size=obj.get("Size"),
                    etag=etag.strip('"') if isinstance(etag, str) else None,
                )
            )
