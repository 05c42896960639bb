"""PDQ stage, content regions, the low-information guard and region matching of crops."""

from __future__ import annotations

import io

import numpy as np
import pdqhash
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import given, settings, strategies as st
from PIL import Image, ImageEnhance, ImageOps

from crawl.config import CrawlConfig
from crawl.image import stage_image
from dedup.artefacts import SampleIndex
from dedup.config import ExactConfig, PdqConfig, PHashConfig, SearchConfig
from dedup.content import centre_crop
from dedup.detectors import pdq_pairs, phash_pairs
from dedup.pdq import HUE_BINS, PdqHasher, colour_overlap, colour_signature, compatible, stretched
from dedup.phash import PerceptualHasher
from dedup.pixels import PixelHasher
from manifests import schema as col
from manifests.images import crop_to_box, parse_box
from manifests.io import write_parquet
from pipelines.cli.corpus import load_photos, png
from support.evalset import low_texture_set
from tests.dedup.runs import UNVERIFIED

SEARCH = SearchConfig(use_gpu=False)


def batch_of(images: list[bytes], boxes: list[bytes | None] | None = None) -> dict[str, np.ndarray]:
    n = len(images)
    batch = {col.SAMPLE_ID: np.array([f"{i:04d}" for i in range(n)], dtype=object),
             col.IMAGE: np.array(images, dtype=object)}
    if boxes is not None:
        batch[col.CONTENT_BOX] = np.array(boxes, dtype=object)
    return batch


def score_file(tmp_path, batch: dict[str, np.ndarray], columns: list[str]) -> list:
    path = tmp_path / "scores.parquet"
    write_parquet(pa.table({c: batch[c].tolist() for c in [col.SAMPLE_ID, *columns]}), path)
    return [path]


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    img = load_photos()["astronaut"][0].copy()
    img.thumbnail((256, 256))
    return img


def test_pdq_hash_is_pdqhash_of_the_image_and_quality_is_recorded(photo):
    out = PdqHasher(PdqConfig(enabled=True, verify=UNVERIFIED))(batch_of([png(photo), b"not an image"]))
    bits, quality = pdqhash.compute(np.asarray(photo))
    assert out[col.PDQ_HASH][0] == np.packbits(bits.astype(np.uint8)).tobytes().hex()
    assert out[col.PDQ_QUALITY][0] == quality == 100
    assert out[col.PDQ_HASH][1] is None and out[col.PDQ_QUALITY][1] is None and out[col.PDQ_CODES][1] is None
    assert out[col.ORB_FEATURES][0] is None  # verification off: no keypoints stored


def test_border_padding_is_recorded_at_ingest_and_not_hashed(photo):
    staged = stage_image(png(photo.resize((200, 120))), CrawlConfig(image_size=128, resize_mode="border"))
    assert staged.content_box == (0, 25, 128, 77)  # the picture scaled to 128 wide, centred on a white square
    wide = Image.open(io.BytesIO(staged.data)).convert("RGB")
    box = ",".join(map(str, staged.content_box)).encode()
    assert crop_to_box(wide, parse_box(box)).size == (128, 77)
    # The same picture on more padding hashes the same as on none, once the box is given.
    picture = crop_to_box(wide, parse_box(box))
    padded = Image.new("RGB", (200, 200), (255, 255, 255))
    padded.paste(picture, (36, 61))
    batch = batch_of([png(picture), png(padded)], [None, b"36,61,128,77"])
    for stage, column in ((PdqHasher(PdqConfig()), col.PDQ_HASH), (PerceptualHasher(PHashConfig()), col.PHASH),
                          (PixelHasher(ExactConfig()), col.PIXEL_HASH)):
        out = stage(dict(batch))
        assert out[column][0] == out[column][1], column
    unboxed = PdqHasher(PdqConfig())(batch_of([png(picture), png(padded)]))
    assert unboxed[col.PDQ_HASH][0] != unboxed[col.PDQ_HASH][1]


