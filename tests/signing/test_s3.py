"""S3Signer is byte-identical to botocore's generate_presigned_url (s3v4)."""

from __future__ import annotations

import functools
import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.config import Config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchflow.errors import ConfigError
from batchflow.signing import S3Signer

from ._frozen import NOW, freeze_botocore

AK, SK = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
TOKEN = "FwoGZXIvYXdzE/+token==with spaces&more"

TRICKY_KEYS = [
    "plain.jpg",
    "dir/sub/file.png",
    "with space.jpg",
    "plus+sign.jpg",
    "percent%20literal.jpg",
    "percent%.jpg",
    "tilde~file.jpg",
    "double//slash.jpg",
    "/leading-slash.jpg",
    "//two-leading",
    "trailing/",
    "question?mark.jpg",
    "hash#tag.jpg",
    "equals=and&amp.jpg",
    "unicodé/ñandú/日本語.jpg",
    "emoji 😀🎉.jpg",
    "semi;colon,comma:colon@at$dollar'quote\"dq!bang*star(paren)",
    "back\\slash",
    "tab\tnewline\n",
    "a/./b/../c",
    "..",
    "UPPER/lower",
]
REGIONS = ["us-east-1", "eu-west-1", "auto", "cn-north-1", "us-gov-west-1"]
STYLES = ["auto", "path", "virtual"]
BUCKETS = ["mybucket", "my.bucket", "my-bucket-2", "My-Bucket", "my_bucket", "ab", "192.168.1.1"]
ENDPOINTS = [
    None,
    "http://127.0.0.1:9000",
    "https://acct123.r2.cloudflarestorage.com",
    "http://localhost:9000/",
    "https://minio.example.com/prefix",
    "https://host.example:443",
    "http://[::1]:9000",
]


_SESSION = botocore.session.get_session()  # one session: botocore's data files load once


@functools.lru_cache(maxsize=512)
def boto_client(region: str, style: str, endpoint: str | None, token: str | None) -> Any:
    return _SESSION.create_client(
        "s3",
        region_name=region,
        aws_access_key_id=AK,
        aws_secret_access_key=SK,
        aws_session_token=token,
        endpoint_url=endpoint,
        config=Config(signature_version="s3v4", s3={"addressing_style": style}),  # type: ignore[arg-type]
    )


def boto_url(
    region: str,
    style: str,
    endpoint: str | None,
    token: str | None,
    bucket: str,
    key: str,
    expires: int = 86400,
) -> str:
    client = boto_client(region, style, endpoint, token)
    url: str = client.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires
    )
    return url


def ours(region: str, style: str, endpoint: str | None, token: str | None) -> S3Signer:
    return S3Signer(
        access_key=AK,
        secret_key=SK,
        region=region,
        session_token=token,
        endpoint_url=endpoint,
        addressing_style=style,
    )


@pytest.fixture(autouse=True)
def _frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    freeze_botocore(monkeypatch)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("style", STYLES)
def test_matrix_identical_to_botocore(style: str, endpoint: str | None) -> None:
    """Endpoint shapes: every region/bucket/style/endpoint; keys are covered further down."""
    regions = REGIONS if endpoint is None else ["us-east-1", "auto"]
    compared = 0
    for (n, bucket), region in itertools.product(enumerate(BUCKETS), regions):
        token = TOKEN if n % 2 else None
        signer = ours(region, style, endpoint, token)
        for key in ("a b/+%~//x?#=&é😀", "/lead"):
            want = boto_url(region, style, endpoint, token, bucket, key)
            got = signer.sign(bucket, key, expires_in=86400, now=NOW)
            assert got == want, (region, style, endpoint, token, bucket, key)
            compared += 1
    assert compared >= 28


@pytest.mark.parametrize("key", TRICKY_KEYS)
def test_tricky_keys_all_shapes(key: str) -> None:
    for region, style, endpoint in [
        ("us-east-1", "auto", None),
        ("eu-central-1", "virtual", None),
        ("us-east-1", "path", "http://127.0.0.1:9000"),
        ("auto", "auto", "https://acct123.r2.cloudflarestorage.com"),
    ]:
        signer = ours(region, style, endpoint, TOKEN)
        want = boto_url(region, style, endpoint, TOKEN, "data-bucket", key, expires=604800)
        assert signer.sign("data-bucket", key, expires_in=604800, now=NOW) == want


