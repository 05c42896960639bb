"""Where one thumbnail lies in another: crops and small turns of the images ORB finds no keypoints in.

A pastel landscape, a soft gradient or a flat design with a mark has too few ORB keypoints for RANSAC to
verify a copy (``dedup.keypoints``: fewer than ``placement.below_keypoints``), and PDQ refuses to hash it. Its 48-pixel
CIELAB thumbnail (stored with the keypoints, ``dedup.verify.thumbnail``) still shows its layout, and a crop or
a turned copy shows part of it. ``placement`` searches where the smaller-looking one lies in the other: every
scale from ``SCALES`` (a crop keeping 45-95% of each side), at every position (``cv2.matchTemplate``), and,
for a copy turned about its centre, every angle of ``ANGLES`` with the turned copy's middle ``TURN_INNER`` (its
corners are fill), both ways round. The best placement (least mean squared difference) is then judged:

- its pixels agree: at most ``max_differing`` of the overlap differs by a CIELAB distance over ``DIFFERING``
  (``dedup.verify``'s), and the root-mean-square distance is at most ``max_distance``;
- the agreement means something: that distance is at most ``max_relative`` of the placed part's own variation
  (its RMS distance from its mean colour, plus 1), and that variation is at least ``min_variation``. A flat part
  fits anywhere in anything of its colour, so it places nothing;
- the subjects agree (``dedup.verify.subject_distance`` at most ``max_subject_distance``): a look-alike product
  on white placed over another agrees over the white and differs across the product.

Distances are in OpenCV's 8-bit CIELAB (L x 2.55, a + 128, b + 128), both thumbnails blurred by sigma 1 first
(a crop's thumbnail is sharper than the same part of its original's). Settings chosen on the tuning split
(``bench/placement_eval.py``).
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

from dedup.config import PlacementConfig
from dedup.verify import DIFFERING, Overlay, blurred, subject_distance

SCALES = np.round(np.arange(0.45, 0.951, 0.025), 3)  # the placed thumbnail's width over the other's
# degrees, a turned copy: every 0.75 (a search every 1.5 refined 0.75 either side of its best is a third faster
# and lost 2 of the tuning split's 58 turned copies)
ANGLES = tuple(float(a) for a in np.arange(-10.5, 10.51, 0.75) if abs(a) >= 1.5)
TURN_INNER = 0.8  # the middle of a turned copy that is picture: at 10 degrees its corners are fill
MIN_PIXELS = 20  # placed pixels needed to judge a placement


class Placed(NamedTuple):
    """A placement judged: share of differing pixels, RMS distance, the placed part's own variation, and the
    distance between the two subjects (``dedup.verify.subject_distance``)."""

    differing: float
    distance: float
    variation: float
    subject: float = 0.0  # measured for the best placement only

    @property
    def relative(self) -> float:
        return self.distance / (self.variation + 1.0)


def placement(thumb_a: np.ndarray, thumb_b: np.ndarray) -> Placed | None:
    """The best placement of either thumbnail (uint8 CIELAB) in the other, as a crop or a turned copy; None when
    neither fits (the placed one larger than the other at every scale)."""
    a, b = blurred(thumb_a), blurred(thumb_b)
    found = [_best(x, y, inner, angles, scales) for x, y in ((a, b), (b, a))
             for inner, angles, scales in ((1.0, (0.0,), SCALES), (TURN_INNER, ANGLES, (1.0,)))]
    judged = [(_judge(f), f) for f in found if f is not None]
    if not judged:
        return None
    best, fit = min(judged, key=lambda p: p[0].relative)
    return best._replace(subject=subject_distance(_laid(fit)))


def placed_copy(thumb_a: np.ndarray | None, thumb_b: np.ndarray | None, config: PlacementConfig) -> float:
    """1 - the best placement's relative distance when it passes every check of the module; 0.0 otherwise (or
    when a value holds no thumbnail: written before it was stored)."""
    if thumb_a is None or thumb_b is None:
        return 0.0
    found = placement(thumb_a, thumb_b)
    if found is None or not (found.differing <= config.max_differing and found.distance <= config.max_distance
                             and found.variation >= config.min_variation
                             and found.relative <= config.max_relative
                             and found.subject <= config.max_subject_distance):
        return 0.0
    return 1.0 - found.relative


class _Fit(NamedTuple):
    image: np.ndarray
    template: np.ndarray
    mask: np.ndarray
    at: tuple[int, int]  # the template's top-left in the image
    score: float  # mean squared difference over the mask


def _best(image: np.ndarray, other: np.ndarray, inner: float, angles: tuple, scales: tuple) -> _Fit | None:
    """The least mean squared difference placing ``other``'s middle ``inner`` part, turned by each of ``angles``
    and scaled so ``other``'s width is each of ``scales`` of ``image``'s; None when none fits."""
    middle = _middle(other, inner)
    best = None
    for angle in angles:
        for scale in scales:
            warped = _warp(middle, angle, scale * image.shape[1] / other.shape[1], image.shape)
            if warped is None:
                continue
            template, mask = warped
            masked = {} if angle == 0 else {"mask": np.repeat(mask[..., None], 3, axis=2)}  # a crop fills its box
            low, _, at, _ = cv2.minMaxLoc(cv2.matchTemplate(image, template, cv2.TM_SQDIFF, **masked))
            fit = _Fit(image, template, mask, at, low / mask.sum())
            if best is None or fit.score < best.score:
                best = fit
    return best


def _middle(thumb: np.ndarray, inner: float) -> np.ndarray:
    h, w = thumb.shape[:2]
    ih, iw = max(4, round(h * inner)), max(4, round(w * inner))
    return thumb[(h - ih) // 2:(h - ih) // 2 + ih, (w - iw) // 2:(w - iw) // 2 + iw]


def _warp(part: np.ndarray, angle: float, scale: float, within: tuple) -> tuple[np.ndarray, np.ndarray] | None:
    """(template, float32 0/1 mask: a turned template's border eroded) of ``part`` turned by ``angle`` degrees and
    scaled by ``scale`` into its bounding box; None when that box does not fit ``within`` or too few pixels remain."""
    h, w = part.shape[:2]
    cos, sin = abs(np.cos(np.radians(angle))), abs(np.sin(np.radians(angle)))
    box_w, box_h = int(np.ceil(scale * (w * cos + h * sin))), int(np.ceil(scale * (w * sin + h * cos)))
    if box_w > within[1] or box_h > within[0] or min(box_w, box_h) < 6:
        return None
    if angle == 0:  # a crop: resized, every pixel of its box is picture
        return cv2.resize(part, (box_w, box_h), interpolation=cv2.INTER_AREA), np.ones((box_h, box_w), np.float32)
    matrix = cv2.getRotationMatrix2D((w / 2 - 0.5, h / 2 - 0.5), angle, scale)
    matrix[:, 2] += (box_w / 2 - w / 2, box_h / 2 - h / 2)
    template = cv2.warpAffine(part, matrix, (box_w, box_h), flags=cv2.INTER_LINEAR)
    mask = cv2.warpAffine(np.ones((h, w), np.uint8), matrix, (box_w, box_h), flags=cv2.INTER_NEAREST)
    mask = cv2.erode(mask, np.ones((3, 3), np.uint8)).astype(np.float32)
    return None if mask.sum() < MIN_PIXELS else (template, mask)


def _laid(fit: _Fit) -> Overlay:
    """The placed template over the part of the image it lies on."""
    (x, y), (h, w) = fit.at, fit.template.shape[:2]
    return Overlay(fit.image[y:y + h, x:x + w], fit.template, fit.mask > 0)


def _judge(fit: _Fit) -> Placed:
    laid = _laid(fit)
    part = laid.b[laid.inside]
    distance = np.linalg.norm(laid.a[laid.inside] - part, axis=1)
    variation = float(np.sqrt(((part - part.mean(0)) ** 2).sum(1).mean()))
    return Placed(float((distance > DIFFERING).mean()), float(np.sqrt((distance ** 2).mean())), variation)
