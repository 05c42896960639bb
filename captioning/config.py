"""Which recaptioning models run on the kept samples."""

from __future__ import annotations

from manifests.config import StrictModel


class CaptionConfig(StrictModel):
    """No captioner is enabled by default; each backend adds its own section here."""
