"""The run value: what ``pipelines.run.driver.prepare`` checks once and every phase is a function of.

Apart from ``pipelines.run.driver`` so that the phases, which the run calls, and the phase digests can name it
without importing the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from manifests.layout import RunLayout
from pipelines.config import RunConfig

if TYPE_CHECKING:
    from pipelines.run.stages import StageSpec


@dataclass(frozen=True)
class Run:
    """One run, prepared once. ``config`` is as given (``output_dir`` may be a URI); ``local`` is the same
    config with URI paths replaced by their local working copies, which is what every phase reads."""

    config: RunConfig
    local: RunConfig
    layout: RunLayout
    score_specs: tuple[StageSpec, ...]
    caption_specs: tuple[StageSpec, ...]
    retry_failed: bool = False  # ingest refetches only rows whose status is retryable
