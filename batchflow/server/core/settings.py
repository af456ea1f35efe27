"""Settings of ``batchflow serve`` and the secrets it keeps in its data directory.

Secrets (API key when none is given, the URL-signing secret, the per-workspace publishable key
sent on webhooks) live in files of mode 0600 in the data dir, created on first start.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from batchflow.config import Limits
from batchflow.errors import ConfigError

__all__ = [
    "DEFAULT_WORKSPACE",
    "ServerSettings",
    "default_data_dir",
    "parse_duration",
    "read_or_create_secret",
    "sqlite_url",
]

DEFAULT_WORKSPACE = "local"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def default_data_dir() -> Path:
    """The platform user data dir + ``batchflow/server`` (XDG on Linux)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "batchflow" / "server"


def sqlite_url(data_dir: Path) -> str:
    """The default catalog: a SQLite file in the data dir."""
    return f"sqlite+aiosqlite:///{data_dir / 'catalog.sqlite3'}"


def parse_duration(text: str) -> timedelta:
    """``"7d"``, ``"12h"``, ``"30m"``, ``"45s"``, ``"2w"`` or plain seconds."""
    match = _DURATION.match(text)
    if match is None:
        raise ConfigError(f"invalid duration {text!r}: use e.g. 7d, 12h, 30m or 45s")
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise ConfigError(f"invalid duration {text!r}: must be positive")
    return timedelta(seconds=seconds)


def read_or_create_secret(path: Path, prefix: str = "") -> str:
    """The secret stored in ``path`` (mode 0600), created atomically when missing."""
    try:
        value = path.read_text().strip()
    except FileNotFoundError:
        value = ""
    if value:
        return value
    path.parent.mkdir(parents=True, exist_ok=True)
    value = prefix + secrets.token_urlsafe(32)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return value


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """Everything the app factory needs; built by ``batchflow serve`` or by tests."""

    data_dir: Path
    api_keys: tuple[str, ...]
    public_url: str
    database_url: str | None = None
    workspace: str = DEFAULT_WORKSPACE
    allow_urls: tuple[str, ...] = ()
    batch_ttl: timedelta = timedelta(days=7)
    signed_url_ttl: timedelta = timedelta(hours=24)
    limits: Limits = field(default_factory=Limits)
    fetch_concurrency: int = 16
    shard_size: int = 5000
    sweep_interval: float = 60.0
    webhook_poll_interval: float = 1.0
    # job engine (read by batchflow.server.jobs.plugin; None: its env fallbacks / CPU count)
    workflows_file: Path | None = None
    job_workers: int | None = None
    executor: str = "local"  # batchflow.server.jobs.executors.EXECUTORS

    @property
    def catalog_url(self) -> str:
        return self.database_url or sqlite_url(self.data_dir)

    @property
    def blobs_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def tmp_dir(self) -> Path:
        return self.data_dir / "tmp"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    def signing_secret(self) -> bytes:
        """The HMAC key of signed blob/upload URLs (``DATA_DIR/url_secret``)."""
        return read_or_create_secret(self.data_dir / "url_secret").encode()

    def publishable_key(self) -> str:
        """Sent as ``Authorization`` on webhooks; never the private API key."""
        return read_or_create_secret(
            self.data_dir / f"publishable_key.{self.workspace}", prefix="bfpub_"
        )
