"""Keypoints pairs: candidates from shared ORB keypoint keys, verified by ORB + RANSAC. Pure: no Ray.

An off-centre crop or a 3-10 degree rotation moves PDQ far (~25 of 256 bits per 1% shift), but most of its
ORB keypoints survive with descriptors 10-30 bits from the original's. With ``dedup.pdq.verify`` the score
phase stores each image's keypoints (``orb_features``, strongest first); here each of the ``points``
strongest gives ``tables`` keys, each ``bits`` bits sampled from ``BALANCED_BITS``, and keys are grouped
like MinHash band keys: two images sharing ``min_shared`` keys are a candidate, a key held by more than
``max_bucket`` images (a text corner, a white-background edge) pairs nobody. A candidate is a ``keypoints``
pair when RANSAC finds a similarity (rotation within ``max_rotation``, uniform scale, shift) with
``min_inliers`` inliers, against the other image or its mirror, reaching across one image (``min_spread``),
and the two thumbnails agree where it lays one over the other: few pixels differ (``verify.max_differing``)
and the subject, off the background, agrees (``max_subject_distance``: a look-alike product on white, or one
shape in two colours, differs in a small part of the picture, but across all of its subject). Its similarity
is the inliers' share of the smaller keypoint set.

An image with fewer than ``placement.below_keypoints`` keypoints (a pastel, a soft gradient, a flat design, a
small product on white) also gets palette keys (``palette_keys``): a candidate needs one of those only. A
candidate with one such image is first judged by placing one thumbnail in the other (``dedup.placement``;
its similarity is 1 - the placement's relative distance), then, if that places nothing, by the photometric
match of the two thumbnails' colour layouts (``dedup.layout.tone_match``: a brightness, contrast, gamma or
greyscale copy keeps the framing and moves the colours), then by RANSAC.

These functions are the kernels: ``support.dedup_reference.keypoint_pairs`` runs them over a whole run in
one process (the reference), ``dedup.keypointjoin`` as partitioned tasks.
"""

from __future__ import annotations

import cv2
import numpy as np
import polars as pl

from dedup.config import DedupConfig, KeypointConfig, ToneConfig, VerifyConfig
from dedup.layout import layout, tone, tone_match, unpack
from dedup.placement import placed_copy
from dedup.verify import agree, blurred, feature_size, fit, parse_features, plausible, thumbnail, thumbnails
from manifests import schema as col

# The 128 descriptor bits (np.unpackbits order: byte-major, most significant bit first) whose mean over the
# tuning half's keypoints (bundled photos, their edits, hard negatives) is closest to 0.5: with this
# detector's patch size ORB's other bits are 80-97% constant, and keys sampled from them collide by chance.
BALANCED_BITS = np.array([
    1, 2, 9, 10, 11, 12, 14, 17, 18, 20, 21, 22, 23, 24, 26, 31, 32, 34, 37, 38, 39, 40, 41, 42, 43, 44, 45, 48,
    56, 58, 59, 60, 61, 64, 65, 67, 68, 69, 73, 74, 75, 76, 78, 79, 83, 84, 85, 89, 92, 94, 95, 96, 97, 98, 100,
    102, 103, 106, 110, 111, 116, 117, 118, 119, 123, 124, 125, 127, 128, 129, 131, 133, 136, 138, 139, 141, 142,
    143, 145, 147, 149, 150, 151, 153, 154, 155, 156, 158, 160, 162, 163, 164, 165, 170, 171, 175, 178, 180, 182,
    183, 185, 188, 190, 193, 196, 197, 198, 199, 201, 202, 204, 207, 209, 211, 219, 223, 224, 227, 232, 235, 236,
    237, 239, 247, 248, 249, 254, 255])
SEED = 24  # picks each table's bits: fixed, so the keys of two runs (and both engines) agree
KEY_SCHEMA = {col.SAMPLE_ID: pl.String, "key": pl.UInt64, "fine": pl.UInt64}
SHARED_SCHEMA = {"a": pl.String, "b": pl.String, "palette": pl.Boolean}  # a row per key two images share
PALETTE = np.uint64(0x80 << 56)  # set in a palette key: keypoint keys hold their table number (< 33) up there
PALETTE_STEPS = np.array([16.0, 8.0, 8.0])  # CIELAB bin sides (OpenCV's 8-bit L, a, b) of a palette colour
PALETTE_COLOURS = 12  # the most covering colours kept per grid: at most 66 keys each, whatever the picture


