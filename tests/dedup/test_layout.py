"""The layout detector: the colour-layout descriptor of images PDQ cannot hash, its pairs, and both engines."""

from __future__ import annotations

import io
import random

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import assume, given, settings, strategies as st
from PIL import Image, ImageEnhance, ImageOps

from dedup.artefacts import SampleIndex
from dedup.config import DedupConfig, LayoutConfig, PdqConfig, SearchConfig, ToneConfig
from dedup.detectors import layout_pairs, pdq_pairs
from dedup.layout import (GRID, HALF, LAYOUT_BYTES, LayoutHasher, layout, layout_matches, match, similarity, tone,
                          tone_match, unpack, variation)
from dedup.partitioned import run_partitioned
from dedup.pdq import PdqHasher
from support.dedup_reference import run_dedup
from manifests import schema as col
from manifests.io import write_parquet
from pipelines.cli.corpus import jpeg
from support.evalset import flat, flat_mark, hard_originals, low_texture_negatives, recolour, soft_gradient
from tests.dedup.runs import UNVERIFIED, Item, write_run

SEARCH = SearchConfig(use_gpu=False)


def scored(images: list[bytes], config: DedupConfig) -> dict[str, np.ndarray]:
    batch = {col.SAMPLE_ID: np.array([f"{i:04d}" for i in range(len(images))], dtype=object),
             col.IMAGE: np.array(images, dtype=object)}
    return LayoutHasher(config.layout)(PdqHasher(config.pdq)(batch))


def score_file(tmp_path, batch: dict[str, np.ndarray]) -> list:
    path = tmp_path / "scores.parquet"
    columns = [col.SAMPLE_ID, col.PDQ_QUALITY, col.PDQ_CODES, col.LAYOUT_CODE]
    write_parquet(pa.table({c: batch[c].tolist() for c in columns}), path)
    return [path]


def test_the_layout_is_16_rows_of_8_lab_cells_in_384_bytes():
    white = np.full((48, 64, 3), 255, np.uint8)
    code = layout(white)
    assert code.shape == (GRID, HALF, 3) and code.dtype == np.uint8 and code.nbytes == LAYOUT_BYTES == 384
    assert (code == (255, 128, 128)).all()  # L 100 x 2.55, a and b 0 + 128
    red = layout(np.full((32, 32, 3), (255, 0, 0), np.uint8))
    assert np.allclose(unpack(red.reshape(1, -1))[0], (53.24, 80.09, 67.20), atol=0.5)  # sRGB red in CIELAB
    out = LayoutHasher(LayoutConfig())({col.SAMPLE_ID: np.array(["a", "b"], dtype=object),
                                        col.IMAGE: np.array([jpeg(Image.fromarray(white), 90), b"not an image"],
                                                            dtype=object)})
    assert isinstance(out[col.LAYOUT_CODE][0], bytes) and len(out[col.LAYOUT_CODE][0]) == LAYOUT_BYTES
    assert out[col.LAYOUT_CODE][1] is None


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_a_mirrored_image_has_the_same_layout(seed):
    rgb = np.random.default_rng(seed).integers(0, 256, size=(32, 64, 3), dtype=np.uint8)
    assert np.array_equal(layout(rgb), layout(rgb[:, ::-1]))


