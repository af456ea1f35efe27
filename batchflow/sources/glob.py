"""Glob patterns over object keys, compiled once to a regex.

Syntax (matched against the key relative to the pattern's literal folder):

- ``*``      any run of characters except ``/`` (may be empty)
- ``**``     any run of characters including ``/``; as a whole leading segment (``**/``) it
             stands for zero or more folders, so ``a/**/b.jpg`` matches ``a/b.jpg`` and
             ``a/x/y/b.jpg``; ``prefix/**.jpg`` matches every ``.jpg`` at any depth
- ``?``      one character except ``/``
- ``[abc]``, ``[a-z]``, ``[!abc]``  one character (never ``/``) in / not in the set; a ``]``
             right after ``[`` or ``[!`` is literal. There is no backslash escape: write
             ``[*]`` for a literal star.

``split_glob`` cuts a path into the literal folder prefix (up to the last ``/`` before the
first metacharacter) and the pattern; only that prefix needs to be listed from a store.
A path without metacharacters is a plain prefix: everything under it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from batchflow.errors import UsageError
from batchflow.sources._types import Scope, matches_extension

__all__ = ["GLOB_CHARS", "GlobMatcher", "Selection", "compile_glob", "has_glob", "split_glob"]

GLOB_CHARS = "*?["


def has_glob(path: str) -> bool:
    """True when ``path`` contains a glob metacharacter."""
    return any(c in path for c in GLOB_CHARS)


def _first_meta(path: str) -> int:
    return min((i for i in (path.find(c) for c in GLOB_CHARS) if i >= 0), default=-1)


def split_glob(path: str) -> tuple[str, str | None]:
    """``"a/b/*.jpg"`` -> ``("a/b/", "*.jpg")``; ``"a/b"`` -> ``("a/b", None)``."""
    first = _first_meta(path)
    if first < 0:
        return path, None
    cut = path.rfind("/", 0, first) + 1
    return path[:cut], path[cut:]


def _class_end(pattern: str, start: int) -> int:
    """Index of the ``]`` closing the class opened at ``start``, or -1."""
    i = start + 1
    if i < len(pattern) and pattern[i] == "!":
        i += 1
    if i < len(pattern) and pattern[i] == "]":
        i += 1
    return pattern.find("]", i)


def _translate_class(body: str) -> str:
    negate = body.startswith("!")
    if negate:
        body = body[1:]
    parts: list[str] = []
    i = 0
    while i < len(body):
        if i + 2 < len(body) and body[i + 1] == "-":
            lo, hi = body[i], body[i + 2]
            if lo > hi:
                raise UsageError(f"bad glob: empty range '{lo}-{hi}' in '[{body}]'")
            parts.append(f"{re.escape(lo)}-{re.escape(hi)}")
            i += 3
        else:
            parts.append(re.escape(body[i]))
            i += 1
    inner = "".join(parts)
    return f"[^/{inner}]" if negate else f"(?!/)[{inner}]"


def translate(pattern: str) -> str:
    """The regex source (without anchors) for ``pattern``; raises UsageError if malformed."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            j = i
            while j < n and pattern[j] == "*":
                j += 1
            if j - i == 1:
                out.append("[^/]*")
            elif (i == 0 or pattern[i - 1] == "/") and j < n and pattern[j] == "/":
                out.append("(?:.*/)?")
                j += 1
            else:
                out.append(".*")
            i = j
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            end = _class_end(pattern, i)
            if end < 0:
                raise UsageError(f"bad glob '{pattern}': unclosed '[' at position {i}")
            out.append(_translate_class(pattern[i + 1 : end]))
            i = end + 1
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


@dataclass(frozen=True, slots=True)
class GlobMatcher:
    """A compiled glob: ``matches(relative_key)``."""

    pattern: str
    regex: re.Pattern[str]

    def matches(self, key: str) -> bool:
        return self.regex.fullmatch(key) is not None

    @property
    def max_depth(self) -> int | None:
        """Folders a match can be below the base, or None when ``**`` allows any depth."""
        return None if "**" in self.pattern else self.pattern.count("/")


def compile_glob(pattern: str) -> GlobMatcher:
    """Compile ``pattern`` once; malformed patterns raise UsageError."""
    source = translate(pattern)
    try:
        regex = re.compile(source, re.DOTALL)
    except re.error as exc:  # pragma: no cover - translate() validates first
        raise UsageError(f"bad glob '{pattern}': {exc}") from exc
    return GlobMatcher(pattern=pattern, regex=regex)


@dataclass(frozen=True, slots=True)
class Selection:
    """Which keys of a store a location selects, and the names they get.

    ``list_prefix`` is what to ask the store for (everything before the first metacharacter);
    ``base`` is the literal folder (names are keys relative to it); ``matcher`` filters the
    relative key; ``extensions`` filters by suffix.
    """

    list_prefix: str
    base: str
    matcher: GlobMatcher | None
    extensions: frozenset[str] | None

    @classmethod
    def parse(cls, path: str, extensions: frozenset[str] | None) -> Selection:
        """Build from a key path that may contain a glob (``photos/**/*.jpg``)."""
        literal, pattern = split_glob(path)
        if pattern is None:
            base = path[: path.rfind("/") + 1]
            return cls(list_prefix=path, base=base, matcher=None, extensions=extensions)
        first = _first_meta(path)
        return cls(
            list_prefix=path[:first],
            base=literal,
            matcher=compile_glob(pattern),
            extensions=extensions,
        )

    def scope(self, root: str) -> Scope:
        """The scope for messages; ``root`` is the store's URL ending in '/' (``s3://b/``)."""
        if self.matcher is None:
            return Scope(where=root + self.list_prefix, extensions=self.extensions)
        return Scope(
            where=root + self.base, pattern=self.matcher.pattern, extensions=self.extensions
        )

    def name_of(self, key: str) -> str | None:
        """The staged name for ``key`` if it is selected, else None (folder markers never are)."""
        if not key.startswith(self.list_prefix) or key.endswith("/"):
            return None
        name = key[len(self.base) :]
        if self.matcher is not None and not self.matcher.matches(name):
            return None
        if not matches_extension(name, self.extensions):
            return None
        return name
