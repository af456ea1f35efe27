"""Built-in workflows that need only Pillow: ``image-metadata`` and ``thumbnail``.

Files are fully decoded (``img.load()``) so a truncated or corrupt file fails here, as a
``corrupt-image`` WorkflowError, and not later in someone else's viewer. For video frames the
decoded frame is passed in and the file-level fields (format, EXIF, size, digest of the file)
describe the frame instead, as documented on each workflow.
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING, Any

from batchflow.server.workflows._types import ImageOutput, WorkflowError, WorkItem, WorkResult

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "ImageMetadataWorkflow",
    "ThumbnailWorkflow",
    "decoded_image",
    "hamming_distance",
    "perceptual_hash",
]

_EXIF_ORIENTATION = 0x0112
_HASH_SIDE = 8  # 8x8 low frequencies -> 64 bits -> 16 hex chars
_DCT_SIDE = 32


@contextmanager
def decoded_image(item: WorkItem) -> Iterator[tuple[Image.Image, bytes]]:
    """The fully decoded image of ``item`` and the file's bytes, or a typed WorkflowError."""
    from PIL import Image

    try:
        data = item.path.read_bytes()
    except FileNotFoundError as exc:
        raise WorkflowError("missing-file", f"{item.name}: staged file is missing") from exc
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except Image.DecompressionBombError as exc:
        raise WorkflowError("image-too-large", f"{item.name}: {exc}") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # UnidentifiedImageError and "image file is truncated" are OSErrors; some plugins
        # raise SyntaxError/ValueError on malformed headers.
        raise WorkflowError("corrupt-image", f"{item.name}: cannot decode image: {exc}") from exc
    with img:
        yield img, data


@cache
def _dct_table() -> tuple[tuple[float, ...], ...]:
    """cos((2x + 1) u pi / 2N) for the low frequencies u < 8 and samples x < 32."""
    n = _DCT_SIDE
    return tuple(
        tuple(math.cos((2 * x + 1) * u * math.pi / (2 * n)) for x in range(n))
        for u in range(_HASH_SIDE)
    )


def perceptual_hash(image: Image.Image) -> str:
    """The 64-bit pHash of ``image`` as 16 hex chars (pure Pillow + Python, ~2 ms).

    Grayscale 32x32, 2-D DCT-II, the 8x8 lowest frequencies, one bit per coefficient above
    their median (as the ``imagehash`` library does). Near-duplicates (re-encoded, resized)
    get equal or close hashes; compare with :func:`hamming_distance`.
    """
    from PIL import Image

    gray = image.convert("L").resize((_DCT_SIDE, _DCT_SIDE), Image.Resampling.LANCZOS)
    pixels = gray.tobytes()
    table = _dct_table()
    n = _DCT_SIDE
    rows = [
        [
            sum(c * p for c, p in zip(cos_u, pixels[y * n : (y + 1) * n], strict=True))
            for cos_u in table
        ]
        for y in range(n)
    ]
    coeffs = [
        sum(cos_v[y] * rows[y][u] for y in range(n)) for cos_v in table for u in range(_HASH_SIDE)
    ]
    ordered = sorted(coeffs)
    median = (ordered[31] + ordered[32]) / 2
    bits = 0
    for value in coeffs:
        bits = (bits << 1) | (value > median)
    return f"{bits:016x}"


def hamming_distance(left: str, right: str) -> int:
    """Number of differing bits between two hex hashes of :func:`perceptual_hash`."""
    return (int(left, 16) ^ int(right, 16)).bit_count()


def _oriented(img: Image.Image) -> Image.Image:
    from PIL import ImageOps

    return ImageOps.exif_transpose(img)


def _exif_orientation(img: Image.Image) -> int | None:
    value = img.getexif().get(_EXIF_ORIENTATION)
    return int(value) if isinstance(value, int) else None


class ImageMetadataWorkflow:
    """``image-metadata``: size, format, mode, EXIF orientation, byte size, SHA-256, pHash.

    Row: ``file_name, width, height, format, mode, exif_orientation, byte_size, sha256, phash``.
    ``width``/``height`` are the stored pixel size (before EXIF orientation); ``phash`` is of
    the oriented image. For a video frame: ``format``, ``exif_orientation`` and ``byte_size``
    are None and ``sha256`` digests the frame's raw RGB pixels.
    """

    workflow_id = "image-metadata"

    def process_image(
        self, item: WorkItem, image: Image.Image | None, params: Mapping[str, Any]
    ) -> WorkResult:
        if image is not None:
            return WorkResult(row=self._row(item, image, None, None))
        with decoded_image(item) as (img, data):
            return WorkResult(row=self._row(item, img, data, _exif_orientation(img)))

    @staticmethod
    def _row(
        item: WorkItem, img: Image.Image, data: bytes | None, orientation: int | None
    ) -> dict[str, Any]:
        digest = hashlib.sha256(img.tobytes() if data is None else data).hexdigest()
        return {
            "file_name": item.name,
            "width": img.width,
            "height": img.height,
            "format": img.format if data is not None else None,
            "mode": img.mode,
            "exif_orientation": orientation,
            "byte_size": len(data) if data is not None else None,
            "sha256": digest,
            "phash": perceptual_hash(_oriented(img) if orientation else img),
        }


def _max_size(params: Mapping[str, Any]) -> int:
    value = params.get("max_size", 256)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 16384:
        raise WorkflowError(
            "invalid-params", f"max_size must be an integer 1..16384, got {value!r}"
        )
    return value


def _to_rgb(img: Image.Image) -> Image.Image:
    """RGB for JPEG; transparent pixels are composited on white, not left black."""
    from PIL import Image

    if img.mode == "RGB":
        return img
    if img.mode in {"RGBA", "LA", "PA"} or "transparency" in img.info:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


class ThumbnailWorkflow:
    """``thumbnail``: a JPEG whose longer side is at most ``params["max_size"]`` (default 256).

    EXIF orientation is applied first. Row: ``file_name, width, height, thumb_width,
    thumb_height`` where ``width``/``height`` are the oriented (displayed) size. Image output:
    ``ImageOutput("thumbnail", <jpeg>, "jpg")``.
    """

    workflow_id = "thumbnail"
    quality = 85

    def process_image(
        self, item: WorkItem, image: Image.Image | None, params: Mapping[str, Any]
    ) -> WorkResult:
        max_size = _max_size(params)
        if image is not None:
            return self._thumbnail(item, image, max_size)
        with decoded_image(item) as (img, _data):
            return self._thumbnail(item, _oriented(img), max_size)

    def _thumbnail(self, item: WorkItem, img: Image.Image, max_size: int) -> WorkResult:
        from PIL import Image

        width, height = img.size
        thumb = _to_rgb(img)
        if thumb is img:
            thumb = img.copy()
        thumb.thumbnail((max_size, max_size), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        thumb.save(buffer, format="JPEG", quality=self.quality)
        row = {
            "file_name": item.name,
            "width": width,
            "height": height,
            "thumb_width": thumb.width,
            "thumb_height": thumb.height,
        }
        return WorkResult(row=row, images=(ImageOutput("thumbnail", buffer.getvalue(), "jpg"),))
