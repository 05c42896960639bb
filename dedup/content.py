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
from manifests.images import Box, crop_to_box, decode_rgb, parse_box

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
