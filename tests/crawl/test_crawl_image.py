"""Decoding safety and img2dataset-compatible resizing, on generated images of every awkward kind."""

from __future__ import annotations

import io

import numpy as np
import pytest
from crawl_support import fast_config
from faultserver import bomb_png, photo_jpeg
from PIL import Image

from crawl.image import sniff_mime, stage_image
from manifests.schema import Status


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def decoded(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def test_exif_orientation_is_applied() -> None:
    img = Image.new("RGB", (200, 100), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 100, 100))  # left half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display = rotate 90 clockwise
    staged = stage_image(encode(img, "JPEG", exif=exif.tobytes(), quality=95), fast_config(resize_mode="no"))
    assert staged.status == Status.SUCCESS
    assert (staged.original_width, staged.original_height) == (200, 100)  # as stored, like img2dataset
    out = decoded(staged.data)
    assert out.size == (100, 200)
    top = np.asarray(out)[10, 50]
    assert top[2] > 200 and top[0] < 60  # the blue half is on top after a clockwise turn


@pytest.mark.parametrize("mode", ["CMYK", "P", "L", "1", "LA", "RGBA", "I;16", "YCbCr"])
def test_every_mode_becomes_rgb(mode: str) -> None:
    base = Image.radial_gradient("L").resize((120, 90))
    if mode == "I;16":
        img = Image.fromarray((np.asarray(base, dtype=np.uint16) * 257))
        assert img.mode.startswith("I;16")
    else:
        img = base.convert("RGB").convert(mode) if mode != "LA" else base.convert(mode)
    fmt = "JPEG" if mode in ("CMYK", "YCbCr") else "PNG"
    staged = stage_image(encode(img, fmt), fast_config(resize_mode="no"))
    assert staged.status == Status.SUCCESS, staged.error
    out = decoded(staged.data)
    assert out.mode == "RGB" and out.size == (120, 90)
    if mode == "I;16":  # scaled to 8 bits, not clipped to white
        assert 50 < np.asarray(out).mean() < 220


def test_alpha_is_composited_on_white() -> None:
    img = Image.new("RGBA", (64, 64), (255, 0, 0, 0))  # fully transparent red
    img.paste((0, 0, 0, 255), (0, 0, 32, 64))  # opaque black left half
    staged = stage_image(encode(img, "PNG"), fast_config(resize_mode="no", encode_format="png"))
    pixels = np.asarray(decoded(staged.data))
    assert tuple(pixels[10, 50]) == (255, 255, 255) and tuple(pixels[10, 10]) == (0, 0, 0)


def test_palette_transparency_is_composited_on_white() -> None:
    img = Image.new("P", (32, 32), 0)
    img.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    img.paste(1, (0, 0, 16, 32))
    staged = stage_image(encode(img, "PNG", transparency=0), fast_config(resize_mode="no", encode_format="png"))
    pixels = np.asarray(decoded(staged.data))
    assert tuple(pixels[5, 25]) == (255, 255, 255) and tuple(pixels[5, 5]) == (0, 255, 0)