def test_the_low_texture_copy_case(tmp_path):
    """A flat design with marks (PDQ quality under 50) and its half-size, JPEG q25 and mirrored copies pair up
    through the layout; its recolour and another flat colour do not. PDQ alone misses most of the copies."""
    design = flat_mark(random.Random(0), (384, 288))
    w, h = design.size
    images = [jpeg(design, 90), jpeg(design.resize((w // 2, h // 2), Image.Resampling.LANCZOS), 90),
              jpeg(design, 25), jpeg(ImageOps.mirror(design), 90),
              jpeg(recolour(design, 0.4), 90), jpeg(flat((200, 60, 40), (384, 288)), 90)]
    config = DedupConfig.model_validate({"pdq": {"enabled": True}})
    batch = scored(images, config)
    assert max(batch[col.PDQ_QUALITY][:4]) < config.pdq.min_quality  # what PDQ refuses
    files = score_file(tmp_path, batch)
    index = SampleIndex.of(pl.Series(batch[col.SAMPLE_ID].tolist()))
    pairs = layout_pairs(config.layout, config.pdq, SEARCH, files, index)
    found = set(zip(pairs["sample_a"], pairs["sample_b"]))
    copies = {(f"{a:04d}", f"{b:04d}") for a in range(4) for b in range(a + 1, 4)}
    assert found == copies
    by_pdq = pdq_pairs(config.pdq, SEARCH, files, index)  # a centre-crop region may reach quality 50
    assert by_pdq.height < len(copies)


def photometric(img: Image.Image) -> list[Image.Image]:
    """Contrast 0.6, brightness 0.8, gamma 1.4 and greyscale copies of ``img``."""
    lut = [round(255 * (v / 255) ** 1.4) for v in range(256)] * 3
    return [ImageEnhance.Contrast(img).enhance(0.6), ImageEnhance.Brightness(img).enhance(0.8), img.point(lut),
            ImageOps.grayscale(img).convert("RGB")]


def test_a_low_texture_design_pairs_with_its_photometric_copies_not_with_its_recolour(tmp_path):
    """The flat design with marks of the copy case pairs with its contrast, brightness, gamma and greyscale copies
    through the photometric match (with it off, the raw CIELAB match finds none of them: the test can fail); its
    recolour, a soft gradient and that gradient's copies pair with none of them."""
    design, other = flat_mark(random.Random(0), (384, 288)), soft_gradient(random.Random(0), (384, 288))
    images = [design, *photometric(design), recolour(design, 0.4), other, *photometric(other)]
    config = DedupConfig.model_validate({"pdq": {"enabled": True}})
    batch = scored([jpeg(img, 90) for img in images], config)
    files = score_file(tmp_path, batch)
    index = SampleIndex.of(pl.Series(batch[col.SAMPLE_ID].tolist()))

    def found(layout_config: LayoutConfig) -> set[tuple[int, int]]:
        pairs = layout_pairs(layout_config, config.pdq, SEARCH, files, index)
        return {(int(a), int(b)) for a, b in zip(pairs["sample_a"], pairs["sample_b"])}

    pairs = found(config.layout)
    assert {(0, k) for k in range(1, 5)} <= pairs
    assert all((a < 5) == (b < 5) and 5 not in (a, b) for a, b in pairs)  # no design meets the other, nor the recolour
    assert (6, 10) in pairs  # the gradient and its greyscale copy
    raw = found(config.layout.model_copy(update={"tone": config.layout.tone.model_copy(update={"enabled": False})}))
    assert not raw & {(0, k) for k in range(1, 5)}


def test_a_near_flat_layout_is_not_compared_by_its_shape():
    """A flat colour with a faint mark (grey L spread under tone.min_spread) and its darker copy: their normalised
    shapes would agree (the mark), but at this spread they are noise, so only the raw match may pair them (it
    does not: the colours differ). The same mark drawn stronger has a shape, and its darker copy matches; a mark
    as light as the background but of another hue is compared by its colour change, and matches too."""
    config = ToneConfig()

    def pair(mark: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
        img = flat((200, 120, 120), (256, 192))
        img.paste(mark, (96, 72, 160, 120))
        return (unpack(layout(np.asarray(img)).reshape(1, -1)),
                unpack(layout(np.asarray(ImageEnhance.Brightness(img).enhance(0.8))).reshape(1, -1)))

    faint, strong, hue = pair((203, 123, 123)), pair((240, 160, 160)), pair((120, 157, 110))
    assert tone(faint[0]).spread[0] < config.min_spread <= tone(strong[0]).spread[0]
    assert tone(hue[0]).spread[0] < config.min_spread <= config.tint_min_spread <= tone(hue[0]).chroma_spread[0]
    assert np.isinf(tone_match(*map(tone, faint), config)[0])
    assert all(np.isfinite(tone_match(*map(tone, layouts), config)[0]) for layouts in (strong, hue))


def test_a_greyscale_copy_whose_faint_shape_jpeg_blurs_still_matches_by_its_level():
    """A soft gradient and its greyscale copy, both JPEG q90: the copy keeps the gradient's grey level (RMS
    difference under grey_max_delta_l) while JPEG noise lowers the correlation of their faint shapes to 0.94."""
    design = soft_gradient(random.Random(17), (384, 288))
    x, y = (unpack(layout(np.asarray(Image.open(io.BytesIO(jpeg(img, 90))).convert("RGB"))).reshape(1, -1))
            for img in (design, ImageOps.grayscale(design).convert("RGB")))
    assert (tone(x).shape * tone(y).shape).sum() < 0.95
    assert np.isfinite(tone_match(tone(x), tone(y), ToneConfig())[0])


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(0.7, 1.4), st.floats(0.6, 1.0), st.floats(0.8, 1.1))
def test_a_monotone_lightness_edit_of_a_structured_layout_still_matches(seed, gamma, contrast, brightness):
    """A smooth colour field with a clear lightness structure, under a gamma, a contrast and a brightness edit
    (each monotone in lightness, none clipping): the photometric match pairs it with its copy."""
    field = Image.fromarray(np.random.default_rng(seed).integers(60, 200, (4, 4, 3), dtype=np.uint8))
    field = field.resize((64, 64), Image.Resampling.BILINEAR)
    lut = [round(255 * (v / 255) ** gamma) for v in range(256)] * 3
    copy = ImageEnhance.Brightness(ImageEnhance.Contrast(field.point(lut)).enhance(contrast)).enhance(brightness)
    x, y = (unpack(layout(np.asarray(img)).reshape(1, -1)) for img in (field, copy))
    assume(tone(x).spread[0] >= 3.0 and tone(x).chroma[0] >= 4 * ToneConfig().grey_chroma)
    assert np.isfinite(tone_match(tone(x), tone(y), ToneConfig())[0])


def test_each_layout_s_statistics_are_computed_once_and_give_every_pair_of_it_the_same_answer():
    """layout_matches computes a row's colour variation and Tone once and hands them to each of its pairs: the same
    pairs and similarities as computing both from each pair's own two layouts, with the Tone of every row passed in
    or not, pairs in any order, and rows that no pair uses."""
    designs = [make(random.Random(k), (192, 144)) for k in range(3) for make in (flat_mark, soft_gradient)]
    rows = np.stack([layout(np.asarray(img)).reshape(-1) for d in designs for img in (d, *photometric(d))])
    a, b = np.triu_indices(len(rows), 1)
    order = np.random.default_rng(0).permutation(len(a))
    a, b, config = a[order], b[order], LayoutConfig()
    x, y = unpack(rows[a]), unpack(rows[b])
    delta_e = np.minimum(match(x, y, variation(x), variation(y), config.max_delta_e, config.max_relative),
                         config.max_delta_e * tone_match(tone(x), tone(y), config.tone))
    sim = similarity(delta_e)
    keep = np.isfinite(delta_e) & (sim >= config.stored_from - 1e-6)
    assert keep.any() and not keep.all()
    for tones in (None, tone(unpack(rows))):
        for n in (len(a), 40):  # every row, or some rows unused
            got = layout_matches(rows, a[:n], b[:n], config, tones)
            assert all(np.array_equal(g, w[:n][keep[:n]]) for g, w in zip(got, (a, b, sim)))


def test_distinct_low_texture_images_and_their_recolours_get_no_layout_pair(tmp_path):
    """The 300 generated low-texture negatives (flat colours, gradients, marks, pastels, stripes; some with a
    recolour twin) and the hard originals of both splits: no two distinct images pair, by the raw or the
    photometric match. With the relative check off, the same set does: the test can fail."""
    negatives = low_texture_negatives(seed=0)
    images = [n.image for n in negatives.values()]
    images += [img for split in ("tune", "report") for img, _ in hard_originals(split, per_type=4).values()]
    config = DedupConfig.model_validate({"pdq": {"enabled": True}})
    batch = scored([jpeg(img, 90) for img in images], config)
    files = score_file(tmp_path, batch)
    index = SampleIndex.of(pl.Series(batch[col.SAMPLE_ID].tolist()))
    assert layout_pairs(config.layout, config.pdq, SEARCH, files, index).is_empty()
    loose = LayoutConfig(max_relative=1.0, threshold=0.9)
    assert not layout_pairs(loose, config.pdq, SEARCH, files, index).is_empty()


def low_texture_items() -> list[Item]:
    """Hard originals, each with copies (half size, JPEG q30, mirror, a banner, contrast 0.6, greyscale), and
    distinct negatives."""
    items, rng = [], random.Random(0)
    for name, (img, _) in hard_originals("tune", per_type=3).items():
        w, h = img.size
        banner = img.copy()
        banner.paste((200, 20, 40), (0, round(h * 0.85), w, h))
        variants = {"original": jpeg(img, 90), "half": jpeg(img.resize((w // 2, h // 2)), 90),
                    "q30": jpeg(img, 30), "flip": jpeg(ImageOps.mirror(img), 90), "banner": jpeg(banner, 90),
                    "contrast": jpeg(ImageEnhance.Contrast(img).enhance(0.6), 90),
                    "grey": jpeg(ImageOps.grayscale(img).convert("RGB"), 90)}
        items += [(data, name, edit) for edit, data in variants.items()]
    items += [(jpeg(n.image, 90), name, "negative") for name, n in list(low_texture_negatives(seed=0).items())[:60]]
    order = rng.sample(range(len(items)), len(items))
    return [Item(f"{k:05d}", items[i][0], f"caption {k}", items[i][1], items[i][2]) for k, i in enumerate(order)]


def layout_run(root, items: list[Item], config: DedupConfig, shards: int, columns: dict[str, dict]):
    layout_dir = write_run(root, items, config, shards, seed=1)
    for path in layout_dir.score_files():
        frame = pl.read_parquet(path)
        added = {c: pl.Series(c, [columns[c][s] for s in frame[col.SAMPLE_ID]], dtype=t) for c, t in
                 ((col.PDQ_CODES, pl.Binary), (col.PDQ_QUALITY, pl.Int16), (col.LAYOUT_CODE, pl.Binary))}
        frame.with_columns(**added).write_parquet(path)
    return layout_dir


def outputs(layout_dir) -> tuple[pl.DataFrame, pl.DataFrame]:
    pairs = pl.read_parquet(layout_dir.pairs_files()).sort("sample_a", "sample_b", "detector")
    return pairs, pl.read_parquet(layout_dir.duplicates_files()).sort(col.SAMPLE_ID)


def test_partitioned_layout_pairs_equal_the_one_process_ones(tmp_path):
    """Below exact_max (one task, the one-process search) and as IVF lists probing every list (k above any
    group, so no query saturates): the same layout pairs and survivors as the one-process engine, the
    photometric match's (contrast, greyscale copies; ``listjoin.tone_lists``) among them."""
    items = low_texture_items()

    def config(parts: int, **search) -> DedupConfig:
        return DedupConfig.model_validate({"exact": {"enabled": True}, "pdq": {"enabled": True, "verify": UNVERIFIED},
                                           "partitions": {"buckets": parts},
                                           "search": {"use_gpu": False, "k": 64, **search}})

    batch = scored([i.data for i in items], config(1))
    columns = {c: dict(zip([i.sample_id for i in items], batch[c]))
               for c in (col.PDQ_CODES, col.PDQ_QUALITY, col.LAYOUT_CODE)}
    one = layout_run(tmp_path / "one", items, config(1), 1, columns)
    run_dedup(config(1), one)
    want = outputs(one)
    found = want[0].filter(pl.col("detector") == "layout")
    assert found.height > 30
    by_id, edit = {i.sample_id: i.photo for i in items}, {i.sample_id: i.edit for i in items}
    assert all(by_id[a] == by_id[b] for a, b in zip(found["sample_a"], found["sample_b"]))
    toned = [p for p in zip(found["sample_a"], found["sample_b"]) if {edit[p[0]], edit[p[1]]} & {"contrast", "grey"}]
    assert len(toned) > 10  # the photometric match's pairs are in what both engines must agree on
    for parts, search in ((3, {}), (3, {"exact_max": 20, "nlist": 4, "nprobe": 4})):
        got = layout_run(tmp_path / f"parts-{len(search)}", items, config(parts), parts, columns)
        run_partitioned(config(parts, **search), got)
        assert outputs(got)[0].equals(want[0])
        assert outputs(got)[1].equals(want[1])
