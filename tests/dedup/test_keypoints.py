"""Keypoints pairs (dedup.keypoints): off-centre crops and small rotations found, look-alikes refused."""

from __future__ import annotations

import random

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from dedup import keypoints
from dedup.artefacts import SampleIndex
from dedup.config import PdqConfig, SearchConfig
from dedup.detectors import pdq_pairs
from support.dedup_reference import keypoint_pairs
from dedup.pdq import PdqHasher
from dedup.placement import placed_copy
from dedup.verify import (_THUMBED, feature_size, orb_features, overlay, parse_features,
                          subject_distance, thumbnail)
from manifests import schema as col
from manifests.io import write_parquet
from pipelines.cli.corpus import load_photos, photo_dirs, png
from support.evalset import objects_on_white, product_white, recolour, similar_scenes, text_slide

CONFIG = PdqConfig(enabled=True, verify={"enabled": True, "keypoints": {"enabled": True}})


def scored(tmp_path, images: list[Image.Image]) -> tuple[list, SampleIndex]:
    """The images' PDQ codes and ORB keypoints as a score file, with the run's sample index."""
    ids = [f"{i:04d}" for i in range(len(images))]
    batch = PdqHasher(CONFIG)({col.SAMPLE_ID: np.array(ids, dtype=object),
                               col.IMAGE: np.array([png(i) for i in images], dtype=object)})
    path = tmp_path / "scores.parquet"
    write_parquet(pa.table({c: batch[c].tolist() for c in (col.SAMPLE_ID, col.PDQ_QUALITY, col.PDQ_CODES,
                                                             col.ORB_FEATURES)}), path)
    return [path], SampleIndex.of(pl.Series(ids))


def found(pairs: pl.DataFrame) -> list[tuple[str, str]]:
    return sorted(pairs.select("sample_a", "sample_b").rows())


@pytest.fixture(scope="module")
def photos() -> dict[str, Image.Image]:
    out = {}
    for name in ("astronaut", "coffee", "brick"):
        img = load_photos()[name][0].copy()
        img.thumbnail((400, 400))
        out[name] = img
    return out


def test_an_off_centre_crop_pairs_with_its_original_and_look_alikes_do_not(tmp_path, photos):
    """A 70% crop at the top-right corner moves PDQ far beyond its threshold (no pdq pair even with the
    centre-crop regions); its keypoints still pair it with its original. Two far-apart crops of one brick
    wall, and one bottle shape on white in two colours, share keys with each other but are not copies."""
    original = photos["coffee"]
    w, h = original.size
    crop = original.crop((w - round(0.7 * w), 0, w, round(0.7 * h)))
    scenes = similar_scenes({"brick": photos["brick"]})
    bottles = objects_on_white(photo_dirs())
    images = [original, crop, scenes["scene_brick_a"], scenes["scene_brick_b"],
              bottles["object_bottle_3"], bottles["object_bottle_5"]]
    files, index = scored(tmp_path, images)
    plain = CONFIG.model_copy(update={"verify": CONFIG.verify.model_copy(update={"enabled": False})})
    assert ("0000", "0001") not in found(pdq_pairs(plain, SearchConfig(use_gpu=False), files, index))
    pairs = keypoint_pairs(CONFIG, files, index)
    assert found(pairs) == [("0000", "0001")]
    assert pairs["detector"].to_list() == ["keypoints"] and 0 < pairs["similarity"][0] <= 1


def test_a_seven_degree_rotation_pairs_with_its_original(tmp_path, photos):
    original = photos["astronaut"]
    rotated = original.rotate(7, resample=Image.Resampling.BICUBIC)
    files, index = scored(tmp_path, [original, rotated, photos["coffee"]])
    assert found(keypoint_pairs(CONFIG, files, index)) == [("0000", "0001")]


def test_a_transform_turned_too_far_is_not_a_copy():
    config = CONFIG.verify.keypoints
    turn = lambda degrees: np.array([[np.cos(np.radians(degrees)), -np.sin(np.radians(degrees)), 5],
                                     [np.sin(np.radians(degrees)), np.cos(np.radians(degrees)), 7], [0, 0, 1]])
    assert keypoints.small_turn(turn(7), config) and keypoints.small_turn(turn(-10) * 2, config)
    assert not keypoints.small_turn(turn(45), config) and not keypoints.small_turn(turn(180), config)



key_sets = st.lists(st.sets(st.integers(0, 12), max_size=8), min_size=2, max_size=8)


