"""The real LAION head files load into our modules with strict keys and compute what the published models do."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from filters.aesthetic import AestheticScorer
from filters.config import HEAD_WIDTHS, AestheticConfig, NsfwConfig
from filters.heads import load_state
from filters.weights import HEAD_FILES
from filters.nets import aesthetic_head, nsfw_head
from filters.nsfw import ClipNsfwScorer
from manifests import schema as col

AESTHETIC = ("v2", "v1_l14", "v1_b32")
NSFW = ("clip_l14", "clip_b32")


def unit_vectors(n: int, width: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, width)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def state(checkpoints, key: str) -> dict[str, np.ndarray]:
    sd = torch.load(checkpoints / HEAD_FILES[key][0], map_location="cpu", weights_only=True)
    return {k: v.numpy() for k, v in sd.items()}


@pytest.mark.parametrize("head", AESTHETIC)
def test_aesthetic_heads_load_strictly_and_score_finite(checkpoints, head):
    module = load_state(aesthetic_head(head), checkpoints / HEAD_FILES[head][0])
    with torch.no_grad():
        scores = module(torch.from_numpy(unit_vectors(16, HEAD_WIDTHS[head]))).numpy()
    assert scores.shape == (16, 1) and np.isfinite(scores).all()


@pytest.mark.parametrize("backend", NSFW)
def test_nsfw_heads_load_strictly_and_give_probabilities(checkpoints, backend):
    module = load_state(nsfw_head(backend), checkpoints / HEAD_FILES[backend][0])
    with torch.no_grad():
        probs = module(torch.from_numpy(unit_vectors(16, HEAD_WIDTHS[backend]))).numpy()
    assert np.isfinite(probs).all() and ((probs >= 0) & (probs <= 1)).all()


def test_a_checkpoint_of_another_layout_is_refused(checkpoints):
    with pytest.raises(RuntimeError, match="Missing key|Unexpected key|size mismatch"):
        load_state(aesthetic_head("v2"), checkpoints / HEAD_FILES["v1_l14"][0])
    with pytest.raises(RuntimeError, match="size mismatch|Missing key|Unexpected key"):
        load_state(nsfw_head("clip_l14"), checkpoints / HEAD_FILES["clip_b32"][0])


def test_aesthetic_v2_equals_the_published_mlp_in_numpy(checkpoints):
    sd, x = state(checkpoints, "v2"), unit_vectors(8, 768)
    h = x
    for i in (0, 2, 4, 6, 7):  # Linear layers only: dropout is off at inference; v2 has no activations
        h = h @ sd[f"layers.{i}.weight"].T + sd[f"layers.{i}.bias"]
    out = AestheticScorer(AestheticConfig(head="v2", cache_dir=str(checkpoints)))(
        {col.CLIP_EMBEDDING: x.astype(np.float16)})
    np.testing.assert_allclose(out[col.AESTHETIC_SCORE], h[:, 0], rtol=1e-2, atol=1e-2)


def test_clip_nsfw_l14_equals_keras_normalisation_then_relu_mlp_in_numpy(checkpoints):
    sd, x = state(checkpoints, "clip_l14"), unit_vectors(8, 768, seed=1)
    h = (x - sd["norm.mean"]) / (np.sqrt(sd["norm.variance"]) + 1e-10)
    for i in (1, 2, 3):
        h = np.maximum(h @ sd[f"linear_{i}.weight"].T + sd[f"linear_{i}.bias"], 0)
    expected = 1 / (1 + np.exp(-(h @ sd["linear_4.weight"].T + sd["linear_4.bias"])))
    out = ClipNsfwScorer(NsfwConfig(backend="clip_l14", cache_dir=str(checkpoints)))(
        {col.CLIP_EMBEDDING: x.astype(np.float16)})
    np.testing.assert_allclose(out[col.NSFW_PROB], expected[:, 0], atol=2e-3)


def test_rows_without_embedding_get_nan(checkpoints):
    emb = unit_vectors(3, 512).astype(np.float16)
    emb[1] = 0
    out = ClipNsfwScorer(NsfwConfig(backend="clip_b32", cache_dir=str(checkpoints)))({col.CLIP_EMBEDDING: emb})
    assert np.isnan(out[col.NSFW_PROB][1]) and np.isfinite(out[col.NSFW_PROB][[0, 2]]).all()


def test_wrong_embedding_width_is_refused(checkpoints):
    stage = AestheticScorer(AestheticConfig(head="v2", cache_dir=str(checkpoints)))
    with pytest.raises(ValueError, match="768-d"):
        stage({col.CLIP_EMBEDDING: unit_vectors(2, 512).astype(np.float16)})


def test_explicit_weights_path_wins_over_cache(checkpoints, tmp_path):
    config = AestheticConfig(head="v1_b32", weights=str(checkpoints / HEAD_FILES["v1_b32"][0]),
                             cache_dir=str(tmp_path))
    out = AestheticScorer(config)({col.CLIP_EMBEDDING: unit_vectors(2, 512).astype(np.float16)})
    assert np.isfinite(out[col.AESTHETIC_SCORE]).all()
