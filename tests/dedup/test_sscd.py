"""SSCD: the official sscd_disc_mixup layout loads through our seam; the stage writes unit 512-d vectors."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from dedup.config import SscdConfig
from dedup.sscd import SscdEmbedder, build_model, is_torchscript, load
from manifests import schema as col

TINY = dict(enabled=True, random_init=True, layers=(1, 1, 1, 1), init_planes=8, dims=16, image_size=64)


def official_layout() -> dict[str, tuple[int, ...]]:
    """Key -> shape of SSCD's Model("CV_RESNET50", 512, 3.0), written out from ClassyVision's ResNeXt."""
    shapes: dict[str, tuple[int, ...]] = {}

    def bn(prefix: str, c: int) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{name}"] = (c,)
        shapes[f"{prefix}.num_batches_tracked"] = ()

    shapes["backbone.initial_block._module.0.weight"] = (64, 3, 7, 7)
    bn("backbone.initial_block._module.1", 64)
    cin = 64
    for stage, blocks in enumerate((3, 4, 6, 3)):
        cout, mid = 256 * 2 ** stage, 64 * 2 ** stage
        for block in range(blocks):
            p = f"backbone.blocks.{stage}.{block}._module"
            shapes[f"{p}.convolutional_block.0.weight"] = (mid, cin, 1, 1)
            bn(f"{p}.convolutional_block.1", mid)
            shapes[f"{p}.convolutional_block.3.weight"] = (mid, mid, 3, 3)
            bn(f"{p}.convolutional_block.4", mid)
            shapes[f"{p}.convolutional_block.6.weight"] = (cout, mid, 1, 1)
            bn(f"{p}.bn", cout)
            if block == 0:
                shapes[f"{p}.downsample.0.weight"] = (cout, cin, 1, 1)
                bn(f"{p}.downsample.1", cout)
            cin = cout
    shapes["embeddings.1.weight"] = (512, 2048)
    shapes["embeddings.1.bias"] = (512,)
    return shapes


def test_official_state_dict_layout_loads(tmp_path):
    layout = official_layout()
    generator = torch.Generator().manual_seed(1)

    def tensor(key: str, shape: tuple[int, ...]) -> torch.Tensor:
        if not shape:
            return torch.tensor(0)
        if len(shape) > 1:  # He-initialised so 50 random layers neither vanish nor overflow
            return torch.randn(shape, generator=generator) * (2.0 / np.prod(shape[1:])) ** 0.5
        if key.endswith(("running_var", "weight")):
            return 0.5 + 0.5 * torch.rand(shape, generator=generator)
        return 0.1 * torch.randn(shape, generator=generator)

    state = {k: tensor(k, s) for k, s in layout.items()}
    path = tmp_path / "sscd_disc_mixup.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    model = load(SscdConfig(enabled=True, checkpoint=str(path)))
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == layout
    assert torch.equal(model.state_dict()["embeddings.1.weight"], state["embeddings.1.weight"])
    with torch.inference_mode():
        out = model(torch.rand(1, 3, 96, 128))
    assert out.shape == (1, 512) and torch.allclose(out.norm(dim=1), torch.ones(1), atol=1e-5)


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