@settings(max_examples=60, deadline=None)
@given(key_sets, st.integers(1, 3), st.integers(2, 5), st.integers(1, 4))
def test_candidates_are_the_pairs_sharing_enough_uncapped_keys_whatever_the_key_buckets(sets, min_shared,
                                                                                       max_bucket, parts):
    """Brute force: keys held by 2..max_bucket images count; pairs sharing min_shared of them are
    candidates. Cutting the rows into key buckets (as the partitioned engine does) gives the same."""
    ids = [f"{i:02d}" for i in range(len(sets))]
    rows = pl.DataFrame({col.SAMPLE_ID: [i for i, s in zip(ids, sets) for _ in s],
                         "key": [k for s in sets for k in sorted(s)]},
                        schema={col.SAMPLE_ID: pl.String, "key": pl.UInt64})
    holders = {k: sum(k in s for s in sets) for k in set().union(*sets)}
    counted = {k for k, n in holders.items() if 2 <= n <= max_bucket}
    want = [(ids[a], ids[b]) for a in range(len(sets)) for b in range(a + 1, len(sets))
            if len(sets[a] & sets[b] & counted) >= min_shared]
    whole = keypoints.candidates(keypoints.shared_keys(rows.lazy(), max_bucket), min_shared).collect()
    assert whole.rows() == want
    shared = pl.concat([keypoints.shared_keys(rows.filter(pl.col("key") % parts == p).lazy(), max_bucket).collect()
                        for p in range(parts)])
    assert keypoints.candidates(shared.lazy(), min_shared).collect().rows() == want


@settings(max_examples=60, deadline=None)
@given(key_sets, st.integers(1, 3), st.integers(1, 3))
def test_each_image_keeps_its_candidates_sharing_the_most_keys(sets, min_shared, most):
    """Brute force: with a cap, a pair stays when it is among the ``most`` sharing the most keys of its a (over
    a's pairs with larger images) or of its b (over b's pairs with smaller ones), ties to the smaller other
    image: at most 2 x ``most`` pairs per image on average, and a copy whose original has many candidates keeps
    its own."""
    ids = [f"{i:02d}" for i in range(len(sets))]
    rows = pl.DataFrame({col.SAMPLE_ID: [i for i, s in zip(ids, sets) for _ in s],
                         "key": [k for s in sets for k in sorted(s)]},
                        schema={col.SAMPLE_ID: pl.String, "key": pl.UInt64})
    holders = {k: sum(k in s for s in sets) for k in set().union(*sets)}
    counted = {k for k, n in holders.items() if n >= 2}
    n = {(a, b): len(sets[a] & sets[b] & counted) for a in range(len(sets)) for b in range(a + 1, len(sets))}
    found = {p for p, shared in n.items() if shared >= min_shared}
    top = lambda side, x: sorted((-n[p], p[1 - side]) for p in found if p[side] == x)[:most]  # noqa: E731
    want = sorted((ids[a], ids[b]) for a, b in found
                  if (-n[a, b], b) in top(0, a) or (-n[a, b], a) in top(1, b))
    shared = keypoints.shared_keys(rows.lazy(), len(sets))
    assert keypoints.candidates(shared, min_shared, most).collect().rows() == want
    assert len(want) <= 2 * most * len(sets)


def test_image_keys_are_distinct_and_tagged_by_table(photos):
    config = CONFIG.verify.keypoints
    value = orb_features(np.asarray(photos["astronaut"]), CONFIG.verify.features)
    positions = keypoints.table_bits(config)
    keys, fine = keypoints.image_keys(value, config, positions)
    assert len(set(zip(keys.tolist(), fine.tolist()))) == len(keys) <= config.points * config.tables
    assert set((keys >> np.uint64(56)).tolist()) == set(range(config.tables))
    assert (keys & np.uint64((1 << 56) - 1)).max() < 1 << config.bits
    assert fine.max() < 1 << (config.refine_bits * config.refine_levels)
    for own in positions:  # a table's refining bits are balanced bits its key does not use
        key, refine = own[:config.bits], own[config.bits:]
        assert not set(key) & set(refine) and set(own) <= set(keypoints.BALANCED_BITS.tolist())


def brute_groups(rows: list[tuple[str, int, int]], max_bucket: int, bits: int, levels: int) -> list[tuple]:
    """The holders of each group, by the definition: a key's holders are a group if 2..max_bucket; if more, the
    rows are split by the next ``bits`` of fine and each part judged the same way, ``levels`` times."""
    out = []

    def judge(part: list[tuple[str, int, int]], level: int) -> None:
        holders = sorted({r[0] for r in part})
        if 2 <= len(holders) <= max_bucket:
            out.append((part[0][1], tuple(holders)))
        elif len(holders) > max_bucket and level < levels:
            mask = (1 << (bits * (level + 1))) - 1
            for f in sorted({r[2] & mask for r in part}):
                judge([r for r in part if r[2] & mask == f], level + 1)

    for key in sorted({r[1] for r in rows}):
        judge([r for r in rows if r[1] == key], 0)
    return sorted(out)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 9), st.integers(0, 2), st.integers(0, 15)), max_size=40),
       st.integers(2, 4), st.integers(0, 3), st.integers(1, 3))
