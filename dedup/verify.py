"""Geometric verification of a candidate image pair: ORB keypoints + ratio test + RANSAC homography.

Two look-alike pictures (two product shots on white, two sunsets) can share a perceptual hash; a
copy shares a geometric transform between many keypoints. The score phase stores each image's ORB
keypoints (``orb_features``: of the content region and of its mirror, since ORB is rotation- but not
reflection-invariant) and a small CIELAB thumbnail of the region; the dedup phase counts the inliers of the
best homography between two images and lays one thumbnail over the other with it.
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

from dedup.config import VerifyConfig

_KEYPOINT = np.dtype([("xy", "<f4", 2), ("desc", "u1", 32)])  # 40 bytes per keypoint
# with its colour: the mean CIELAB (OpenCV's 8-bit scale) of the 5x5 pixels around it, 43 bytes
_KEYPOINT_LAB = np.dtype([("xy", "<f4", 2), ("desc", "u1", 32), ("lab", "u1", 3)])
_COLOURED = 1 << 31  # set in the count of a value whose keypoints carry their colour
_THUMBED = 1 << 30  # set in the count of a value that holds a thumbnail after its size
THUMB_SIDE = 48  # the thumbnail's long side in pixels: 48 x 36 x 3 bytes for a 4:3 picture
DIFFERING = 16.0  # CIELAB distance (OpenCV's 8-bit scale) at which an overlaid thumbnail pixel differs
MIN_OVERLAP = 20  # overlaid thumbnail pixels needed to compare (a 50% crop overlays ~430)
_MIN_SIDE = 64  # ORB's 31-px patches need room: small content is upscaled to this short side first


def _orb(grey: np.ndarray, lab: np.ndarray, features: int) -> np.ndarray:
    detector = cv2.ORB_create(nfeatures=features, edgeThreshold=15, patchSize=15)
    keypoints, descriptors = detector.detectAndCompute(grey, None)
    out = np.zeros(len(keypoints), dtype=_KEYPOINT_LAB)
    if descriptors is not None and len(keypoints):
        out["xy"] = np.array([k.pt for k in keypoints], dtype=np.float32)
        out["desc"] = descriptors
        x = np.clip(np.rint(out["xy"][:, 0]).astype(int), 0, lab.shape[1] - 1)
        y = np.clip(np.rint(out["xy"][:, 1]).astype(int), 0, lab.shape[0] - 1)
        out["lab"] = lab[y, x]
        # strongest first: dedup.keypoints keys the first few (matching does not depend on the order)
        out = out[np.argsort([-k.response for k in keypoints], kind="stable")]
    return out


def lab_thumbnail(rgb: np.ndarray) -> np.ndarray:
    """(h, w, 3) uint8 CIELAB (OpenCV's 8-bit scale) of ``rgb`` with its long side ``THUMB_SIDE`` pixels."""
    scale = THUMB_SIDE / max(rgb.shape[:2])
    size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
    return cv2.cvtColor(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2LAB)


def orb_features(rgb: np.ndarray, features: int) -> bytes:
    """The ``orb_features`` value: uint32 count (with ``_COLOURED`` and ``_THUMBED`` set), uint16 width and
    height, uint8 thumbnail width and height and the thumbnail, then the keypoints of the image, then of its
    mirror, each with its colour."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    thumb = lab_thumbnail(rgb)
    grey, lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
    scale = max(1.0, _MIN_SIDE / min(grey.shape))
    if scale > 1:
        grey = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        lab = cv2.resize(lab, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    lab = cv2.blur(lab, (5, 5))
    plain = _orb(grey, lab, features)
    mirror = _orb(np.ascontiguousarray(grey[:, ::-1]), np.ascontiguousarray(lab[:, ::-1]), features)
    size = np.array(grey.shape[::-1], dtype=np.uint16).tobytes()  # width, height in keypoint pixels
    thumbed = np.array(thumb.shape[1::-1], dtype=np.uint8).tobytes() + thumb.tobytes()
    return (np.uint32(len(plain) | _COLOURED | _THUMBED).tobytes() + size + thumbed + plain.tobytes()
            + mirror.tobytes())


def _header(value: bytes) -> int:
    """The uint32 an ``orb_features`` value starts with: the keypoint count and the ``_COLOURED``/``_THUMBED`` bits."""
    return int(np.frombuffer(value[:4], dtype=np.uint32)[0])


def _thumb_end(value: bytes) -> int:
    """Where the keypoints start in a coloured value: after the size and, in a thumbed one, the thumbnail."""
    if not _header(value) & _THUMBED:
        return 8
    return 10 + 3 * value[8] * value[9]


def parse_features(value: bytes) -> tuple[np.ndarray, np.ndarray]:
    """``orb_features`` -> (keypoints of the image, keypoints of its mirror); values written before
    keypoints carried their colour parse too, without the ``lab`` field."""
    header = _header(value)
    coloured = bool(header & _COLOURED)
    points = np.frombuffer(value[_thumb_end(value):] if coloured else value[4:],
                           dtype=_KEYPOINT_LAB if coloured else _KEYPOINT)
    count = header & ~(_COLOURED | _THUMBED)
    return points[:count], points[count:]


def thumbnail(value: bytes) -> np.ndarray | None:
    """The CIELAB thumbnail an ``orb_features`` value holds; None for values written before it was stored."""
    if not _header(value) & _THUMBED:
        return None
    width, height = value[8], value[9]
    return np.frombuffer(value[10:_thumb_end(value)], dtype=np.uint8).reshape(height, width, 3)


def feature_size(value: bytes) -> tuple[int, int] | None:
    """(width, height) of the image the keypoints were found in; None for values written before it was stored."""
    if not _header(value) & _COLOURED:
        return None
    width, height = np.frombuffer(value[4:8], dtype=np.uint16)
    return int(width), int(height)


def fit(a: np.ndarray, b: np.ndarray, ratio: float, reprojection_px: float, min_inliers: int,
        similarity: bool = False) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """(RANSAC transform as a 3 x 3 matrix, indices of its inliers in ``a``, and in ``b``) among the ratio-test
    matches of keypoints ``a`` and ``b``; no transform and no inliers when too few matches could reach
    ``min_inliers``. A homography, or with ``similarity`` a rotation, uniform scale and shift: a crop or a turned
    copy is one, and its two-point samples find it among few true matches where a homography's four-point
    samples, free to squash and tilt, fit the wrong ones."""
    none = (None, np.empty(0, np.int64), np.empty(0, np.int64))
    if len(a) < 4 or len(b) < 4:
        return none
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(np.ascontiguousarray(a["desc"]),
                                                     np.ascontiguousarray(b["desc"]), k=2)
    good = [m[0] for m in pairs if len(m) == 2 and m[0].distance < ratio * m[1].distance]
    if len(good) < max(4, min_inliers):  # too few matches for the transform to reach min_inliers
        return none
    query, train = np.array([m.queryIdx for m in good]), np.array([m.trainIdx for m in good])
    source, target = a["xy"][query].reshape(-1, 1, 2), b["xy"][train].reshape(-1, 1, 2)
    if similarity:
        affine, mask = cv2.estimateAffinePartial2D(source, target, method=cv2.RANSAC,
                                                   ransacReprojThreshold=reprojection_px, confidence=0.995)
        transform = None if affine is None else np.vstack([affine, [0.0, 0.0, 1.0]])
    else:
        transform, mask = cv2.findHomography(source, target, cv2.RANSAC, reprojection_px)
    if transform is None or mask is None:
        return none
    kept = mask.ravel().astype(bool)
    return transform, query[kept], train[kept]


def plausible(homography: np.ndarray) -> bool:
    """A copy's transform keeps orientation and scales area by 1/16..16; stripes and text otherwise
    "match" through degenerate transforms that squash the picture onto a line."""
    if homography is None or abs(homography[2, 2]) < 1e-9:
        return False
    affine = homography[:2, :2] / homography[2, 2]
    det = float(np.linalg.det(affine))
    return 1 / 16 <= det <= 16 and float(np.abs(homography[2, :2]).max()) < 0.01


def pair_inliers(a: bytes, b: bytes, config: VerifyConfig) -> int:
    """RANSAC homography inliers of the better of: a against b, a against b's mirror (a flipped copy); a
    transform under which the thumbnails differ in more than ``max_differing`` of their overlap has none."""
    plain_a, _ = parse_features(a)
    thumb_a, sizes = thumbnails(a)[0], (feature_size(a), feature_size(b))
    best = 0
    for other, thumb_b in zip(parse_features(b), thumbnails(b)):
        homography, inlying, _ = fit(plain_a, other, config.ratio, config.reprojection_px, config.min_inliers)
        found = len(inlying) if plausible(homography) else 0
        if found and not agree(thumb_a, thumb_b, homography, sizes, config.max_differing):
            found = 0
        best = max(best, found)
        if best >= config.min_inliers:
            break
    return best


def thumbnails(value: bytes) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The value's thumbnail and its mirror image (the mirror's keypoints are found in); None, None for values
    written before it was stored."""
    thumb = thumbnail(value)
    return (None, None) if thumb is None else (thumb, np.ascontiguousarray(thumb[:, ::-1]))


def agree(thumb_a: np.ndarray | None, thumb_b: np.ndarray | None, homography: np.ndarray, sizes: tuple,
          max_differing: float, max_subject_distance: float | None = None) -> bool:
    """Whether the thumbnails, laid one over the other (``overlay``), agree: at most ``max_differing`` of their
    overlap differs and, given ``max_subject_distance``, their subjects lie within it (``subject_distance``). A copy
    differs at its edges only; two products of one shape in near colours, or two slides sharing a line of
    text, differ across the part that makes them two images. True when a value holds no thumbnail or size
    (written before they were stored: nothing to lay); False when too little overlaps."""
    if thumb_a is None or thumb_b is None or None in sizes:
        return True
    laid = overlay(thumb_a, thumb_b, homography, sizes)
    return (laid is not None and laid.differing() <= max_differing
            and (max_subject_distance is None or subject_distance(laid) <= max_subject_distance))


class Overlay(NamedTuple):
    """Two thumbnails in ``a``'s pixels, blurred to one sharpness: ``a``, ``b`` laid over it, where ``b`` lies."""

    a: np.ndarray  # (h, w, 3) float32 CIELAB
    b: np.ndarray  # (h, w, 3) float32 CIELAB, meaningful where ``inside``
    inside: np.ndarray  # (h, w) bool

    def differing(self) -> float:
        """The share of the overlap whose colours differ by more than ``DIFFERING``."""
        return float((np.linalg.norm(self.a[self.inside] - self.b[self.inside], axis=1) > DIFFERING).mean())


def overlay(thumb_a: np.ndarray, thumb_b: np.ndarray, homography: np.ndarray, sizes: tuple) -> Overlay | None:
    """``thumb_b`` laid over ``thumb_a`` by ``homography`` (keypoint pixels of a to those of b, whose images are
    ``sizes``); None when fewer than ``MIN_OVERLAP`` pixels overlap. Each is blurred over the part the other
    shows, and the finer of the two (a crop's thumbnail has more pixels per picture than its original's) more,
    so both show the picture equally sharp: a 60% crop compared at the original's blur shows edges the
    original's thumbnail has lost, and a turned copy's black corners, blurred, darken its border."""
    to_b = _to_thumb(sizes[1], thumb_b.shape) @ homography @ np.linalg.inv(_to_thumb(sizes[0], thumb_a.shape))
    finer = float(np.sqrt(abs(np.linalg.det(to_b[:2, :2] / to_b[2, 2]))))  # b's pixels per pixel of a
    size_a, size_b = thumb_a.shape[1::-1], thumb_b.shape[1::-1]
    under_b = cv2.warpPerspective(np.ones(thumb_b.shape[:2], np.uint8), to_b, size_a,
                                  flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP)
    under_a = cv2.warpPerspective(np.ones(thumb_a.shape[:2], np.uint8), to_b, size_b, flags=cv2.INTER_NEAREST)
    laid = cv2.warpPerspective(_blurred_on(thumb_b, under_a, finer), to_b, size_a,
                               flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    inside = cv2.erode(under_b, np.ones((3, 3), np.uint8)) > 0  # interpolated border pixels left out
    if inside.sum() < MIN_OVERLAP:
        return None
    return Overlay(_blurred_on(thumb_a, under_b, 1 / finer), laid, inside)


def blurred(thumb: np.ndarray) -> np.ndarray:
    """A thumbnail as float32, blurred by sigma 1: thumbnails are compared blurred, since a crop's thumbnail is
    sharper than the same part of its original's."""
    return cv2.GaussianBlur(thumb.astype(np.float32), (0, 0), 1.0)


def _blurred_on(thumb: np.ndarray, footprint: np.ndarray, finer: float) -> np.ndarray:
    """``thumb`` blurred like ``blurred`` over its ``footprint`` only (the part the other thumbnail shows: a turned
    copy's fill corners, or the picture beyond a crop, do not bleed into it), and more when it is ``finer``
    times as fine as the other, to the other's sharpness (a thumbnail pixel is a box of sigma 1/sqrt(12))."""
    box = 1 / 12
    sigma = float(np.sqrt(max(1.0, finer) ** 2 * (1 + box) - box))
    weight = cv2.GaussianBlur(footprint.astype(np.float32), (0, 0), sigma, borderType=cv2.BORDER_CONSTANT)
    total = cv2.GaussianBlur(thumb.astype(np.float32) * footprint[..., None], (0, 0), sigma,
                             borderType=cv2.BORDER_CONSTANT)
    return total / np.maximum(weight, 1e-6)[..., None]


def subject_distance(laid: Overlay) -> float:
    """How far apart the subjects of two laid thumbnails are: the median, over the overlap's pixels off its
    background (the commonest colour of ``a``, where both lie within ``DIFFERING`` of it), of each pixel's CIELAB
    distance to the nearest of the other's 3 x 3 around it (a pixel of misregistration forgiven, both ways);
    0.0 when fewer than ``MIN_OVERLAP`` pixels are off the background. A copy's subject agrees; a look-alike
    product in a near shade, or a slide sharing a title, differs across its subject, however small it is."""
    a, b = laid.a, np.where(laid.inside[..., None], laid.b, laid.a)
    nearest = np.maximum(_nearest(a, b), _nearest(b, a))[laid.inside]
    pixels, other = laid.a[laid.inside], laid.b[laid.inside]
    bins = np.floor(pixels / DIFFERING).astype(np.int64) @ np.array([1 << 16, 1 << 8, 1])
    codes, counts = np.unique(bins, return_counts=True)
    background = pixels[bins == codes[counts.argmax()]].mean(axis=0)
    subject = ((np.linalg.norm(pixels - background, axis=1) >= DIFFERING)
               | (np.linalg.norm(other - background, axis=1) >= DIFFERING))
    return float(np.median(nearest[subject])) if subject.sum() >= MIN_OVERLAP else 0.0


def _nearest(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(h, w): each pixel of ``a``'s CIELAB distance to the nearest pixel of ``b`` within one pixel of it."""
    padded = np.pad(b, ((1, 1), (1, 1), (0, 0)), mode="edge")
    height, width = a.shape[:2]
    return np.min([np.linalg.norm(a - padded[1 + dy:1 + dy + height, 1 + dx:1 + dx + width], axis=2)
                   for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=0)


def _to_thumb(size: tuple[int, int], shape: tuple) -> np.ndarray:
    """Keypoint pixel coordinates of an image of ``size`` (width, height) -> those of its thumbnail (pixel
    centres at whole numbers in both)."""
    sx, sy = shape[1] / size[0], shape[0] / size[1]
    return np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]])
