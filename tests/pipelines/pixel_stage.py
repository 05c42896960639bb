"""A real score-phase stage for the scale-out tests: a hash of the decoded pixels of each staged image.

It stands in for the model stages (which other packages add) wherever a test needs the score phase
to do per-sample work: it decodes every image, so a result can be checked against the shards.
``delay_s`` slows each batch so a test can kill a run reliably in the middle of the phase, and
``record_dir`` notes the Ray node each actor ran on, so a multi-node test can see where work went.
"""

from __future__ import annotations

import hashlib
import io
import time
from pathlib import Path

import numpy as np
from PIL import Image

from manifests import schema as col
from manifests.config import StrictModel


class PixelHasherConfig(StrictModel):
    delay_s: float = 0.0
    record_dir: str | None = None


def pixel_hash(data: bytes) -> str:
    """sha256 of the image size and its RGB pixels: equal for the same picture in any container."""
    with Image.open(io.BytesIO(data)) as img:
        rgb = img.convert("RGB")
    return hashlib.sha256(f"{rgb.width}x{rgb.height}:".encode() + rgb.tobytes()).hexdigest()


class PixelHasher:
    """Reads ``image`` (encoded bytes); writes ``pixel_hash``. Staged images always decode (ingest checked)."""

    reads = (col.IMAGE,)
    writes = (col.PIXEL_HASH,)

    def __init__(self, config: PixelHasherConfig) -> None:
        self.config = config
        if config.record_dir:
            import ray

            node = ray.get_runtime_context().get_node_id()
            Path(config.record_dir).mkdir(parents=True, exist_ok=True)
            (Path(config.record_dir) / f"{node}.node").write_text(node)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        time.sleep(self.config.delay_s)
        batch[col.PIXEL_HASH] = np.array([pixel_hash(bytes(b)) for b in batch[col.IMAGE]], dtype=object)
        return batch
