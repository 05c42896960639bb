"""The inference rewrites of filters.fastpath: SDPA self-attention equal to open_clip's MHA, e4m3 linears equal
to the arithmetic they claim, padded and compiled forwards equal to the plain one."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from filters import fastpath
from filters.clip import ClipScorer, cut_text, length_groups, load, score
from manifests import schema as col
from parity import assert_same_embeddings

# README: fp8 moves scores by about 1e-2 (the tiny CLIP on the bundled photos: 1.6e-2 on average, 2.7e-2 at
# most, on the CPU's arithmetic that the e4m3 kernels are tested equal to); its embeddings stay within
# 4e-4 of fp32 in cosine, 1e-2 per component, where a wrong crop moves them by 1.5e-2 and 6e-2.
FP8_COSINE, FP8_ERROR = 0.999, 0.02


def assert_fp8_figures(fp8: dict, fp32: dict) -> None:
    """fp8's scores moved by about 1e-2 (within a factor of 3 on average), its embeddings near fp32's."""
    shift = np.abs(fp8[col.CLIP_SCORE] - fp32[col.CLIP_SCORE])
    assert 3e-3 < shift.mean() < 3e-2 and shift.max() < 5e-2, (shift.mean(), shift.max())
    emb = [x[col.CLIP_EMBEDDING].astype(np.float32) for x in (fp8, fp32)]
    assert_same_embeddings(*emb, min_cosine=FP8_COSINE, max_error=FP8_ERROR)


@pytest.fixture(scope="module")
def cpu_clip(tiny_clip):
    """The tiny CLIP on the CPU in fp32 (on a GPU machine ``auto`` would pick CUDA and bf16)."""
    return tiny_clip.model_copy(update={"device": "cpu", "precision": "fp32"})


def tokens(rows: int, seed: int = 0) -> torch.Tensor:
    t = torch.randint(1, 49406, (rows, 77), generator=torch.Generator().manual_seed(seed))
    t[:, 12] = 49407  # the end-of-text token the text tower pools at
    return t


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("mask", [None, "float", "bool"])
def test_self_attention_equals_multihead_attention(batch_first, mask):
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(64, 4, batch_first=batch_first).eval()
    x = torch.randn(3, 9, 64) if batch_first else torch.randn(9, 3, 64)
    attn_mask = None
    if mask:
        causal = torch.ones(9, 9, dtype=torch.bool).triu(1)
        attn_mask = causal if mask == "bool" else torch.zeros(9, 9).masked_fill(causal, float("-inf"))
    with torch.no_grad():
        expected = mha(x, x, x, need_weights=False, attn_mask=attn_mask)[0]
        actual = fastpath.SelfAttention(mha)(x, x, x, need_weights=False, attn_mask=attn_mask)[0]
    torch.testing.assert_close(actual, expected, atol=1e-6, rtol=1e-5)


def test_self_attention_refuses_cross_attention():
    attention = fastpath.SelfAttention(nn.MultiheadAttention(16, 2, batch_first=True))
    x = torch.randn(1, 3, 16)
    with pytest.raises(ValueError, match="self-attention"):
        attention(x, x.clone(), x)


def test_rewritten_clip_equals_open_clip_in_fp32(cpu_clip):
    network = load(cpu_clip).network
    reference = copy.deepcopy(network)
    layers = len(network.visual.transformer.resblocks) + len(network.transformer.resblocks)
    assert fastpath.self_attention(network) == layers
    assert not any(isinstance(m, nn.MultiheadAttention) for m in network.modules())
    pixels, text = torch.randn(4, 3, 64, 64), tokens(4)
    with torch.inference_mode():
        torch.testing.assert_close(network.encode_image(pixels), reference.encode_image(pixels), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(network.encode_text(text), reference.encode_text(text), atol=1e-5, rtol=1e-5)


def dequantised(x: torch.Tensor, linear: nn.Linear) -> torch.Tensor:
    """What a Float8Linear claims to compute, in fp32: both operands rounded to e4m3 with per-row scales."""
    qx, sx = fastpath.quantise_rows(x)
    qw, sw = fastpath.quantise_rows(linear.weight.detach())
    return (qx.float() * sx) @ (qw.float() * sw).T + linear.bias.detach()


@pytest.mark.parametrize("rows", [16, 21])  # 21: padded to 32 inside, the pad rows dropped
def test_float8_linear_is_the_e4m3_product(rows):
    torch.manual_seed(0)
    linear = nn.Linear(96, 48)
    x = torch.randn(rows, 96) * torch.logspace(-2, 2, 96)  # columns of very different magnitudes
    with torch.inference_mode():
        y = fastpath.Float8Linear(linear)(x)
    assert y.shape == (rows, 48) and y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), dequantised(x, linear), atol=0.02, rtol=1e-2)  # bf16 output rounding
    exact = linear(x).detach()
    assert (y.float() - exact).abs().max() < 0.1 * exact.abs().max()  # and near the fp32 product


def test_float8_keeps_open_clips_cast_dtype(cpu_clip):
    network = load(cpu_clip).network
    fastpath.self_attention(network)
    per_block = 4  # qkv, out, c_fc, c_proj
    assert fastpath.float8(network) == per_block * (len(network.visual.transformer.resblocks)
                                                    + len(network.transformer.resblocks))
    assert network.transformer.get_cast_dtype() == torch.float32  # the text tower still casts to fp32


def test_bucket_sizes():
    assert [fastpath.bucket(n) for n in (1, 16, 17, 200, 256, 257)] == [16, 16, 32, 256, 256, 512]


def test_padded_batches_score_like_unpadded(cpu_clip):
    rng = np.random.default_rng(0)
    pixels, text = rng.integers(0, 256, (5, 64, 64, 3), dtype=np.uint8), tokens(5).numpy()
    model = load(cpu_clip)
    plain = score(model, pixels, text)
    model.padded = True  # 5 rows run as 16
    padded = score(model, pixels, text)
    for a, b in zip(plain, padded):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_fp8_scores_stay_near_fp32(cpu_clip, photos, make_batch):
    batch = make_batch(list(photos.values()))
    fp32 = ClipScorer(cpu_clip)(dict(batch))
    fp8 = ClipScorer(cpu_clip.model_copy(update={"precision": "fp8"}))
    assert any(isinstance(m, fastpath.Float8Linear) for m in fp8.model.network.modules())
    assert_fp8_figures(fp8(dict(batch)), fp32)


def test_compiled_forward_equals_eager(cpu_clip):
    rng = np.random.default_rng(1)
    pixels, text = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8), tokens(3).numpy()
    eager = score(load(cpu_clip), pixels, text)
    compiled = score(load(cpu_clip.model_copy(update={"compile": True})), pixels, text)
    for a, b in zip(eager, compiled):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("update", [{"precision": "fp8"}, {"precision": "bf16", "compile": True}])
def test_gpu_fp8_and_compiled_bf16_match_fp32(cpu_clip, photos, make_batch, update):
    """On the GPU, against fp32 on the CPU: fp8 moves scores by the README's 1e-2 and
    keeps the embeddings' cosine; compiled bf16 moves neither more than bf16 rounding (3e-3 on the CPU)."""
    if update["precision"] == "fp8" and not fastpath.float8_supported(torch.device("cuda")):
        pytest.skip("e4m3 matmuls scaled by row need compute capability 9.0+")
    batch = make_batch(list(photos.values()))
    fp32 = ClipScorer(cpu_clip)(dict(batch))
    out = ClipScorer(cpu_clip.model_copy(update={"device": "cuda", **update}))(dict(batch))
    if update["precision"] == "fp8":
        assert_fp8_figures(out, fp32)
    else:
        np.testing.assert_allclose(out[col.CLIP_SCORE], fp32[col.CLIP_SCORE], atol=1e-2)
        assert_same_embeddings(out[col.CLIP_EMBEDDING].astype(np.float32), fp32[col.CLIP_EMBEDDING].astype(np.float32))