def test_low_texture_images_get_no_perceptual_pairs(tmp_path):
    """Flat colours, gradients, stripes and text on white: distinct images, never PDQ duplicates. pHash's
    gradient guard covers the flat and smooth ones; its 64 bits still merge some stripes and words
    (bench/neardup_eval.py lists them), which is why PDQ is the default."""
    named = low_texture_set()
    images = [png(img) for img in named.values()]
    batch = PerceptualHasher(PHashConfig())(PdqHasher(PdqConfig())(batch_of(images)))
    files = score_file(tmp_path, batch, [col.PDQ_QUALITY, col.PDQ_CODES, col.PHASH])
    index = SampleIndex.of(pl.Series(batch[col.SAMPLE_ID].tolist()))
    assert pdq_pairs(PdqConfig(enabled=True, verify=UNVERIFIED), SEARCH, files, index).is_empty()
    smooth = [i for i, name in enumerate(named) if name.split("_")[0] in ("flat", "linear", "radial")]
    assert all(batch[col.PHASH][i] is None for i in smooth)
    # Without the guards the same set merges: the test can fail.
    assert not pdq_pairs(PdqConfig(enabled=True, min_quality=0, verify=UNVERIFIED), SEARCH, files, index).is_empty()
    unguarded = PerceptualHasher(PHashConfig(min_quality=0))(batch_of([images[i] for i in smooth]))
    files = score_file(tmp_path, unguarded, [col.PHASH])
    index = SampleIndex.of(pl.Series(unguarded[col.SAMPLE_ID].tolist()))
    assert not phash_pairs(PHashConfig(enabled=True), SEARCH, files, index).is_empty()


def test_a_centre_crop_is_found_with_regions_and_missed_without(tmp_path, photo):
    crop = Image.fromarray(centre_crop(np.asarray(photo), 0.64))
    images = [png(photo), png(crop)]
    index = SampleIndex.of(pl.Series(["0000", "0001"]))
    found = {}
    for regions in ((0.8, 0.64), ()):
        config = PdqConfig(enabled=True, regions=regions)
        batch = PdqHasher(config)(batch_of(images))
        files = score_file(tmp_path, batch, [col.PDQ_QUALITY, col.PDQ_CODES])
        found[regions] = pdq_pairs(config, SEARCH, files, index)
    assert found[(0.8, 0.64)].height == 1 and found[(0.8, 0.64)]["similarity"][0] >= 0.95
    assert found[()].is_empty()


def test_geometric_verification_accepts_edited_copies_and_refuses_other_pictures(photo):
    from dedup.config import VerifyConfig
    from dedup.verify import orb_features, pair_inliers

    config = VerifyConfig(enabled=True)
    rgb = np.asarray(photo)
    other = np.asarray(load_photos()["coffee"][0].resize(photo.size))
    features = {name: orb_features(a, config.features) for name, a in {
        "photo": rgb, "crop": centre_crop(rgb, 0.7), "flip": np.ascontiguousarray(rgb[:, ::-1]),
        "rotated": np.asarray(photo.rotate(5, resample=Image.Resampling.BICUBIC)), "other": other}.items()}
    for copy in ("crop", "flip", "rotated"):
        assert pair_inliers(features["photo"], features[copy], config) >= config.min_inliers, copy
    assert pair_inliers(features["photo"], features["other"], config) < config.min_inliers


@pytest.mark.parametrize("first, second", [("neg_product_0_0028", "product_white_0_001"),
                                           ("text_slide_0_003", "text_slide_0_005")])
def test_look_alikes_that_share_a_transform_are_refused_by_their_pixels_and_their_crops_are_not(first, second):
    """One product shape drawn twice in near colours, and two slides sharing lines of text, reach 25-54 inliers
    of one plausible homography (pdq_verified paired both on the reporting split); laid one over the other by
    it, their thumbnails differ across the subject. A crop of either still passes."""
    from dedup.config import VerifyConfig
    from dedup.verify import orb_features, pair_inliers
    from support.evalset import HARD_MAKERS, SIZES, _rng

    make = HARD_MAKERS[second.rsplit("_0_", 1)[0]]  # both are drawn by the generator of the second's type

    def made(name: str) -> np.ndarray:
        rng = _rng(0, name)
        image = make(rng, rng.choice(SIZES))
        return np.asarray(Image.open(io.BytesIO(png(image))).convert("RGB"))

    config, unchecked = VerifyConfig(enabled=True), VerifyConfig(enabled=True, max_differing=1.0)
    a, b = made(first), made(second)
    fa, fb = orb_features(a, config.features), orb_features(b, config.features)
    crop = orb_features(np.ascontiguousarray(a[10:-20, 10:-30]), config.features)
    assert pair_inliers(fa, fb, unchecked) >= config.min_inliers  # the keypoints alone pair them
    assert pair_inliers(fa, fb, config) < config.min_inliers
    assert pair_inliers(fa, crop, config) >= config.min_inliers


