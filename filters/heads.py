"""What the heads on the CLIP image embedding share: strict checkpoint loading and a masked forward pass.

A head reads ``clip_embedding`` (float16, unit norm, all zeros where CLIP could not score the row) and
writes one float32 score per row; rows without an embedding get NaN.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from filters.config import HEAD_WIDTHS
from manifests import schema as col


def load_state(module: Any, path: Path) -> Any:
    """Load a published .pth into ``module`` with strict key and shape matching, in eval mode."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    module.load_state_dict(state, strict=True)
    return module.eval()


def unit_rows(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows re-normalised in float32 (float16 storage rounds the norm), and the mask of rows that have one."""
    emb = np.array(embeddings, dtype=np.float32)  # a copy: the batch column stays as it came
    norms = np.linalg.norm(emb, axis=1) if emb.size else np.zeros(len(emb), dtype=np.float32)
    ok = norms > 0
    emb[ok] /= norms[ok, None]
    return emb, ok


def run_head(module: Any, embeddings: np.ndarray, device: Any) -> np.ndarray:
    """``module`` on each row that has an embedding; NaN for the others."""
    import torch

    from manifests.gpu_images import to_device

    emb, ok = unit_rows(embeddings)
    out = np.full(len(emb), np.nan, dtype=np.float32)
    if ok.any():
        with torch.inference_mode():
            scores = module(to_device(emb[ok], torch.device(device))).reshape(-1)
        out[ok] = scores.float().cpu().numpy()
    return out


def embedding_matrix(values: np.ndarray) -> np.ndarray:
    """A (rows, width) array from the batch column (a tensor column arrives 2-D; a list column as objects)."""
    if values.dtype == object:
        return np.stack(values) if len(values) else np.zeros((0, 0), dtype=np.float16)
    return values


class HeadStage:
    """A stage that runs one head on ``clip_embedding`` and writes its score as the stage's one output column."""

    reads: tuple[str, ...] = (col.CLIP_EMBEDDING,)
    writes: tuple[str, ...] = ()

    def __init__(self, module: Any, head: str) -> None:
        self.module, self.head = module, head
        self.device = next(module.parameters()).device

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        embeddings = embedding_matrix(batch[col.CLIP_EMBEDDING])
        width = HEAD_WIDTHS[self.head]
        if len(embeddings) and embeddings.shape[1] != width:
            # validate() checks the CLIP width before any work; this guards direct use of the stage.
            raise ValueError(f"head {self.head} takes {width}-d CLIP embeddings, got {embeddings.shape[1]}-d; "
                             f"set filters.clip.model to the CLIP the head was trained on")
        batch[self.writes[0]] = run_head(self.module, embeddings, self.device)
        return batch