@pytest.mark.gpu
def test_gpu_float8_linear_matches_the_cpu_arithmetic():
    if not fastpath.float8_supported(torch.device("cuda")):
        pytest.skip("e4m3 matmuls scaled by row need compute capability 9.0+")
    torch.manual_seed(0)
    linear = nn.Linear(256, 128)
    x = torch.randn(37, 256)
    with torch.inference_mode():
        cpu = fastpath.Float8Linear(linear)(x).float()
        cuda = fastpath.Float8Linear(linear.cuda())(x.cuda()).float().cpu()
    torch.testing.assert_close(cuda, cpu, atol=0.02, rtol=1e-2)


def test_length_groups_round_each_caption_up_to_its_end():
    text = np.zeros((4, 77), dtype=np.int64)
    for row, end in enumerate((3, 15, 40, 76)):  # end: the end-of-text token's position
        text[row, 1:end] = 500
        text[row, end] = 49407
    assert [(n, list(rows)) for n, rows in length_groups(text, cut=True)] == [(16, [0, 1]), (48, [2]), (77, [3])]
    assert [(n, list(rows)) for n, rows in length_groups(text, cut=False)] == [(77, [0, 1, 2, 3])]


def test_cut_text_tower_equals_open_clips_full_context(cpu_clip):
    """Captions of every length (one filling the context) scored by length group equal open_clip's
    encode_text on the 77-token context: nothing after the end-of-text token reaches the pooled output."""
    model = load(cpu_clip)
    assert cut_text(model.network) and model.cuts_text
    captions = ["a", "a red bicycle leaning on a wall", "word " * 30, "many words " * 60, ""]
    tokens = model.tokenizer(captions)
    groups = length_groups(tokens.numpy(), cut=True)
    assert len(groups) > 2 and groups[-1][0] == 77
    pixels = np.zeros((len(captions), 64, 64, 3), dtype=np.uint8)
    cosine, image = score(model, pixels, tokens)
    with torch.inference_mode():
        text = torch.nn.functional.normalize(model.network.encode_text(tokens), dim=-1)
    np.testing.assert_allclose(cosine, (torch.from_numpy(image) * text).sum(-1).numpy(), atol=1e-6)
