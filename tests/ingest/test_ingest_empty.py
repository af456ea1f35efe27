"""An ingest (or sign) whose listing matches nothing: one line naming the location, the pattern
and what was listed, exit 3, and nothing created: no batch on the server, no journal.

Every source type runs against the real thing: a local folder, moto S3, fake-gcs-server,
Azurite, a references JSONL file; the CLI talks to a real ``batchflow serve``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from batchflow.cli._app import cli
from tests.emulators import Azurite, FakeGcs, MotoS3, apply_env, unique_name
from tests.server_fixture import ServerHandle

pytestmark = pytest.mark.emulators

IMAGES = ".bmp, .gif, .jpeg, .jpg, .png, .tif, .tiff or .webp"
HINT = " (use --allow-empty to accept an empty listing)"
SEEDED = ("in/a/notes.txt", "in/b/c.jpg", "in/readme.md")  # 3 objects, one an image


@dataclass(frozen=True)
class Location:
    """A seeded location: the URI with a glob that matches none of it, and one of an empty
    prefix; what the message must say for each."""

    nomatch: str
    nomatch_line: str
    empty: str
    empty_line: str


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner(env=env).invoke(cli, list(args))


def api(server: ServerHandle) -> list[str]:
    return ["--api-url", server.base_url, "--api-key", server.api_key]


def error_line(result: Result) -> str:
    """The single ``error:`` line on stderr (without its prefix); no traceback anywhere."""
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    return errors[0].removeprefix("error: ")


def assert_nothing_created(server: ServerHandle, batch_id: str, state_dir: Path) -> None:
    with server.client() as http:
        assert http.get(f"{server.ds}/batches/{batch_id}").status_code == 404
    journals = [p for p in state_dir.rglob("*") if p.is_file()] if state_dir.exists() else []
    assert journals == []


def bucket_location(scheme: str, bucket: str) -> Location:
    return Location(
        nomatch=f"{scheme}://{bucket}/in/**/*.nomatch",
        nomatch_line=f"0 of 3 objects under {scheme}://{bucket}/in/ match '**/*.nomatch' "
        f"and end in {IMAGES}{HINT}",
        empty=f"{scheme}://{bucket}/nothing/",
        empty_line=f"0 objects under {scheme}://{bucket}/nothing/{HINT}",
    )


@pytest.fixture
def local(tmp_path: Path) -> Location:
    root = tmp_path / "photos"
    for key in SEEDED:
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(b"x")
    (tmp_path / "void").mkdir()
    return Location(
        nomatch=f"{root}/in/**/*.nomatch",
        nomatch_line=f"0 of 3 files under {root}/in/ match '**/*.nomatch' "
        f"and end in {IMAGES}{HINT}",
        empty=str(tmp_path / "void"),
        empty_line=f"0 files under {tmp_path / 'void'}/{HINT}",
    )


@pytest.fixture
def s3(moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch) -> Location:
    apply_env(monkeypatch, moto_s3.env)
    bucket = moto_s3.create_bucket()
    moto_s3.put_objects(bucket, SEEDED)
    return bucket_location("s3", bucket)


@pytest.fixture
def gs(fake_gcs: FakeGcs, monkeypatch: pytest.MonkeyPatch) -> Location:
    apply_env(monkeypatch, fake_gcs.env)
    monkeypatch.setenv("GCS_HMAC_ACCESS_ID", "GOOG1TESTACCESSID")
    monkeypatch.setenv("GCS_HMAC_SECRET", "dGVzdC1zZWNyZXQ=")
    bucket = fake_gcs.create_bucket()
    fake_gcs.put_objects(bucket, SEEDED)
    return bucket_location("gs", bucket)


@pytest.fixture
def az(azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> Location:
    apply_env(monkeypatch, azurite.env)
    container = azurite.create_container(unique_name("az"))
    azurite.put_blobs(container, SEEDED)
    return bucket_location("az", container)


@pytest.fixture
def references(tmp_path: Path) -> Location:
    malformed = tmp_path / "malformed.jsonl"
    malformed.write_text('{"name": "a.jpg"}\nnot json\n\n')
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    return Location(
        nomatch=str(malformed),
        nomatch_line=f"0 of 2 references in {malformed} are valid (2 skipped){HINT}",
        empty=str(empty),
        empty_line=f"0 references in {empty}{HINT}",
    )


SOURCES = ["local", "s3", "gs", "az", "references"]


@pytest.fixture(params=SOURCES)
def location(request: pytest.FixtureRequest) -> Location:
    return request.getfixturevalue(request.param)  # type: ignore[no-any-return]


@pytest.mark.parametrize("case", ["nomatch", "empty"])
def test_ingest_of_nothing_says_so_exits_3_and_creates_nothing(
    ingest_server: ServerHandle, location: Location, state_dir: Path, case: str
) -> None:
    batch_id = unique_name("empty")
    uri, line = getattr(location, case), getattr(location, f"{case}_line")
    result = invoke("ingest", uri, "--batch-id", batch_id, *api(ingest_server))
    assert result.exit_code == 3, result.output
    assert error_line(result) == line
    assert_nothing_created(ingest_server, batch_id, state_dir)


def test_dry_run_of_nothing_exits_3_too(local: Location, state_dir: Path) -> None:
    result = invoke("ingest", local.nomatch, "--batch-id", "b", "--dry-run")
    assert result.exit_code == 3, result.output
    assert error_line(result) == local.nomatch_line
    assert not state_dir.exists()


@pytest.mark.parametrize(
    "allow",
    [
        pytest.param(lambda argv: ([*argv, "--allow-empty"], None), id="flag"),
        pytest.param(lambda argv: (argv, {"BATCHFLOW_ALLOW_EMPTY": "1"}), id="env"),
    ],
)
def test_allow_empty_exits_0_with_an_empty_summary_and_creates_nothing(
    ingest_server: ServerHandle,
    s3: Location,
    state_dir: Path,
    allow: Callable[[list[str]], tuple[list[str], dict[str, str] | None]],
) -> None:
    batch_id = unique_name("empty")
    argv, env = allow(["ingest", s3.nomatch, "--batch-id", batch_id, *api(ingest_server)])
    result = invoke(*argv, env=env)
    assert result.exit_code == 0, result.output
    assert "listed 3, matched 0, skipped 0" in result.stdout
    assert "shards: 0 total, 0 sent" in result.stdout
    assert "error" not in result.stderr
    assert_nothing_created(ingest_server, batch_id, state_dir)


def test_dry_run_with_allow_empty_exits_0(local: Location, state_dir: Path) -> None:
    result = invoke("ingest", local.empty, "--batch-id", "b", "--dry-run", "--allow-empty")
    assert result.exit_code == 0, result.output
    assert "dry run:" in result.stdout
    assert "listed 0, matched 0" in result.stdout
    assert not state_dir.exists()


@pytest.mark.parametrize("scheme", ["s3", "gs", "az"])
def test_sign_of_nothing_exits_3_and_writes_no_file(
    scheme: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    location: Location = request.getfixturevalue(scheme)
    out = tmp_path / "refs.jsonl"
    result = invoke("sign", location.nomatch, "-o", str(out))
    assert result.exit_code == 3, result.output
    assert error_line(result) == location.nomatch_line
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temp name


def test_sign_with_allow_empty_writes_an_empty_file(s3: Location, tmp_path: Path) -> None:
    out = tmp_path / "refs.jsonl"
    result = invoke("sign", s3.empty, "-o", str(out), "--allow-empty")
    assert result.exit_code == 0, result.output
    assert out.read_text() == ""
    assert "signed 0 object(s)" in result.stderr