def test_known_shapes() -> None:
    """Spot checks that document what the matrix proves."""
    url = ours("eu-west-1", "auto", None, None).sign("b-1", "a b.jpg", expires_in=60, now=NOW)
    assert url.startswith(
        "https://b-1.s3.amazonaws.com/a%20b.jpg?X-Amz-Algorithm=AWS4-HMAC-SHA256&"
    )
    assert "X-Amz-Credential=AKIDEXAMPLE%2F20261127%2Feu-west-1%2Fs3%2Faws4_request" in url
    url = ours("eu-west-1", "virtual", None, None).sign("my.b", "k", expires_in=60, now=NOW)
    assert url.startswith("https://s3.eu-west-1.amazonaws.com/my.b/k?")
    url = ours("us-east-1", "path", "http://127.0.0.1:9000", TOKEN).sign(
        "b", "/k", expires_in=60, now=NOW
    )
    assert url.startswith("http://127.0.0.1:9000/b//k?")
    assert "&X-Amz-SignedHeaders=host&X-Amz-Security-Token=" in url


st_keys = st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=80)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(key=st_keys, token=st.sampled_from([None, TOKEN]), expires=st.integers(1, 604800))
def test_property_keys_virtual_aws(key: str, token: str | None, expires: int) -> None:
    signer = ours("ap-southeast-2", "auto", None, token)
    want = boto_url("ap-southeast-2", "auto", None, token, "bucket-x", key, expires)
    assert signer.sign("bucket-x", key, expires_in=expires, now=NOW) == want


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(key=st_keys, bucket=st.sampled_from(BUCKETS))
def test_property_keys_custom_endpoint(key: str, bucket: str) -> None:
    signer = ours("auto", "path", "https://acct123.r2.cloudflarestorage.com", TOKEN)
    want = boto_url("auto", "path", "https://acct123.r2.cloudflarestorage.com", TOKEN, bucket, key)
    assert signer.sign(bucket, key, expires_in=86400, now=NOW) == want


def test_signing_key_rolls_over_at_midnight(monkeypatch: pytest.MonkeyPatch) -> None:
    signer = ours("eu-west-1", "auto", None, None)
    for instant in (NOW, NOW + timedelta(seconds=2), NOW, NOW + timedelta(days=3)):
        freeze_botocore(monkeypatch, instant)
        want = boto_url("eu-west-1", "auto", None, None, "bkt", "k.jpg")
        assert signer.sign("bkt", "k.jpg", expires_in=86400, now=instant) == want


def test_default_now_is_current_utc_time() -> None:
    signer = ours("eu-west-1", "auto", None, None)
    before = datetime.now(UTC).replace(microsecond=0)
    url = signer.sign("bkt", "k", expires_in=60)
    after = datetime.now(UTC)
    stamp = url.split("X-Amz-Date=")[1][:16]
    signed_at = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert before <= signed_at <= after
    assert signer.sign("bkt", "k", expires_in=60, now=signed_at) in {
        url,
        signer.sign("bkt", "k", expires_in=60, now=signed_at),
    }


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="addressing style"):
        S3Signer(access_key=AK, secret_key=SK, addressing_style="sideways")
    with pytest.raises(ConfigError, match="endpoint"):
        S3Signer(access_key=AK, secret_key=SK, endpoint_url="ftp://x")


# --- warnings -------------------------------------------------------------------------------


def test_warnings() -> None:
    assert ours("eu-west-1", "auto", None, None).warnings(86400, NOW) == ()
    (unknown,) = ours("eu-west-1", "auto", None, TOKEN).warnings(86400, NOW)
    assert "temporary credentials" in unknown
    assert "unknown expiry" in unknown
    short = S3Signer(
        access_key=AK,
        secret_key=SK,
        session_token=TOKEN,
        credentials_expiry=NOW + timedelta(hours=1),
        credentials_source="assume-role",
    )
    (warning,) = short.warnings(86400, NOW)
    assert "assume-role" in warning
    assert "3600 s from now" in warning
    assert short.warnings(1800, NOW) == ()


