"""Local file-system failures reach the user as one line with an exit code, never a traceback."""

from __future__ import annotations

from pathlib import Path

from batchflow.export.download import _archive_stem
from tests.cli.conftest import run_cli


def test_unwritable_output_is_one_line(tmp_path: Path) -> None:
    target = tmp_path / "missing-folder" / "refs.jsonl"
    result = run_cli("sign", "s3://some-bucket/prefix/", "-o", str(target))
    assert result.exit_code == 1
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1
    assert "No such file or directory" in lines[0]


def test_state_dir_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.jpg").write_bytes(b"x")
    blocker = tmp_path / "state-is-a-file"
    blocker.write_text("not a folder")
    result = run_cli(
        "ingest", str(tmp_path / "imgs"), "--batch-id", "b1",
        env={"BATCHFLOW_STATE_DIR": str(blocker), "API_BASE_URL": "http://127.0.0.1:9"},
    )  # fmt: skip
    assert result.exit_code == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("error:")


def test_archive_named_only_by_its_suffix_gets_a_folder_name() -> None:
    assert _archive_stem("results.tar.gz") == "results"
    assert _archive_stem(".tar") == ".tar.extracted"
    assert _archive_stem(".zip") == ".zip.extracted"
