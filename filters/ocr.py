"""Text in the image (the T-MARS signals): how much of the picture is rendered text, what it says, and
whether the caption merely reads it. RapidOCR's PP-OCRv4 detection and recognition ONNX models, which ship
inside ``rapidocr-onnxruntime``, so it runs offline.

Batched through ONNX Runtime: images of one detection size go through the detector as one tensor (staged
images mostly share a size), and every text line of the batch goes through the recogniser together. The
CUDA provider is used when onnxruntime has it (``device: auto``) or is required (``device: cuda``).
"""

from __future__ import annotations

import re
from typing import Any

import cv2
import numpy as np

from filters.config import OcrConfig
from filters.images import ready
from manifests.images import CONTENT_RGB, RgbArray
from manifests import schema as col


# Function words that appear in any caption and any sign; they say nothing about a caption reading the image.
STOPWORDS = frozenset("the and for with from this that are was were you your our its his her".split())
_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    """Lower-case words of three or more characters, stop words dropped."""
    return [w for w in _WORD.findall(text.lower()) if len(w) >= 3 and w not in STOPWORDS]


def caption_text_overlap(caption: str | None, ocr_text: str) -> float:
    """Share of the caption's words (with repeats) that OCR read anywhere in the image; NaN for a caption
    without words, 0 when the image has no text.

    A word counts when it occurs in the OCR text with spaces and punctuation removed: PP-OCR's recogniser
    often runs Latin words together ("BIGSALETODAY"), and words are at least three characters long.
    """
    wanted = words(caption or "")
    if not wanted:
        return float("nan")
    squashed = re.sub(r"\W+", "", ocr_text.lower())
    return sum(w in squashed for w in wanted) / len(wanted)


def text_area_frac(boxes: list[np.ndarray], height: int, width: int) -> float:
    """Share of the image's pixels inside the union of the text-line quadrilaterals."""
    if not boxes:
        return 0.0
    mask = np.zeros((height, width), dtype=np.uint8)
    for box in boxes:  # one call per box: fillPoly on several polygons cancels where they overlap
        cv2.fillPoly(mask, [np.round(box).astype(np.int32)], 1)
    return float(mask.mean())


def load_ocr(config: OcrConfig) -> Any:
    """One RapidOCR engine (detector, recogniser; the 180-degree classifier is not used)."""
    import onnxruntime as ort
    from rapidocr_onnxruntime import RapidOCR

    cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    if config.device == "cuda" and not cuda:
        raise RuntimeError("filters.ocr.device is cuda but this onnxruntime has no CUDAExecutionProvider; "
                           "install onnxruntime-gpu or set filters.ocr.device=cpu")
    use_cuda = config.device == "cuda" or (config.device == "auto" and cuda)
    threads = {"intra_op_num_threads": config.intra_op_threads} if config.intra_op_threads else {}
    return RapidOCR(use_cls=False, det_use_cuda=use_cuda, rec_use_cuda=use_cuda, text_score=config.min_text_score,
                    det_limit_type="max", det_limit_side_len=config.det_max_side, rec_batch_num=32, **threads)


def det_tensor(bgr: np.ndarray, max_side: int) -> np.ndarray:
    """The detector's input for one image: shrunk to ``max_side`` at most, sides rounded to multiples of 32
    (at least 32), normalised to [-1, 1], CHW float32 (PP-OCR's DetPreProcess, without its enlarging)."""
    h, w = bgr.shape[:2]
    ratio = min(1.0, max_side / max(h, w))
    size_h, size_w = (max(32, int(round(s * ratio / 32)) * 32) for s in (h, w))
    resized = cv2.resize(bgr, (size_w, size_h))
    return ((resized.astype(np.float32) / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)


def detect(engine: Any, images: list[np.ndarray], max_side: int) -> list[list[np.ndarray]]:
    """Text-line quadrilaterals (4x2, original pixel coordinates, reading order) of each BGR image."""
    tensors = [det_tensor(img, max_side) for img in images]
    maps: list[np.ndarray | None] = [None] * len(images)
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, t in enumerate(tensors):
        by_shape.setdefault(t.shape, []).append(i)
    for members in by_shape.values():
        out = engine.text_det.infer(np.stack([tensors[i] for i in members]))[0]
        for k, i in enumerate(members):
            maps[i] = out[k:k + 1]
    boxes = []
    for img, prob in zip(images, maps):
        found, _ = engine.text_det.postprocess_op(prob, img.shape[:2])
        found = engine.text_det.filter_tag_det_res(found, img.shape[:2])
        boxes.append(list(engine.sorted_boxes(found)) if len(found) else [])
    return boxes


def read_images(engine: Any, rgb: list[np.ndarray], config: OcrConfig) -> list[tuple[float, str]]:
    """(text_area_frac, recognised text) of each RGB image; lines below ``min_text_score`` are dropped."""
    bgr = [np.ascontiguousarray(img[:, :, ::-1]) for img in rgb]
    boxes = detect(engine, bgr, config.det_max_side)
    kept: list[list[tuple[np.ndarray, str]]] = [[] for _ in bgr]
    for i, (img, found) in enumerate(zip(bgr, boxes)):
        if not found:
            continue
        # One image's lines at a time: the recogniser pads a batch of crops to its widest, which changes what
        # it reads, so crops of other images in the batch made an image's text depend on its batch.
        lines, _ = engine.text_rec(engine.get_crop_img_list(img, found))
        for box, (text, score) in zip(found, lines):
            if score >= config.min_text_score and text.strip():
                kept[i].append((box, text.strip()))
    return [(text_area_frac([b for b, _ in k], *img.shape[:2]), " ".join(t for _, t in k)) for img, k in zip(bgr, kept)]


class OcrScorer:
    """Reads ``image`` and ``caption``; writes ``text_area_frac`` (float32), ``ocr_text`` (truncated to
    ``max_text_chars``) and ``caption_text_overlap`` (float32, NaN when the caption has no words).

    A row whose image does not decode gets NaN scores and a null ``ocr_text``.
    """

    reads = (col.CAPTION,)
    writes = (col.TEXT_AREA_FRAC, col.OCR_TEXT, col.CAPTION_TEXT_OVERLAP)

    @staticmethod
    def needs(config: OcrConfig) -> tuple[RgbArray]:
        return (CONTENT_RGB,)

    def __init__(self, config: OcrConfig) -> None:
        self.config = config
        self.engine = load_ocr(config)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        arrays, ok = ready(batch, CONTENT_RGB)
        results = iter(read_images(self.engine, arrays, self.config))
        n = len(ok)
        area = np.full(n, np.nan, dtype=np.float32)
        overlap = np.full(n, np.nan, dtype=np.float32)
        text = np.full(n, None, dtype=object)
        for i in np.flatnonzero(ok):
            area[i], full = next(results)
            text[i] = full[: self.config.max_text_chars]
            overlap[i] = caption_text_overlap(batch[col.CAPTION][i], full)
        batch[col.TEXT_AREA_FRAC], batch[col.OCR_TEXT], batch[col.CAPTION_TEXT_OVERLAP] = area, text, overlap
        return batch
