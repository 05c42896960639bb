"""LAION aesthetic score from the CLIP image embedding: the improved predictor ("v2") or the v1 linear heads.

v2 is ``sac+logos+ava1-l14-linearMSE.pth`` from christophschuhmann/improved-aesthetic-predictor: an MLP
768->1024->128->64->16->1 with dropout between the first four layers (hence the keys layers.0/2/4/6/7),
on the L2-normalised OpenAI ViT-L/14 image embedding; it outputs a score on roughly 1-10.
v1 (LAION-AI/aesthetic-predictor) is one linear layer on the ViT-L/14 (768) or ViT-B/32 (512) embedding.
"""

from __future__ import annotations

from typing import Any

from filters.config import AestheticConfig
from filters.heads import HeadStage, load_state
from filters.weights import head_weights
from manifests import schema as col


def load(config: AestheticConfig) -> Any:
    """The head with its published weights (strict key matching), on the configured device."""
    from filters.clip import pick_device
    from filters.nets import aesthetic_head

    return load_state(aesthetic_head(config.head), head_weights(config)).to(pick_device(config.device))


class AestheticScorer(HeadStage):
    """Reads ``clip_embedding``; writes ``aesthetic_score`` (LAION's raw ~1-10 score, float32).

    Rows without an embedding (CLIP could not decode the image) get NaN, null in the manifest.
    """

    reads = (col.CLIP_EMBEDDING,)
    writes = (col.AESTHETIC_SCORE,)

    def __init__(self, config: AestheticConfig) -> None:
        super().__init__(load(config), config.head)
