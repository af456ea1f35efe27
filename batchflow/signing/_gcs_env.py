"""Build a :class:`GcsSigner` from explicit settings or the environment (sync, at start-up).

Precedence: an explicit HMAC key, an explicit key file, env ``GCS_HMAC_ACCESS_ID`` +
``GCS_HMAC_SECRET``, env ``GOOGLE_APPLICATION_CREDENTIALS``, then gcloud's application-default
file (which holds user credentials, refused with an explanation). ``STORAGE_EMULATOR_HOST``
(e.g. fake-gcs-server at ``http://127.0.0.1:4443``) makes the URLs point at the emulator.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from batchflow.errors import ConfigError
from batchflow.signing._gcs import DEFAULT_GCS_ENDPOINT, GcsSigner

__all__ = ["gcs_signer_from_environment"]

_NEEDS_KEY = (
    "signing GCS URLs needs a service-account JSON key (set GOOGLE_APPLICATION_CREDENTIALS to "
    "its path) or an HMAC key (set GCS_HMAC_ACCESS_ID and GCS_HMAC_SECRET)"
)


def _endpoint(explicit: str | None, env: Mapping[str, str]) -> str:
    value = explicit or env.get("STORAGE_EMULATOR_HOST")
    if not value:
        return DEFAULT_GCS_ENDPOINT
    if "://" not in value:
        value = f"http://{value}"
    return value.rstrip("/")


def _adc_path(env: Mapping[str, str]) -> Path:
    config = env.get("CLOUDSDK_CONFIG")
    base = Path(config) if config else Path.home() / ".config" / "gcloud"
    return base / "application_default_credentials.json"


def _load_key_file(path: Path, endpoint: str) -> GcsSigner:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read GCS credentials file {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise ConfigError(f"GCS credentials file {path} is not valid JSON: {exc}") from exc
    if not isinstance(info, dict):
        raise ConfigError(f"GCS credentials file {path} is not a JSON object")
    kind = info.get("type")
    if kind != "service_account":
        raise ConfigError(
            f"GCS credentials in {path} are of type {kind!r}, which can only sign through the "
            "IAM signBlob API (URLs guaranteed for 12 h at most, one API call per URL); "
            + _NEEDS_KEY
        )
    return GcsSigner.from_service_account_info(info, endpoint=endpoint)


def gcs_signer_from_environment(
    *,
    credentials_file: str | os.PathLike[str] | None = None,
    hmac_access_id: str | None = None,
    hmac_secret: str | None = None,
    endpoint: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> GcsSigner:
    """The best key-based GCS signer available; ConfigError saying what to set otherwise."""
    env = os.environ if environ is None else environ
    url = _endpoint(endpoint, env)
    if hmac_access_id or hmac_secret:
        return GcsSigner.from_hmac(hmac_access_id or "", hmac_secret or "", endpoint=url)
    if credentials_file is not None:
        return _load_key_file(Path(credentials_file), url)
    env_id, env_secret = env.get("GCS_HMAC_ACCESS_ID"), env.get("GCS_HMAC_SECRET")
    if env_id or env_secret:
        return GcsSigner.from_hmac(env_id or "", env_secret or "", endpoint=url)
    env_file = env.get("GOOGLE_APPLICATION_CREDENTIALS")
    if env_file:
        return _load_key_file(Path(env_file), url)
    adc = _adc_path(env)
    if adc.is_file():
        return _load_key_file(adc, url)
    raise ConfigError(
        "no GCS key found (user and metadata-server credentials can only sign through the IAM "
        f"signBlob API, 12 h at most): {_NEEDS_KEY}"
    )