def table_bits(config: KeypointConfig) -> np.ndarray:
    """(tables, bits + refine_bits x refine_levels) descriptor bit positions: each table's key bits, a sample
    without replacement of ``BALANCED_BITS``, then its refining bits, drawn from the balanced bits it left."""
    rng = np.random.default_rng(SEED)
    keys = np.stack([rng.choice(BALANCED_BITS, config.bits, replace=False) for _ in range(config.tables)])
    rng = np.random.default_rng(SEED + 1)
    refine = np.stack([rng.choice(np.setdiff1d(BALANCED_BITS, own), config.refine_bits * config.refine_levels,
                                  replace=False) for own in keys])
    return np.concatenate([keys, refine], axis=1)


def image_keys(value: bytes, config: KeypointConfig, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(keys, fine), distinct pairs, of one ``orb_features`` value: a key holds the table number in its top byte
    and the sampled bits below; ``fine`` holds the keypoint's refining bits, level by level from the lowest
    (``key_groups`` reads them when a key is held by too many images). Palette keys have ``fine`` 0."""
    plain, _ = parse_features(value)
    bits = np.unpackbits(plain["desc"][:config.points], axis=1)[:, positions].astype(np.uint64)  # (points, tables, n)
    weights = np.uint64(1) << np.arange(positions.shape[1], dtype=np.uint64)
    keys = (bits[..., :config.bits] * weights[:config.bits]).sum(axis=2, dtype=np.uint64).ravel()
    keys |= np.tile(np.arange(config.tables, dtype=np.uint64), len(bits)) << np.uint64(56)
    fine = (bits[..., config.bits:] * weights[:positions.shape[1] - config.bits]).sum(axis=2, dtype=np.uint64).ravel()
    thumb = thumbnail(value)
    if config.placement.enabled and len(plain) < config.placement.below_keypoints and thumb is not None:
        palette = palette_keys(thumb, config.placement.palette_share)
        keys, fine = np.concatenate([keys, palette]), np.concatenate([fine, np.zeros(len(palette), np.uint64)])
    both = np.unique(np.stack([keys, fine], axis=1), axis=0)
    return both[:, 0], both[:, 1]


def palette_keys(thumb: np.ndarray, share: float) -> np.ndarray:
    """uint64 keys of a thumbnail's palette: each pair of its colours covering ``share`` of it (the
    ``PALETTE_COLOURS`` that cover most), quantised to ``PALETTE_STEPS`` on two grids half a bin apart (a colour
    on one grid's bin edge is inside the other's). A crop or a small turn keeps most of a palette's colours; a
    recolour or another design keeps few of its pairs."""
    pixels = blurred(thumb).reshape(-1, 3)
    keys = []
    for grid in (0, 1):
        bins = np.floor(pixels / PALETTE_STEPS + grid / 2).astype(np.uint64)
        colours, counts = np.unique((bins[:, 0] << np.uint64(12)) | (bins[:, 1] << np.uint64(6)) | bins[:, 2],
                                    return_counts=True)
        covering = np.flatnonzero(counts >= share * len(pixels))
        main = np.sort(colours[covering[np.argsort(-counts[covering], kind="stable")[:PALETTE_COLOURS]]])
        first, second = np.triu_indices(len(main), 1)
        keys.append(PALETTE | np.uint64(grid << 48) | (main[first] << np.uint64(18)) | main[second])
    return np.concatenate(keys)


def key_rows(ids: pl.Series, values: list[bytes], config: KeypointConfig) -> pl.DataFrame:
    """(sample_id, key, fine) rows of a batch of ``orb_features`` values."""
    positions = table_bits(config)
    keys = [image_keys(v, config, positions) for v in values]
    counts = [len(k) for k, _ in keys]
    every = lambda i: np.concatenate([k[i] for k in keys]) if keys else np.empty(0, np.uint64)  # noqa: E731
    return pl.DataFrame({col.SAMPLE_ID: ids.gather(np.repeat(np.arange(len(keys)), counts)), "key": every(0),
                         "fine": every(1)}, schema=KEY_SCHEMA)


def key_groups(rows: pl.LazyFrame | pl.DataFrame, max_bucket: int, refine_bits: int = 0,
               refine_levels: int = 0) -> pl.DataFrame:
    """(key, a): the sorted holders of each group of images that pair over one key. A key held by 2 to
    ``max_bucket`` images is one group; a keypoint key held by more is split by its holders' next ``refine_bits``
    bits (``fine``), each part a group when it is small enough, else split again, ``refine_levels`` times, and
    what is still too large pairs nobody (a text corner held by thousands). Every (image, key, fine) row is in
    one group at most, so an image pairs at most ``max_bucket - 1`` others per row whatever the corpus: a common
    key's holders pair by longer keys instead of none. Eager: each level reads the one before."""
    rows = rows.lazy().collect() if isinstance(rows, pl.LazyFrame) else rows
    if "fine" not in rows.columns:
        rows = rows.with_columns(pl.lit(0, pl.UInt64).alias("fine"))
    rows, groups = rows.select(col.SAMPLE_ID, "key", "fine").unique(), []
    for level in range(refine_levels + 1):
        parted = rows.with_columns((pl.col("fine") & pl.lit((1 << (refine_bits * level)) - 1, pl.UInt64))
                                   .alias("part"))
        held = parted.group_by("key", "part").agg(pl.col(col.SAMPLE_ID).unique().sort().alias("a"))
        size = pl.col("a").list.len()
        groups.append(held.filter(size.is_between(2, max_bucket)).select("key", "a"))
        over = held.filter((size > max_bucket) & ~_palette()).select("key", "part")
        if over.is_empty():
            break
        rows = parted.join(over, on=["key", "part"]).drop("part")
    return pl.concat(groups)


