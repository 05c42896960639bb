"""Fixtures of the filters tests: a tiny random-initialised CLIP built from an open_clip config, and photos."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from filters.config import ClipScorerConfig
from support.random_models import TINY_ARCHITECTURE, write_architecture

TINY = "thresher-tiny"
TINY_768 = "thresher-tiny-768"  # the width the LAION heads take, so they can sit on a tiny CLIP


@pytest.fixture(scope="session")
def architectures(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("open_clip_configs")
    write_architecture(folder, TINY)
    write_architecture(folder, TINY_768, {**TINY_ARCHITECTURE, "embed_dim": 768})
    return folder


@pytest.fixture(scope="session")
def tiny_clip(architectures: Path) -> ClipScorerConfig:
    return ClipScorerConfig(enabled=True, model=TINY, pretrained=None,
                            architecture_file=str(architectures / f"{TINY}.json"), min_score=0.1)


@pytest.fixture(scope="session")
def tiny_clip_768(architectures: Path) -> ClipScorerConfig:
    return ClipScorerConfig(enabled=True, model=TINY_768, pretrained=None,
                            architecture_file=str(architectures / f"{TINY_768}.json"))


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="session")
def photos() -> dict[str, tuple[bytes, str]]:
    """The demo's bundled photos, losslessly encoded (PNG), with their captions."""
    from pipelines.cli.corpus import load_photos

    return {name: (_png(img), caption) for name, (img, caption) in load_photos().items()}


def _batch(items: list[tuple[object, object]]) -> dict[str, np.ndarray]:
    return {"sample_id": np.array([f"{i:09d}" for i in range(len(items))], dtype=object),
            "image": np.array([data for data, _ in items], dtype=object),
            "caption": np.array([caption for _, caption in items], dtype=object)}


@pytest.fixture
def make_batch():
    """A score batch (sample_id, image bytes, caption) from (bytes, caption) pairs."""
    return _batch


@pytest.fixture(scope="session")
def optional_checkpoints(request) -> Path | None:
    """The shared LAION heads folder, or None where it is absent (the test then runs without the heads)."""
    try:
        return request.getfixturevalue("checkpoints")
    except pytest.skip.Exception:
        return None


def _jpeg(img: Image.Image, side: int = 256) -> bytes:
    img = img.copy()
    img.thumbnail((side, side))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="session")
def staged_photos() -> dict[int, list[Image.Image]]:
    """Every bundled photo as ingest stages it, a JPEG of long side 128 and 256 px, decoded: what the
    resize parity figures are measured on."""
    from pipelines.cli.corpus import load_photos

    photos = [img for img, _ in load_photos().values()]
    return {side: [Image.open(io.BytesIO(_jpeg(img, side))).convert("RGB") for img in photos] for side in (128, 256)}


@pytest.fixture(scope="session")
def staged() -> dict[str, np.ndarray]:
    """Six demo photos as staged JPEGs (256 px), one PNG and a row that does not decode, as a score batch."""
    from pipelines.cli.corpus import load_photos

    photos = list(load_photos().values())[:6]  # enough for parity; the stages dominate the tests' time
    blobs = [_jpeg(img) for img, _ in photos]
    png = io.BytesIO()
    photos[0][0].resize((120, 90)).save(png, format="PNG")
    blobs += [png.getvalue(), b"not an image"]
    captions = [c for _, c in photos] + ["a png", None]
    return {"sample_id": np.array([f"{i:09d}" for i in range(len(blobs))], dtype=object),
            "image": np.array(blobs, dtype=object), "caption": np.array(captions, dtype=object)}
