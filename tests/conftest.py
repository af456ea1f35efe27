"""Shared fixtures: anyio backend. Server and emulator fixtures live in their own plugins."""

from __future__ import annotations

import pytest

pytest_plugins = [
    "tests.emulators",
    "tests.server_fixture",
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
