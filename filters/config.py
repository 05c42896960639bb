"""Scoring models and the thresholds the decision applies to their scores."""

from __future__ import annotations

from pydantic import Field

from manifests.config import StrictModel


class RulesConfig(StrictModel):
    """DataComp's basic rules; they need no model. Sizes are of the original image."""

    min_caption_words: int = Field(2, ge=0)
    min_caption_chars: int = Field(5, ge=0)
    min_image_side: int = Field(200, ge=0)
    max_aspect_ratio: float = Field(3.0, gt=0)


class FiltersConfig(StrictModel):
    rules: RulesConfig = RulesConfig()
