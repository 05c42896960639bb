"""Watermark probability: LAION's classifier from LAION-5B-WatermarkDetection (``watermark_model_v1.pt``).

The network is timm's EfficientNet-B3 (LAION built ``efficientnet_b3a``, the same architecture under an
older timm name) with its classifier replaced by Linear 1536->625, ReLU, Dropout(0.3), Linear 625->256,
ReLU, Linear 256->2; input 256x256, ImageNet mean/std; class 0 is "watermark", class 1 "clear" (LAION's
``example_use.py``). The published file is a state_dict of exactly that module, loaded with strict keys.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from filters.config import WatermarkConfig
from filters.images import ready, scatter
from manifests.images import CONTENT_RGB, RgbArray
from manifests import schema as col


ARCHITECTURE = "efficientnet_b3"
INPUT_SIZE = 256
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
WATERMARK_CLASS = 0


def watermark_net() -> Any:
    """The classifier with random weights (timm builds it offline; ``pretrained=False``)."""
    import timm
    from torch import nn

    model = timm.create_model(ARCHITECTURE, pretrained=False, num_classes=2)
    model.classifier = nn.Sequential(
        nn.Linear(1536, 625), nn.ReLU(), nn.Dropout(p=0.3), nn.Linear(625, 256), nn.ReLU(), nn.Linear(256, 2))
    return model


def load_watermark(config: WatermarkConfig) -> Any:
    """The network with the published weights (strict), or seeded random ones with ``random_init``."""
    import torch

    from filters.clip import pick_device
    from filters.heads import load_state
    from filters.weights import watermark_weights

    if config.random_init:
        torch.manual_seed(0)
        model = watermark_net().eval()
    else:
        model = load_state(watermark_net(), watermark_weights(config))
    return model.to(pick_device(config.device))


def preprocess(images: list[Image.Image]) -> np.ndarray:
    """(n, 3, 256, 256) float32: bilinear resize to 256x256 (torchvision's Resize on PIL images), ImageNet
    normalisation."""
    out = np.empty((len(images), 3, INPUT_SIZE, INPUT_SIZE), dtype=np.float32)
    for i, img in enumerate(images):
        pixels = np.asarray(img.resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BILINEAR), dtype=np.float32)
        out[i] = ((pixels / 255.0 - MEAN) / STD).transpose(2, 0, 1)
    return out


def watermark_probs(model: Any, pixels: np.ndarray, batch_size: int) -> np.ndarray:
    """Softmax probability of the watermark class for each preprocessed image."""
    import torch

    device = next(model.parameters()).device
    out = []
    with torch.inference_mode():
        for start in range(0, len(pixels), batch_size):
            logits = model(torch.from_numpy(pixels[start:start + batch_size]).to(device))
            out.append(torch.softmax(logits.float(), dim=1)[:, WATERMARK_CLASS].cpu().numpy())
    return np.concatenate(out) if out else np.empty(0, dtype=np.float32)


class WatermarkScorer:
    """Reads ``image``; writes ``watermark_prob`` (float32). A row whose image does not decode gets NaN."""

    reads = ()
    writes = (col.WATERMARK_PROB,)

    @staticmethod
    def needs(config: WatermarkConfig) -> tuple[RgbArray]:
        return (CONTENT_RGB,)

    def __init__(self, config: WatermarkConfig) -> None:
        self.batch_size = config.batch_size
        self.model = load_watermark(config)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        arrays, ok = ready(batch, CONTENT_RGB)
        probs = watermark_probs(self.model, preprocess([Image.fromarray(a) for a in arrays]), self.batch_size)
        batch[col.WATERMARK_PROB] = scatter(probs.astype(np.float32), ok)
        return batch
