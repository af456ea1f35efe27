"""Remote workflows: POST each image to an inference-server style workflow endpoint.

Request (what a self-hosted inference server's workflow route expects)::

    {"api_key": "<if configured>",
     "inputs": {<image_input_name>: {"type": "base64", "value": "<b64 of the file bytes>"},
                **params}}

Answer: ``{"outputs": [{...}, ...]}``. The first element becomes the row, field by field, after
``file_name``: a field whose value is ``{"type": "base64", "value": ...}`` becomes an image output
of that name (``jpg``/``png`` by magic bytes); every other field is kept as the JSON value it
already is (nested objects and lists included; the aggregator decides how to render them). An
empty ``outputs`` gives a row with ``file_name`` only.

Transient failures (connect errors, timeouts, 5xx, 429/503 with ``Retry-After``) are retried per
a RetryPolicy; anything else, or running out of retries, is ``WorkflowError("remote-failed")``.
One ``httpx.Client`` per workflow instance; pickling carries only the settings, so each worker
process builds its own client.
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from batchflow.config import RetryPolicy
from batchflow.errors import (
    AuthError,
    BatchflowError,
    NotFoundError,
    PermanentError,
    RateLimitedError,
    TooLargeError,
    TransientError,
)
from batchflow.httperrors import parse_retry_after, translate_httpx
from batchflow.pipeline.retry import retry_call_sync
from batchflow.server.core.netguard import redact_url
from batchflow.server.workflows._types import ImageOutput, WorkflowError, WorkItem, WorkResult

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["RemoteSettings", "RemoteWorkflow"]

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True, slots=True)
class RemoteSettings:
    """One ``[workflows.<id>]`` entry with a ``url``; times in seconds."""

    workflow_id: str
    url: str
    timeout: float = 30.0
    concurrency: int = 4
    retries: int = 3
    headers: tuple[tuple[str, str], ...] = ()
    image_input_name: str = "image"
    api_key: str | None = field(default=None, repr=False)
    retry_base_delay: float = 0.25
    retry_max_delay: float = 20.0

    def retry_policy(self) -> RetryPolicy:
        """``retries`` retries after the first attempt; bounded by attempts, no overall deadline."""
        return RetryPolicy(
            max_attempts=self.retries + 1,
            base_delay=self.retry_base_delay,
            max_delay=self.retry_max_delay,
            deadline=None,
        )


def _status_error(response: httpx.Response) -> BatchflowError:
    status = response.status_code
    detail = f"HTTP {status}: {response.text[:200]}"
    if status in {429, 503}:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return RateLimitedError(detail, retry_after=retry_after)
    if status >= 500:
        return TransientError(detail)
    if status in {401, 403}:
        return AuthError(detail)
    if status == 404:
        return NotFoundError(detail)
    if status == 413:
        return TooLargeError(detail)
    return PermanentError(detail)


def _image_output(name: str, value: Any) -> ImageOutput | None:
    if not (isinstance(value, Mapping) and value.get("type") == "base64"):
        return None
    encoded = value.get("value")
    if not isinstance(encoded, str):
        return None
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return None
    return ImageOutput(name, data, "png" if data.startswith(_PNG_MAGIC) else "jpg")


def result_from_payload(item: WorkItem, payload: Any) -> WorkResult:
    """The row and image outputs of an ``{"outputs": [...]}`` answer (see module docstring)."""
    outputs = payload.get("outputs") if isinstance(payload, Mapping) else None
    if not isinstance(outputs, list):
        raise WorkflowError("remote-failed", "answer has no 'outputs' list")
    first = outputs[0] if outputs else {}
    if not isinstance(first, Mapping):
        raise WorkflowError("remote-failed", "'outputs[0]' is not an object")
    row: dict[str, Any] = {"file_name": item.name}
    images: list[ImageOutput] = []
    for key, value in first.items():
        image = _image_output(str(key), value)
        if image is not None:
            images.append(image)
        elif key != "file_name":
            row[str(key)] = value
    return WorkResult(row=row, images=tuple(images))


class RemoteWorkflow:
    """A workflow run by an HTTP endpoint; ``concurrency`` is its preferred thread count."""

    def __init__(self, settings: RemoteSettings) -> None:
        self.settings = settings
        self.workflow_id = settings.workflow_id
        self.concurrency = settings.concurrency
        self._policy = settings.retry_policy()
        self._client = httpx.Client(
            timeout=httpx.Timeout(settings.timeout),
            headers=dict(settings.headers),
            trust_env=False,
            follow_redirects=False,
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (RemoteWorkflow, (self.settings,))

    def close(self) -> None:
        """Close the HTTP client (idempotent)."""
        self._client.close()

    def process_image(
        self, item: WorkItem, image: Image.Image | None, params: Mapping[str, Any]
    ) -> WorkResult:
        encoded = base64.b64encode(_image_bytes(item, image)).decode("ascii")
        inputs: dict[str, Any] = dict(params)
        inputs[self.settings.image_input_name] = {"type": "base64", "value": encoded}
        body: dict[str, Any] = {"inputs": inputs}
        if self.settings.api_key:
            body["api_key"] = self.settings.api_key
        try:
            payload = retry_call_sync(lambda: self._post(body), policy=self._policy)
        except BatchflowError as exc:
            raise WorkflowError("remote-failed", f"{self.workflow_id}: {exc}") from exc
        return result_from_payload(item, payload)

    def _post(self, body: Mapping[str, Any]) -> Any:
        """One call, with httpx errors translated into the batchflow tree."""
        with translate_httpx(f"POST {redact_url(self.settings.url)}"):
            response = self._client.post(self.settings.url, json=body)
        if response.status_code >= 400:
            raise _status_error(response)
        try:
            return response.json()
        except ValueError as exc:
            raise PermanentError(f"HTTP {response.status_code}: answer is not JSON") from exc


def _image_bytes(item: WorkItem, image: Image.Image | None) -> bytes:
    """The file's bytes, or a JPEG of the decoded video frame."""
    if image is None:
        try:
            return item.path.read_bytes()
        except FileNotFoundError as exc:
            raise WorkflowError("missing-file", f"{item.name}: staged file is missing") from exc
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()
