"""Make botocore, gcloud-aio-storage and our signers sign at one fixed instant."""

from __future__ import annotations

import datetime as dt
import types

import pytest

NOW = dt.datetime(2026, 11, 27, 23, 59, 58, 123456, tzinfo=dt.UTC)


def freeze_botocore(monkeypatch: pytest.MonkeyPatch, now: dt.datetime = NOW) -> None:
    """botocore.auth reads the clock through ``get_current_datetime`` (naive UTC)."""
    import botocore.auth

    naive = now.astimezone(dt.UTC).replace(tzinfo=None)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: naive)


def freeze_gcloud_aio(monkeypatch: pytest.MonkeyPatch, now: dt.datetime = NOW) -> None:
    """gcloud.aio.storage.blob calls ``datetime.datetime.now(datetime.timezone.utc)``."""
    import gcloud.aio.storage.blob as blob_module

    class _Frozen(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> _Frozen:
            value = now.astimezone(tz) if tz else now.replace(tzinfo=None)
            return cls.fromtimestamp(value.timestamp(), tz)

    fake = types.SimpleNamespace(datetime=_Frozen, timezone=dt.timezone)
    monkeypatch.setattr(blob_module, "datetime", fake)
