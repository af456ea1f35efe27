"""webhooks: outbox delivery against a real receiver on 127.0.0.1, with a fake clock."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import httpx
import pytest
from structlog.testing import capture_logs

from batchflow.config import RetryPolicy
from batchflow.server.core.netguard import UrlPolicy
from batchflow.server.core.webhooks import OutboxItem, WebhookDispatcher
from batchflow.testing.webhooks import MemoryOutboxStore

from ._origin import Origin, plain_client

pytestmark = pytest.mark.anyio

SECRET = "bfpub_very-secret-key"
QUICK = RetryPolicy(base_delay=1.0, max_delay=8.0, deadline=None, max_retry_after=600.0)


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class FlakyStore(MemoryOutboxStore):
    """Can fail its next calls; lets a test wait for a delivery without polling."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_due = 0
        self.fail_delivered = 0
        self.events: dict[int, anyio.Event] = {}

    async def wait_delivered(self, item_id: int) -> None:
        with anyio.fail_after(5):
            if self.get(item_id).state != "delivered":
                await self.events.setdefault(item_id, anyio.Event()).wait()

    async def due(self, now: datetime, limit: int) -> Sequence[OutboxItem]:
        if self.fail_due:
            self.fail_due -= 1
            raise RuntimeError("database is locked")
        return await super().due(now, limit)

    async def delivered(self, item_id: int, attempts: int) -> None:
        if self.fail_delivered:
            self.fail_delivered -= 1
            raise RuntimeError("database is locked")
        await super().delivered(item_id, attempts)
        self.events.setdefault(item_id, anyio.Event()).set()


def event(n: int = 1) -> dict[str, Any]:
    return {
        "type": "roboflow-batch-job-notification-v1",
        "event_id": f"evt-{n}",
        "job_id": "job-1",
        "job_state": "success",
    }


def dispatcher(store: Any, client: httpx.AsyncClient, clock: FakeClock, **kw: Any) -> Any:
    kw.setdefault("policy", QUICK)
    kw.setdefault("timeout", 5.0)
    return WebhookDispatcher(store, client, clock=clock, **kw)


async def drive(d: WebhookDispatcher, clock: FakeClock, passes: int) -> list[int]:
    counts = []
    for _ in range(passes):
        counts.append(await d.deliver_due())
        clock.advance(3600)
    return counts


async def test_retries_until_accepted(origin: Origin) -> None:
    origin.script("/hook", "500", "drop")
    store, clock = MemoryOutboxStore(), FakeClock()
    item_id = store.add(f"{origin.base}/hook", event(), authorization=SECRET)
    async with plain_client() as client:
        d = dispatcher(store, client, clock)
        assert await d.deliver_due() == 1
        record = store.get(item_id)
        assert record.state == "pending"
        assert record.attempts == 1
        assert record.last_error == "HTTP 500"
        assert record.next_at is not None
        assert timedelta(0) <= record.next_at - clock.now <= timedelta(seconds=1.0)
        assert await d.deliver_due() in (0, 1)  # due again only if the jitter drew ~0
        clock.advance(3600)
        assert await drive(d, clock, 3) in ([1, 1, 0], [1, 0, 0])
    record = store.get(item_id)
    assert record.state == "delivered"
    assert record.attempts == 3
    posts = origin.posts("/hook")
    bodies = [json.loads(p.body) for p in posts]
    assert [b["delivery_attempt"] for b in bodies] == [1, 2, 3]
    assert {b["event_id"] for b in bodies} == {"evt-1"}
    assert all({k: v for k, v in b.items() if k != "delivery_attempt"} == event() for b in bodies)
    assert all(p.headers["authorization"] == SECRET for p in posts)
    assert all(p.headers["content-type"] == "application/json" for p in posts)
    stats = d.statistics()
    assert (stats.attempted, stats.delivered, stats.retried, stats.given_up) == (3, 1, 2, 0)


async def test_gives_up_after_max_attempts(origin: Origin) -> None:
    origin.script("/hook", *["503"] * 10)
    store, clock = MemoryOutboxStore(), FakeClock()
    item_id = store.add(f"{origin.base}/hook", event())
    async with plain_client() as client:
        d = dispatcher(store, client, clock, max_attempts=4)
        assert await drive(d, clock, 6) == [1, 1, 1, 1, 0, 0]
    record = store.get(item_id)
    assert record.state == "failed"
    assert record.attempts == 4
    assert record.last_error == "HTTP 503 (gave up after 4 attempts)"
    assert len(origin.posts("/hook")) == 4
    assert "authorization" not in origin.posts("/hook")[0].headers


@pytest.mark.parametrize(("retry_after", "expected"), [("30", 30.0), ("99999", 600.0)])
async def test_retry_after_is_honoured_and_capped(
    origin: Origin, retry_after: str, expected: float
) -> None:
    origin.script("/hook", f"429:{retry_after}")
    store, clock = MemoryOutboxStore(), FakeClock()
    item_id = store.add(f"{origin.base}/hook", event())
    async with plain_client() as client:
        d = dispatcher(store, client, clock)
        await d.deliver_due()
        assert store.get(item_id).next_at == clock.now + timedelta(seconds=expected)
        clock.advance(expected - 1)
        assert await d.deliver_due() == 0
        clock.advance(1)
        assert await d.deliver_due() == 1
    assert store.get(item_id).state == "delivered"


