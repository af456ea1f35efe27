"""Fixtures for the client tests."""

from __future__ import annotations

import pytest

from tests.client._fakes import Api


@pytest.fixture
def api() -> Api:
    return Api()
