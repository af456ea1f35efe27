"""The one ``Retry-After`` reader that client and server share."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

import batchflow.client
import batchflow.server.core.netguard
import batchflow.server.core.webhooks
import batchflow.server.workflows.remote
from batchflow.httperrors import parse_retry_after

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        (" 0.5 ", 0.5),
        ("-4", 0.0),
        ("0", 0.0),
        ("Thu, 01 Jan 2026 12:00:10 GMT", 10.0),
        ("Thu, 01 Jan 2026 12:00:10 -0000", 10.0),  # a date without a zone is UTC
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # in the past: retry now
        (None, None),
        ("", None),
        ("   ", None),
        ("soon", None),
        ("nan", None),
        ("inf", None),
    ],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == seconds


def test_the_date_form_is_relative_to_the_current_time_by_default() -> None:
    in_a_minute = datetime.now(UTC).replace(microsecond=0).timestamp() + 60
    header = datetime.fromtimestamp(in_a_minute, UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
    seconds = parse_retry_after(header)
    assert seconds is not None
    assert 0.0 < seconds <= 60.0


def test_no_other_copy_is_left() -> None:
    assert batchflow.client.parse_retry_after is parse_retry_after
    for module in (
        batchflow.server.core.netguard,
        batchflow.server.core.webhooks,
        batchflow.server.workflows.remote,
    ):
        assert getattr(module, "parse_retry_after", parse_retry_after) is parse_retry_after
