"""Built-in image workflows on generated files: metadata, corrupt inputs, thumbnails, pHash."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest
from PIL import Image

from batchflow.server.workflows import (
    ImageMetadataWorkflow,
    ThumbnailWorkflow,
    WorkflowError,
    WorkItem,
    hamming_distance,
    perceptual_hash,
    run_items,
)

META = ImageMetadataWorkflow()
THUMB = ThumbnailWorkflow()


def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


def test_metadata_jpeg_with_exif_orientation(make_image, save_item):
    item = save_item("photo.jpg", make_image(80, 60), "image/jpeg", exif=_exif(6), quality=90)
    row = META.process_image(item, None, {}).row
    data = item.path.read_bytes()
    assert row == {
        "file_name": "photo.jpg",
        "width": 80,
        "height": 60,
        "format": "JPEG",
        "mode": "RGB",
        "exif_orientation": 6,
        "byte_size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "phash": row["phash"],
    }
    assert len(row["phash"]) == 16
    int(row["phash"], 16)
    # the hash is of the displayed (rotated) picture
    rotated = make_image(80, 60).transpose(Image.Transpose.ROTATE_270)
    assert hamming_distance(row["phash"], perceptual_hash(rotated)) <= 4


def test_metadata_png_rgba_and_gif_palette(make_image, save_item):
    rgba = make_image(40, 30).convert("RGBA")
    rgba.putpixel((0, 0), (0, 0, 0, 0))
    png = META.process_image(save_item("a.png", rgba, "image/png"), None, {}).row
    assert (png["format"], png["mode"], png["width"], png["height"]) == ("PNG", "RGBA", 40, 30)
    assert png["exif_orientation"] is None

    pal = make_image(33, 21).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    gif = META.process_image(save_item("b.gif", pal, "image/gif"), None, {}).row
    assert (gif["format"], gif["mode"], gif["width"], gif["height"]) == ("GIF", "P", 33, 21)


def test_metadata_of_a_decoded_frame(make_image, save_item):
    frame = make_image(64, 48)
    item = WorkItem("clip.mp4", Path("/nonexistent/clip.mp4"), "video/mp4")
    row = META.process_image(item, frame, {}).row
    assert row["format"] is None
    assert row["byte_size"] is None
    assert row["sha256"] == hashlib.sha256(frame.tobytes()).hexdigest()
    assert row["phash"] == perceptual_hash(frame)


@pytest.mark.parametrize(
    "content",
    [
        pytest.param("truncated", id="truncated-jpeg"),
        pytest.param(os.urandom(4096), id="random-bytes"),
        pytest.param(b"", id="empty"),
        pytest.param(b"\x89PNG\r\n\x1a\n" + b"\0" * 64, id="png-magic-garbage"),
    ],
)
def test_corrupt_images_are_workflow_errors(make_image, save_item, content):
    if content == "truncated":
        buffer = io.BytesIO()
        make_image(200, 150).save(buffer, format="JPEG", quality=95)
        content = buffer.getvalue()[: len(buffer.getvalue()) // 2]
    item = save_item("bad.jpg", content)
    for workflow in (META, THUMB):
        with pytest.raises(WorkflowError) as caught:
            workflow.process_image(item, None, {})
        assert caught.value.kind == "corrupt-image"
        assert "bad.jpg" in caught.value.message


def test_run_items_reports_failures_as_values(make_image, save_item, tmp_path):
    good = save_item("good.png", make_image(), "image/png")
    bad = save_item("bad.jpg", b"not an image at all")
    missing = WorkItem("gone.jpg", tmp_path / "gone.jpg", "image/jpeg")
    results = list(run_items(META, [good, bad, missing, good], {}))
    assert [item.name for item, _ in results] == ["good.png", "bad.jpg", "gone.jpg", "good.png"]
    kinds = [r.kind if isinstance(r, WorkflowError) else "ok" for _, r in results]
    assert kinds == ["ok", "corrupt-image", "missing-file", "ok"]


def test_thumbnail_applies_orientation_and_bounds_size(make_image, save_item):
    item = save_item("photo.jpg", make_image(200, 100), "image/jpeg", exif=_exif(6))
    result = THUMB.process_image(item, None, {"max_size": 50})
    assert result.row == {
        "file_name": "photo.jpg",
        "width": 100,
        "height": 200,
        "thumb_width": 25,
        "thumb_height": 50,
    }
    [output] = result.images
    assert (output.name, output.extension) == ("thumbnail", "jpg")
    with Image.open(io.BytesIO(output.data)) as thumb:
        thumb.load()
        assert thumb.format == "JPEG"
        assert thumb.size == (25, 50)
        assert max(thumb.size) <= 50


def test_thumbnail_default_size_transparency_and_no_upscaling(make_image, save_item):
    big = save_item("big.png", make_image(600, 300).convert("RGBA"), "image/png")
    out = THUMB.process_image(big, None, {}).row
    assert (out["thumb_width"], out["thumb_height"]) == (256, 128)

    clear = Image.new("RGBA", (20, 10), (0, 0, 0, 0))
    small = THUMB.process_image(save_item("clear.png", clear, "image/png"), None, {})
    assert (small.row["thumb_width"], small.row["thumb_height"]) == (20, 10)
    with Image.open(io.BytesIO(small.images[0].data)) as thumb:
        assert min(thumb.convert("RGB").getpixel((10, 5))) >= 245  # white, not black

    with pytest.raises(WorkflowError) as caught:
        THUMB.process_image(big, None, {"max_size": "large"})
    assert caught.value.kind == "invalid-params"


def test_perceptual_hash_is_stable_under_reencoding_and_tells_images_apart(make_image):
    original = make_image(320, 240)
    buffer = io.BytesIO()
    original.save(buffer, format="JPEG", quality=95)
    first = Image.open(io.BytesIO(buffer.getvalue()))
    again = io.BytesIO()
    first.save(again, format="JPEG", quality=70)
    reencoded = Image.open(io.BytesIO(again.getvalue()))
    resized = original.resize((300, 225))

    base = perceptual_hash(first)
    assert perceptual_hash(reencoded) == base
    assert hamming_distance(perceptual_hash(resized), base) <= 2
    other = perceptual_hash(make_image(320, 240, variant=1))
    assert hamming_distance(other, base) >= 12


def test_decompression_bomb_is_its_own_kind(make_image, save_item, monkeypatch):
    item = save_item("huge.png", make_image(80, 60), "image/png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(WorkflowError) as caught:
        META.process_image(item, None, {})
    assert caught.value.kind == "image-too-large"
