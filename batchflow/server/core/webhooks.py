"""Outbox webhook dispatcher: at-least-once POSTs to ``notificationsURL``, restart-safe.

Events are rows in an outbox (the catalog, behind :class:`OutboxStore`) committed together with
the state change they report; the dispatcher only reads due rows and records each attempt's
outcome, so a restart simply resumes. Receivers de-duplicate on ``event_id``; every attempt
carries ``delivery_attempt`` = attempts made so far + 1.

Outcome of one POST:
- 2xx: delivered.
- 408, 425, 429, any 5xx, connect/read errors, timeouts, other 4xx (401, 403, 409, ...; a
  receiver being (re)configured may start accepting): retried later, the delay decided by the
  one retry engine (``batchflow.pipeline.retry.next_delay``: capped exponential backoff with
  full jitter, ``Retry-After`` honoured, capped by ``policy.max_retry_after``), until
  ``max_attempts`` attempts were made, then given up. The row's ``next_at`` persists the delay,
  so a restart keeps it; the policy's ``deadline`` is not used (rows carry no first-attempt time).
- 400, 404, 405, 410, 413, 414, 415, 422 (the same body to the same URL will never be accepted),
  3xx (redirects are not followed: a POST must not be re-sent somewhere else), a URL refused by
  the SSRF policy or one httpx can not use: given up at once.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

import anyio
import anyio.abc
import anyio.lowlevel
import httpx
import structlog

from batchflow.config import RetryPolicy
from batchflow.errors import BatchflowError, NetworkError, TransientError, UsageError
from batchflow.httperrors import connect_failed, parse_retry_after, translate_httpx
from batchflow.pipeline.retry import next_delay
from batchflow.server.core.db import utcnow
from batchflow.server.core.netguard import (
    ResolvedUrl,
    UnsafeUrlError,
    UrlPolicy,
    redact_url,
    resolve_safe,
)

__all__ = [
    "DEFAULT_WEBHOOK_RETRY",
    "PERMANENT_STATUSES",
    "DispatcherStats",
    "OutboxItem",
    "OutboxStore",
    "WebhookDispatcher",
]

log = structlog.get_logger(__name__)

#: Delays only: the number of attempts is ``WebhookDispatcher(max_attempts=...)``.
DEFAULT_WEBHOOK_RETRY = RetryPolicy(
    base_delay=2.0, max_delay=600.0, deadline=None, max_retry_after=3600.0
)
PERMANENT_STATUSES = frozenset({400, 404, 405, 410, 413, 414, 415, 422})


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A due event: ``body`` without ``delivery_attempt``; ``attempts`` already made."""

    id: int
    url: str
    body: Mapping[str, Any]
    attempts: int
    authorization: str | None


class OutboxStore(Protocol):
    """Where outbox rows live: the catalog (server) or ``batchflow.testing.webhooks`` (tests)."""

    async def due(self, now: datetime, limit: int) -> Sequence[OutboxItem]: ...

    async def delivered(self, item_id: int, attempts: int) -> None: ...

    async def retry_later(
        self, item_id: int, attempts: int, next_at: datetime, error: str
    ) -> None: ...

    async def give_up(self, item_id: int, attempts: int, error: str) -> None: ...


@dataclass(frozen=True, slots=True)
class DispatcherStats:
    """Counters since start (a snapshot)."""

    attempted: int
    delivered: int
    retried: int
    given_up: int
    in_flight: int


@dataclass(frozen=True, slots=True)
class _Outcome:
    kind: Literal["ok", "retry", "fail"]
    detail: str = ""
    retry_after: float | None = None