def test_a_common_key_pairs_its_holders_by_their_refining_bits(triples, max_bucket, levels, parts):
    """Brute force on random (image, key, fine) rows with 2-bit refinements: ``key_groups`` gives the groups
    of the definition, and cutting the rows by key (as the partitioned engine's key buckets do) gives the same."""
    rows = sorted({(f"{i:02d}", k, f) for i, k, f in triples})
    frame = pl.DataFrame(rows, schema=keypoints.KEY_SCHEMA, orient="row")
    groups = lambda f: sorted((k, tuple(a)) for k, a in keypoints.key_groups(f, max_bucket, 2, levels).rows())  # noqa: E731
    want = brute_groups(rows, max_bucket, 2, levels)
    assert groups(frame) == want
    assert sorted(g for p in range(parts) for g in groups(frame.filter(pl.col("key") % parts == p))) == want


def test_a_key_held_by_too_many_still_pairs_the_copies_that_agree_on_more_bits():
    """Five images hold one key (max_bucket 3): dropped without refinement; refined, the two that agree on the
    next bits pair, the three others split further."""
    rows = pl.DataFrame([("a", 7, 0b0101), ("b", 7, 0b0101), ("c", 7, 0b1110), ("d", 7, 0b0110), ("e", 7, 0b0110)],
                        schema=keypoints.KEY_SCHEMA, orient="row")
    assert keypoints.key_groups(rows, 3).is_empty()
    assert sorted(keypoints.key_groups(rows, 3, 2, 2)["a"].to_list()) == [["a", "b"], ["c", "d", "e"]]
    assert sorted(keypoints.key_groups(rows, 2, 2, 2)["a"].to_list()) == [["a", "b"], ["d", "e"]]


def test_verification_and_the_keypoints_detector_come_with_pdq_and_can_be_turned_off():
    """Both need the keypoints verification stores; the detector's cost per image is capped (max_candidates)
    and the descriptors' is 2.3x PDQ alone, so asking for PDQ asks for crops and turns too, unless turned off."""
    from dedup.config import DedupConfig

    def detectors(pdq: dict) -> set[str]:
        return set(DedupConfig.model_validate({"pdq": {"enabled": True, **pdq}}).enabled_detectors())

    assert {"pdq", "pdq_verified", "keypoints"} <= detectors({})
    assert "keypoints" not in detectors({"verify": {"keypoints": {"enabled": False}}})
    assert "pdq_verified" in detectors({"verify": {"keypoints": {"enabled": False}}})
    assert not {"pdq_verified", "keypoints"} & detectors({"verify": {"enabled": False}})


def test_a_crop_laid_over_its_original_differs_at_its_edges_only_and_a_recolour_across_it(photos):
    """``differing`` with a 70% crop's true transform: the crop's thumbnail agrees with its original's, the
    same crop with its hues turned a tenth of a circle does not."""
    limit = CONFIG.verify.max_differing
    for name in ("coffee", "astronaut"):
        original = np.asarray(photos[name].convert("RGB"))
        h, w = original.shape[:2]
        x0, y0 = w // 5, h // 10
        crop = np.ascontiguousarray(original[y0:y0 + int(h * 0.7), x0:x0 + int(w * 0.7)])
        turned = np.asarray(recolour(Image.fromarray(crop), 0.1))
        a, b, c = (orb_features(rgb, CONFIG.verify.features) for rgb in (original, crop, turned))
        to_crop = np.array([[1.0, 0, -x0], [0, 1, -y0], [0, 0, 1]])  # original's keypoint pixels -> the crop's
        sizes = (feature_size(a), feature_size(b))
        assert overlay(thumbnail(a), thumbnail(b), to_crop, sizes).differing() <= limit / 2, name
        assert overlay(thumbnail(a), thumbnail(c), to_crop, sizes).differing() > limit, name


def look_alike_product(seed: int) -> tuple[Image.Image, Image.Image]:
    """A product shot on white, and the same product drawn 35 levels darker, at 70% of the size, elsewhere on the
    white: a look-alike whose subject differs in shade while most of the picture (the white) agrees."""
    original = product_white(random.Random(seed), (480, 360))
    rgb = np.asarray(original).astype(np.int16)
    subject = rgb.min(axis=2) < 200  # off the white and the grey shadow
    rgb[subject] -= 35
    other = Image.new("RGB", original.size, (255, 255, 255))
    other.paste(Image.fromarray(rgb.clip(0, 255).astype(np.uint8)).resize((336, 252), Image.LANCZOS), (60, 70))
    return original, other


