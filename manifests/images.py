"""Staged image bytes -> a PIL RGB image, the one decoder every model stage uses, and the shared decode.

Staged images were decoded and re-encoded by ingest, so a failure here is rare; it still becomes
None (the stage records a null or NaN for that row), never an exception that fails the batch.

Decode once: a stage declares what it needs (``needs(config)``: a tuple of ``PixelNeed``/``TextNeed``),
``prepare`` decodes each row once and makes every distinct need from that one image, and the stage reads
the ready array from the need's column. Equal needs (same class, same fields) are made once and shared.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import astuple, dataclass, field
from typing import Any, ClassVar

import numpy as np
from PIL import Image, UnidentifiedImageError

from manifests import schema as col

# What bytes that will not decode raise; anything else is a bug and propagates.
DECODE_ERRORS = (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError)

# Column of the prepared batch: True where the row's image decoded (its arrays are real, not placeholders).
DECODED = "_decoded"

# Set to a folder, every decode appends the staged bytes' digest to <folder>/<pid>.log: the decode-count
# test reads it (Ray workers inherit it from the session's runtime_env). Unset in production: no cost.
DECODE_LOG_ENV = "THRESHER_DECODE_LOG"

# Column of a GPU-mode prepared batch: the encoded bytes of rows left to the device decoder, else b"".
JPEG = "_jpeg"
# Column of a resize-on-device batch: each row's decoded RGB image, (N, H, W, 3) uint8 when every row decoded
# to one size, else an object array with a 0x0x3 image where a row did not decode.
RGB = "_rgb"
JPEG_MAGIC = b"\xff\xd8\xff"


def log_decode(data: bytes) -> None:
    folder = os.environ.get(DECODE_LOG_ENV)
    if folder:
        with open(os.path.join(folder, f"{os.getpid()}.log"), "a") as out:
            out.write(hashlib.sha1(data).hexdigest()[:16] + "\n")


def decode_rgb(data: bytes | None) -> Image.Image | None:
    """The image as RGB, or None when the bytes are missing or do not decode."""
    if not data:
        return None
    log_decode(data)
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.convert("RGB")
    except DECODE_ERRORS:
        return None


@dataclass(frozen=True)
class Need:
    """Something a stage reads that is derived from a batch column; frozen, so equal needs are shared."""

    source: ClassVar[str] = col.IMAGE

    @property
    def column(self) -> str:
        """The prepared batch column: the need's class and fields, so two different needs never collide."""
        fields = "_".join(str(v).replace(" ", "") for v in astuple(self))
        return f"_{type(self).__name__}_{fields}".rstrip("_")


Box = tuple[int, int, int, int]  # left, top, width, height


def parse_box(value: bytes | str | None) -> Box | None:
    """``b"left,top,width,height"`` (the ``content_box`` column, ingest's ``{key}.box``) -> a tuple; None
    (the whole image) when absent."""
    if value is None or len(value) == 0:
        return None
    text = value.decode("ascii") if isinstance(value, bytes) else value
    left, top, width, height = (int(v) for v in text.split(","))
    return left, top, width, height


def crop_to_box(img: Image.Image, box: Box | None) -> Image.Image:
    """The boxed region of ``img``, clipped to the image; the whole image when there is no usable box."""
    if box is None:
        return img
    left, top, width, height = box
    right, bottom = min(img.width, left + width), min(img.height, top + height)
    left, top = max(0, left), max(0, top)
    if right - left < 1 or bottom - top < 1 or (left, top, right, bottom) == (0, 0, img.width, img.height):
        return img
    return img.crop((left, top, right, bottom))


@dataclass(frozen=True)
class PixelNeed(Need):
    """An array made from the decoded RGB image. ``shape`` is fixed (H, W, 3) or None when it varies by image.

    ``content``: made from the content region (``content_box``: the picture without the padding that
    ``border`` resizing added), as the duplicate descriptors want; else from the whole staged image."""

    content: bool = field(default=False, kw_only=True)

    device_decodable: ClassVar[bool] = False

    def shape(self) -> tuple[int, ...] | None:
        return None

    def from_image(self, img: Image.Image) -> np.ndarray:
        raise NotImplementedError

    def on_device(self, images: Any) -> Any:
        """The need of same-sized decoded (N, 3, H, W) uint8 images on their device, as (N, h, w, 3): only
        needs that say ``device_decodable``."""
        raise NotImplementedError(f"{type(self).__name__} is made on the CPU only")

    def placeholder(self) -> np.ndarray:
        """What a row whose image did not decode holds: zeros of the fixed shape, or a 0x0x3 image."""
        return np.zeros(self.shape() or (0, 0, 3), dtype=np.uint8)


@dataclass(frozen=True)
class TextNeed(Need):
    """An array made from the batch's captions (e.g. CLIP tokens), one row per caption."""

    source: ClassVar[str] = col.CAPTION

    def from_captions(self, captions: list[str]) -> np.ndarray:
        raise NotImplementedError


@dataclass(frozen=True)
class RgbArray(PixelNeed):
    """The image at its staged resolution, HxWx3 uint8 (perceptual hashes; PDQ with a content box)."""

    def from_image(self, img: Image.Image) -> np.ndarray:
        return np.asarray(img)


@dataclass(frozen=True)
class ResizedArray(PixelNeed):
    """The whole image resized to ``width`` x ``height`` with PIL's ``resample`` filter (an int)."""

    width: int
    height: int
    resample: int

    def shape(self) -> tuple[int, ...]:
        return (self.height, self.width, 3)

    def from_image(self, img: Image.Image) -> np.ndarray:
        return np.asarray(img.resize((self.width, self.height), self.resample))


