"""tarsafe: every rejection kind, odd member types, long pax names, broken archives."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path
from typing import IO

import pytest

from batchflow.errors import PermanentError
from batchflow.server.staging.tarsafe import (
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    BadArchiveError,
    TarMember,
    TarRejection,
    iter_tar,
)

Entry = tuple[str, bytes | None, bytes]  # name, data (None: not a file), tar type


def file(name: str, data: bytes = b"x") -> Entry:
    return (name, data, tarfile.REGTYPE)


def build(path: Path, entries: list[Entry], fmt: int = tarfile.PAX_FORMAT, mode: str = "w") -> Path:
    with tarfile.open(path, mode, format=fmt) as tar:  # type: ignore[call-overload]
        for name, data, kind in entries:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = "a.jpg"
            if data is not None and kind in tarfile.REGULAR_TYPES:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return path


def collect(path: Path, **kw: object) -> tuple[dict[str, bytes], dict[str, TarRejection]]:
    members: dict[str, bytes] = {}
    rejected: dict[str, TarRejection] = {}
    for item in iter_tar(path, **kw):  # type: ignore[arg-type]
        if isinstance(item, TarRejection):
            rejected[item.name] = item
        else:
            member, data = item
            members[member.name] = data.read()
            assert member.size == len(members[member.name])
    return members, rejected


def test_good_members_are_streamed(tmp_path: Path) -> None:
    entries = [
        ("dir", None, tarfile.DIRTYPE),
        file("a.jpg", b"A" * 3000),
        file("./b.PNG", b"B"),
        file("dir/c.webp", b"C" * 10),
        file("notification_config.json", b'{"ingestId": "i1"}'),
        file("x.tiff", b""),
    ]
    members, rejected = collect(build(tmp_path / "t.tar", entries))
    assert members == {
        "a.jpg": b"A" * 3000,
        "b.PNG": b"B",
        "dir/c.webp": b"C" * 10,
        "notification_config.json": b'{"ingestId": "i1"}',
        "x.tiff": b"",
    }
    assert rejected == {}


def test_data_can_be_skipped_unread(tmp_path: Path) -> None:
    path = build(tmp_path / "t.tar", [file("a.jpg", b"1" * 5000), file("b.jpg", b"2" * 7)])
    names = []
    for item in iter_tar(path):
        assert not isinstance(item, TarRejection)
        names.append(item[0].name)
        if item[0].name == "b.jpg":
            assert item[1].read() == b"2" * 7
    assert names == ["a.jpg", "b.jpg"]


@pytest.mark.parametrize(
    "name",
    [
        "/etc/x.jpg",
        "../x.jpg",
        "a/../../x.jpg",
        "a\\b.jpg",
        "C:/x.jpg",
        "c:x.jpg",
        "a\x01b.jpg",
        "a\x7f.jpg",
        "./../x.jpg",
    ],
)
def test_unsafe_names(tmp_path: Path, name: str) -> None:
    path = build(tmp_path / "t.tar", [file(name), file("ok.jpg")])
    members, rejected = collect(path)
    assert list(members) == ["ok.jpg"]
    (rejection,) = rejected.values()
    assert rejection.failure_type == "unsafe-archive-member"


@pytest.mark.parametrize(
    "kind",
    [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE],
)
def test_special_member_types(tmp_path: Path, kind: bytes) -> None:
    path = build(tmp_path / "t.tar", [file("a.jpg"), ("evil.jpg", None, kind)])
    members, rejected = collect(path)
    assert list(members) == ["a.jpg"]
    assert rejected["evil.jpg"].failure_type == "unsafe-archive-member"


def test_gnu_sparse_and_unknown_types_rejected(tmp_path: Path) -> None:
    path = build(
        tmp_path / "t.tar",
        [("s.jpg", b"", tarfile.GNUTYPE_SPARSE), ("z.jpg", b"zz", b"Z"), file("c.jpg")],
        fmt=tarfile.GNU_FORMAT,
    )
    members, rejected = collect(path)
    assert list(members) == ["c.jpg"]
    assert rejected["s.jpg"].failure_type == "unsafe-archive-member"
    assert rejected["z.jpg"].failure_type == "unsafe-archive-member"


def test_contiguous_type_is_a_regular_file(tmp_path: Path) -> None:
    path = build(tmp_path / "t.tar", [("c.jpg", b"cc", tarfile.CONTTYPE)])
    assert collect(path) == ({"c.jpg": b"cc"}, {})


def test_suffixes_sizes_and_names(tmp_path: Path) -> None:
    entries = [
        file("notes.txt"),
        file("noext"),
        file("sub/notification_config.json"),
        file("big.jpg", b"x" * 101),
        file("edge.jpg", b"x" * 100),
        file("a//b.jpg"),
        file("a/./b.jpg"),
        file("clip.mp4"),
    ]
    members, rejected = collect(build(tmp_path / "t.tar", entries), max_member_bytes=100)
    assert list(members) == ["edge.jpg"]
    kinds = {name: r.failure_type for name, r in rejected.items()}
    assert kinds == {
        "notes.txt": "unsupported-file-type",
        "noext": "unsupported-file-type",
        "sub/notification_config.json": "unsupported-file-type",
        "big.jpg": "file-size-limit-exceeded",
        "a//b.jpg": "invalid-file-name",
        "a/./b.jpg": "invalid-file-name",
        "clip.mp4": "unsupported-file-type",
    }
    assert all(r.reason for r in rejected.values())


def test_video_suffixes(tmp_path: Path) -> None:
    path = build(tmp_path / "t.tar", [file("clip.MP4"), file("a.jpg")])
    members, rejected = collect(path, allowed_suffixes=VIDEO_SUFFIXES)
    assert list(members) == ["clip.MP4"]
    assert rejected["a.jpg"].failure_type == "unsupported-file-type"
    assert ".jpeg" in IMAGE_SUFFIXES
    assert ".mkv" in VIDEO_SUFFIXES


def test_notification_config_has_a_small_cap(tmp_path: Path) -> None:
    path = build(tmp_path / "t.tar", [file("notification_config.json", b" " * 70_000)])
    _, rejected = collect(path)
    assert rejected["notification_config.json"].failure_type == "file-size-limit-exceeded"


def test_too_many_members_is_one_rejection_each(tmp_path: Path) -> None:
    entries = [file(f"{i}.jpg") for i in range(5)] + [file("notification_config.json", b"{}")]
    members, rejected = collect(build(tmp_path / "t.tar", entries), max_members=3)
    assert sorted(members) == ["0.jpg", "1.jpg", "2.jpg", "notification_config.json"]
    assert {n: r.failure_type for n, r in rejected.items()} == {
        "3.jpg": "too-many-members",
        "4.jpg": "too-many-members",
    }


def test_pax_long_unicode_name(tmp_path: Path) -> None:
    name = "ünïcødé/" + "é" * 150 + "/фото-" + "x" * 120 + ".jpeg"
    members, rejected = collect(build(tmp_path / "t.tar", [file(name, b"pax")]))
    assert members == {name: b"pax"}
    assert rejected == {}


def test_gnu_long_name_and_invalid_utf8(tmp_path: Path) -> None:
    long_name = "d/" + "n" * 200 + ".jpg"
    path = build(
        tmp_path / "t.tar", [file(long_name), file("bad\udcff.jpg")], fmt=tarfile.GNU_FORMAT
    )
    members, rejected = collect(path)
    assert list(members) == [long_name]
    assert rejected["bad\udcff.jpg"].failure_type == "invalid-file-name"


def test_gzip_archive(tmp_path: Path) -> None:
    path = build(tmp_path / "t.tar.gz", [file("a.jpg", b"gz" * 100)], mode="w:gz")
    assert collect(path) == ({"a.jpg": b"gz" * 100}, {})


def _raw_tar(tmp_path: Path) -> bytes:
    data = [file("a.jpg", b"a" * 1000), file("b.jpg", b"b" * 5000), file("c.jpg", b"c" * 10)]
    return build(tmp_path / "full.tar", data).read_bytes()


def _consume(path: Path, *, read: bool, into: dict[str, bytes] | None = None) -> None:
    """Iterate like a caller would; record what was read before any error."""
    got = {} if into is None else into
    for item in iter_tar(path):
        assert isinstance(item, tuple)
        member, data = item
        got[member.name] = data.read() if read else b""
        if read:
            assert len(got[member.name]) == member.size


@pytest.mark.parametrize("read", [True, False])
def test_truncated_inside_member_data(tmp_path: Path, read: bool) -> None:
    raw = _raw_tar(tmp_path)
    cut = tmp_path / "cut.tar"
    cut.write_bytes(raw[: 512 + 1024 + 512 + 2000])  # inside b.jpg's data
    seen: dict[str, bytes] = {}
    with pytest.raises(BadArchiveError, match="truncated"):
        _consume(cut, read=read, into=seen)
    # reading b.jpg hits the cut inside read(); skipping it hits it on the next step
    assert list(seen) == (["a.jpg"] if read else ["a.jpg", "b.jpg"])


def test_truncated_at_a_header_boundary(tmp_path: Path) -> None:
    raw = _raw_tar(tmp_path)
    cut = tmp_path / "cut.tar"
    cut.write_bytes(raw[: 512 + 1024 + 512 + 5120])  # b.jpg complete, no c.jpg, no end block
    with pytest.raises(BadArchiveError, match="end-of-archive"):
        _consume(cut, read=True)
    cut.write_bytes(raw[: 512 + 1024 + 512 + 5120 + 100])  # half a header
    with pytest.raises(BadArchiveError):
        _consume(cut, read=False)


def test_members_before_the_break_stay_valid(tmp_path: Path) -> None:
    raw = _raw_tar(tmp_path)
    cut = tmp_path / "cut.tar"
    cut.write_bytes(raw[:4000])
    got: dict[str, bytes] = {}
    with pytest.raises(BadArchiveError) as info:
        _consume(cut, read=True, into=got)
    assert got == {"a.jpg": b"a" * 1000}
    assert isinstance(info.value, PermanentError)
    assert info.value.failure_type == "invalid-archive"


def test_truncated_gzip(tmp_path: Path) -> None:
    blob = gzip.compress(_raw_tar(tmp_path))
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(BadArchiveError):
        _consume(cut, read=True)


@pytest.mark.parametrize("content", [b"", b"this is not a tar archive at all" * 40])
def test_garbage_is_a_bad_archive(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.tar"
    path.write_bytes(content)
    with pytest.raises(BadArchiveError):
        list(iter_tar(path))


def test_empty_but_valid_archive(tmp_path: Path) -> None:
    assert collect(build(tmp_path / "t.tar", [])) == ({}, {})


def test_stream_object_is_readable_in_chunks(tmp_path: Path) -> None:
    path = build(tmp_path / "t.tar", [file("a.jpg", bytes(range(256)) * 40)])
    for item in iter_tar(path):
        assert isinstance(item, tuple)
        member, data = item
        stream: IO[bytes] = data
        chunks = []
        while chunk := stream.read(1000):
            chunks.append(chunk)
        assert b"".join(chunks) == bytes(range(256)) * 40
        assert isinstance(member, TarMember)