@pytest.mark.parametrize("seed", [2, 9])
def test_a_look_alike_product_in_a_near_shade_is_refused_and_a_crop_of_it_is_not(seed):
    """ORB finds the transform between the two shots (with the subject check off they pair), and the
    thumbnails agree over most of the overlap (the white); the subject, off the background, does not. A 60%
    corner crop of the shot agrees over its subject too."""
    original, other = look_alike_product(seed)
    w, h = original.size
    crop = original.crop((0, h - int(0.6 * h), int(0.6 * w), h))
    a, b, c = (orb_features(np.asarray(img), CONFIG.verify.features) for img in (original, other, crop))
    unchecked = CONFIG.verify.model_copy(update={"keypoints": CONFIG.verify.keypoints.model_copy(
        update={"max_subject_distance": float("inf")})})
    assert keypoints.copy_score(a, b, unchecked) > 0
    assert keypoints.copy_score(a, b, CONFIG.verify) == 0
    assert keypoints.copy_score(a, c, CONFIG.verify) > 0


@pytest.mark.parametrize("seed", [0, 7])
def test_a_look_alike_product_placed_on_another_is_refused_by_its_subject_and_a_crop_is_placed(seed):
    """Placement (pairs with a keypoint-poor side) finds where one shot's thumbnail lies in its look-alike's,
    agreeing over the white: with the subject check off it places them; with it on it does not. A 60% corner
    crop of the shot still places."""
    original, other = look_alike_product(seed)
    w, h = original.size
    crop = original.crop((0, h - int(0.6 * h), int(0.6 * w), h))
    a, b, c = (thumbnail(orb_features(np.asarray(img), CONFIG.verify.features)) for img in (original, other, crop))
    checked = CONFIG.verify.keypoints.placement
    unchecked = checked.model_copy(update={"max_subject_distance": float("inf")})
    assert placed_copy(a, b, unchecked) > 0
    assert placed_copy(a, b, checked) == 0
    assert placed_copy(a, c, checked) > 0


@pytest.mark.parametrize("seed", [2, 11])
def test_an_off_centre_60_percent_crop_of_a_text_slide_pairs_at_the_staged_size(seed):
    """At 256 pixels a text slide's 60% crop shows its letters 1.7x larger: the colours ORB samples around them
    are sharper than the original's, and few of its keypoints match. A similarity found among those few, with
    the thumbnails agreeing, pairs them (the keypoints' colours and a homography did not)."""
    slide = text_slide(random.Random(seed), (480, 360))
    x0, y0 = {2: (37, 91), 11: (54, 80)}[seed]
    crop = slide.crop((x0, y0, x0 + 288, y0 + 216))
    a, c = (orb_features(np.asarray(img.resize((256, 192), Image.LANCZOS)), CONFIG.verify.features)
            for img in (slide, crop))
    assert keypoints.copy_score(a, c, CONFIG.verify) > 0


def test_the_subject_distance_forgives_a_pixel_of_misregistration_and_not_a_shade():
    """A thumbnail laid over itself one pixel off is at distance 0 however sharp its edges; laid over its
    look-alike in a darker shade, it is far, though the background agrees."""
    original, other = look_alike_product(2)
    thumb = thumbnail(orb_features(np.asarray(original), CONFIG.verify.features))
    size = thumb.shape[1::-1]
    one_off = np.array([[1.0, 0, 1], [0, 1, 0], [0, 0, 1]])
    assert subject_distance(overlay(thumb, thumb, one_off, (size, size))) < 1
    rgb = np.asarray(original).astype(np.int16)
    rgb[rgb.min(axis=2) < 200] -= 35
    darker = thumbnail(orb_features(rgb.clip(0, 255).astype(np.uint8), CONFIG.verify.features))
    limit = CONFIG.verify.keypoints.max_subject_distance
    assert subject_distance(overlay(thumb, darker, np.eye(3), (size, size))) > 2 * limit
    assert overlay(thumb, darker, np.eye(3), (size, size)).differing() <= CONFIG.verify.max_differing


def test_a_value_written_before_the_thumbnail_parses_to_the_same_keypoints(photos):
    value = orb_features(np.asarray(photos["coffee"].convert("RGB")), CONFIG.verify.features)
    width, height = value[8], value[9]
    assert thumbnail(value).shape == (height, width, 3) and max(width, height) == 48
    header = np.frombuffer(value[:4], dtype=np.uint32)[0] & ~np.uint32(_THUMBED)
    older = header.tobytes() + value[4:8] + value[10 + 3 * width * height:]
    assert thumbnail(older) is None and feature_size(older) == feature_size(value)
    for new, old in zip(parse_features(value), parse_features(older)):
        assert new.tobytes() == old.tobytes() and len(new) > 0
    config = CONFIG.verify
    assert keypoints.copy_score(older, older, config) == keypoints.copy_score(value, value, config) > 0
