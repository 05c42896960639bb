"""Which duplicate detectors run, and their thresholds."""

from __future__ import annotations

from manifests.config import StrictModel


class DedupConfig(StrictModel):
    """No detector is enabled by default; each detector adds its own section here."""
