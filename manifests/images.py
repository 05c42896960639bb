"""Staged image bytes -> a PIL RGB image, the one decoder every model stage uses.

Staged images were decoded and re-encoded by ingest, so a failure here is rare; it still becomes
None (the stage records a null or NaN for that row), never an exception that fails the batch.
"""

from __future__ import annotations

import io

from PIL import Image, UnidentifiedImageError

# What bytes that will not decode raise; anything else is a bug and propagates.
DECODE_ERRORS = (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def decode_rgb(data: bytes | None) -> Image.Image | None:
    """The image as RGB, or None when the bytes are missing or do not decode."""
    if not data:
        return None
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.convert("RGB")
    except DECODE_ERRORS:
        return None
