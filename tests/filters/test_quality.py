"""Blur, QR-code and low-information signals on bundled photos, blurred copies and QR codes made by ``qrcode``."""

from __future__ import annotations

import io

import numpy as np
import pytest
import qrcode
from PIL import Image, ImageFilter

from filters.config import FiltersConfig, QualityConfig
from filters.decide import decide, threshold_rules
from filters.quality import QualityScorer, blur_var, grey, grey_entropy, qr_codes
from manifests import schema as col
from manifests.schema import Reason
from pipelines.cli.corpus import load_photos

NAMES = ["astronaut", "chelsea", "coffee", "grass", "hubble_deep_field", "motorcycle_left", "rocket"]


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    found = load_photos()
    return {n: np.asarray(found[n][0]) for n in NAMES}


def qr_image(text: str, box: int = 4) -> np.ndarray:
    return np.asarray(qrcode.make(text, box_size=box).convert("RGB"))


def blurred(rgb: np.ndarray, radius: float) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(radius)))


def test_blur_orders_sharp_above_blurred(photos):
    for name, rgb in photos.items():
        values = [blur_var(grey(blurred(rgb, r) if r else rgb, 256)) for r in (0, 1.5, 4)]
        assert values[0] > values[1] > values[2], name
        assert values[0] > 4 * values[2], name


def test_qr_codes_are_found_alone_and_pasted_on_photos(photos):
    assert qr_codes(qr_image("https://example.com/a")) == 1
    for name, rgb in photos.items():
        assert qr_codes(rgb) == 0, name
        canvas = Image.fromarray(rgb)
        code = Image.fromarray(qr_image(f"thresher {name}", box=3))
        canvas.paste(code, (10, 10))
        assert qr_codes(np.asarray(canvas)) == 1, name


def test_entropy_is_zero_for_flat_images_and_high_for_photos(photos):
    assert grey_entropy(grey(np.full((64, 80, 3), 173, np.uint8), 256)) == 0.0
    two_tone = np.zeros((64, 64, 3), np.uint8)
    two_tone[:, 32:] = 255
    assert grey_entropy(grey(two_tone, 64)) == pytest.approx(1.0)
    assert min(grey_entropy(grey(rgb, 256)) for rgb in photos.values()) > 3  # the darkest: hubble, 4.1 bits


def _jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def test_stage_writes_three_columns_and_nan_for_bad_bytes(photos):
    stage = QualityScorer(QualityConfig(enabled=True))
    images = [_jpeg(photos["astronaut"]), _jpeg(qr_image("x")), b"garbage", _jpeg(np.zeros((50, 50, 3), np.uint8))]
    out = stage({col.IMAGE: np.array(images, dtype=object)})
    assert out[col.QR_CODES][:2].tolist() == [0, 1] and out[col.GREY_ENTROPY][3] == 0
    assert np.isnan([out[c][2] for c in (col.BLUR_VAR, col.QR_CODES, col.GREY_ENTROPY)]).all()
    assert all(out[c].dtype == np.float32 for c in (col.BLUR_VAR, col.QR_CODES, col.GREY_ENTROPY))


def test_quality_rules_are_optional_and_reasoned():
    assert threshold_rules(FiltersConfig(quality=QualityConfig(enabled=True))) == []
    config = FiltersConfig(quality=QualityConfig(enabled=True, min_blur_var=50, reject_qr=True, min_grey_entropy=1))
    import polars as pl

    frame = pl.DataFrame({col.SAMPLE_ID: ["a", "b", "c", "d"], col.STATUS: ["success"] * 4,
                          col.CAPTION: ["a fine caption"] * 4, col.ORIGINAL_WIDTH: [400] * 4,
                          col.ORIGINAL_HEIGHT: [400] * 4, col.BLUR_VAR: [500.0, 10.0, 500.0, float("nan")],
                          col.QR_CODES: [0.0, 0.0, 2.0, float("nan")], col.GREY_ENTROPY: [7.0, 7.0, 7.0, 0.2]})
    reasons = decide(frame, config).collect()[col.REJECT_REASONS].to_list()
    assert reasons == [[], [Reason.BLURRY], [Reason.QR_CODE], [Reason.UNIFORM_IMAGE]]