# --- from_environment -------------------------------------------------------------------------


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A clean AWS environment: no ambient variables, empty config files, no IMDS."""
    import os

    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return tmp_path


def test_env_missing_credentials(aws_env: Path) -> None:
    with pytest.raises(ConfigError, match="AWS_ACCESS_KEY_ID") as info:
        S3Signer.from_environment()
    assert "\n" not in str(info.value)


def test_env_missing_profile(aws_env: Path) -> None:
    with pytest.raises(ConfigError, match="nope"):
        S3Signer.from_environment(profile="nope")


def test_env_keys_and_local_endpoint(aws_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", AK)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SK)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://localhost:9000")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-2")
    signer = S3Signer.from_environment()
    assert (signer.region, signer.addressing_style) == ("eu-west-2", "path")
    assert signer.endpoint_url == "http://localhost:9000"
    assert signer.warnings(86400, NOW) == ()
    want = boto_url("eu-west-2", "path", "http://localhost:9000", None, "b", "k k")
    assert signer.sign("b", "k k", expires_in=86400, now=NOW) == want


def test_env_s3_endpoint_wins_and_r2_region(aws_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", AK)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SK)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "https://acct123.r2.cloudflarestorage.com")
    signer = S3Signer.from_environment()
    assert (signer.region, signer.addressing_style) == ("auto", "auto")
    assert signer.endpoint_url == "https://acct123.r2.cloudflarestorage.com"
    want = boto_url("auto", "auto", "https://acct123.r2.cloudflarestorage.com", None, "b", "k")
    assert signer.sign("b", "k", expires_in=86400, now=NOW) == want
    monkeypatch.setenv("AWS_REGION", "weur")
    assert S3Signer.from_environment().region == "weur"
    assert S3Signer.from_environment(
        region="x-1", endpoint_url="http://10.0.0.1:80"
    ).endpoint_url == ("http://10.0.0.1:80")


def test_env_addressing_style_variable(aws_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", AK)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SK)
    monkeypatch.setenv("AWS_S3_ADDRESSING_STYLE", "path")
    signer = S3Signer.from_environment(region="eu-west-1")
    assert signer.sign("b", "k", expires_in=60, now=NOW).startswith(
        "https://s3.eu-west-1.amazonaws.com/b/k?"
    )
    monkeypatch.setenv("AWS_S3_ADDRESSING_STYLE", "bogus")
    with pytest.raises(ConfigError, match="AWS_S3_ADDRESSING_STYLE"):
        S3Signer.from_environment()


def test_env_profile_files(aws_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (aws_env / "credentials").write_text(
        f"[work]\naws_access_key_id = {AK}\naws_secret_access_key = {SK}\n"
        f"aws_session_token = {TOKEN}\n"
    )
    (aws_env / "config").write_text(
        "[profile work]\nregion = ap-northeast-1\ns3 =\n  addressing_style = virtual\n"
    )
    monkeypatch.setenv("AWS_PROFILE", "work")
    signer = S3Signer.from_environment()
    assert (signer.region, signer.addressing_style) == ("ap-northeast-1", "virtual")
    monkeypatch.delenv("AWS_PROFILE")  # the reference client takes explicit keys
    want = boto_url("ap-northeast-1", "virtual", None, TOKEN, "bkt", "a/b.jpg")
    assert signer.sign("bkt", "a/b.jpg", expires_in=86400, now=NOW) == want
    (warning,) = signer.warnings(86400, NOW)
    assert "shared-credentials-file" in warning


def test_env_temporary_credentials_expiry(aws_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expiry = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", AK)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SK)
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)
    monkeypatch.setenv("AWS_CREDENTIAL_EXPIRATION", expiry.strftime("%Y-%m-%dT%H:%M:%SZ"))
    signer = S3Signer.from_environment()
    assert signer.credentials_expiry == expiry
    assert signer.session_token == TOKEN
    (warning,) = signer.warnings(86400)
    assert "expire at" in warning
    assert signer.warnings(3600) == ()


def test_env_broken_config_file(aws_env: Path) -> None:
    (aws_env / "config").write_text("[default\nregion = nowhere\n")
    with pytest.raises(ConfigError, match="cannot load AWS credentials"):
        S3Signer.from_environment()
