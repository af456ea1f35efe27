"""Fixtures of the workflow tests: generated images and videos on disk, a local HTTP stub."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from batchflow.server.workflows import WorkItem

MakeImage = Callable[..., Image.Image]
MakeVideo = Callable[..., Path]


def _scene(width: int, height: int, variant: int) -> Image.Image:
    """A smooth, structured picture (gradients + shapes): what perceptual hashes are made for."""
    red = Image.linear_gradient("L").resize((width, height))
    green = Image.radial_gradient("L").resize((width, height))
    blue = red.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    img = Image.merge("RGB", (red, green, blue))
    draw = ImageDraw.Draw(img)
    if variant == 0:
        draw.ellipse((width // 4, height // 4, width // 2, height // 2), fill=(250, 240, 20))
        draw.rectangle((width * 2 // 3, height // 2, width - 5, height - 5), fill=(10, 20, 200))
    else:
        draw.rectangle((5, 5, width // 2, height - 5), fill=(240, 20, 20))
        draw.ellipse((width // 2, 0, width - 1, height // 2), fill=(20, 220, 60))
    return img


@pytest.fixture
def make_image() -> MakeImage:
    """``make_image(width, height, variant=0)``: a deterministic RGB picture."""

    def make(width: int = 80, height: int = 60, variant: int = 0) -> Image.Image:
        return _scene(width, height, variant)

    return make


@pytest.fixture
def save_item(tmp_path: Path) -> Callable[..., WorkItem]:
    """``save_item(name, image | bytes, content_type, **save_kwargs)``: a staged WorkItem."""

    def save(
        name: str, content: Image.Image | bytes, content_type: str = "image/jpeg", **kwargs: object
    ) -> WorkItem:
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            content.save(path, **kwargs)
        return WorkItem(name=name, path=path, content_type=content_type)

    return save


@pytest.fixture
def make_video(tmp_path: Path) -> MakeVideo:
    """``make_video(name, seconds=2, fps=10, codec="mpeg4")``: a 64x48 synthetic .mp4."""
    import av

    def make(
        name: str = "clip.mp4", seconds: float = 2, fps: int = 10, codec: str = "mpeg4"
    ) -> Path:
        path = tmp_path / name
        with av.open(str(path), "w") as container:
            stream = container.add_stream(codec, rate=fps)
            stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
            for index in range(round(seconds * fps)):
                frame_img = Image.new("RGB", (64, 48), (index * 10 % 256, 100, 200 - index * 5))
                frame = av.VideoFrame.from_image(frame_img)
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        return path

    return make
