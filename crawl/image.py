"""Original bytes -> a staged, resized, re-encoded image, or a status saying why not.

Every failure here is an expected property of web data, so it becomes a ``Staged`` with a status,
never an exception: a decompression bomb is refused from its header before any pixel is decoded.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

from PIL import Image, ImageOps

from crawl.config import CrawlConfig
from manifests.schema import Status

_MAGIC = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
)
_PIL_FORMAT = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}
_EXIF_ORIENTATION = 0x0112


def sniff_mime(data: bytes) -> str | None:
    """The image type from the magic number, or None: the Content-Type header is not trusted."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:12] in (b"ftypavif", b"ftypavis"):
        return "image/avif"
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return mime
    return None


@dataclass(frozen=True)
class Staged:
    status: str
    error: str | None = None
    data: bytes | None = None
    mime_type: str | None = None
    width: int | None = None
    height: int | None = None
    original_width: int | None = None
    original_height: int | None = None
    content_box: tuple[int, int, int, int] | None = None  # (left, top, width, height) of the picture in ``data``


def stage_image(data: bytes, config: CrawlConfig) -> Staged:
    """Check the header, decode once (DCT-scaled for JPEG), orient, convert to RGB, resize and re-encode.

    Whatever the bytes do to a decoder ends as a status: web bytes are adversarial, and codecs raise
    more than OSError on crafted input (IndexError, struct.error, ...), so the last catch is broad.
    """
    mime = sniff_mime(data)
    if mime is None:
        return Staged(Status.NOT_AN_IMAGE, "empty body" if not data else "bytes are not a known image format")
    try:
        return _decode_and_resize(data, mime, config)
    except Image.DecompressionBombError as exc:
        return Staged(Status.DECOMPRESSION_BOMB, str(exc), mime_type=mime)
    except (OSError, ValueError, SyntaxError, EOFError, Image.UnidentifiedImageError) as exc:
        return Staged(Status.FAILED_TO_DECODE, f"{type(exc).__name__}: {exc}", mime_type=mime)
    except Exception as exc:  # noqa: BLE001 -- recorded as this row's status, never swallowed
        return Staged(Status.FAILED_TO_DECODE, f"decoder raised {type(exc).__name__}: {exc}", mime_type=mime)


def _decode_and_resize(data: bytes, mime: str, config: CrawlConfig) -> Staged:
    img = Image.open(io.BytesIO(data))
    ow, oh = img.size
    if ow * oh > config.max_pixels:  # refused from the header: not one pixel is decoded
        return Staged(Status.DECOMPRESSION_BOMB, f"{ow}x{oh} exceeds max_pixels={config.max_pixels}",
                      mime_type=mime, original_width=ow, original_height=oh)
    rejected = _size_check(ow, oh, config)
    if rejected is not None:
        return Staged(*rejected, mime_type=mime, original_width=ow, original_height=oh)
    if img.format == "JPEG" and config.resize_mode != "no":
        img.draft(None, _draft_size(ow, oh, config))  # DCT-domain downscale: a fraction of a full decode
    img.load()
    upright = _EXIF_ORIENTATION not in img.getexif() or img.getexif()[_EXIF_ORIENTATION] == 1
    out, box = resize_with_box(to_rgb(oriented(img)), config)
    if out is img and upright and img.size == (ow, oh) and img.format == _PIL_FORMAT[config.encode_format]:
        # Already the target size, mode and format (an img2dataset shard, a re-ingest): a re-encode would only
        # lose quality, so the bytes are staged as they are.
        return Staged(Status.SUCCESS, None, data, mime, ow, oh, ow, oh, box)
    return Staged(Status.SUCCESS, None, encode(out, config), mime, out.width, out.height, ow, oh, box)


def oriented(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a corrupt EXIF block leaves the image as stored rather than failing it."""
    try:
        ImageOps.exif_transpose(img, in_place=True)  # in place: no copy of an image with no orientation
    except (SyntaxError, ValueError, KeyError, TypeError, struct.error):
        pass  # a corrupt EXIF block: keep the image as stored, which is what a browser shows
    return img


def encode(img: Image.Image, config: CrawlConfig) -> bytes:
    buf = io.BytesIO()
    save_args = {"quality": config.encode_quality} if config.encode_format != "png" else {}
    img.save(buf, format=_PIL_FORMAT[config.encode_format], **save_args)
    return buf.getvalue()


def _size_check(width: int, height: int, config: CrawlConfig) -> tuple[str, str] | None:
    if min(width, height) < config.min_image_size:
        return Status.FILTERED_SIZE, f"{width}x{height} is below min_image_size={config.min_image_size}"
    ratio = max(width, height) / max(1, min(width, height))
    if config.max_aspect_ratio is not None and ratio > config.max_aspect_ratio:
        return Status.FILTERED_ASPECT_RATIO, f"aspect ratio {ratio:.2f} exceeds {config.max_aspect_ratio}"
    return None


def _draft_size(width: int, height: int, config: CrawlConfig) -> tuple[int, int]:
    """The smallest size draft() may decode to and still leave enough pixels for the resize."""
    s = config.image_size
    if config.resize_mode in ("keep_ratio", "center_crop"):
        scale = s / min(width, height)
    else:
        scale = s / max(width, height)
    return max(1, int(width * scale)), max(1, int(height * scale))


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB from any mode: alpha and transparency keys composited on white, 16-bit scaled to 8, frame 0 kept."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        img = img.point(lambda v: v / 256).convert("L")  # a linear map, so Pillow applies it in C
    if img.mode == "P" or "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def _scale(w: int, h: int, config: CrawlConfig) -> float | None:
    """The resize factor img2dataset would apply, or None when it leaves the image alone."""
    s = config.image_size
    side = min(w, h) if config.resize_mode in ("keep_ratio", "center_crop") else max(w, h)
    if config.resize_only_if_bigger and side <= s:
        return None
    return s / side


def resize(img: Image.Image, config: CrawlConfig) -> Image.Image:
    """img2dataset's resize modes: keep_ratio and center_crop fit the shorter side, keep_ratio_largest and
    border the longer one; center_crop crops to a square, border pads to one with white. With
    ``resize_only_if_bigger`` an image already small enough is left as it is, unpadded and uncropped."""
    return resize_with_box(img, config)[0]


def resize_with_box(img: Image.Image, config: CrawlConfig) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """``resize`` and the box (left, top, width, height) the picture occupies in its result: the padding
    of ``border`` is not part of the picture, and perceptual hashes must not see it."""
    mode, s = config.resize_mode, config.image_size
    scale = None if mode == "no" else _scale(*img.size, config)
    if scale is None:
        return img, (0, 0, *img.size)
    w, h = img.size
    if scale != 1.0:
        img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS,
                         reducing_gap=3.0)
    w, h = img.size
    if mode == "center_crop" and (w, h) != (s, s):
        left, top = (w - s) // 2, (h - s) // 2
        img = img.crop((left, top, left + s, top + s))
    elif mode == "border" and (w, h) != (s, s):
        canvas = Image.new("RGB", (s, s), (255, 255, 255))
        canvas.paste(img, ((s - w) // 2, (s - h) // 2))
        return canvas, ((s - w) // 2, (s - h) // 2, w, h)
    return img, (0, 0, *img.size)
