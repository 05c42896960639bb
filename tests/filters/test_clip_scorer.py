"""ClipScorer on dict batches: parity with open_clip itself, bad rows, and the config seams."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from filters.clip import ClipScorer, autocast_dtype, embed_dim, load, register_architecture
from filters.config import ClipScorerConfig
from manifests import schema as col
from parity import assert_same_embeddings


@pytest.fixture(scope="module")
def scorer(tiny_clip: ClipScorerConfig) -> ClipScorer:
    return ClipScorer(tiny_clip)


def reference_scores(network, tiny_clip, images: list[bytes], captions: list[str]):
    """open_clip's own path on the same weights: its transform, tokenizer, encode_image/encode_text."""
    import open_clip

    ref, _, preprocess = open_clip.create_model_and_transforms(tiny_clip.model, pretrained=None)
    ref.load_state_dict(network.state_dict())
    ref.eval()
    tokenizer = open_clip.get_tokenizer(tiny_clip.model)
    pixels = torch.stack([preprocess(Image.open(io.BytesIO(b)).convert("RGB")) for b in images])
    with torch.no_grad():
        img = ref.encode_image(pixels, normalize=True)
        txt = ref.encode_text(tokenizer(captions), normalize=True)
    return (img @ txt.T).diagonal().numpy(), img.numpy()


def test_clip_score_equals_open_clip_cosine(scorer, tiny_clip, photos, make_batch):
    batch = make_batch(list(photos.values()))
    out = scorer({k: v.copy() for k, v in batch.items()})
    expected, image_emb = reference_scores(scorer.model.network, tiny_clip, list(batch["image"]),
                                           list(batch["caption"]))
    np.testing.assert_allclose(out[col.CLIP_SCORE], expected, atol=1e-5)
    assert out[col.CLIP_EMBEDDING].dtype == np.float16
    np.testing.assert_allclose(out[col.CLIP_EMBEDDING].astype(np.float32), image_emb, atol=2e-3)


def test_the_caption_changes_the_score(scorer, photos, make_batch):
    # Different captions for the same image give different scores: the text tower is really used.
    data, caption = next(iter(photos.values()))
    out = scorer(make_batch([(data, caption), (data, "something else entirely")]))
    assert out[col.CLIP_SCORE][0] != out[col.CLIP_SCORE][1]


def test_bad_rows_are_nan_and_zero_embedding_and_no_row_is_lost(scorer, photos, make_batch):
    good = next(iter(photos.values()))
    batch = make_batch([(b"not an image", "x"), good, (None, "no bytes"), (good[0][:200], "truncated"),
                        (good[0], None)])
    out = scorer(batch)
    scores, emb = out[col.CLIP_SCORE], out[col.CLIP_EMBEDDING].astype(np.float32)
    assert len(scores) == len(emb) == 5
    assert np.isnan(scores[[0, 2, 3]]).all() and np.isfinite(scores[[1, 4]]).all()
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), [0, 1, 0, 0, 1], atol=2e-3)


def test_batch_with_no_decodable_image(scorer, make_batch):
    out = scorer(make_batch([(b"junk", "a caption"), (b"", "another")]))
    assert np.isnan(out[col.CLIP_SCORE]).all()
    assert out[col.CLIP_EMBEDDING].shape == (2, scorer.model.embed_dim)


def test_architecture_name_must_match_its_file(tiny_clip):
    wrong = tiny_clip.model_copy(update={"model": "ViT-B-32"})
    with pytest.raises(ValueError, match="filters.clip.model"):
        register_architecture(wrong)


def test_embed_dim_without_building(tiny_clip):
    assert embed_dim(tiny_clip) == 64
    assert embed_dim(ClipScorerConfig(model="ViT-L-14")) == 768
    with pytest.raises(ValueError, match="not an open_clip architecture"):
        embed_dim(ClipScorerConfig(model="ViT-Nope"))


def test_precision_picks_autocast_dtype():
    assert autocast_dtype("auto", torch.device("cpu")) is None
    assert autocast_dtype("auto", torch.device("cuda")) is torch.bfloat16
    assert autocast_dtype("fp16", torch.device("cuda")) is torch.float16
    assert autocast_dtype("fp32", torch.device("cuda")) is None


def test_seeded_random_weights_are_the_same_in_every_actor(tiny_clip):
    a, b = load(tiny_clip), load(tiny_clip)
    for (name, p), q in zip(a.network.state_dict().items(), b.network.state_dict().values()):
        assert torch.equal(p, q), name


def test_cpu_bf16_autocast_path_runs(tiny_clip, photos, make_batch):
    scorer = ClipScorer(tiny_clip.model_copy(update={"precision": "bf16"}))
    out = scorer(make_batch(list(photos.values())[:3]))
    assert np.isfinite(out[col.CLIP_SCORE]).all()


@pytest.mark.gpu
def test_gpu_autocast_matches_fp32(tiny_clip, photos, make_batch):
    batch = make_batch(list(photos.values()))
    fp32 = ClipScorer(tiny_clip.model_copy(update={"device": "cpu"}))(dict(batch))
    gpu = ClipScorer(tiny_clip.model_copy(update={"device": "cuda", "precision": "bf16"}))(dict(batch))
    np.testing.assert_allclose(gpu[col.CLIP_SCORE], fp32[col.CLIP_SCORE], atol=1e-2)  # a wrong crop: 1e-2 and more
    assert_same_embeddings(gpu[col.CLIP_EMBEDDING].astype(np.float32), fp32[col.CLIP_EMBEDDING].astype(np.float32))
