"""GcsSigner: identical to gcloud-aio-storage's V4 signing, and RSA-verifiable."""

from __future__ import annotations

import hashlib
import hmac
import json
import types
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlsplit

import anyio
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchflow.errors import ConfigError
from batchflow.signing import GcsSigner, gcs_signer_from_environment, sign_many

from ._frozen import NOW, freeze_gcloud_aio

EMAIL = "batch-signer@my-project.iam.gserviceaccount.com"
KEYS = [
    "plain.jpg",
    "dir/sub/x.png",
    "with space.jpg",
    "plus+sign",
    "percent%20lit",
    "tilde~",
    "double//slash",
    "/leading",
    "question?.jpg",
    "hash#.jpg",
    "eq=amp&",
    "unicodé/日本語",
    "emoji 😀",
    "semi;colon,comma:@$'!*()",
]


@pytest.fixture(scope="module")
def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def sa_info(private_key: rsa.RSAPrivateKey) -> dict[str, object]:
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return {
        "type": "service_account",
        "project_id": "my-project",
        "private_key_id": "0123abcd",
        "private_key": pem,
        "client_email": EMAIL,
        "client_id": "1234567890",
        "token_uri": "https://oauth2.googleapis.com/token",
    }


@pytest.fixture(scope="module")
def rsa_signer(sa_info: dict[str, object]) -> GcsSigner:
    return GcsSigner.from_service_account_info(sa_info)


@pytest.fixture
def sa_file(tmp_path: Path, sa_info: dict[str, object]) -> Path:
    path = tmp_path / "sa.json"
    path.write_text(json.dumps(sa_info))
    return path


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (
        "GOOGLE_APPLICATION_CREDENTIALS",
        "GCS_HMAC_ACCESS_ID",
        "GCS_HMAC_SECRET",
        "STORAGE_EMULATOR_HOST",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))


def gcloud_aio_url(
    monkeypatch: pytest.MonkeyPatch, info: dict[str, object], bucket: str, key: str, expires: int
) -> str:
    import gcloud.aio.storage.blob as blob_module

    freeze_gcloud_aio(monkeypatch)
    monkeypatch.setattr(blob_module, "HOST", "storage.googleapis.com")
    blob = blob_module.Blob(types.SimpleNamespace(name=bucket), key, {"size": 0})  # type: ignore[arg-type]
    token = types.SimpleNamespace(service_data=info)

    async def run() -> str:
        url: str = await blob.get_signed_url(expires, token=token)  # type: ignore[arg-type]
        return url

    return anyio.run(run)


def verify_rsa(
    url: str, public_key: rsa.RSAPublicKey, host: str = "storage.googleapis.com"
) -> None:
    """Rebuild the canonical request from the URL (Google's V4 spec) and check the signature."""
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    params = dict(pairs)
    signature = bytes.fromhex(params.pop("X-Goog-Signature"))
    canonical_query = "&".join(
        f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(params.items())
    )
    canonical = "\n".join(
        ["GET", parts.path, canonical_query, f"host:{host}\n", "host", "UNSIGNED-PAYLOAD"]
    )
    scope = params["X-Goog-Credential"].split("/", 1)[1]
    to_sign = "\n".join(
        [
            "GOOG4-RSA-SHA256",
            params["X-Goog-Date"],
            scope,
            hashlib.sha256(canonical.encode()).hexdigest(),
        ]
    )
    public_key.verify(signature, to_sign.encode(), padding.PKCS1v15(), hashes.SHA256())


@pytest.mark.parametrize("key", KEYS)
def test_identical_to_gcloud_aio_and_verifiable(
    monkeypatch: pytest.MonkeyPatch,
    sa_info: dict[str, object],
    private_key: rsa.RSAPrivateKey,
    key: str,
) -> None:
    signer = GcsSigner.from_service_account_info(sa_info)
    assert signer.cpu_heavy is True
    url = signer.sign("my-bucket", key, expires_in=86400, now=NOW)
    assert url == gcloud_aio_url(monkeypatch, sa_info, "my-bucket", key, 86400)
    verify_rsa(url, private_key.public_key())
    assert url.startswith("https://storage.googleapis.com/my-bucket/")
    assert "X-Goog-Date=20261127T235958Z" in url


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    key=st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=60),
    expires=st.integers(1, 604800),
)
def test_property_identical_to_gcloud_aio(
    monkeypatch: pytest.MonkeyPatch,
    sa_info: dict[str, object],
    rsa_signer: GcsSigner,
    key: str,
    expires: int,
) -> None:
    """(gcloud-aio re-parses the PEM key, ~50 ms, on every URL: hence few examples.)"""
    want = gcloud_aio_url(monkeypatch, sa_info, "bkt.with.dots", key, expires)
    assert rsa_signer.sign("bkt.with.dots", key, expires_in=expires, now=NOW) == want


def test_tampered_signature_fails_verification(
    sa_info: dict[str, object], private_key: rsa.RSAPrivateKey
) -> None:
    from cryptography.exceptions import InvalidSignature

    url = GcsSigner.from_service_account_info(sa_info).sign("b", "k", expires_in=60, now=NOW)
    with pytest.raises(InvalidSignature):
        verify_rsa(url.replace("/b/k?", "/b/other?"), private_key.public_key())