@dataclass(frozen=True)
class ShortSideArray(PixelNeed):
    """Short side to ``size``, aspect kept (long side rounded), PIL ``resample``: shape varies by image."""

    size: int
    resample: int

    def from_image(self, img: Image.Image) -> np.ndarray:
        w, h = img.size
        scale = self.size / min(w, h)
        return np.asarray(img.resize((max(1, round(w * scale)), max(1, round(h * scale))), self.resample))


def stack(arrays: list[np.ndarray], shape: tuple[int, ...] | None) -> np.ndarray:
    """A fixed-shape need as one (N, *shape) array (a tensor column); a varying one as an object array."""
    if shape is not None:
        return np.stack(arrays) if arrays else np.zeros((0, *shape), dtype=np.uint8)
    out = np.empty(len(arrays), dtype=object)
    for i, array in enumerate(arrays):
        out[i] = array
    return out


def rgb_column(images: list[Image.Image | None]) -> np.ndarray:
    """Decoded images as column ``RGB``: one (N, H, W, 3) array when all decoded to one size (the usual
    staged batch: no per-row objects to move), else an object array with 0x0x3 where a row failed."""
    arrays = [np.asarray(img) if img is not None else np.zeros((0, 0, 3), np.uint8) for img in images]
    if arrays and len({a.shape for a in arrays}) == 1 and arrays[0].size:
        return np.stack(arrays)
    return stack(arrays, None)


def is_jpeg(data: bytes | None) -> bool:
    return bool(data) and bytes(data[:3]) == JPEG_MAGIC


def prepare(batch: dict[str, np.ndarray], needs: tuple[Need, ...], on_device: tuple[PixelNeed, ...] = (),
            device_decodes: bool = True) -> dict[str, np.ndarray]:
    """``batch`` plus one column per need and ``DECODED``: each row's image is decoded once, whatever the needs.

    Pixel needs of a row that does not decode hold the need's placeholder; the stages mark that row NaN/null.
    ``on_device``: those needs are left to the model's device. With ``device_decodes`` (GPU decode mode) the
    bytes of JPEG rows go in column ``JPEG`` and only non-JPEG rows are decoded here; without it (resize on
    the device), or when another need makes the CPU decode every row anyway, each row's RGB image goes in
    column ``RGB`` for the device to resize and crop. Either way each image is decoded once.
    """
    out = dict(batch)
    pixel = [n for n in needs if isinstance(n, PixelNeed)]
    # A need made on the CPU decodes every row here anyway: the device then gets the pixels to resize, not
    # the JPEG to decode a second time.
    device_decodes = device_decodes and all(n in on_device for n in pixel)
    if pixel:
        blobs = batch[col.IMAGE]
        to_device = np.array([bool(on_device) and (is_jpeg(b) or not device_decodes) for b in blobs], dtype=bool)
        images = [None if device_decodes and dev else decode_rgb(b) for b, dev in zip(blobs, to_device)]
        out[DECODED] = np.array([img is not None for img in images], dtype=bool)
        regions = _content_regions(batch, images) if any(n.content for n in pixel) else images
        for need in pixel:
            source = regions if need.content else images
            if need in on_device:  # JPEG rows get an empty placeholder: their arrays are made on the device
                arrays = [need.from_image(img) if img is not None and not dev else np.zeros((0, 0, 3), np.uint8)
                          for img, dev in zip(images, to_device)]
                out[need.column] = stack(arrays, None)
            else:
                arrays = [need.from_image(img) if img is not None else need.placeholder() for img in source]
                out[need.column] = stack(arrays, need.shape())
        if on_device and device_decodes:  # b"", not None: an all-null column comes back from Arrow as NaN
            out[JPEG] = stack([bytes(b) if dev else b"" for b, dev in zip(blobs, to_device)], None)
        elif on_device:
            out[RGB] = rgb_column(images)
    for need in needs:
        if isinstance(need, TextNeed):
            out[need.column] = need.from_captions(["" if c is None else str(c) for c in batch[col.CAPTION]])
    return out


def _content_regions(batch: dict[str, np.ndarray], images: list[Image.Image | None]) -> list[Image.Image | None]:
    """Each decoded image cropped to its row's ``content_box`` (the whole image where there is none)."""
    boxes = batch.get(col.CONTENT_BOX)
    if boxes is None:
        return images
    return [None if img is None else crop_to_box(img, parse_box(box)) for img, box in zip(images, boxes)]


def ensure(batch: dict[str, np.ndarray], needs: tuple[Need, ...]) -> dict[str, np.ndarray]:
    """``batch`` with ``needs`` prepared: as it is in the pipeline (the decode stage ran and dropped the bytes),
    else prepared here from the bytes, so a stage called directly on a raw batch still works."""
    missing = tuple(n for n in needs if n.column not in batch)
    if not missing:
        return batch
    if any(n.source not in batch for n in missing):  # the pipeline dropped the bytes: the plan missed a need
        raise ValueError(f"needs {[n.column for n in missing]} were not planned by the decode stage")
    return prepare(batch, missing)


def stacked(values: np.ndarray) -> np.ndarray:
    """A fixed-shape need column as one array (a tensor column can arrive as an object array of rows)."""
    if values.dtype == object:
        return np.stack(list(values)) if len(values) else values
    return values


# The picture without the padding ingest added, at its staged resolution: what the duplicate descriptors
# and the pixel signals (OCR, quality, watermark) read, so one decode makes it once for all of them.
CONTENT_RGB = RgbArray(content=True)
