"""Cheap image-quality signals, no model: blur, QR codes and low information, as pure functions of an
RGB uint8 array, and the stage that decodes staged images and writes them.

* ``blur_var``: variance of the Laplacian of the grey image resized so its longer side is ``size`` (the
  classic focus measure, Pech-Pacheco et al. 2000); fixing the size makes it comparable across images.
* ``qr_codes``: QR codes OpenCV's ``QRCodeDetectorAruco`` finds (0 or more); a QR code in a training image
  is usually an advert or a product label. The ArUco-based detector found a QR code pasted on each of the
  17 bundled photos; the classic ``QRCodeDetector`` missed 2-3 of them (dark or textured surroundings).
* ``grey_entropy``: Shannon entropy in bits of the 256-bin grey histogram: 0 for a flat colour, about 7.5
  for a photo; placeholder images, blank scans and solid fills sit near 0.
"""

from __future__ import annotations

import cv2
import numpy as np

from filters.config import QualityConfig
from filters.images import ready
from manifests.images import CONTENT_RGB, RgbArray
from manifests import schema as col



def grey(rgb: np.ndarray, size: int) -> np.ndarray:
    """The grey image with its longer side at ``size`` (area interpolation when shrinking)."""
    g = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    h, w = g.shape
    scale = size / max(h, w)
    if scale != 1.0:
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        g = cv2.resize(g, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=interp)
    return g


def blur_var(grey_image: np.ndarray) -> float:
    """Variance of the 3x3 Laplacian: low for blurry or flat images."""
    return float(cv2.Laplacian(grey_image, cv2.CV_64F).var())


def grey_entropy(grey_image: np.ndarray) -> float:
    """Entropy (bits) of the grey-level histogram."""
    counts = np.bincount(grey_image.ravel(), minlength=256).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum()) + 0.0  # + 0.0: a flat image gives 0.0, not -0.0


def qr_codes(rgb: np.ndarray, detector: cv2.QRCodeDetectorAruco | None = None) -> int:
    """QR codes found in the full-size image (detection only; decoding them is not needed)."""
    detector = detector or cv2.QRCodeDetectorAruco()
    found, points = detector.detectMulti(np.ascontiguousarray(rgb))
    return int(len(points)) if found and points is not None else 0


class QualityScorer:
    """Reads ``image``; writes ``blur_var``, ``qr_codes`` and ``grey_entropy`` (float32).

    A row whose image does not decode gets NaN in all three (null in the manifest).
    """

    reads = ()
    writes = (col.BLUR_VAR, col.QR_CODES, col.GREY_ENTROPY)

    @staticmethod
    def needs(config: QualityConfig) -> tuple[RgbArray]:
        return (CONTENT_RGB,)

    def __init__(self, config: QualityConfig) -> None:
        self.size = config.size
        self.detector = cv2.QRCodeDetectorAruco()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        arrays, ok = ready(batch, CONTENT_RGB)
        out = np.full((len(ok), 3), np.nan, dtype=np.float32)
        for i, rgb in zip(np.flatnonzero(ok), arrays):
            g = grey(rgb, self.size)
            out[i] = (blur_var(g), qr_codes(rgb, self.detector), grey_entropy(g))
        batch[col.BLUR_VAR], batch[col.QR_CODES], batch[col.GREY_ENTROPY] = out[:, 0], out[:, 1], out[:, 2]
        return batch