def test_private_key_parsed_once(
    monkeypatch: pytest.MonkeyPatch, sa_file: Path, private_key: rsa.RSAPrivateKey
) -> None:
    calls = 0
    real = serialization.load_pem_private_key

    def counting(*args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(serialization, "load_pem_private_key", counting)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(sa_file))
    signer = gcs_signer_from_environment()
    for n in range(20):
        verify_rsa(signer.sign("b", f"k{n}", expires_in=60), private_key.public_key())
    assert calls == 1


@pytest.mark.anyio
async def test_sign_many_rsa_in_threads(
    sa_info: dict[str, object], private_key: rsa.RSAPrivateKey
) -> None:
    signer = GcsSigner.from_service_account_info(sa_info)
    keys = [f"img/{n:04d} é.jpg" for n in range(150)]
    urls = await sign_many(signer, "b", keys, expires_in=3600, limiter=anyio.CapacityLimiter(2))
    assert len(urls) == 150
    for key, url in zip(keys, urls, strict=True):
        assert f"/b/{quote(key, safe='/~')}?" in url
        verify_rsa(url, private_key.public_key())


# --- HMAC -------------------------------------------------------------------------------------


def reference_hmac_url(access_id: str, secret: str, bucket: str, key: str, expires: int) -> str:
    """Google's V4 HMAC algorithm written out plainly from the documentation."""
    stamp, day = "20261127T235958Z", "20261127"
    scope = f"{day}/auto/storage/goog4_request"
    query = {
        "X-Goog-Algorithm": "GOOG4-HMAC-SHA256",
        "X-Goog-Credential": f"{access_id}/{scope}",
        "X-Goog-Date": stamp,
        "X-Goog-Expires": str(expires),
        "X-Goog-SignedHeaders": "host",
    }
    canonical_query = "&".join(f"{k}={quote(v, safe='')}" for k, v in sorted(query.items()))
    path = f"/{bucket}/{quote(key, safe='/~')}"
    canonical = (
        f"GET\n{path}\n{canonical_query}\nhost:storage.googleapis.com\n\nhost\nUNSIGNED-PAYLOAD"
    )
    to_sign = (
        f"GOOG4-HMAC-SHA256\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    )
    k = f"GOOG4{secret}".encode()
    for part in (day, "auto", "storage", "goog4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    return f"https://storage.googleapis.com{path}?{canonical_query}&X-Goog-Signature={sig}"


@pytest.mark.parametrize("key", KEYS)
def test_hmac_matches_reference(key: str) -> None:
    access_id, secret = "GOOG1EXAMPLEACCESSID", "bGoa+V7g/yqDXvKRqq+JTFn4uQZbPiQJo4pf9RzJ"
    signer = GcsSigner.from_hmac(access_id, secret)
    assert signer.cpu_heavy is False
    got = signer.sign("bucket", key, expires_in=900, now=NOW)
    assert got == reference_hmac_url(access_id, secret, "bucket", key, 900)


# --- environment ------------------------------------------------------------------------------


def test_env_service_account_file_and_emulator(
    monkeypatch: pytest.MonkeyPatch, sa_file: Path, private_key: rsa.RSAPrivateKey
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(sa_file))
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:4443")
    signer = gcs_signer_from_environment()
    assert signer.client_email == EMAIL
    assert signer.warnings(604800) == ()
    url = signer.sign("b", "a b", expires_in=60, now=NOW)
    assert url.startswith("http://127.0.0.1:4443/b/a%20b?X-Goog-Algorithm=GOOG4-RSA-SHA256&")
    verify_rsa(url, private_key.public_key(), host="127.0.0.1:4443")
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "localhost:9023")  # no scheme: http
    assert (
        gcs_signer_from_environment()
        .sign("b", "k", expires_in=60)
        .startswith("http://localhost:9023/b/k?")
    )


def test_env_hmac_preferred_fast_path(monkeypatch: pytest.MonkeyPatch, sa_file: Path) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(sa_file))
    monkeypatch.setenv("GCS_HMAC_ACCESS_ID", "GOOG1ID")
    monkeypatch.setenv("GCS_HMAC_SECRET", "secret")
    signer = gcs_signer_from_environment()
    assert (signer.cpu_heavy, signer.client_email) == (False, "GOOG1ID")
    explicit = gcs_signer_from_environment(credentials_file=sa_file)
    assert (explicit.cpu_heavy, explicit.client_email) == (True, EMAIL)
    monkeypatch.delenv("GCS_HMAC_SECRET")
    with pytest.raises(ConfigError, match="GCS_HMAC_SECRET"):
        gcs_signer_from_environment()


def test_env_missing_credentials() -> None:
    with pytest.raises(ConfigError, match="GOOGLE_APPLICATION_CREDENTIALS") as info:
        gcs_signer_from_environment()
    assert "HMAC" in str(info.value)


@pytest.mark.parametrize(
    "kind", ["authorized_user", "external_account", "impersonated_service_account"]
)
def test_env_non_key_credentials_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "gcloud" / "application_default_credentials.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"type": kind, "client_id": "x", "refresh_token": "y"}))
    with pytest.raises(ConfigError, match="12 h") as info:
        gcs_signer_from_environment()  # found through CLOUDSDK_CONFIG's ADC file
    assert "service-account" in str(info.value)


def test_env_unreadable_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    with pytest.raises(ConfigError, match="cannot read"):
        gcs_signer_from_environment()
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        gcs_signer_from_environment(credentials_file=bad)
    bad.write_text(
        json.dumps({"type": "service_account", "client_email": "a@b", "private_key": "x"})
    )
    with pytest.raises(ConfigError, match="cannot be read"):
        gcs_signer_from_environment(credentials_file=bad)
