"""Glob matching: examples, split_glob, and hypothesis against a tiny reference matcher."""

from __future__ import annotations

from functools import cache
from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchflow.errors import UsageError
from batchflow.sources import IMAGE_EXTENSIONS, Selection, compile_glob, split_glob
from batchflow.sources.glob import has_glob

# ----------------------------------------------------------------------------- reference


def _tokens(pattern: str) -> list[tuple[str, object]]:
    """Tokenise independently of the implementation: LIT, STAR, DSTAR, DSEG, ANY, CLASS."""
    out: list[tuple[str, object]] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            j = i
            while j < len(pattern) and pattern[j] == "*":
                j += 1
            at_seg_start = i == 0 or pattern[i - 1] == "/"
            if j - i == 1:
                out.append(("STAR", None))
            elif at_seg_start and j < len(pattern) and pattern[j] == "/":
                out.append(("DSEG", None))  # "**/": zero or more whole folders
                j += 1
            else:
                out.append(("DSTAR", None))
            i = j
        elif c == "?":
            out.append(("ANY", None))
            i += 1
        elif c == "[":
            j = i + 1
            neg = j < len(pattern) and pattern[j] == "!"
            if neg:
                j += 1
            start = j
            if j < len(pattern) and pattern[j] == "]":
                j += 1
            while j < len(pattern) and pattern[j] != "]":
                j += 1
            if j >= len(pattern):
                raise ValueError("unclosed")
            body = pattern[start:j]
            chars: set[str] = set()
            k = 0
            while k < len(body):
                if k + 2 < len(body) and body[k + 1] == "-":
                    chars |= {chr(x) for x in range(ord(body[k]), ord(body[k + 2]) + 1)}
                    k += 3
                else:
                    chars.add(body[k])
                    k += 1
            out.append(("CLASS", (neg, frozenset(chars))))
            i = j + 1
        else:
            out.append(("LIT", c))
            i += 1
    return out


def reference_match(pattern: str, key: str) -> bool:
    toks = _tokens(pattern)

    @cache
    def m(t: int, k: int) -> bool:
        if t == len(toks):
            return k == len(key)
        kind, arg = toks[t]
        if kind == "LIT":
            return k < len(key) and key[k] == arg and m(t + 1, k + 1)
        if kind == "ANY":
            return k < len(key) and key[k] != "/" and m(t + 1, k + 1)
        if kind == "CLASS":
            neg, chars = cast("tuple[bool, frozenset[str]]", arg)
            return k < len(key) and key[k] != "/" and ((key[k] in chars) != neg) and m(t + 1, k + 1)
        if kind == "STAR":
            end = k
            while True:
                if m(t + 1, end):
                    return True
                if end == len(key) or key[end] == "/":
                    return False
                end += 1
        if kind == "DSTAR":
            return any(m(t + 1, end) for end in range(k, len(key) + 1))
        # DSEG: skip nothing, or skip through some '/'
        return m(t + 1, k) or any(
            key[end - 1] == "/" and m(t + 1, end) for end in range(k + 1, len(key) + 1)
        )

    return m(0, 0)


# ---------------------------------------------------------------------------- properties

PIECES = ["a", "b", ".", "/", "*", "**", "?", "[ab]", "[!a]", "[a-b]", "[]a]", "**/"]
patterns = st.lists(st.sampled_from(PIECES), max_size=8).map("".join)
keys = st.text(alphabet="ab./]", max_size=10)


@settings(max_examples=700, deadline=None, database=None)
@given(pattern=patterns, key=keys)
def test_matches_reference(pattern: str, key: str) -> None:
    assert compile_glob(pattern).matches(key) == reference_match(pattern, key)


@settings(max_examples=300, deadline=None, database=None)
@given(pattern=st.lists(st.sampled_from([*PIECES, "[", "[!", "]"]), max_size=8).map("".join))
def test_malformed_iff_reference_rejects(pattern: str) -> None:
    try:
        _tokens(pattern)
    except ValueError:
        with pytest.raises(UsageError):
            compile_glob(pattern)
    else:
        compile_glob(pattern)


