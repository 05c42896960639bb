"""CLIP image-text similarity with open_clip: one model embeds both the image and its caption.

``needs(config)`` is what the shared decode stage prepares on the CPU (the crop and the tokens);
``load(config)`` builds the model once (an actor's ``__init__``); ``score(model, pixels, tokens)`` is the pure
forward pass; ``ClipScorer`` is the stage, which records rows it could not score.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from filters.config import ClipScorerConfig
from filters.images import ClipPixels, ClipTokens, scatter
from manifests import schema as col
from manifests.gpu_images import device_pixels, normalise, to_device
from manifests.images import ensure


@dataclass
class ClipModel:
    """What ``score`` needs: the network, its normalisation and where and how to run it. ``preprocess`` and
    ``tokenizer`` are open_clip's own (the reference the prepared inputs are tested against)."""

    network: Any  # open_clip.CLIP
    preprocess: Callable[[Image.Image], Any]
    tokenizer: Callable[[list[str]], Any]
    device: Any  # torch.device
    autocast_dtype: Any  # torch.dtype, or None for plain fp32
    embed_dim: int
    mean: Any = None  # (1, 3, 1, 1) float32 tensor on device
    std: Any = None
    image: Callable[[Any], Any] | None = None  # image_embeddings bound to this model, compiled when asked
    text: Callable[[Any], Any] | None = None  # text_embeddings bound to this model, compiled when asked
    padded: bool = False  # image batches padded to fastpath.bucket sizes (compiled: few shapes)
    cuts_text: bool = False  # the text tower may run on tokens cut after each caption's end (cut_text)


def register_architecture(config: ClipScorerConfig) -> None:
    """Make ``config.model`` known to open_clip when it comes from an architecture file."""
    if config.architecture_file is None:
        return
    import open_clip

    path = Path(config.architecture_file)
    if path.stem != config.model:
        raise ValueError(f"filters.clip.model is {config.model!r} but architecture_file {path} defines "
                         f"{path.stem!r}; set filters.clip.model={path.stem}")
    if config.model not in open_clip.list_models():
        open_clip.add_model_config(path)


def embed_dim(config: ClipScorerConfig) -> int:
    """The embedding width of the configured architecture, without building it."""
    import open_clip

    register_architecture(config)
    arch = open_clip.get_model_config(config.model)
    if arch is None:
        raise ValueError(f"filters.clip.model {config.model!r} is not an open_clip architecture; "
                         f"known: {', '.join(open_clip.list_models()[:8])}, ...")
    return int(arch["embed_dim"])


def pick_device(device: str) -> Any:
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def autocast_dtype(precision: str, device: Any) -> Any:
    """The autocast dtype of ``precision``; fp8 runs the blocks' linears in e4m3 and the rest in bf16."""
    import torch

    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16, "fp8": torch.bfloat16}[precision]


def preprocess_cfg(config: ClipScorerConfig) -> dict:
    """The eval preprocessing open_clip will build for ``config`` (defaults, the model JSON's, the pretrained
    tag's, the tower's image size), found without building the model, as ``create_model`` merges it."""
    import open_clip
    from open_clip.transform import PreprocessCfg, merge_preprocess_dict

    register_architecture(config)
    arch = open_clip.get_model_config(config.model)
    if arch is None:
        raise ValueError(f"filters.clip.model {config.model!r} is not an open_clip architecture")
    cfg = merge_preprocess_dict(PreprocessCfg(), arch.get("preprocess_cfg", {}))
    tag = open_clip.get_pretrained_cfg(config.model, config.pretrained) if config.pretrained else None
    cfg = merge_preprocess_dict(cfg, tag or {})
    size = arch["vision_cfg"]["image_size"]
    cfg["size"] = tuple(size) if isinstance(size, (list, tuple)) else (size, size)
    return cfg


def needs(config: ClipScorerConfig) -> tuple[ClipPixels, ClipTokens]:
    """The crop of the image and the caption tokens, both made on the CPU by the decode stage."""
    cfg = preprocess_cfg(config)
    return (ClipPixels(cfg["size"], cfg["interpolation"], cfg["resize_mode"], cfg["fill_color"]),
            ClipTokens(config.model, config.architecture_file, config.cache_dir))


