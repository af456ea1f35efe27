"""AzureSasSigner: identical to azure-storage-blob's generate_blob_sas + BlobClient.url."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from azure.storage.blob import BlobClient, generate_blob_sas
from hypothesis import given, settings
from hypothesis import strategies as st

from batchflow.errors import ConfigError
from batchflow.signing import AzureSasSigner, azure_signer_from_environment, parse_connection_string

from ._frozen import NOW

ACCOUNT = "myaccount"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
BLOBS = [
    "plain.jpg",
    "dir/sub/x.png",
    "with space.jpg",
    "plus+sign",
    "percent%20lit",
    "tilde~",
    "hash#tag",
    "question?mark",
    "eq=amp&",
    "unicodé/日本語",
    "emoji 😀",
    "double//slash",
    "semi;colon,comma:@$'!*()",
]


def sdk_url(
    account_url: str,
    container: str,
    blob: str,
    *,
    expires_in: int,
    skew: int,
    protocol: str,
    account: str = ACCOUNT,
    key: str = KEY,
) -> str:
    sas = generate_blob_sas(
        account,
        container,
        blob,
        account_key=key,
        permission="r",
        start=NOW - timedelta(seconds=skew),
        expiry=NOW + timedelta(seconds=expires_in),
        protocol=protocol,
    )
    url: str = BlobClient(
        account_url=account_url, container_name=container, blob_name=blob, credential=sas
    ).url
    return url


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "AZURE_STORAGE_CONNECTION_STRING",
        "AZURE_STORAGE_ACCOUNT",
        "AZURE_STORAGE_KEY",
        "AZURE_STORAGE_SAS_TOKEN",
        "AZURE_STORAGE_BLOB_ENDPOINT",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("blob", BLOBS)
def test_identical_to_sdk(blob: str) -> None:
    signer = AzureSasSigner(account_name=ACCOUNT, account_key=KEY)
    url = signer.sign("images", blob, expires_in=86400, now=NOW)
    assert url == sdk_url(
        f"https://{ACCOUNT}.blob.core.windows.net",
        "images",
        blob,
        expires_in=86400,
        skew=300,
        protocol="https",
    )
    assert "&sp=r&spr=https&" in url
    assert "&sr=b&sig=" in url


@settings(max_examples=200, deadline=None)
@given(
    blob=st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=60),
    expires=st.integers(1, 604800),
    skew=st.integers(0, 3600),
)
def test_property_identical_to_sdk(blob: str, expires: int, skew: int) -> None:
    account_url = "http://127.0.0.1:10000/devstoreaccount1"
    signer = AzureSasSigner(
        account_name="devstoreaccount1", account_key=KEY, account_url=account_url, clock_skew=skew
    )
    want = sdk_url(
        account_url,
        "c-1",
        blob,
        expires_in=expires,
        skew=skew,
        protocol="https,http",
        account="devstoreaccount1",
    )
    assert signer.sign("c-1", blob, expires_in=expires, now=NOW) == want


def test_given_sas_token_is_appended_and_expiry_warned() -> None:
    token = (
        "?sv=2024-08-04&ss=b&srt=o&sp=r&se=2026-11-28T12:00:00Z&st=2026-11-27T00:00:00Z"
        "&spr=https&sig=abc%2B%3D"
    )
    signer = AzureSasSigner(account_name=ACCOUNT, sas_token=token)
    url = signer.sign("c", "a b.jpg", expires_in=86400, now=NOW)
    assert url == f"https://{ACCOUNT}.blob.core.windows.net/c/a%20b.jpg?{token[1:]}"
    assert signer.sas_expiry == datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    (warning,) = signer.warnings(86400, NOW)
    assert "expires at 2026-11-28T12:00:00+00:00" in warning
    assert signer.warnings(3600, NOW) == ()
    no_expiry = AzureSasSigner(account_name=ACCOUNT, sas_token="si=policy1&sig=x")
    (warning,) = no_expiry.warnings(60, NOW)
    assert "no readable se=" in warning
    encoded = AzureSasSigner(account_name=ACCOUNT, sas_token="se=2026-11-28T12%3A00%3A00Z&sig=x")
    assert encoded.sas_expiry == datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    date_only = AzureSasSigner(account_name=ACCOUNT, sas_token="se=2026-12-01&sig=x")
    assert date_only.warnings(86400, NOW) == ()


def test_key_signer_has_no_warnings_and_bad_key_is_config_error() -> None:
    assert AzureSasSigner(account_name=ACCOUNT, account_key=KEY).warnings(604800, NOW) == ()
    with pytest.raises(ConfigError, match="base64"):
        AzureSasSigner(account_name=ACCOUNT, account_key="not base64!!")
    with pytest.raises(ConfigError, match="exactly one"):
        AzureSasSigner(account_name=ACCOUNT)


def test_env_account_and_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT", ACCOUNT)
    monkeypatch.setenv("AZURE_STORAGE_KEY", KEY)
    signer = azure_signer_from_environment()
    assert signer.account_url == f"https://{ACCOUNT}.blob.core.windows.net"
    assert signer.sas_token is None
    monkeypatch.delenv("AZURE_STORAGE_KEY")
    monkeypatch.setenv("AZURE_STORAGE_SAS_TOKEN", "se=2026-11-28&sig=x")
    assert azure_signer_from_environment().sas_token == "se=2026-11-28&sig=x"


def test_env_connection_strings(monkeypatch: pytest.MonkeyPatch) -> None:
    azurite = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        f"AccountKey={KEY};BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
    )
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite)
    signer = azure_signer_from_environment()
    assert (signer.account_name, signer.account_url, signer.protocol) == (
        "devstoreaccount1",
        "http://127.0.0.1:10000/devstoreaccount1",
        "https,http",
    )
    assert parse_connection_string(azurite)["accountkey"] == KEY  # keeps the trailing ==
    dev = azure_signer_from_environment(connection_string="UseDevelopmentStorage=true")
    assert dev.account_url == "http://127.0.0.1:10000/devstoreaccount1"
    cloud = azure_signer_from_environment(
        connection_string=f"DefaultEndpointsProtocol=https;AccountName={ACCOUNT};"
        f"AccountKey={KEY};EndpointSuffix=core.chinacloudapi.cn"
    )
    assert cloud.account_url == f"https://{ACCOUNT}.blob.core.chinacloudapi.cn"
    sas = azure_signer_from_environment(
        connection_string=f"BlobEndpoint=https://{ACCOUNT}.blob.core.windows.net/;"
        "SharedAccessSignature=sv=2024-08-04&se=2026-11-28T00:00:00Z&sig=x"
    )
    assert (sas.account_name, sas.sas_token) == (
        ACCOUNT,
        "sv=2024-08-04&se=2026-11-28T00:00:00Z&sig=x",
    )
    with pytest.raises(ConfigError, match="AccountKey"):
        azure_signer_from_environment(connection_string="AccountName=x")
    with pytest.raises(ConfigError, match="malformed"):
        azure_signer_from_environment(connection_string="garbage")


def test_env_missing() -> None:
    with pytest.raises(ConfigError, match="AZURE_STORAGE_CONNECTION_STRING"):
        azure_signer_from_environment()
