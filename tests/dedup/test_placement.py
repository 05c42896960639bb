"""Copies of keypoint-poor images (dedup.placement, palette keys in dedup.keypoints): a pastel landscape's
off-centre crop and turned copy pair with it; its recolour, another landscape and flat fields do not."""

from __future__ import annotations

import io
import random

import cv2
import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageEnhance

from dedup import keypoints
from dedup.config import PdqConfig, PlacementConfig, ToneConfig
from dedup.placement import placed_copy, placement
from dedup.verify import _THUMBED, lab_thumbnail, orb_features, parse_features
from support.dedup_reference import keypoint_pairs
from support.evalset import pastel_landscape, recolour
from tests.dedup.test_keypoints import CONFIG, found, scored


def landscape(seed: int) -> Image.Image:
    return pastel_landscape(random.Random(seed), (320, 240))


def thumb(img: Image.Image) -> np.ndarray:
    return lab_thumbnail(np.asarray(img.convert("RGB")))


@pytest.fixture(scope="module")
def family() -> dict[str, Image.Image]:
    original = landscape(3)
    w, h = original.size
    return {"original": original,
            "crop": original.crop((0, h - round(0.7 * h), round(0.7 * w), h)),  # bottom-left 70%, off centre
            "turned": original.rotate(7, resample=Image.Resampling.BICUBIC),
            "recolour": recolour(original, 0.4),
            "other": landscape(11)}


def test_a_pastel_crop_and_turn_pair_with_their_original_and_look_alikes_do_not(tmp_path, family):
    """End to end through the reference detector: ORB finds too few keypoints for RANSAC in any of these, so
    the candidates come from palette keys and are judged by placement. The recolour shares the layout but not
    the colours; the other landscape shares the palette style but not the layout."""
    names = list(family)
    assert all(len(parse_features(orb_features(np.asarray(img), 300))[0]) < CONFIG.verify.keypoints.min_inliers
               for img in family.values())
    files, index = scored(tmp_path, list(family.values()))
    pairs = {tuple(names[int(i)] for i in p) for p in found(keypoint_pairs(CONFIG, files, index))}
    copies = {("original", "crop"), ("original", "turned")}
    assert copies <= pairs <= copies | {("crop", "turned")}  # the crop of a turned copy may place too
    off = PdqConfig(enabled=True, verify={"enabled": True,
                                          "keypoints": {"enabled": True, "placement": {"enabled": False}}})
    assert found(keypoint_pairs(off, files, index)) == []


def test_a_flat_part_places_nothing():
    """A flat field fits inside anything of its colour: its placement has no variation to mean something."""
    field = np.full((36, 48, 3), (200, 140, 120), np.uint8)
    framed = field.copy()
    framed[5:12, 30:40] = (90, 128, 128)
    found = placement(field, framed)
    assert found is not None and found.distance < 2 and found.variation < 1
    assert placed_copy(field, framed, PlacementConfig()) == 0.0


def test_placement_finds_the_crop_where_it_lies(family):
    """The crop's best placement agrees pixel for pixel; the same crop recoloured does not."""
    original, crop = thumb(family["original"]), thumb(family["crop"])
    found = placement(original, crop)
    assert found.differing <= 0.05 and found.relative < 0.3
    assert placed_copy(original, crop, PlacementConfig()) > 0.7
    assert placed_copy(original, thumb(recolour(family["crop"], 0.4)), PlacementConfig()) == 0.0


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), fraction=st.floats(0.55, 0.9), corner=st.sampled_from(["tl", "tr", "bl", "br"]))
def test_a_crop_keeps_a_palette_key(seed, fraction, corner):
    """Palette keys are pairs of a thumbnail's main colours on two offset grids: a crop of a landscape at any
    corner keeps at least one of its original's keys, so it is always a candidate."""
    original = landscape(seed)
    w, h = original.size
    cw, ch = round(w * fraction), round(h * fraction)
    x = 0 if corner[1] == "l" else w - cw
    y = 0 if corner[0] == "t" else h - ch
    share = PlacementConfig().palette_share
    keys_of = lambda img: set(keypoints.palette_keys(thumb(img), share).tolist())  # noqa: E731
    assert keys_of(original) & keys_of(original.crop((x, y, x + cw, y + ch)))


def test_one_palette_key_makes_a_candidate_five_keypoint_keys_do_not():
    """Candidates: min_shared keypoint keys, or a single palette key (palette keys are pairs of colours)."""
    palette = int(keypoints.PALETTE) | 12345
    rows = pl.DataFrame({"sample_id": ["a", "b"] * 6 + ["c", "d"] * 5,
                         "key": [palette] * 2 + [k for k in range(1, 6) for _ in range(2)] + [k for k in range(6, 11)
                                                                                          for _ in range(2)]},
                        schema={"sample_id": pl.String, "key": pl.UInt64})
    found_pairs = keypoints.candidates(keypoints.shared_keys(rows.lazy(), 64), 6).collect()
    assert found_pairs.rows() == [("a", "b")]


def test_values_without_a_thumbnail_get_no_palette_keys_and_place_nothing():
    """A value written before the thumbnail was stored: keypoint keys only, and no placement."""
    value = orb_features(cv2.GaussianBlur(np.asarray(landscape(5)), (0, 0), 3), 300)
    width, height = value[8], value[9]
    header = np.frombuffer(value[:4], dtype=np.uint32)[0] & ~np.uint32(_THUMBED)
    older = header.tobytes() + value[4:8] + value[10 + 3 * width * height:]
    config = CONFIG.verify.keypoints
    positions = keypoints.table_bits(config)
    assert (keypoints.image_keys(value, config, positions)[0] & keypoints.PALETTE).any()
    assert not (keypoints.image_keys(older, config, positions)[0] & keypoints.PALETTE).any()
    assert keypoints.copy_score(older, older, CONFIG.verify) == 0.0 < keypoints.copy_score(value, value, CONFIG.verify)


def test_a_smooth_image_brightened_until_it_clips_pairs_by_its_tone_and_its_recolours_do_not():
    """The colour wheel (PDQ quality 100, no ORB keypoint) brightened x1.35: its centre clips to white, so PDQ
    moves 70 bits and placement finds its colours far apart. The tone of its layout still matches, as does a
    contrast or darkened copy's; the wheel with its hues turned, or turned 30 degrees, does not. Without the
    tone check the brightened copy is refused: the test can fail."""
    from pipelines.cli.corpus import jpeg, load_photos

    wheel = load_photos()["color"][0].convert("RGB")
    wheel.thumbnail((256, 256))

    def value(img: Image.Image) -> bytes:
        return orb_features(np.asarray(Image.open(io.BytesIO(jpeg(img, 90))).convert("RGB")), CONFIG.verify.features)

    original, tone = value(wheel), ToneConfig()
    assert len(parse_features(original)[0]) < CONFIG.verify.keypoints.min_inliers
    copies = [value(ImageEnhance.Brightness(wheel).enhance(1.35)), value(ImageEnhance.Brightness(wheel).enhance(0.7)),
              value(ImageEnhance.Contrast(wheel).enhance(0.6))]
    assert all(keypoints.copy_score(original, c, CONFIG.verify, tone) > 0 for c in copies)
    assert keypoints.copy_score(original, copies[0], CONFIG.verify) == 0.0
    others = [value(recolour(wheel, turn)) for turn in (1 / 12, 1 / 6, 0.5)] + [value(wheel.rotate(30))]
    assert all(keypoints.copy_score(original, o, CONFIG.verify, tone) == 0.0 for o in others)
