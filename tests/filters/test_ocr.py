"""OCR signals (RapidOCR's real PP-OCRv4 models): rendered words are found and read, plain photos have none."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont, ImageOps

from filters.config import FiltersConfig, OcrConfig
from filters.decide import threshold_rules
from filters.ocr import OcrScorer, caption_text_overlap, text_area_frac, words
from manifests import schema as col
from manifests.schema import Reason
from pipelines.cli.corpus import load_photos, with_banner


@pytest.fixture(scope="module")
def scorer() -> OcrScorer:
    return OcrScorer(OcrConfig(enabled=True))


def staged(img: Image.Image) -> bytes:
    """As ingest stages it: fitted into 256 px, JPEG."""
    img = img.copy()
    img.thumbnail((256, 256))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def run(scorer: OcrScorer, images: list[bytes | None], captions: list[str | None]) -> dict[str, np.ndarray]:
    return scorer({col.IMAGE: np.array(images, dtype=object), col.CAPTION: np.array(captions, dtype=object)})


def test_banner_words_are_read_on_demo_photos_and_plain_photos_have_none(scorer):
    photos = load_photos()
    names = ["astronaut", "chelsea", "coffee", "rocket"]
    plain = [staged(photos[n][0]) for n in names]
    banners = [staged(with_banner(photos[n][0], "SUMMER SALE TODAY")) for n in names]
    out = run(scorer, plain + banners, [photos[n][1] for n in names] + ["summer sale today"] * len(names))
    assert (out[col.TEXT_AREA_FRAC][:4] == 0).all() and all(t == "" for t in out[col.OCR_TEXT][:4])
    assert (out[col.CAPTION_TEXT_OVERLAP][:4] == 0).all()
    for text in out[col.OCR_TEXT][4:]:
        assert {"summer", "sale", "today"} <= set(words(text.replace("SALE", " SALE ").replace("TODAY", " TODAY")))
    assert (out[col.TEXT_AREA_FRAC][4:] > 0.03).all() and (out[col.TEXT_AREA_FRAC][4:] < 0.3).all()
    assert (out[col.CAPTION_TEXT_OVERLAP][4:] == 1.0).all()


def test_an_images_text_does_not_depend_on_its_batch(scorer):
    """The recogniser pads a batch of line crops to the widest; an image's text must not change with the other
    images in its batch (a rerun after a crash, or another batch_size, batches them differently)."""
    photos = load_photos()
    page = photos["page"][0]
    images = [staged(ImageOps.mirror(page)), staged(page.rotate(3, resample=Image.Resampling.BICUBIC)),
              staged(page), staged(with_banner(photos["camera"][0], "BEST PRICE GUARANTEED"))]
    together = run(scorer, images, ["a scanned page"] * len(images))
    for i, image in enumerate(images):
        alone = run(scorer, [image], ["a scanned page"])
        assert alone[col.OCR_TEXT][0] == together[col.OCR_TEXT][i]
        assert alone[col.TEXT_AREA_FRAC][0] == together[col.TEXT_AREA_FRAC][i]


@pytest.mark.parametrize("size", [14, 24, 48])
def test_rendered_text_at_several_sizes(scorer, size):
    font = ImageFont.load_default(size=size)
    img = Image.new("RGB", (max(320, int(font.getlength("HELLO WORLD")) + 40), 240), "white")
    ImageDraw.Draw(img).text((20, 100), "HELLO WORLD", fill="black", font=font)
    out = run(scorer, [staged(img)], ["hello world"])
    assert out[col.CAPTION_TEXT_OVERLAP][0] == 1.0, out[col.OCR_TEXT][0]
    assert out[col.TEXT_AREA_FRAC][0] > 0


def test_a_page_of_text_is_text_dominated():
    config = OcrConfig(enabled=True, max_text_chars=100)
    out = run(OcrScorer(config), [staged(load_photos()["page"][0])], ["a scanned page"])
    assert out[col.TEXT_AREA_FRAC][0] >= config.max_text_area_frac
    assert len(out[col.OCR_TEXT][0]) == 100  # long text is truncated


def test_undecodable_image_gets_nan_and_null(scorer):
    out = run(scorer, [b"not an image", None], ["some words here", "more words"])
    assert np.isnan(out[col.TEXT_AREA_FRAC]).all() and np.isnan(out[col.CAPTION_TEXT_OVERLAP]).all()
    assert list(out[col.OCR_TEXT]) == [None, None]


def test_overlap_and_area_are_plain_functions():
    assert caption_text_overlap("Big SALE on shoes", "BIGSALE") == pytest.approx(2 / 3)
    assert math.isnan(caption_text_overlap("a b", "anything"))  # no word of three letters
    assert caption_text_overlap("the cat", "") == 0.0
    square = np.array([[0, 0], [50, 0], [50, 50], [0, 50]], dtype=np.float32)
    assert text_area_frac([square, square], 100, 100) == pytest.approx(51 * 51 / 10_000)


def test_ocr_rules_and_reasons():
    rules = {r.reason: r for r in threshold_rules(FiltersConfig(ocr=OcrConfig(enabled=True)))}
    assert rules[Reason.TEXT_DOMINATED].column == col.TEXT_AREA_FRAC
    assert rules[Reason.CAPTION_READS_IMAGE].column == col.CAPTION_TEXT_OVERLAP
    off = threshold_rules(FiltersConfig(ocr=OcrConfig(enabled=True, max_text_area_frac=None)))
    assert [r.reason for r in off] == [Reason.CAPTION_READS_IMAGE]
