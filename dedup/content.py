"""The content region of a staged image: the picture without the padding that ``border`` resizing adds.

Ingest records the box (``content_left/top/width/height``; tar member ``{key}.box``, batch column
``content_box``); the decode stage crops each image to it once for every ``PixelNeed(content=True)``
(``manifests.images``). Every image descriptor is a pure function of the RGB array of that region, so the
same photo staged with different padding (a portrait and a landscape copy, a letterboxed repost
resized again) hashes the same, and the white bars of two distinct images never match each other.
"""

from __future__ import annotations

import numpy as np


def centre_crop(rgb: np.ndarray, fraction: float) -> np.ndarray:
    """The centred window keeping ``fraction`` of each side (at least one pixel)."""
    h, w = rgb.shape[:2]
    ch, cw = max(1, round(h * fraction)), max(1, round(w * fraction))
    top, left = (h - ch) // 2, (w - cw) // 2
    return rgb[top:top + ch, left:left + cw]
