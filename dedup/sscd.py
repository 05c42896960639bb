"""SSCD copy-detection descriptors (Pizzi et al. 2022), model ``sscd_disc_mixup``.

The architecture is SSCD's ``Model("CV_RESNET50", 512, 3.0)``: ClassyVision's ResNet-50 trunk, GeM
pooling (p=3), a 2048->512 linear layer and L2 normalisation. Module names follow ClassyVision's
(``backbone.initial_block._module``, ``backbone.blocks.S.blockS-B.convolutional_block``, ``embeddings.1``;
tests/dedup/test_sscd.py compares them with ClassyVision's own model) so the official ``.classy.pt``
weights load as a plain state dict, as SSCD's README loads them; ClassyVision's pre-0.2 block names
(``blocks.S.B._module``) are renamed as ClassyVision renames them. The official TorchScript file loads as is. Nothing here imports torch at module import: the stage loads it inside its actor.
"""

from __future__ import annotations

import math
import re
import zipfile
from collections import OrderedDict, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from dedup.config import SscdConfig
from manifests.images import DECODED, ShortSideArray, ensure
from manifests import schema as col

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
BLANK_LEVELS = (255, 0, 128)  # white, black, grey: what a near-blank image's descriptor sits next to


def build_model(config: SscdConfig) -> Any:
    """A randomly initialised SSCD network of the configured shape (official: layers 3-4-6-3, 64 planes)."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class Named(nn.Module):  # ClassyVision's initial block keeps its layers as ``_module``
        def __init__(self, module: nn.Module) -> None:
            super().__init__()
            self._module = module

        def forward(self, x):
            return self._module(x)

    class Bottleneck(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            mid = int(math.ceil(cout / 4))
            self.convolutional_block = nn.Sequential(
                nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
                nn.Conv2d(mid, mid, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(mid),
                nn.ReLU(inplace=True), nn.Conv2d(mid, cout, 1, bias=False))
            self.bn, self.relu = nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            residual = x if self.downsample is None else self.downsample(x)
            return self.relu(self.bn(self.convolutional_block(x)) + residual)

    class GeM(nn.Module):
        def __init__(self, p: float) -> None:
            super().__init__()
            self.p = p

        def forward(self, x):
            return x.flatten(2).clamp(min=1e-6).pow(self.p).mean(dim=2).pow(1.0 / self.p)

    class L2Norm(nn.Module):
        def forward(self, x):
            return F.normalize(x)

    class Trunk(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            p = config.init_planes
            self.initial_block = Named(nn.Sequential(
                nn.Conv2d(3, p, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(p), nn.ReLU(inplace=True),
                nn.MaxPool2d(3, stride=2, padding=1)))
            outs = [p * 2 ** i * 4 for i in range(4)]
            ins = [p] + outs[:-1]
            self.blocks = nn.Sequential(*[nn.Sequential(OrderedDict(
                (f"block{s}-{b}", Bottleneck(ins[s] if b == 0 else outs[s], outs[s], 2 if s and b == 0 else 1))
                for b in range(n))) for s, n in enumerate(config.layers)])
            self.out_planes = outs[-1]

        def forward(self, x):
            return self.blocks(self.initial_block(x))

    class Sscd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = Trunk()
            self.embeddings = nn.Sequential(GeM(config.pool_param), nn.Linear(self.backbone.out_planes, config.dims),
                                            L2Norm())

        def forward(self, x):
            return self.embeddings(self.backbone(x))

    torch.manual_seed(0)
    return Sscd()


def is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.split("/")[1:2] == ["code"] for name in archive.namelist())


# ClassyVision's ResNeXt before its state version 0.2 (its own _convert_model_state makes the same change)
OLD_BLOCK = re.compile(r"blocks\.(\d+)\.(\d+)\._module\.")


def renamed(key: str) -> str:
    """A state-dict key in ClassyVision's current block names."""
    return OLD_BLOCK.sub(lambda m: f"blocks.{m[1]}.block{m[1]}-{m[2]}.", key)