def shared_keys(rows: pl.LazyFrame | pl.DataFrame, max_bucket: int, refine_bits: int = 0,
                refine_levels: int = 0) -> pl.LazyFrame:
    """(a, b, palette), a < b, once per group of ``key_groups`` both are in (palette: a palette key's)."""
    return group_pairs(key_groups(rows, max_bucket, refine_bits, refine_levels))


def group_pairs(groups: pl.DataFrame) -> pl.LazyFrame:
    """``shared_keys`` of ``key_groups``' groups."""
    return (groups.lazy().select("a", pl.col("a").alias("b"), _palette().alias("palette")).explode("a").explode("b")
            .filter(pl.col("a") < pl.col("b")))


def _palette() -> pl.Expr:
    """Whether a row's ``key`` is a palette key."""
    return (pl.col("key") & pl.lit(int(PALETTE), pl.UInt64)) > 0


def candidates(shared: pl.LazyFrame, min_shared: int, most: int | None = None) -> pl.LazyFrame:
    """Pairs sharing at least ``min_shared`` keys, or one palette key, sorted; with ``most``, those among the
    ``most`` of their ``a`` or of their ``b`` that share the most keys (``among_most``): at most 2 x ``most``
    pairs per image to verify on average, whatever the corpus, and a copy keeps the pair with its original
    even when the original, as ``a``, has many candidates."""
    found = counted(shared, min_shared)
    if most is not None:
        found = found.filter(among_most("a", most) | among_most("b", most))
    return found.select("a", "b").sort("a", "b")


def counted(shared: pl.LazyFrame, min_shared: int) -> pl.LazyFrame:
    """(a, b, len): pairs sharing at least ``min_shared`` keys (``len`` of them), or one palette key."""
    return (shared.group_by("a", "b").agg(pl.len(), pl.col("palette").any())
            .filter((pl.col("len") >= min_shared) | pl.col("palette")).select("a", "b", "len"))


def among_most(side: str, most: int) -> pl.Expr:
    """Whether each pair (a, b, len) is among the ``most`` pairs of its ``side`` image that share the most keys,
    ties to the smaller other image. Needs every pair of each ``side`` image in the frame."""
    other = "b" if side == "a" else "a"
    order = pl.struct((-pl.col("len").cast(pl.Int64)).alias("n"), pl.col(other))
    return order.rank("ordinal").over(side) <= most