def test_sscd_refuses_pairs_of_two_near_blank_images(tmp_path):
    from dedup.config import SscdConfig
    from dedup.detectors import sscd_pairs
    from dedup.sscd import SscdEmbedder

    config = SscdConfig(enabled=True, random_init=True, layers=(1, 1, 1, 1), init_planes=8, dims=32,
                        image_size=64, device="cpu", threshold=0.5)
    blanks = [png(Image.new("RGB", (80, 60), c)) for c in ((250, 250, 250), (245, 245, 245))]
    batch = SscdEmbedder(config)(batch_of(blanks))
    assert (batch[col.SSCD_BLANK_SIMILARITY] > 0.9).all()
    files = score_file(tmp_path, batch, [col.SSCD_EMBEDDING, col.SSCD_BLANK_SIMILARITY])
    index = SampleIndex.of(pl.Series(["0000", "0001"]))
    assert sscd_pairs(config, SEARCH, files, index).is_empty()
    assert sscd_pairs(config.model_copy(update={"max_blank_similarity": 1.0}), SEARCH, files, index).height == 1


@pytest.mark.parametrize("mode", ["keep_ratio", "center_crop", "no"])
def test_unpadded_modes_record_the_whole_staged_image_as_content(photo, mode):
    staged = stage_image(png(photo.resize((200, 120))), CrawlConfig(image_size=96, resize_mode=mode))
    assert staged.content_box == (0, 0, staged.width, staged.height)


def test_verification_admits_a_rotated_copy_beyond_the_hash_threshold(tmp_path, photo):
    rotated = photo.rotate(3, resample=Image.Resampling.BICUBIC)  # PDQ distance 54 of 256
    other = load_photos()["coffee"][0].resize(photo.size)
    index = SampleIndex.of(pl.Series(["0000", "0001", "0002"]))
    config = PdqConfig(enabled=True, verify={"enabled": True})
    batch = PdqHasher(config)(batch_of([png(photo), png(rotated), png(other)]))
    files = score_file(tmp_path, batch, [col.PDQ_QUALITY, col.PDQ_CODES, col.ORB_FEATURES])
    assert pdq_pairs(config.model_copy(update={"verify": config.verify.model_copy(update={"enabled": False})}),
                     SEARCH, files, index).is_empty()  # beyond PDQ's distance 31
    found = pdq_pairs(config, SEARCH, files, index)
    assert found.select("sample_a", "sample_b", "detector").rows() == [("0000", "0001", "pdq_verified")]


def test_verification_in_chunks_gives_the_same_pairs(tmp_path, photo):
    images = [photo, photo.rotate(3, resample=Image.Resampling.BICUBIC), photo.rotate(-3, resample=Image.Resampling.BICUBIC),
              load_photos()["coffee"][0].resize(photo.size)]
    index = SampleIndex.of(pl.Series([f"{i:04d}" for i in range(len(images))]))
    config = PdqConfig(enabled=True, verify={"enabled": True})
    batch = PdqHasher(config)(batch_of([png(img) for img in images]))
    files = score_file(tmp_path, batch, [col.PDQ_QUALITY, col.PDQ_CODES, col.ORB_FEATURES])
    whole = pdq_pairs(config, SEARCH, files, index)
    small = config.model_copy(update={"verify": config.verify.model_copy(update={"cache_samples": 2})})
    assert pdq_pairs(small, SEARCH, files, index).equals(whole) and whole.height >= 2


def test_a_contrast_copy_is_found_once_the_luminance_is_stretched(tmp_path):
    """Contrast x0.6 halves PDQ's quality (gradient energy) but not its hash: without the stretch the moon's
    copy falls under min_quality 50 (85 -> 43) and loses its pair; stretched, both hash at full quality."""
    moon = load_photos()["moon"][0].copy()
    moon.thumbnail((256, 256))
    images = [png(moon), png(ImageEnhance.Contrast(moon).enhance(0.6))]
    index = SampleIndex.of(pl.Series(["0000", "0001"]))
    found = {}
    for gain in (2.5, 1.0):
        config = PdqConfig(enabled=True, stretch_max_gain=gain)
        batch = PdqHasher(config)(batch_of(images))
        files = score_file(tmp_path, batch, [col.PDQ_QUALITY, col.PDQ_CODES])
        found[gain] = pdq_pairs(config, SEARCH, files, index)
    assert found[2.5].height == 1 and found[2.5]["similarity"][0] >= 0.9
    assert found[1.0].is_empty()


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 255), st.integers(0, 47), st.integers(0, 2**32 - 1))
def test_the_stretch_leaves_images_under_its_spread_as_they_are(base, spread, seed):
    """Flat, smooth and near-blank images (luminance spread under stretch_min_spread) are hashed unstretched,
    so their JPEG noise is never amplified into structure; others come back the same shape and dtype."""
    config = PdqConfig()
    rng = np.random.default_rng(seed)
    low = np.clip(base + rng.integers(0, spread + 1, size=(24, 32, 1)), 0, 255).astype(np.uint8).repeat(3, axis=2)
    assert stretched(low, config) is low
    wide = rng.integers(0, 256, size=(24, 32, 3), dtype=np.uint8) // 2
    out = stretched(wide, config)
    assert out.shape == wide.shape and out.dtype == np.uint8 and int(out.max()) - int(out.min()) > 127


