from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.server._helpers import Origin, Receiver, run_origin, run_receiver
from tests.server_fixture import ServerHandle


@pytest.fixture(scope="session")
def origin() -> Iterator[Origin]:
    with run_origin() as state:
        yield state


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with run_receiver() as state:
        yield state


@pytest.fixture
def batch_id() -> str:
    return "b-" + uuid.uuid4().hex[:12]


@pytest.fixture
def client(staging_server: ServerHandle) -> Iterator[httpx.Client]:
    with staging_server.client() as c:
        yield c
