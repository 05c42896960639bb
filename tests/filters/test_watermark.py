"""LAION's watermark classifier: the published layout, strict loading through the weights seam, the stage.

The network runs with random weights (the file is downloaded by ``thresher models fetch``, never in tests);
where ``../shared/checkpoints/laion-watermark/watermark_model_v1.pt`` exists, the real file is loaded too.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from filters import weights as models
from filters.config import FiltersConfig, WatermarkConfig
from filters.decide import threshold_rules
from filters.watermark import WatermarkScorer, load_watermark, preprocess, watermark_net
from manifests import schema as col
from manifests.schema import Reason

# LAION's head (example_use.py): Linear(1536, 625), ReLU, Dropout, Linear(625, 256), ReLU, Linear(256, 2);
# checked against the published file by test_real_file_has_our_layout where ../shared has it.
HEAD_SHAPES = {"classifier.0.weight": (625, 1536), "classifier.0.bias": (625,), "classifier.3.weight": (256, 625),
               "classifier.3.bias": (256,), "classifier.5.weight": (2, 256), "classifier.5.bias": (2,)}


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return watermark_net().state_dict()


def test_layout_is_efficientnet_b3_with_laions_head(state):
    import timm

    laions = timm.create_model("efficientnet_b3a", num_classes=2)  # the name LAION's example_use.py builds
    backbone = {k: tuple(v.shape) for k, v in laions.state_dict().items() if not k.startswith("classifier.")}
    ours = {k: tuple(v.shape) for k, v in state.items()}
    assert ours == {**backbone, **HEAD_SHAPES}
    assert ours["conv_head.weight"] == (1536, 384, 1, 1)  # B3's 1536 features feed the head


def test_published_layout_loads_strictly_through_the_seam(state, tmp_path):
    path = tmp_path / "watermark_model_v1.pt"
    torch.save(state, path)
    model = load_watermark(WatermarkConfig(enabled=True, weights=str(path), device="cpu"))
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    broken = dict(state)
    broken.pop("classifier.5.bias")
    torch.save(broken, path)
    with pytest.raises(RuntimeError, match="classifier.5.bias"):
        load_watermark(WatermarkConfig(enabled=True, weights=str(path), device="cpu"))


def test_real_file_has_our_layout(checkpoints, state):
    """The published file, where ../shared/checkpoints has it: every key and shape ours (the head's too,
    which HEAD_SHAPES writes out from LAION's example), and it loads strictly through the seam."""
    path = checkpoints / models.WATERMARK_FILE[0]
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    real = {k: tuple(v.shape) for k, v in torch.load(path, map_location="cpu", weights_only=True).items()}
    assert real == {k: tuple(v.shape) for k, v in state.items()}
    assert {k: v for k, v in real.items() if k.startswith("classifier.")} == HEAD_SHAPES
    load_watermark(WatermarkConfig(enabled=True, weights=str(path), device="cpu"))


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_stage_scores_probabilities_and_nan_for_bad_bytes():
    stage = WatermarkScorer(WatermarkConfig(enabled=True, random_init=True, device="cpu", batch_size=2))
    images = [_png(Image.new("RGB", (300, 200), c)) for c in ("white", "navy", "olive")] + [b"nope"]
    out = stage({col.IMAGE: np.array(images, dtype=object)})[col.WATERMARK_PROB]
    assert out.dtype == np.float32 and np.isnan(out[3])
    assert ((out[:3] >= 0) & (out[:3] <= 1)).all()
    pixels = torch.from_numpy(preprocess([Image.open(io.BytesIO(b)).convert("RGB") for b in images[:3]]))
    with torch.inference_mode():
        expected = torch.softmax(stage.model(pixels), dim=1)[:, 0].numpy()
    np.testing.assert_allclose(out[:3], expected, rtol=1e-5)  # batches of 2 give what one batch of 3 gives


def test_preprocess_is_laions_resize_and_imagenet_normalisation():
    pixels = preprocess([Image.new("RGB", (640, 120), (255, 0, 128))])
    assert pixels.shape == (1, 3, 256, 256)
    np.testing.assert_allclose(pixels[0, :, 0, 0], [(1 - 0.485) / 0.229, -0.456 / 0.224,
                                                    (128 / 255 - 0.406) / 0.225], rtol=1e-5)


def test_weights_entry_rule_and_models_list(tmp_path):
    config = WatermarkConfig(enabled=True, cache_dir=str(tmp_path))
    entry = models.watermark_entry(config)
    assert not entry.present and entry.location == str(tmp_path / "laion-watermark" / "watermark_model_v1.pt")
    assert entry.source.endswith("/models/watermark_model_v1.pt")
    assert entry in models.required_weights(FiltersConfig(watermark=config))
    with pytest.raises(models.FilterSetupError, match="watermark"):
        models.check_filters(FiltersConfig(watermark=config))
    (rule,) = threshold_rules(FiltersConfig(watermark=config))
    assert (rule.column, rule.reason, rule.maximum) == (col.WATERMARK_PROB, Reason.WATERMARK, 0.8)


@pytest.mark.gpu
def test_gpu_matches_cpu():
    images = np.array([_png(Image.new("RGB", (300, 200), c)) for c in ("white", "navy", "olive", "teal")],
                      dtype=object)
    cpu = WatermarkScorer(WatermarkConfig(random_init=True, device="cpu"))({col.IMAGE: images.copy()})
    gpu = WatermarkScorer(WatermarkConfig(random_init=True, device="cuda"))({col.IMAGE: images.copy()})
    np.testing.assert_allclose(gpu[col.WATERMARK_PROB], cpu[col.WATERMARK_PROB], atol=1e-3)


def test_packaged_models_are_listed_present():
    listed = {w.section: w for w in models.catalogue()}
    assert listed["filters.ocr"].present and listed["filters.ocr"].location.endswith("models")
    assert listed["filters.language"].present
    assert {w.section for w in models.required_weights(FiltersConfig())}.isdisjoint({"filters.ocr", "filters.language"})
