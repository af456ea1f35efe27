"""Local folder listings on a real tree: nesting, unicode, spaces, symlinks, unreadable dirs."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import anyio
import pytest

from batchflow.errors import NotFoundError, UsageError
from batchflow.sources import IMAGE_EXTENSIONS, LocalSource, ObjectRef, SkippedItem, open_source
from tests.sources._helpers import collect, list_names

pytestmark = pytest.mark.anyio

FILES = [
    "a.jpg",
    "a/b.jpg",
    "a/c/d.PNG",
    "a/c/e.txt",
    "a b/ünï cödé.jpg",
    "a.b/x.jpeg",
    "z/deep/er/still/f.gif",
    "日本/写真.webp",
    ".hidden/h.jpg",
]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    for rel in FILES:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rel.encode())
    return root


async def test_lists_everything_sorted_with_relative_names(tree: Path) -> None:
    source = open_source(str(tree))
    pages = await collect(source)
    refs = [ref for page in pages for ref in page]
    names = [ref.name for ref in refs]
    assert names == sorted(FILES)
    for ref in refs:
        assert ref.key == str(tree / ref.name)
        assert os.path.isabs(ref.key)
        assert ref.size == len(ref.name.encode())
    assert source.scheme == "file"
    assert source.bucket == ""


async def test_order_matches_key_order_and_is_stable(tree: Path) -> None:
    first = await list_names(open_source(str(tree)))
    second = await list_names(open_source(f"file://{tree}"))
    assert first == second == sorted(first)
    # "a.b/x.jpeg" < "a/b.jpg" because '.' < '/': a folder sorts as its name plus '/'.
    assert first.index("a.b/x.jpeg") < first.index("a/b.jpg")


async def test_small_pages(tree: Path) -> None:
    source = open_source(str(tree), page_size=2)
    pages = await collect(source)
    assert all(1 <= len(p) <= 2 for p in pages)
    assert [r.name for p in pages for r in p] == sorted(FILES)
    assert source.statistics().pages == len(pages) == 5


async def test_image_extensions_case_insensitive(tree: Path) -> None:
    names = await list_names(open_source(str(tree), extensions=IMAGE_EXTENSIONS))
    assert "a/c/d.PNG" in names
    assert "a/c/e.txt" not in names
    assert len(names) == len(FILES) - 1


async def test_globs(tree: Path) -> None:
    assert await list_names(open_source(f"{tree}/*.jpg")) == ["a.jpg"]
    assert await list_names(open_source(f"{tree}/**/*.jpg")) == sorted(
        n for n in FILES if n.endswith(".jpg")
    )
    assert await list_names(open_source(f"{tree}/a/**")) == ["b.jpg", "c/d.PNG", "c/e.txt"]
    assert await list_names(open_source(f"{tree}/a/c/[!e]*")) == ["d.PNG"]
    assert await list_names(open_source(f"{tree}/z/*/*/*/?.gif")) == ["deep/er/still/f.gif"]


async def test_glob_without_double_star_does_not_walk_deeper(tree: Path) -> None:
    source = open_source(f"{tree}/*.jpg")
    assert await list_names(source) == ["a.jpg"]
    # Only root-level files were examined, not the nested ones.
    assert source.statistics().listed == 1


async def test_relative_path(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tree)
    assert await list_names(open_source("a")) == ["b.jpg", "c/d.PNG", "c/e.txt"]
    assert await list_names(open_source("*.jpg")) == ["a.jpg"]


async def test_symlinked_dirs_not_followed_by_default(tree: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "o.jpg").write_bytes(b"o")
    (tree / "link").symlink_to(outside, target_is_directory=True)
    (tree / "loop").symlink_to(tree, target_is_directory=True)
    (tree / "file-link.jpg").symlink_to(tree / "a.jpg")
    skipped: list[SkippedItem] = []
    names = await list_names(open_source(str(tree), on_skip=skipped.append))
    assert "link/o.jpg" not in names
    assert not any(n.startswith("loop/") for n in names)
    assert "file-link.jpg" in names  # links to files are files
    assert skipped == []

    followed = await list_names(LocalSource(str(tree), follow_symlinks=True))
    assert "link/o.jpg" in followed
    assert not any(n.startswith("loop/") for n in followed)  # loops are cut


async def test_broken_symlink_reported(tree: Path) -> None:
    (tree / "dangling.jpg").symlink_to(tree / "nope.jpg")
    skipped: list[SkippedItem] = []
    source = open_source(str(tree), on_skip=skipped.append)
    names = await list_names(source)
    assert "dangling.jpg" not in names
    assert [(s.kind, Path(s.item).name) for s in skipped] == [("broken_symlink", "dangling.jpg")]
    assert source.statistics().skipped == 1


async def test_unreadable_dir_reported_via_injected_error(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Make scandir fail for one folder as a permission error would (tests run as root here)."""
    real_scandir = os.scandir
    locked = str(tree / "a" / "c")

    def scandir(path: str) -> object:
        if path == locked:
            raise PermissionError(13, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr("batchflow.sources.local.os.scandir", scandir)
    skipped: list[SkippedItem] = []
    names = await list_names(open_source(str(tree), on_skip=skipped.append))
    assert "a/c/d.PNG" not in names
    assert "a/b.jpg" in names
    assert "z/deep/er/still/f.gif" in names
    assert skipped == [SkippedItem(item=locked, reason="Permission denied", kind="unreadable_dir")]


async def test_missing_and_non_folder_paths(tree: Path) -> None:
    with pytest.raises(NotFoundError, match="not found"):
        open_source(str(tree / "missing"))
    with pytest.raises(NotFoundError):
        open_source(str(tree / "missing" / "*.jpg"))
    with pytest.raises(UsageError, match="not a folder"):
        open_source(str(tree / "a.jpg"))
    with pytest.raises(UsageError, match="unclosed"):
        open_source(f"{tree}/[a.jpg")


async def test_backpressure_and_early_cancel(tree: Path) -> None:
    """A slow consumer holds the producer back; cancelling mid-listing ends it promptly."""
    source = open_source(str(tree), page_size=1)
    send, recv = anyio.create_memory_object_stream[Sequence[ObjectRef]](0)
    got: list[str] = []
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(source.list_pages, send)
            async with recv:
                got.extend(ref.name for ref in await recv.receive())
                await anyio.wait_all_tasks_blocked()
                # Unbuffered: the producer has found at most one more page it cannot send.
                assert source.statistics().pages <= 2
                got.extend(ref.name for ref in await recv.receive())
                tg.cancel_scope.cancel()
    assert got == sorted(FILES)[:2]