def test_animated_gif_keeps_its_first_frame() -> None:
    frames = [Image.new("RGB", (40, 40), c) for c in ((0, 0, 255), (255, 0, 0), (0, 255, 0))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    staged = stage_image(data, fast_config(resize_mode="no", encode_format="png"))
    assert staged.status == Status.SUCCESS and staged.mime_type == "image/gif"
    r, g, b = np.asarray(decoded(staged.data))[20, 20]
    assert b > 200 and r < 50


def test_decompression_bomb_is_refused_from_the_header() -> None:
    staged = stage_image(bomb_png(), fast_config())
    assert staged.status == Status.DECOMPRESSION_BOMB and "400000000 pixels" in staged.error
    small_limit = stage_image(photo_jpeg(), fast_config(max_pixels=640 * 480 - 1))
    assert small_limit.status == Status.DECOMPRESSION_BOMB


def test_min_size_and_aspect_ratio_filters() -> None:
    assert stage_image(photo_jpeg(64, 48), fast_config(min_image_size=50)).status == Status.FILTERED_SIZE
    assert stage_image(photo_jpeg(64, 48), fast_config(min_image_size=48)).status == Status.SUCCESS
    banner = stage_image(photo_jpeg(600, 100), fast_config(max_aspect_ratio=3.0))
    assert banner.status == Status.FILTERED_ASPECT_RATIO and "6.00" in banner.error


def test_unknown_and_broken_bytes() -> None:
    assert stage_image(b"", fast_config()).error == "empty body"
    assert stage_image(b"<html></html>", fast_config()).status == Status.NOT_AN_IMAGE
    jpeg = photo_jpeg()
    assert stage_image(jpeg[: len(jpeg) // 2], fast_config()).status == Status.FAILED_TO_DECODE
    assert stage_image(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, fast_config()).status == Status.FAILED_TO_DECODE
    assert sniff_mime(encode(Image.new("RGB", (8, 8)), "WEBP")) == "image/webp"


# (mode, only_if_bigger, source size) -> output size, as img2dataset's Resizer gives for image_size=64.
RESIZE_CASES = [
    ("border", False, (640, 480), (64, 64)),
    ("border", False, (40, 20), (64, 64)),
    ("border", True, (40, 20), (40, 20)),
    ("keep_ratio", False, (640, 480), (85, 64)),
    ("keep_ratio", True, (50, 40), (50, 40)),
    ("keep_ratio_largest", False, (640, 480), (64, 48)),
    ("keep_ratio_largest", False, (30, 60), (32, 64)),
    ("keep_ratio_largest", True, (30, 60), (30, 60)),
    ("center_crop", False, (640, 480), (64, 64)),
    ("center_crop", True, (50, 40), (50, 40)),
    ("no", False, (640, 480), (640, 480)),
]


@pytest.mark.parametrize("mode,only_if_bigger,size,expected", RESIZE_CASES)
def test_resize_modes_match_img2dataset(mode: str, only_if_bigger: bool, size: tuple, expected: tuple) -> None:
    config = fast_config(image_size=64, resize_mode=mode, resize_only_if_bigger=only_if_bigger)
    staged = stage_image(photo_jpeg(*size), config)
    assert staged.status == Status.SUCCESS
    assert (staged.width, staged.height) == expected
    assert decoded(staged.data).size == expected


def test_border_pads_with_white_like_img2dataset() -> None:
    staged = stage_image(photo_jpeg(640, 320), fast_config(image_size=64, resize_mode="border"))
    pixels = np.asarray(decoded(staged.data)).astype(int)
    assert pixels[:12].min() > 240 and pixels[-12:].min() > 240  # 16 rows of padding above and below


def test_draft_decodes_large_jpegs_at_reduced_scale(monkeypatch) -> None:
    """A 2400x1800 JPEG staged at 64 px is decoded by the DCT at 1/8 scale, not in full."""
    seen, data = [], photo_jpeg(2400, 1800)
    real_load = Image.Image.load

    def spy(self):
        seen.append(self.size)
        return real_load(self)

    monkeypatch.setattr(Image.Image, "load", spy)
    staged = stage_image(data, fast_config(image_size=64, resize_mode="border"))
    assert staged.status == Status.SUCCESS
    assert (staged.original_width, staged.original_height) == (2400, 1800)
    assert seen and seen[0] == (300, 225)


def test_a_decoder_crash_is_a_row_not_an_exception(monkeypatch) -> None:
    def crash(self):
        raise IndexError("crafted input")

    monkeypatch.setattr(Image.Image, "load", crash)
    staged = stage_image(photo_jpeg(), fast_config())
    assert staged.status == Status.FAILED_TO_DECODE and "IndexError" in staged.error
