from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from batchflow.errors import PermanentError
from batchflow.export.extract import UnsafeArchiveError, extract_archive, is_archive


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
            else:
                tf.addfile(info)
    return path


def _file(name: str) -> tarfile.TarInfo:
    return tarfile.TarInfo(name)


def test_tar_extracts_nested_files(tmp_path: Path) -> None:
    archive = _tar(
        tmp_path / "r.tar.gz", [(_file("results/a.jsonl"), b"{}\n"), (_file("img/x.jpg"), b"jpg")]
    )
    out = extract_archive(archive, tmp_path / "out")
    assert (out.files, out.bytes) == (2, 6)
    assert (tmp_path / "out/results/a.jsonl").read_bytes() == b"{}\n"
    assert (tmp_path / "out/img/x.jpg").read_bytes() == b"jpg"
    assert not list((tmp_path / "out").rglob(".*.part"))


@pytest.mark.parametrize("name", ["../escape.txt", "/abs.txt", "a/../../escape.txt"])
def test_traversal_is_refused_and_nothing_is_written(tmp_path: Path, name: str) -> None:
    archive = _tar(tmp_path / "bad.tar.gz", [(_file("ok.txt"), b"fine"), (_file(name), b"evil")])
    with pytest.raises(UnsafeArchiveError, match="outside the target"):
        extract_archive(archive, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []
    assert not (tmp_path / "escape.txt").exists()


@pytest.mark.parametrize(
    "kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.FIFOTYPE, tarfile.CHRTYPE]
)
def test_links_and_special_files_are_refused(tmp_path: Path, kind: bytes) -> None:
    link = _file("link")
    link.type = kind
    link.linkname = "/etc/passwd"
    archive = _tar(tmp_path / "bad.tar.gz", [(link, None)])
    with pytest.raises(UnsafeArchiveError, match="links and special files"):
        extract_archive(archive, tmp_path / "out")


def test_symlink_already_in_target_cannot_redirect_writes(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "out"
    target.mkdir()
    (target / "sub").symlink_to(outside)
    archive = _tar(tmp_path / "r.tar.gz", [(_file("sub/x.txt"), b"x")])
    with pytest.raises(UnsafeArchiveError, match="resolves outside"):
        extract_archive(archive, target)
    assert list(outside.iterdir()) == []


def test_zip_traversal_refused_and_good_zip_extracts(tmp_path: Path) -> None:
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as zf:
        zf.writestr("a/b.csv", "x,y\n")
    assert extract_archive(good, tmp_path / "out").files == 1
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("../evil.csv", "x")
    with pytest.raises(UnsafeArchiveError):
        extract_archive(bad, tmp_path / "out2")
    assert not (tmp_path / "evil.csv").exists()


def test_corrupt_archive_is_a_clear_error(tmp_path: Path) -> None:
    archive = tmp_path / "broken.tar.gz"
    archive.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(PermanentError, match="corrupt archive"):
        extract_archive(archive, tmp_path / "out")


def test_is_archive() -> None:
    assert all(is_archive(Path(n)) for n in ["x.tar.gz", "X.ZIP", "a.tgz", "b.tar"])
    assert not is_archive(Path("results.jsonl"))
