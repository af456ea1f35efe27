"""Where batchflow keeps per-user state (ingest journals)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["journal_path", "state_dir"]


def state_dir(env: Mapping[str, str] | None = None) -> Path:
    """The state directory: ``$BATCHFLOW_STATE_DIR``, ``$XDG_STATE_HOME/batchflow`` or the default.

    The default is ``~/.local/state/batchflow``.
    Not created here: writers create it when they first need it.
    """
    env = os.environ if env is None else env
    explicit = env.get("BATCHFLOW_STATE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = env.get("XDG_STATE_HOME")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "batchflow"
    home = env.get("HOME")
    base = Path(home) if home else Path.home()
    return base / ".local" / "state" / "batchflow"


def journal_path(batch_id: str, source_desc: str, *, base: Path | None = None) -> Path:
    """The default journal of an ingest of ``source_desc`` into ``batch_id``.

    ``<state_dir>/ingests/<batch_id>-<16 hex of sha256(source)>.jsonl``: one journal per
    (batch, source) pair, so re-running the same command finds it again.
    """
    digest = hashlib.sha256(source_desc.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return (base or state_dir()) / "ingests" / f"{batch_id}-{digest}.jsonl"
