"""SSCD: the official sscd_disc_mixup layout loads through our seam; the stage writes unit 512-d vectors."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
import torch
from PIL import Image

from dedup.config import SscdConfig
from dedup.sscd import SscdEmbedder, build_model, is_torchscript, load
from manifests import schema as col

TINY = dict(enabled=True, random_init=True, layers=(1, 1, 1, 1), init_planes=8, dims=16, image_size=64)


def reference_model() -> torch.nn.Module:
    """SSCD's ``Model("CV_RESNET50", 512, 3.0)`` (sscd/models/model.py) built from the reference library:
    ClassyVision's ResNet-50 as ``backbone``, ``embeddings`` = [GeM(p=3), Linear(2048, 512), L2 norm].
    Only the trunk carries the layout question; the head is parameter-free but for its linear layer."""
    from classy_vision.models import build_model as classy_build  # a test dependency (pyproject: test)
    from torch import nn

    class GeM(nn.Module):
        def forward(self, x):
            return x.clamp(min=1e-6).pow(3.0).mean(dim=(2, 3)).pow(1 / 3.0)

    class Normalised(nn.Module):
        def forward(self, x):
            return torch.nn.functional.normalize(x)

    model = nn.Module()
    model.backbone = classy_build({"name": "resnet50"}).classy_model
    model.embeddings = nn.Sequential(GeM(), nn.Linear(2048, 512), Normalised())
    model.forward = lambda x: model.embeddings(model.backbone(x))
    return model


def randomised(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's state with every tensor random (He-scaled convolutions, BN statistics near 1), so a
    weight loaded into the wrong place changes the output."""
    generator = torch.Generator().manual_seed(1)
    state = {}
    for key, value in model.state_dict().items():
        if value.dim() > 1:
            state[key] = torch.randn(value.shape, generator=generator) * (2.0 / np.prod(value.shape[1:])) ** 0.5
        elif key.endswith(("running_var", "weight")):
            state[key] = 0.5 + 0.5 * torch.rand(value.shape, generator=generator)
        elif value.is_floating_point():
            state[key] = 0.1 * torch.randn(value.shape, generator=generator)
        else:
            state[key] = value
    model.load_state_dict(state)
    return state


def layout(state: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


def test_the_layout_is_classy_visions_resnet50():
    ours = build_model(SscdConfig(enabled=True, random_init=True)).state_dict()
    assert list(layout(ours).items()) == list(layout(reference_model().state_dict()).items())


@pytest.mark.parametrize("form", ["state dict", "module-prefixed", "pre-0.2 block names"])
def test_reference_weights_load_and_embed_as_the_reference(tmp_path, form):
    """The weights of ClassyVision's model, saved as SSCD's README loads them (a plain state dict), as a
    DataParallel ``module.`` dict, or in ClassyVision's old block names: our model embeds as it does."""
    reference = reference_model().eval()
    state = randomised(reference)
    if form == "module-prefixed":
        state = {"state_dict": {f"module.{k}": v for k, v in state.items()}}
    elif form == "pre-0.2 block names":
        state = {re.sub(r"blocks\.(\d+)\.block\d+-(\d+)\.", r"blocks.\1.\2._module.", k): v for k, v in state.items()}
        assert any("._module.convolutional_block" in k for k in state)
    path = tmp_path / "sscd_disc_mixup.classy.pt"
    torch.save(state, path)
    model = load(SscdConfig(enabled=True, checkpoint=str(path)))
    x = torch.rand(2, 3, 96, 128, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        expected, actual = reference(x), model(x)
    assert actual.shape == (2, 512)
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-4)
    assert (expected[0] - expected[1]).abs().max() > 100 * 1e-5  # two inputs differ far beyond the tolerance


def test_torchscript_file_loads_through_the_same_seam(tmp_path):
    config = SscdConfig(**TINY)
    path = tmp_path / "sscd_disc_mixup.torchscript.pt"
    torch.jit.trace(build_model(config).eval(), torch.rand(1, 3, 64, 64)).save(str(path))
    assert is_torchscript(path)
    scripted = load(SscdConfig(**{**TINY, "random_init": False, "checkpoint": str(path)}))
    x = torch.rand(2, 3, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(scripted(x), load(config)(x))


def test_enabled_without_weights_is_a_config_error():
    with pytest.raises(ValueError, match="dedup.sscd.checkpoint"):
        SscdConfig(enabled=True)


def test_stage_embeds_unit_vectors_and_nulls_undecodable_images():
    stage = SscdEmbedder(SscdConfig(**TINY))
    images = []
    for size in ((80, 60), (80, 60), (50, 90)):
        buf = io.BytesIO()
        Image.new("RGB", size, (200, 30, 30)).save(buf, format="JPEG")
        images.append(buf.getvalue())
    batch = {col.IMAGE: np.array(images + [b"not an image"], dtype=object)}
    out = stage(batch)[col.SSCD_EMBEDDING]
    assert out[3] is None
    vectors = np.stack([np.frombuffer(v, dtype="<f4") for v in out[:3]])
    assert vectors.shape == (3, 16)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-6)
