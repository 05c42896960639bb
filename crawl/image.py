"""Original bytes -> a staged, resized, re-encoded image, or a status saying why not.

Every failure here is an expected property of web data, so it becomes a ``Staged`` with a status,
never an exception: a decompression bomb is refused from its header before any pixel is decoded.
"""

from __future__ import annotations

import io
import warnings
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


def sniff_mime(data: bytes) -> str | None:
    """The image type from the magic number, or None: the Content-Type header is not trusted."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
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


def stage_image(data: bytes, config: CrawlConfig) -> Staged:
    """Decode once, check size, orient, convert to RGB, resize and re-encode."""
    mime = sniff_mime(data)
    if mime is None:
        return Staged(Status.NOT_AN_IMAGE, "bytes are not a known image format")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            ow, oh = img.size
            if ow * oh > config.max_pixels:
                return Staged(Status.DECOMPRESSION_BOMB, f"{ow}x{oh} exceeds max_pixels={config.max_pixels}",
                              mime_type=mime, original_width=ow, original_height=oh)
            rejected = _size_check(ow, oh, config)
            if rejected is not None:
                return Staged(*rejected, mime_type=mime, original_width=ow, original_height=oh)
            if img.format == "JPEG" and config.resize_mode != "no":
                img.draft("RGB", _draft_size(ow, oh, config))
            img = ImageOps.exif_transpose(to_rgb(img))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return Staged(Status.DECOMPRESSION_BOMB, str(exc), mime_type=mime)
    except (OSError, ValueError, SyntaxError, Image.UnidentifiedImageError) as exc:
        return Staged(Status.FAILED_TO_DECODE, f"{type(exc).__name__}: {exc}", mime_type=mime)
    out = resize(img, config)
    buf = io.BytesIO()
    save_args = {"quality": config.encode_quality} if config.encode_format != "png" else {}
    out.save(buf, format=_PIL_FORMAT[config.encode_format], **save_args)
    return Staged(Status.SUCCESS, None, buf.getvalue(), mime, out.width, out.height, ow, oh)


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
    """RGB from any mode: alpha is composited on white, 16-bit is scaled, animations keep frame 0."""
    if img.mode == "RGB":
        img.load()
        return img
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        img = img.point(lambda v: v / 256).convert("L")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def resize(img: Image.Image, config: CrawlConfig) -> Image.Image:
    """img2dataset's resize modes, with Lanczos downscaling."""
    mode, s = config.resize_mode, config.image_size
    w, h = img.size
    if mode == "no":
        return img
    if mode in ("keep_ratio", "center_crop"):
        scale = s / min(w, h)
    else:  # keep_ratio_largest, border
        scale = s / max(w, h)
    if config.resize_only_if_bigger and scale >= 1:
        scale = 1.0
    if scale != 1.0:
        img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)
    if mode == "center_crop":
        w, h = img.size
        if w >= s and h >= s:
            left, top = (w - s) // 2, (h - s) // 2
            img = img.crop((left, top, left + s, top + s))
    elif mode == "border":
        w, h = img.size
        if (w, h) != (s, s) and w <= s and h <= s:
            canvas = Image.new("RGB", (s, s), (0, 0, 0))
            canvas.paste(img, ((s - w) // 2, (s - h) // 2))
            img = canvas
    return img