def copy_score(a: bytes, b: bytes, config: VerifyConfig, tone_config: ToneConfig | None = None) -> float:
    """How surely ``b`` is a copy of ``a``, 0.0 when it is not. A pair with fewer than
    ``placement.below_keypoints`` keypoints on one side is first placed (``dedup.placement.placed_copy``: 1 - the
    placement's relative distance), then, given ``tone_config`` (``placement_tone``), matched photometrically
    (``toned_copy``). Otherwise, or when neither finds it, the inliers' share of the smaller keypoint set for a
    similarity with at least ``keypoints.min_inliers`` inliers whose thumbnails agree (a against b, else a against
    b's mirror)."""
    plain_a, _ = parse_features(a)
    plain_b, mirror_b = parse_features(b)
    thumb_a, thumbs_b = thumbnails(a)[0], thumbnails(b)
    keys = config.keypoints
    fewest = min(len(plain_a), len(plain_b))
    if keys.placement.enabled and fewest < keys.placement.below_keypoints:
        placed = placed_copy(thumb_a, thumbs_b[0], keys.placement)
        if placed:
            return placed
        toned = toned_copy(thumb_a, thumbs_b[0], tone_config) if tone_config is not None else 0.0
        if toned:
            return toned
    if fewest < keys.min_inliers:
        return 0.0
    sizes = (feature_size(a), feature_size(b))
    for other, thumb_b in zip((plain_b, mirror_b), thumbs_b):
        found = _inliers(plain_a, other, sizes, (thumb_a, thumb_b), config)
        if found:
            return min(1.0, found / max(1, fewest))
    return 0.0


def placement_tone(config: DedupConfig) -> ToneConfig | None:
    """The photometric match ``copy_score`` tries on keypoint-poor pairs (``placement.tone``), None when off."""
    on = config.pdq.verify.keypoints.placement.tone and config.layout.tone.enabled
    return config.layout.tone if on else None


def toned_copy(thumb_a: np.ndarray | None, thumb_b: np.ndarray | None, config: ToneConfig) -> float:
    """1 - half the share of its limits the photometric match (``dedup.layout.tone_match``) of the two
    thumbnails' colour layouts uses; 0.0 when they do not match, or a value holds no thumbnail. The layouts are
    ``dedup.layout.layout`` of each CIELAB thumbnail turned back into sRGB (a 48-pixel thumbnail averaged down
    to 16 x 16: the layout of its image within rounding)."""
    if thumb_a is None or thumb_b is None:
        return 0.0
    layouts = np.stack([layout(cv2.cvtColor(t, cv2.COLOR_LAB2RGB)).reshape(-1) for t in (thumb_a, thumb_b)])
    tones = tone(unpack(layouts))
    used = float(tone_match(tones.take(np.array([0])), tones.take(np.array([1])), config)[0])
    return 1.0 - used / 2 if np.isfinite(used) else 0.0


def _inliers(a: np.ndarray, b: np.ndarray, sizes: tuple, thumbs: tuple, config: VerifyConfig) -> int:
    keys = config.keypoints
    transform, in_a, in_b = fit(a, b, config.ratio, config.reprojection_px, keys.min_inliers, similarity=True)
    if len(in_a) < keys.min_inliers or not plausible(transform) or not small_turn(transform, keys):
        return 0
    if None not in sizes and max(spread(a["xy"][in_a], sizes[0]), spread(b["xy"][in_b], sizes[1])) < keys.min_spread:
        return 0
    return len(in_a) if agree(*thumbs, transform, sizes, config.max_differing, keys.max_subject_distance) else 0


def spread(xy: np.ndarray, size: tuple[int, int]) -> float:
    """How far inliers reach across an image: the 10th-90th percentile range of their x and of their y,
    as a share of its width and height, the smaller of the two. A crop's inliers span the crop, a turned
    copy's the picture; a shared banner, caption or logo is a strip or a patch."""
    low, high = np.percentile(xy, [10, 90], axis=0)
    return float(((high - low) / np.maximum(np.array(size, dtype=np.float64), 1)).min())


def small_turn(transform: np.ndarray, config: KeypointConfig) -> bool:
    """Rotation within ``max_rotation`` degrees: a crop, rescale or small turn (90-degree turns and flips are
    PDQ's). The transform is a fitted similarity, so it cannot squash; on the tuning half, false candidates
    with 10+ inliers under a homography turned 90-140 degrees, true pairs within 17."""
    affine = transform[:2, :2] / transform[2, 2]
    return abs(np.degrees(np.arctan2(affine[1, 0] - affine[0, 1], affine[0, 0] + affine[1, 1]))) <= config.max_rotation
