"""The main job from the command line, as a user types it: ingest -> run -> poll -> export.

Once with nothing configured (the CLI starts its own local service in a fresh data dir) and
once against an explicitly started ``batchflow serve`` selected by ``API_BASE_URL``. Every
exported result row is checked against the input files.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from batchflow.samples import make_images
from tests.cli.conftest import Result, run_cli
from tests.server_fixture import ServerHandle


def _rows(target: Path) -> list[dict[str, object]]:
    return [
        json.loads(line)
        for path in sorted(target.rglob("*.jsonl"))
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


def _ok(result: Result) -> Result:
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result


def _main_job(images: Path, out: Path, env: dict[str, str]) -> None:
    _ok(run_cli("ingest", str(images), "--batch-id", "e2e-in", "--tar-size", "16", env=env))
    counted = _ok(run_cli("batches", "count", "e2e-in", "--json", env=env))
    assert json.loads(counted.stdout)["count"] == 40
    run_args = ["run", "--workflow-id", "image-metadata", "--batch-id", "e2e-in"]
    run_args += ["--aggregation-format", "jsonl", "--max-parallel-tasks", "2"]
    started = _ok(run_cli(*run_args, env=env))
    job_id = started.stdout.split()[0]
    _ok(run_cli("poll", job_id, "--interval", "0.2", "--max-interval", "1", "--timeout", "120",
                env=env, timeout=150))  # fmt: skip
    _ok(run_cli("export", "--job-id", job_id, "--target-dir", str(out), "--extract", env=env))

    sources = {p.relative_to(images).as_posix(): p for p in images.rglob("*") if p.is_file()}
    rows = _rows(out)
    assert sorted(str(row["file_name"]) for row in rows) == sorted(sources)
    for row in rows:
        data = sources[str(row["file_name"])].read_bytes()
        assert row["sha256"] == hashlib.sha256(data).hexdigest()
        assert row["byte_size"] == len(data)
        assert (row["width"], row["height"]) == (64, 48)


@pytest.fixture
def images(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    make_images(root, 40, per_folder=10)  # nested: set-a/part-000/img-00000.jpg ...
    return root


def test_embedded_default_ingest_run_poll_export(
    data_dir: Path, images: Path, tmp_path: Path
) -> None:
    """Fresh data dir, no API URL or key anywhere: the CLI runs its own local service."""
    _main_job(images, tmp_path / "out", env={})
    assert (data_dir / "server.json").exists()
    assert oct((data_dir / "api_key").stat().st_mode & 0o777) == "0o600"


def test_explicit_server_selected_by_api_base_url(
    cli_server: ServerHandle, data_dir: Path, images: Path, tmp_path: Path
) -> None:
    env = {"API_BASE_URL": cli_server.base_url, "ROBOFLOW_API_KEY": cli_server.api_key}
    _main_job(images, tmp_path / "out", env=env)
    assert not (data_dir / "server.json").exists()  # no local service was started