class WebhookDispatcher:
    """Delivers due outbox rows with bounded concurrency; see the module docstring for policy."""

    def __init__(
        self,
        store: OutboxStore,
        client: httpx.AsyncClient,
        *,
        policy: RetryPolicy | None = None,
        url_policy: UrlPolicy | None = None,
        clock: Callable[[], datetime] = utcnow,
        poll_interval: float = 1.0,
        concurrency: int = 8,
        max_attempts: int = 10,
        timeout: float = 10.0,
    ) -> None:
        self._store = store
        self._client = client
        # attempts are counted by the dispatcher (``max_attempts``), not by the delay policy
        self._policy = replace(
            policy or DEFAULT_WEBHOOK_RETRY, max_attempts=max(1, max_attempts), deadline=None
        )
        self._url_policy = url_policy
        self._clock = clock
        self._poll_interval = poll_interval
        self._limiter = anyio.CapacityLimiter(max(1, concurrency))
        self._batch = max(4 * concurrency, 32)
        self._timeout = timeout
        self._rng = random.Random()
        self._woken = False
        self._event: anyio.Event | None = None
        self._counts = {"attempted": 0, "delivered": 0, "retried": 0, "given_up": 0}

    def statistics(self) -> DispatcherStats:
        return DispatcherStats(**self._counts, in_flight=self._limiter.statistics().borrowed_tokens)

    def wake(self) -> None:
        """New rows were committed: dispatch now rather than at the next poll.

        Call it from the event loop thread (from another thread: ``anyio.from_thread.run_sync``).
        """
        self._woken = True
        if self._event is not None:
            self._event.set()

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Deliver forever (until cancelled): a pass, then wait for ``wake()`` or the poll."""
        task_status.started()
        while True:
            self._woken = False
            try:
                count = await self.deliver_due()
            except Exception:  # a catalog hiccup must not stop webhooks
                log.exception("webhook pass failed")
                count = 0
            if count >= self._batch or self._woken:
                await anyio.lowlevel.checkpoint()
                continue
            self._event = anyio.Event()
            with anyio.move_on_after(self._poll_interval):
                await self._event.wait()
            self._event = None

    async def deliver_due(self) -> int:
        """One pass over the rows due now; returns how many were attempted."""
        items = await self._store.due(self._clock(), self._batch)
        async with anyio.create_task_group() as tg:
            for item in items:
                tg.start_soon(self._deliver_limited, item)
        return len(items)

    async def _deliver_limited(self, item: OutboxItem) -> None:
        async with self._limiter:
            await self._deliver(item)

    async def _deliver(self, item: OutboxItem) -> None:
        attempt = item.attempts + 1
        body = dict(item.body) | {"delivery_attempt": attempt}
        self._counts["attempted"] += 1
        outcome = await self._attempt(item, body)
        where = redact_url(item.url)
        fields = {"outbox_id": item.id, "url": where, "attempt": attempt}
        try:
            if outcome.kind == "ok":
                await self._store.delivered(item.id, attempt)
                self._counts["delivered"] += 1
                log.info("webhook delivered", **fields)
            elif (delay := self._retry_delay(outcome, attempt)) is not None:
                next_at = self._clock() + timedelta(seconds=delay)
                await self._store.retry_later(item.id, attempt, next_at, outcome.detail)
                self._counts["retried"] += 1
                log.info(
                    "webhook retry scheduled", delay=round(delay, 3), error=outcome.detail, **fields
                )
            else:
                error = outcome.detail
                if outcome.kind == "retry":
                    error = f"{error} (gave up after {attempt} attempts)"
                await self._store.give_up(item.id, attempt, error)
                self._counts["given_up"] += 1
                log.warning("webhook given up", error=error, **fields)
        except Exception:  # the row stays due and is retried: at-least-once
            log.exception("recording webhook outcome failed", **fields)

    def _retry_delay(self, outcome: _Outcome, attempt: int) -> float | None:
        """Seconds until the next attempt of a failed one, or None to give up."""
        if outcome.kind != "retry":
            return None
        failure = TransientError(outcome.detail, retry_after=outcome.retry_after)
        return next_delay(self._policy, attempt, failure, elapsed=0.0, rng=self._rng)

    async def _attempt(self, item: OutboxItem, body: Mapping[str, Any]) -> _Outcome:
        headers = {"Content-Type": "application/json"}
        if item.authorization:
            headers["Authorization"] = item.authorization
        try:
            content = json.dumps(body, separators=(",", ":"), default=str).encode()
            with anyio.fail_after(self._timeout):
                status, retry_after = await self._post(item.url, content, headers)
        except UnsafeUrlError as exc:
            return _Outcome("fail", f"{exc.failure_type}: {exc}")
        except UsageError as exc:  # httpx can not use the URL (translated)
            return _Outcome("fail", f"unusable webhook URL: {exc}")
        except TransientError as exc:
            return _Outcome("retry", str(exc), exc.retry_after)
        except BatchflowError as exc:
            # DNS said "no such host": the receiver may come back, so keep trying.
            return _Outcome("retry", str(exc))
        except TimeoutError:
            return _Outcome("retry", f"no answer within {self._timeout}s")
        except (TypeError, ValueError) as exc:
            return _Outcome("fail", f"unusable webhook URL: {type(exc).__name__}: {exc}")
        return _classify(status, retry_after)

    async def _post(
        self, url: str, content: bytes, headers: dict[str, str]
    ) -> tuple[int, float | None]:
        """POST, pinned to a checked IP when a URL policy is set; the body is never read.

        httpx errors leave as batchflow errors (``batchflow.httperrors``)."""
        if self._url_policy is None:
            with translate_httpx("POST"):
                request = self._client.build_request("POST", url, content=content, headers=headers)
                return await self._send(request)
        target: ResolvedUrl = await resolve_safe(url, self._url_policy)
        last: BatchflowError | None = None
        for ip in target.addresses[:4]:
            try:
                with translate_httpx("POST"):
                    request = target.request(
                        self._client, "POST", ip, content=content, headers=headers
                    )
                    return await self._send(request)
            except NetworkError as exc:
                if not connect_failed(exc):
                    raise
                last = exc
        assert last is not None
        raise last

    async def _send(self, request: httpx.Request) -> tuple[int, float | None]:
        response = await self._client.send(request, stream=True)
        await response.aclose()
        retry_after = parse_retry_after(response.headers.get("retry-after"), now=self._clock())
        return response.status_code, retry_after


def _classify(status: int, retry_after: float | None) -> _Outcome:
    if 200 <= status < 300:
        return _Outcome("ok")
    detail = f"HTTP {status}"
    if 300 <= status < 400:
        return _Outcome("fail", f"{detail}: redirects are not followed")
    if status in PERMANENT_STATUSES:
        return _Outcome("fail", detail)
    return _Outcome("retry", detail, retry_after)