def check_plan(built: dict, planned: ClipPixels) -> None:
    """The crop the decode stage makes must be the one open_clip built the model for."""
    size = built["size"]
    size = tuple(size) if isinstance(size, (list, tuple)) else (size, size)
    actual = ClipPixels(size, built["interpolation"], built["resize_mode"], built["fill_color"])
    if actual != planned:
        raise RuntimeError(f"open_clip built the model for {actual} but the decode stage makes {planned}; "
                           f"filters.clip.preprocess_cfg no longer merges open_clip's config as create_model does")


def load(config: ClipScorerConfig) -> ClipModel:
    """Build the model with open_clip from its architecture and pretrained tag (or random, seeded, weights)."""
    import open_clip
    import torch

    register_architecture(config)
    device = pick_device(config.device)
    if config.pretrained is None:
        torch.manual_seed(config.seed)
    network, _, preprocess = open_clip.create_model_and_transforms(
        config.model, pretrained=config.pretrained, device=device, cache_dir=config.cache_dir)
    network.eval()
    built = dict(network.visual.preprocess_cfg)
    check_plan(built, needs(config)[0])
    accelerate(network, config.precision, device)
    tokenizer = open_clip.get_tokenizer(config.model, cache_dir=config.cache_dir)
    mean, std = (torch.tensor(built[k], dtype=torch.float32, device=device).view(1, 3, 1, 1) for k in ("mean", "std"))
    dtype = autocast_dtype(config.precision, device)
    image = functools.partial(image_embeddings, network, mean, std, dtype)
    text = functools.partial(text_embeddings, network, dtype)
    if config.compile:  # images padded to a few batch sizes; texts vary in length too: automatic dynamic shapes
        image, text = torch.compile(image, dynamic=False), torch.compile(text)
    return ClipModel(network, preprocess, tokenizer, device, dtype, embed_dim(config), mean, std, image, text,
                     padded=config.compile, cuts_text=cut_text(network))


def accelerate(network: Any, precision: str, device: Any) -> None:
    """The inference rewrites of ``filters.fastpath`` on a loaded network: SDPA self-attention on CUDA (and
    under fp8, which needs its projections as linears), e4m3 linears under fp8, channels-last on CUDA."""
    import torch

    from filters import fastpath

    if precision == "fp8" and not fastpath.float8_supported(device):
        raise RuntimeError(f"filters.clip.precision fp8 needs a GPU of compute capability 9.0 or newer (H100, "
                           f"H200, B200); {torch.cuda.get_device_name(device)} has "
                           f"{torch.cuda.get_device_capability(device)}: set filters.clip.precision: bf16")
    if device.type == "cuda" or precision == "fp8":
        fastpath.self_attention(network)
    if precision == "fp8":
        fastpath.float8(network)
    if device.type == "cuda":
        network.to(memory_format=torch.channels_last)


def _autocast(device: Any, dtype: Any) -> contextlib.AbstractContextManager:
    import torch

    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def image_embeddings(network: Any, mean: Any, std: Any, dtype: Any, pixels: Any) -> Any:
    """Image embeddings of uint8 pixels (N, H, W, 3) on the model's device: normalisation and the tower."""
    with _autocast(pixels.device, dtype):
        return network.encode_image(normalise(pixels, mean, std))


def cut_text(network: Any) -> bool:
    """Whether the text tower may run on tokens cut after each caption's end: open_clip's CLIP with a causal
    mask and argmax pooling (the end-of-text token has the largest id) reads the output at the end token
    only, and under the causal mask no position after it reaches that output."""
    import open_clip

    return (type(network) is open_clip.CLIP and getattr(network, "text_pool_type", None) == "argmax"
            and getattr(network, "attn_mask", None) is not None)