@settings(max_examples=200, deadline=None, database=None)
@given(path=st.lists(st.sampled_from([*PIECES, "x", "/y/"]), max_size=8).map("".join))
def test_split_glob_invariants(path: str) -> None:
    literal, pattern = split_glob(path)
    if pattern is None:
        assert literal == path
        assert not has_glob(path)
    else:
        assert literal + pattern == path
        assert not has_glob(literal)
        assert literal == "" or literal.endswith("/")
        first = min(i for i in (path.find(c) for c in "*?[") if i >= 0)
        assert "/" not in path[len(literal) : first]


@settings(max_examples=200, deadline=None, database=None)
@given(pattern=patterns, keys=st.lists(keys, max_size=5))
def test_selection_matches_relative_key(pattern: str, keys: list[str]) -> None:
    sel = Selection.parse("base/dir/" + pattern, None)
    if sel.matcher is None:
        return
    for key in keys:
        full = "base/dir/" + key
        got = sel.name_of(full)
        want = reference_match(pattern, key) and not full.endswith("/")
        assert (got == key) if want else got is None


# ------------------------------------------------------------------------------ examples


@pytest.mark.parametrize(
    ("pattern", "key", "ok"),
    [
        ("a/**/b.jpg", "a/b.jpg", True),
        ("a/**/b.jpg", "a/x/y/b.jpg", True),
        ("a/**/b.jpg", "ab.jpg", False),
        ("**.jpg", "x/y/z.jpg", True),
        ("**/*.jpg", "z.jpg", True),
        ("*.jpg", "x/z.jpg", False),
        ("img?.png", "img1.png", True),
        ("img?.png", "img/.png", False),
        ("[!a]*", "bcd", True),
        ("[!a]*", "abc", False),
        ("[]x]", "]", True),
        ("[*]", "*", True),
        ("[*]", "a", False),
        ("a+b(1).jpg", "a+b(1).jpg", True),
        ("é/*", "é/ü.jpg", True),
    ],
)
def test_examples(pattern: str, key: str, ok: bool) -> None:
    assert compile_glob(pattern).matches(key) is ok


@pytest.mark.parametrize(
    ("path", "split"),
    [
        ("photos/2024/*.jpg", ("photos/2024/", "*.jpg")),
        ("photos/img*.jpg", ("photos/", "img*.jpg")),
        ("photos/2024", ("photos/2024", None)),
        ("photos/", ("photos/", None)),
        ("**/x", ("", "**/x")),
        ("a/b[0-9]/c/*.png", ("a/", "b[0-9]/c/*.png")),
        ("", ("", None)),
    ],
)
def test_split_glob(path: str, split: tuple[str, str | None]) -> None:
    assert split_glob(path) == split


@pytest.mark.parametrize("bad", ["[abc", "a/[!", "x[", "[b-a]"])
def test_bad_globs(bad: str) -> None:
    with pytest.raises(UsageError, match="bad glob"):
        compile_glob(bad)


def test_selection_prefix_and_names() -> None:
    sel = Selection.parse("photos/img*.jpg", IMAGE_EXTENSIONS)
    assert sel.list_prefix == "photos/img"
    assert sel.base == "photos/"
    assert sel.name_of("photos/img1.jpg") == "img1.jpg"
    assert sel.name_of("photos/img1.JPG") is None  # the glob is case-sensitive
    bare = Selection.parse("photos/2024", IMAGE_EXTENSIONS)
    assert bare.list_prefix == "photos/2024"
    assert bare.name_of("photos/2024-01/a.JPG") == "2024-01/a.JPG"  # extensions are not
    assert bare.name_of("photos/2024/a.txt") is None
    assert bare.name_of("photos/2024/folder/") is None