def load(config: SscdConfig, device: str = "cpu") -> Any:
    """The model in eval mode: the TorchScript file, a state dict in our (official) layout, or random weights."""
    import torch

    if config.checkpoint is None:
        model = build_model(config)
    elif is_torchscript(Path(config.checkpoint)):
        model = torch.jit.load(config.checkpoint, map_location=device)
    else:
        state = torch.load(config.checkpoint, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state)
        state = {renamed(k.removeprefix("module.")): v for k, v in state.items()}
        model = build_model(config)
        model.load_state_dict(state, strict=True)
    return model.to(device).eval()


def preprocess(img: Any, size: int) -> np.ndarray:
    """Short side to ``size`` (bilinear), ImageNet normalisation, CHW float32: SSCD's evaluation transform
    (the reference; the stage gets the resized uint8 from the decode stage and normalises on its device)."""
    x = np.asarray(need(size).from_image(img), dtype=np.float32) / 255.0
    return ((x - np.array(MEAN, np.float32)) / np.array(STD, np.float32)).transpose(2, 0, 1)


def need(size: int) -> ShortSideArray:
    from PIL import Image

    return ShortSideArray(size, int(Image.Resampling.BILINEAR), content=True)


class SscdEmbedder:
    """Score stage: reads ``ShortSideArray`` of the content region (short side to ``image_size``, bilinear;
    the decode stage makes it from ``image`` and ``content_box``), writes ``sscd_embedding`` (512
    little-endian float32 as bytes, L2-normalised) and ``sscd_blank_similarity``: the largest cosine with
    the descriptors of blank white, black and grey images, which the dedup phase uses to refuse pairs of
    two near-blank images.

    An image that does not decode gets a null. Images are batched by shape after the resize; each group goes
    to the device as uint8 through pinned memory, is normalised there, and runs channels-last under bf16
    autocast on CUDA.
    """

    reads = ()
    writes = (col.SSCD_EMBEDDING, col.SSCD_BLANK_SIMILARITY)

    @staticmethod
    def needs(config: SscdConfig) -> tuple[ShortSideArray]:
        return (need(config.image_size),)

    def __init__(self, config: SscdConfig) -> None:
        import torch

        self.torch, self.config = torch, config
        self.device = "cuda" if config.device == "auto" and torch.cuda.is_available() else (
            "cpu" if config.device == "auto" else config.device)
        self.model = load(config, self.device)
        if self.device == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.mean, self.std = (torch.tensor(v, device=self.device).view(1, 3, 1, 1) for v in (MEAN, STD))
        size = config.image_size
        self.blank = self.embed([np.full((size, size, 3), v, dtype=np.uint8) for v in BLANK_LEVELS])

    def embed(self, arrays: list[np.ndarray]) -> np.ndarray:
        """(N, 512) float32 of same-shape HxWx3 uint8 images."""
        from manifests.gpu_images import normalise, to_device

        torch = self.torch
        with torch.inference_mode():
            x = normalise(to_device(np.stack(arrays), torch.device(self.device)), self.mean, self.std)
            with torch.autocast(self.device, dtype=torch.bfloat16, enabled=self.device == "cuda"):
                return self.model(x).float().cpu().numpy()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        wanted = need(self.config.image_size)
        batch = ensure(batch, (wanted,))
        out = np.empty(len(batch[DECODED]), dtype=object)
        blank = np.full(len(out), np.nan, dtype=np.float32)
        by_shape: dict[tuple, list[tuple[int, np.ndarray]]] = defaultdict(list)
        for i, (ok, x) in enumerate(zip(batch[DECODED], batch[wanted.column])):
            if ok:
                by_shape[x.shape].append((i, x))
        for items in by_shape.values():
            vectors = self.embed([x for _, x in items])
            for (i, _), v in zip(items, vectors):
                out[i] = v.astype("<f4").tobytes()
                blank[i] = float((self.blank @ v).max())
        batch[col.SSCD_EMBEDDING], batch[col.SSCD_BLANK_SIMILARITY] = out, blank
        return batch