def text_embeddings(network: Any, dtype: Any, tokens: Any) -> Any:
    """Text embeddings of tokens (N, L) on the model's device; ``L`` may be shorter than the context when
    ``cut_text(network)``: ``CLIP.encode_text`` with the positional embedding and the causal mask cut to
    ``L`` (tested equal to open_clip's on the full context)."""
    import torch
    from torch import nn

    with _autocast(tokens.device, dtype):
        length = tokens.shape[1]
        if length == network.positional_embedding.shape[0]:
            return network.encode_text(tokens)
        cast = network.transformer.get_cast_dtype()
        x = network.token_embedding(tokens).to(cast) + network.positional_embedding[:length].to(cast)
        x = network.ln_final(network.transformer(x, attn_mask=network.attn_mask[:length, :length]))
        x = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]
        projection = network.text_projection
        return projection(x) if isinstance(projection, nn.Linear) else x @ projection


TEXT_STEP = 16  # caption lengths are rounded up to multiples of this: few shapes, little waste


def length_groups(tokens: np.ndarray, cut: bool) -> list[tuple[int, np.ndarray]]:
    """(length, rows) groups: each row with the tokens up to its end-of-text token, rounded up to
    ``TEXT_STEP`` (the whole context when the tower cannot be cut)."""
    context = tokens.shape[1]
    if not cut or not len(tokens):
        return [(context, np.arange(len(tokens)))]
    ends = tokens.argmax(axis=1) + 1
    lengths = np.minimum(-(-ends // TEXT_STEP) * TEXT_STEP, context)
    return [(int(n), np.flatnonzero(lengths == n)) for n in np.unique(lengths)]


def score(model: ClipModel, pixels: Any, tokens: Any) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarity of each image with its caption, and the L2-normalised image embeddings (float32).

    ``pixels``: (N, H, W, 3) uint8 (``ClipPixels``), host array or device tensor; ``tokens``: (N, L) int64.
    The text tower runs once per caption-length group (``length_groups``): a short caption does not pay
    for the 77-token context.
    """
    import torch
    import torch.nn.functional as F

    from filters.fastpath import bucket, padded

    with torch.inference_mode():
        host_tokens = tokens.cpu().numpy() if isinstance(tokens, torch.Tensor) else np.asarray(tokens)
        pixels, tokens = to_device(pixels, model.device), to_device(tokens, model.device)
        rows = len(pixels)
        if model.padded:  # a compiled image tower meets a few batch sizes
            pixels = padded(pixels, bucket(rows))
        image_emb = F.normalize(model.image(pixels)[:rows].float(), dim=-1)  # fp32: autocast gives bf16
        text_emb = torch.empty_like(image_emb)
        for length, members in length_groups(host_tokens, model.cuts_text):
            index = torch.from_numpy(members).to(model.device)
            text_emb[index] = F.normalize(model.text(tokens[index, :length]).float(), dim=-1)
        cosine = (image_emb * text_emb).sum(dim=-1)
        return cosine.cpu().numpy(), image_emb.cpu().numpy()


class ClipScorer:
    """Reads ``ClipPixels`` and ``ClipTokens`` (the decode stage makes them from ``image`` and ``caption``);
    writes ``clip_score`` (cosine, float32) and ``clip_embedding`` (the L2-normalised image embedding,
    float16, for the heads and dedup). Called on raw bytes, it prepares them itself.

    A row whose image does not decode gets ``clip_score`` NaN (null in the manifest) and an all-zero
    embedding, which no real embedding can be (they have unit norm). A missing caption is scored as "".
    """

    reads = ()
    writes = (col.CLIP_SCORE, col.CLIP_EMBEDDING)

    @staticmethod
    def needs(config: ClipScorerConfig) -> tuple[ClipPixels, ClipTokens]:
        return needs(config)

    def __init__(self, config: ClipScorerConfig) -> None:
        self.config, self.model = config, load(config)
        self.pixels_need, self.tokens_need = needs(config)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch = ensure(batch, (self.pixels_need, self.tokens_need))
        pixels, ok = device_pixels(batch, self.pixels_need, self.model.device)
        if ok.any():
            cosine, embeddings = score(self.model, pixels, batch[self.tokens_need.column][ok])
        else:
            cosine, embeddings = np.empty(0), np.empty((0, self.model.embed_dim))
        batch[col.CLIP_SCORE] = scatter(cosine.astype(np.float32), ok)
        batch[col.CLIP_EMBEDDING] = scatter(embeddings.astype(np.float16), ok, fill=0.0)
        return batch
