"""The content region of a staged image: the picture without the padding that ``border`` resizing adds.

Ingest records the box (``content_left/top/width/height``; tar member ``{key}.box``, batch column
``content_box``). Every image descriptor is a pure function of the RGB array of that region, so the
same photo staged with different padding (a portrait and a landscape copy, a letterboxed repost
resized again) hashes the same, and the white bars of two distinct images never match each other.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from manifests import schema as col
from manifests.images import decode_rgb

Box = tuple[int, int, int, int]  # left, top, width, height


def parse_box(value: bytes | str | None) -> Box | None:
    """``b"left,top,width,height"`` -> a tuple; None (the whole image) when absent."""
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


def batch_boxes(batch: dict[str, np.ndarray]) -> list[Box | None]:
    """The content box of every row of a score batch; all None when the batch has no box column."""
    n = len(batch[col.IMAGE])
    values = batch.get(col.CONTENT_BOX)
    return [None] * n if values is None else [parse_box(v) for v in values]


def content_images(batch: dict[str, np.ndarray]) -> list[Image.Image | None]:
    """Each row's decoded content region (RGB), None where the image does not decode."""
    out: list[Image.Image | None] = []
    for data, box in zip(batch[col.IMAGE], batch_boxes(batch)):
        img = decode_rgb(data)
        out.append(None if img is None else crop_to_box(img, box))
    return out


def centre_crop(rgb: np.ndarray, fraction: float) -> np.ndarray:
    """The centred window keeping ``fraction`` of each side (at least one pixel)."""
    h, w = rgb.shape[:2]
    ch, cw = max(1, round(h * fraction)), max(1, round(w * fraction))
    top, left = (h - ch) // 2, (w - cw) // 2
    return rgb[top:top + ch, left:left + cw]
