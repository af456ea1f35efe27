"""S3 / GCS / Azure listings against their emulators (moto, fake-gcs-server, Azurite).

One bucket per backend is seeded once per module with ~200 keys in nested folders plus keys
outside the listed prefix; every test lists it through ``open_source`` as a user would.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import aiohttp
import pytest
from azure.core.exceptions import ResourceNotFoundError
from botocore.exceptions import ClientError

from batchflow.errors import AuthError, NetworkError, NotFoundError, UsageError
from batchflow.sources import IMAGE_EXTENSIONS, open_source
from tests._procs import free_port
from tests.emulators import Azurite, FakeGcs, MotoS3, apply_env, unique_name
from tests.sources._helpers import collect, list_names

pytestmark = [pytest.mark.anyio, pytest.mark.emulators]


def seeded_keys() -> list[str]:
    exts = [".jpg", ".PNG", ".txt", ".jpeg"]
    keys = [
        f"photos/{a}/sub{b}/img{i:02d}{exts[i % 4]}"
        for a in range(3)
        for b in range(4)
        for i in range(16)
    ]
    keys += [
        "photos/top.jpg",
        "photos/dir with space/été.jpg",
        "photos/only-folder-marker/",
        "photos-2024/y.jpg",
        "other/x.jpg",
        "other/deep/z.png",
    ]
    return keys


KEYS = seeded_keys()


@dataclass(frozen=True)
class Store:
    scheme: str
    bucket: str
    env: dict[str, str]


@pytest.fixture(scope="module", params=["s3", "gs", "az"])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    scheme: str = request.param
    if scheme == "s3":
        s3: MotoS3 = request.getfixturevalue("moto_s3")
        bucket = s3.create_bucket()
        s3.put_objects(bucket, KEYS)
        yield Store("s3", bucket, s3.env)
    elif scheme == "gs":
        gcs: FakeGcs = request.getfixturevalue("fake_gcs")
        bucket = gcs.create_bucket()
        gcs.put_objects(bucket, KEYS)
        yield Store("gs", bucket, gcs.env)
    else:
        az: Azurite = request.getfixturevalue("azurite")
        bucket = az.create_container()
        az.put_blobs(bucket, KEYS)
        yield Store("az", bucket, az.env)


@pytest.fixture
def env(store: Store, monkeypatch: pytest.MonkeyPatch) -> Store:
    for name in (
        "AWS_ENDPOINT_URL_S3",
        "AWS_PROFILE",
        "AZURE_STORAGE_ACCOUNT",
        "AZURE_STORAGE_KEY",
        "AZURE_STORAGE_SAS_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)
    for key, value in store.env.items():
        monkeypatch.setenv(key, value)
    return store


def expected(prefix: str, pred: Callable[[str], bool] = lambda _: True) -> list[str]:
    """Names (relative to the folder of ``prefix``) of real keys under ``prefix``, sorted."""
    base = prefix[: prefix.rfind("/") + 1]
    return sorted(
        k[len(base) :]
        for k in KEYS
        if k.startswith(prefix) and not k.endswith("/") and pred(k[len(base) :])
    )


async def test_folder_prefix_lists_everything_under_it_in_key_order(env: Store) -> None:
    source = open_source(f"{env.scheme}://{env.bucket}/photos/")
    names = await list_names(source)
    assert names == expected("photos/")
    assert len(names) == 194
    assert source.bucket == env.bucket
    assert source.scheme == env.scheme
    stats = source.statistics()
    # Only the literal prefix was listed: the folder marker is listed but not matched.
    assert stats.listed == sum(k.startswith("photos/") for k in KEYS)
    assert stats.matched == 194


async def test_listing_is_deterministic(env: Store) -> None:
    first = await list_names(open_source(f"{env.scheme}://{env.bucket}/photos/2/"))
    second = await list_names(open_source(f"{env.scheme}://{env.bucket}/photos/2/"))
    assert first == second == expected("photos/2/")


async def test_bare_prefix_is_a_string_prefix_like_s3_ls(env: Store) -> None:
    names = await list_names(open_source(f"{env.scheme}://{env.bucket}/photos"))
    assert set(names) == set(expected("photos"))
    assert "photos-2024/y.jpg" in names
    assert "other/x.jpg" not in names


async def test_bucket_root_with_image_extensions(env: Store) -> None:
    source = open_source(f"{env.scheme}://{env.bucket}", extensions=IMAGE_EXTENSIONS)
    names = await list_names(source)
    assert names == sorted(k for k in KEYS if re.search(r"\.(jpg|jpeg|png)$", k, re.I))
    assert not any(n.endswith(".txt") for n in names)


async def test_recursive_glob(env: Store) -> None:
    source = open_source(f"{env.scheme}://{env.bucket}/photos/**.jpg")
    assert await list_names(source) == expected("photos/", lambda n: n.endswith(".jpg"))


async def test_segment_globs_and_classes_only_list_literal_prefix(env: Store) -> None:
    uri = f"{env.scheme}://{env.bucket}/photos/1/sub[0-2]/img0?.*"
    source = open_source(uri)
    names = await list_names(source)
    want = expected(
        "photos/1/", lambda n: re.fullmatch(r"sub[0-2]/img0[0-9]\.[^/]*", n) is not None
    )
    assert names == want
    assert len(want) == 30
    assert source.statistics().listed == sum(k.startswith("photos/1/sub") for k in KEYS)


async def test_double_star_segment_matches_zero_folders(env: Store) -> None:
    source = open_source(f"{env.scheme}://{env.bucket}/photos/**/*.jpg")
    names = await list_names(source)
    assert "top.jpg" in names
    assert names == expected("photos/", lambda n: n.endswith(".jpg"))


async def test_small_pages_cover_everything_exactly_once(env: Store) -> None:
    source = open_source(f"{env.scheme}://{env.bucket}/photos/", page_size=7)
    pages = await collect(source)
    names = [ref.name for page in pages for ref in page]
    # One store request returns at most 7 keys: anything more proves the page loop works.
    assert names == expected("photos/")
    assert all(1 <= len(page) <= 7 for page in pages)
    assert len(pages) == source.statistics().pages >= 194 // 7
    refs = [ref for page in pages for ref in page]
    assert all(ref.size == 1 for ref in refs)
    assert all(ref.key == f"photos/{ref.name}" for ref in refs)
    assert all(ref.etag for ref in refs)


async def test_unicode_and_spaces_round_trip(env: Store) -> None:
    names = await list_names(open_source(f"{env.scheme}://{env.bucket}/photos/dir with space/"))
    assert names == ["été.jpg"]


async def test_unknown_bucket_is_not_found(env: Store) -> None:
    missing = unique_name("missing")
    source = open_source(f"{env.scheme}://{missing}/photos/")
    with pytest.raises(NotFoundError, match=missing) as info:
        await collect(source)
    # Translated once, at the boundary, keeping the vendor error as the cause.
    vendor = (ClientError, aiohttp.ClientResponseError, ResourceNotFoundError)
    assert isinstance(info.value.__cause__, vendor)


async def test_bad_glob_is_usage_error(env: Store) -> None:
    with pytest.raises(UsageError, match="unclosed"):
        open_source(f"{env.scheme}://{env.bucket}/photos/[abc")


async def test_azure_wrong_key_is_auth_error(
    azurite: Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    container = azurite.create_container()
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT", azurite.account_name)
    monkeypatch.setenv("AZURE_STORAGE_BLOB_ENDPOINT", azurite.blob_endpoint)
    monkeypatch.setenv("AZURE_STORAGE_KEY", "d3Jvbmcta2V5LXdyb25nLWtleQ==")
    with pytest.raises(AuthError):
        await collect(open_source(f"az://{container}/"))


async def test_azure_account_and_key_env(azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> None:
    container = azurite.create_container()
    azurite.put_blobs(container, ["a/1.jpg", "a/2.jpg", "b.jpg"])
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    apply_env(monkeypatch, azurite.key_env)
    assert await list_names(open_source(f"az://{container}/a/")) == ["1.jpg", "2.jpg"]


async def test_gcs_unreachable_is_network_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(NetworkError):
        await collect(open_source("gs://some-bucket/x/"))