async def test_retry_after_http_date_uses_the_clock(origin: Origin) -> None:
    clock = FakeClock()
    when = (clock.now + timedelta(seconds=120)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    origin.script("/hook", f"503:{when}")
    store = MemoryOutboxStore()
    item_id = store.add(f"{origin.base}/hook", event())
    async with plain_client() as client:
        await dispatcher(store, client, clock).deliver_due()
    assert store.get(item_id).next_at == clock.now + timedelta(seconds=120)


@pytest.mark.parametrize(
    ("step", "state"),
    [
        ("404", "failed"),
        ("410", "failed"),
        ("400", "failed"),
        ("302", "failed"),
        ("401", "pending"),
        ("403", "pending"),
        ("408", "pending"),
        ("409", "pending"),
    ],
)
async def test_status_classification(origin: Origin, step: str, state: str) -> None:
    origin.script("/hook", step)
    store, clock = MemoryOutboxStore(), FakeClock()
    item_id = store.add(f"{origin.base}/hook", event())
    async with plain_client() as client:
        await dispatcher(store, client, clock).deliver_due()
    record = store.get(item_id)
    assert record.state == state
    assert record.attempts == 1
    assert record.last_error is not None
    assert record.last_error.startswith(f"HTTP {step}")


async def test_ssrf_policy_refuses_before_connecting(guarded: Any) -> None:
    store, clock = MemoryOutboxStore(), FakeClock()
    ids = [
        store.add("http://169.254.169.254/latest/meta-data", event(1)),
        store.add("http://10.0.0.1/hook", event(2)),
        store.add("http://localhost:9/hook", event(3)),
        store.add("ftp://example.com/hook", event(4)),
    ]
    d = dispatcher(store, guarded, clock, url_policy=UrlPolicy())
    assert await d.deliver_due() == 4
    assert guarded.guard.requests == []
    for item_id in ids:
        record = store.get(item_id)
        assert record.state == "failed"
        assert record.last_error is not None
        assert record.last_error.startswith("unsafe-url-detected")


async def test_allowed_target_is_pinned(origin: Origin, guarded: Any) -> None:
    store, clock = MemoryOutboxStore(), FakeClock()
    item_id = store.add(f"http://localhost:{origin.port}/hook", event())
    d = dispatcher(store, guarded, clock, url_policy=UrlPolicy.from_strings(["127.0.0.1", "::1"]))
    await d.deliver_due()
    assert store.get(item_id).state == "delivered"
    assert origin.posts("/hook")[0].headers["host"] == f"localhost:{origin.port}"
    assert all(r.url.host != "localhost" for r in guarded.guard.requests)


async def test_connection_refused_and_timeout_are_retried() -> None:
    async def hang(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(5)
        return httpx.Response(200)

    store, clock = MemoryOutboxStore(), FakeClock()
    item_id = store.add("http://127.0.0.1:9/hook", event())
    async with httpx.AsyncClient(transport=httpx.MockTransport(hang)) as client:
        await dispatcher(store, client, clock, timeout=0.05).deliver_due()
    assert store.get(item_id).state == "pending"
    assert store.get(item_id).last_error == "no answer within 0.05s"

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as client:
        clock.advance(3600)
        await dispatcher(store, client, clock).deliver_due()
    record = store.get(item_id)
    assert (record.state, record.attempts) == ("pending", 2)
    assert record.last_error == "POST: connection failed: refused"


async def test_concurrency_is_bounded(origin: Origin) -> None:
    origin.hold = 5.0  # each POST waits (bounded) until a second one is in flight
    origin.hold_total = 6
    store, clock = MemoryOutboxStore(), FakeClock()
    for n in range(6):
        store.add(f"{origin.base}/hook", event(n))
    async with plain_client() as client:
        d = dispatcher(store, client, clock, concurrency=2)
        with anyio.fail_after(20):
            assert await d.deliver_due() == 6
    assert len(store.delivered_ids()) == 6
    assert origin.max_in_flight == 2


async def test_run_wakes_and_polls(origin: Origin) -> None:
    store, clock = FlakyStore(), FakeClock()
    async with plain_client() as client:
        d = dispatcher(store, client, clock, poll_interval=60.0)
        async with anyio.create_task_group() as tg:
            await tg.start(d.run)
            first = store.add(f"{origin.base}/hook", event(1))
            d.wake()
            await store.wait_delivered(first)
            # a row added without wake() waits for the 60 s poll
            second = store.add(f"{origin.base}/hook", event(2))
            await anyio.wait_all_tasks_blocked()
            assert store.get(second).state == "pending"
            d.wake()
            await store.wait_delivered(second)
            tg.cancel_scope.cancel()


async def test_store_errors_do_not_stop_delivery(origin: Origin) -> None:
    store, clock = FlakyStore(), FakeClock()
    item_id = store.add(f"{origin.base}/hook", event(), authorization=SECRET)
    store.fail_due = 1
    store.fail_delivered = 1
    async with plain_client() as client:
        d = dispatcher(store, client, clock, poll_interval=0.02)
        with capture_logs() as logs:
            async with anyio.create_task_group() as tg:
                await tg.start(d.run)
                await store.wait_delivered(item_id)
                tg.cancel_scope.cancel()
    # at-least-once: the unrecorded first delivery was sent again
    assert [json.loads(p.body)["delivery_attempt"] for p in origin.posts("/hook")] == [1, 1]
    events = [entry["event"] for entry in logs]
    assert "webhook pass failed" in events
    assert "recording webhook outcome failed" in events
    assert SECRET not in repr(logs)


async def test_authorization_is_never_logged(origin: Origin) -> None:
    origin.script("/hook", "500")
    store, clock = MemoryOutboxStore(), FakeClock()
    store.add(f"{origin.base}/hook?token=querysecret", event(), authorization=SECRET)
    async with plain_client() as client:
        d = dispatcher(store, client, clock, max_attempts=2)
        with capture_logs() as logs:
            await drive(d, clock, 2)
    assert [entry["event"] for entry in logs] == ["webhook retry scheduled", "webhook delivered"]
    assert SECRET not in repr(logs)
    assert "querysecret" not in repr(logs)
