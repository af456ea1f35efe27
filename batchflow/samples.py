"""Synthetic sample data for the demo, tests and benchmarks: images in nested folders, videos.

Images are small JPEG/PNG files drawn with Pillow (deterministic for a seed); videos are short
MPEG-4 clips encoded with PyAV. Generation is idempotent: existing files are kept.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SampleSet", "make_image_bytes", "make_images", "make_video"]


@dataclass(frozen=True, slots=True)
class SampleSet:
    """Where a generated sample set lives and what it holds."""

    root: Path
    images: int
    videos: int


def make_image_bytes(index: int, *, size: tuple[int, int] = (64, 48), fmt: str = "JPEG") -> bytes:
    """One small image whose pixels depend on ``index`` (so hashes differ between images)."""
    from PIL import Image, ImageDraw

    rng = random.Random(index)
    image = Image.new("RGB", size, (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    draw = ImageDraw.Draw(image)
    for _ in range(3):
        x0, y0 = rng.randrange(size[0]), rng.randrange(size[1])
        x1, y1 = x0 + rng.randrange(4, 24), y0 + rng.randrange(4, 24)
        color = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        draw.rectangle((x0, y0, x1, y1), fill=color)
    out = io.BytesIO()
    image.save(out, format=fmt, quality=85) if fmt == "JPEG" else image.save(out, format=fmt)
    return out.getvalue()


def make_images(root: Path, count: int, *, per_folder: int = 250, seed: int = 0) -> int:
    """Write ``count`` images under ``root`` in nested folders (``set-a/part-003/img-00042.jpg``).

    Every tenth image is a PNG. Returns how many files were newly written.
    """
    written = 0
    for index in range(count):
        folder = root / f"set-{'ab'[index % 2]}" / f"part-{index // per_folder:03d}"
        fmt, suffix = ("PNG", "png") if index % 10 == 9 else ("JPEG", "jpg")
        path = folder / f"img-{index:05d}.{suffix}"
        if path.exists():
            continue
        folder.mkdir(parents=True, exist_ok=True)
        temp = path.with_suffix(".tmp")
        temp.write_bytes(make_image_bytes(index + seed * 1_000_003, fmt=fmt))
        temp.replace(path)
        written += 1
    return written


def make_video(
    path: Path, *, seconds: float = 2.0, fps: int = 10, size: tuple[int, int] = (96, 64)
) -> Path:
    """Encode a short MPEG-4 clip of a moving square to ``path`` (kept if it exists)."""
    if path.exists():
        return path
    import av
    from PIL import Image, ImageDraw

    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp{path.suffix}")
    with av.open(str(temp), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for index in range(int(seconds * fps)):
            image = Image.new("RGB", size, (20, 20, 40))
            x = (index * 4) % (size[0] - 16)
            ImageDraw.Draw(image).rectangle((x, 20, x + 16, 36), fill=(240, 200, 40))
            frame = av.VideoFrame.from_image(image)  # type: ignore[no-untyped-call]
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    temp.replace(path)
    return path
