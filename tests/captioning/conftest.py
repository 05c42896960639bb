"""Tiny random BLIP-2, LLaVA and Qwen-VL (2.5 and 3) saved once per session, and encoded photos from scikit-image."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from support.random_models import save_random


def encode_jpeg(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).convert("RGB").save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="session")
def photos() -> list[bytes]:
    """Four real photos (scikit-image's bundled ones), JPEG-encoded as staged images are."""
    from skimage import data

    return [encode_jpeg(getattr(data, name)()) for name in ("astronaut", "chelsea", "coffee", "rocket")]


@pytest.fixture(scope="session")
def tiny_blip2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _seeded("blip2", tmp_path_factory.mktemp("tiny-blip2"))


@pytest.fixture(scope="session")
def tiny_llava(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _seeded("llava", tmp_path_factory.mktemp("tiny-llava"))


def _seeded(kind: str, out: Path) -> Path:
    """The same random weights every session, so what the tiny models write (text, not a loop) is fixed."""
    import torch

    torch.manual_seed(0)
    return save_random(kind, out)


@pytest.fixture(scope="session")
def tiny_qwen2_5_vl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _seeded("qwen2_5_vl", tmp_path_factory.mktemp("tiny-qwen2_5_vl"))


@pytest.fixture(scope="session")
def tiny_qwen3_vl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _seeded("qwen3_vl", tmp_path_factory.mktemp("tiny-qwen3_vl"))