# --- the colour gate: PDQ hashes luminance, so one design in two colours hashes alike ---------------------------

def gated_pairs(tmp_path, images: list[Image.Image], config: PdqConfig) -> set[tuple[int, int]]:
    """The PDQ pairs (row numbers) among ``images`` under ``config``, through the score file as a run has it."""
    batch = PdqHasher(config)(batch_of([png(img) for img in images]))
    files = score_file(tmp_path, batch, [col.PDQ_QUALITY, col.PDQ_CODES, col.PDQ_COLOUR])
    index = SampleIndex.of(pl.Series(batch[col.SAMPLE_ID].tolist()))
    pairs = pdq_pairs(config, SEARCH, files, index)
    return {(int(a), int(b)) for a, b in pairs.select("sample_a", "sample_b").iter_rows()}


def test_a_recolour_twin_is_refused_and_its_grey_and_brighter_copies_still_pair(tmp_path):
    """support.evalset's product on white and its recolour (hues turned half way round): PDQ 4 bits apart, a
    pair without the gate, refused with it; the greyscale copy (achromatic) and the brightness x1.3 copy pair."""
    from support.evalset import _rng, product_white, recolour

    design = product_white(_rng(0, "twin1"), (320, 320))
    images = [design, recolour(design, 0.5), ImageOps.grayscale(design).convert("RGB"),
              ImageEnhance.Brightness(design).enhance(1.3)]
    assert (0, 1) in gated_pairs(tmp_path, images, PdqConfig(enabled=True, min_colour_overlap=0))  # can fail
    pairs = gated_pairs(tmp_path, images, PdqConfig(enabled=True))
    assert (0, 1) not in pairs and (1, 3) not in pairs
    assert {(0, 2), (0, 3), (1, 2), (2, 3)} <= pairs  # grey meets both colours: it is a copy of each


def test_a_photo_and_its_contrast_copy_pass_the_colour_gate(tmp_path, photo):
    images = [photo, ImageEnhance.Contrast(photo).enhance(0.6), ImageOps.grayscale(photo).convert("RGB")]
    assert gated_pairs(tmp_path, images, PdqConfig(enabled=True)) == {(0, 1), (0, 2), (1, 2)}


signature = st.lists(st.floats(0, 20, width=16), min_size=HUE_BINS, max_size=HUE_BINS).map(
    lambda v: np.array(v, np.float16))


@settings(max_examples=200, deadline=None)
@given(signature, signature, st.floats(0.05, 1.0))
def test_colour_overlap_is_symmetric_and_holds_under_a_chroma_scale(a, b, scale):
    """The gate is one rule for both engines and both orders; a copy whose chroma is scaled (contrast, part of
    the picture cropped away in equal measure) overlaps its original fully; a grey image meets every image."""
    config = PdqConfig(enabled=True)
    ab, ba = colour_overlap(a[None], b[None]), colour_overlap(b[None], a[None])
    assert np.allclose(ab, ba) and 0 <= ab[0][0] <= 1 + 1e-6
    if a.astype(np.float32).sum() * scale >= 1e-2:
        assert colour_overlap(a[None], (a.astype(np.float32) * scale).astype(np.float16)[None])[0][0] >= 0.95
    assert compatible(np.zeros((1, HUE_BINS), np.float16), a[None], config).all()
    assert compatible(a[None], a[None], config).all()


def test_colour_signature_sees_hue_not_lightness():
    red, blue = np.zeros((64, 64, 3), np.uint8), np.zeros((64, 64, 3), np.uint8)
    red[...], blue[...] = (200, 30, 30), (30, 30, 200)
    grey = np.full((64, 64, 3), 128, np.uint8)
    sig = {name: colour_signature(rgb, 10.0) for name, rgb in
           {"red": red, "blue": blue, "grey": grey, "dark red": red // 2}.items()}
    assert sig["grey"].sum() == 0
    config = PdqConfig(enabled=True)
    assert not compatible(sig["red"][None], sig["blue"][None], config)[0]
    assert compatible(sig["red"][None], sig["dark red"][None], config)[0]
