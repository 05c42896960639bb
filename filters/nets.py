"""The torch modules of the heads on CLIP embeddings, laid out so the published state_dicts load with strict keys.

Imports torch at module level: import this module inside a loader, never from pipelines/.
"""

from __future__ import annotations

import torch
from torch import nn

from filters.config import HEAD_WIDTHS


class AestheticMlp(nn.Module):
    """LAION improved aesthetic predictor (v2): 768->1024->128->64->16->1, dropout after the first three.

    The dropouts sit at indices 1/3/5, which is why the checkpoint's keys are layers.0/2/4/6/7.
    """

    def __init__(self, width: int = 768) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(width, 1024), nn.Dropout(0.2),
            nn.Linear(1024, 128), nn.Dropout(0.2),
            nn.Linear(128, 64), nn.Dropout(0.1),
            nn.Linear(64, 16),
            nn.Linear(16, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class KerasNormalization(nn.Module):
    """Keras' Normalization layer as converted: ``(x - mean) / (sqrt(variance) + 1e-10)``."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(width))
        self.register_buffer("variance", torch.ones(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / (self.variance.sqrt() + 1e-10)


class ClipNsfwHead(nn.Module):
    """LAION CLIP-based NSFW detector (converted from Keras): norm -> Linear+ReLU ... -> Linear -> sigmoid.

    ``widths`` are the layer outputs: L/14 is (64, 512, 256, 1) on 768-d input, B/32 is (32, 32, 1) on 512-d.
    The linear layers are named linear_1..linear_n, as in the converted checkpoints.
    """

    def __init__(self, width: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        self.norm = KerasNormalization(width)
        sizes = (width, *widths)
        self.names = [f"linear_{i + 1}" for i in range(len(widths))]
        for name, (n_in, n_out) in zip(self.names, zip(sizes, sizes[1:])):
            self.add_module(name, nn.Linear(n_in, n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        for name in self.names[:-1]:
            x = torch.relu(getattr(self, name)(x))
        return torch.sigmoid(getattr(self, self.names[-1])(x))


NSFW_LAYERS = {"clip_l14": (64, 512, 256, 1), "clip_b32": (32, 32, 1)}


def aesthetic_head(head: str) -> nn.Module:
    width = HEAD_WIDTHS[head]
    return AestheticMlp(width) if head == "v2" else nn.Linear(width, 1)


def nsfw_head(backend: str) -> nn.Module:
    return ClipNsfwHead(HEAD_WIDTHS[backend], NSFW_LAYERS[backend])
