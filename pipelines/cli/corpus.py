"""A corpus of real photos with the faults of web data, built offline from photos that packages ship.

The photos come from scikit-image's bundled data folder and matplotlib's sample data, read straight
from disk (scikit-image's fetcher is never called, so nothing is downloaded). From them we make
samples with matching captions, mismatched captions, boilerplate captions, near-duplicates (crops,
rescales, JPEG re-encodes, flips, small rotations), small thumbnails and broken files.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, ImageOps

PHOTOS = {
    "skimage:astronaut.png": "a portrait of an astronaut in a white spacesuit in front of an american flag",
    "skimage:camera.png": "a black and white photo of a man standing behind a camera on a tripod",
    "skimage:chelsea.png": "a ginger tabby cat lying down and looking at the camera",
    "skimage:coffee.png": "a cup of coffee on a saucer with a spoon, seen from above",
    "skimage:coins.png": "old coins laid out in rows on a dark background",
    "skimage:hubble_deep_field.jpg": "a deep field telescope image of distant galaxies in space",
    "skimage:ihc.png": "a microscope image of tissue stained brown and blue",
    "skimage:moon.png": "a grayscale close-up of the cratered surface of the moon",
    "skimage:motorcycle_left.png": "a red motorcycle parked in a workshop",
    "skimage:page.png": "a scanned page of printed text with uneven lighting",
    "skimage:retina.jpg": "a fundus photo of a human retina with blood vessels",
    "skimage:rocket.jpg": "a rocket standing on the launch pad under a blue sky",
    "skimage:brick.png": "a close-up of a weathered brick wall",
    "skimage:grass.png": "a close-up of green blades of grass",
    "skimage:gravel.png": "a close-up of grey gravel stones",
    "skimage:color.png": "a colourful abstract pattern of overlapping shapes",
    "matplotlib:grace_hopper.jpg": "a portrait of grace hopper in a navy uniform",
}
# Advert banners rendered onto a few photos, captioned by their own text: the images T-MARS drops, whose
# caption a model can match by reading rather than seeing.
BANNERS = ["SUMMER SALE TODAY", "FREE SHIPPING WORLDWIDE", "BEST PRICE GUARANTEED", "NEW COLLECTION ONLINE"]
BOILERPLATE = ["image", "click here to enlarge", "IMG_0042.JPG", "", "photo", "untitled", "thumbnail"]


def photo_dirs() -> dict[str, Path]:
    import matplotlib
    import skimage

    return {"skimage": Path(skimage.__file__).parent / "data",
            "matplotlib": Path(matplotlib.get_data_path()) / "sample_data"}


def load_photos() -> dict[str, tuple[Image.Image, str]]:
    """name -> (RGB image, caption) for every bundled photo found on disk."""
    dirs, photos = photo_dirs(), {}
    for ref, caption in PHOTOS.items():
        source, name = ref.split(":")
        path = dirs[source] / name
        if path.exists():
            with Image.open(path) as img:
                photos[Path(name).stem] = (img.convert("RGB"), caption)
    if len(photos) < 8:
        raise RuntimeError(f"only {len(photos)} bundled photos found under {dirs}; is scikit-image installed?")
    return photos


def jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def variants(img: Image.Image, rng: random.Random) -> list[tuple[str, Image.Image, int]]:
    """(kind, image, jpeg quality) near-duplicates of ``img``."""
    w, h = img.size
    crop = rng.uniform(0.8, 0.92)
    cw, ch = int(w * crop), int(h * crop)
    left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
    return [
        ("crop", img.crop((left, top, left + cw, top + ch)), 90),
        ("rescale", img.resize((int(w * 0.6), int(h * 0.6)), Image.Resampling.LANCZOS), 90),
        ("reencode", img, rng.randint(20, 40)),
        ("flip", ImageOps.mirror(img), 90),
        ("rotate", img.rotate(rng.uniform(-4, 4), resample=Image.Resampling.BICUBIC, expand=False), 90),
    ]


def with_banner(img: Image.Image, text: str) -> Image.Image:
    """``img`` with ``text`` in black on a white band across its lower fifth (Pillow's bundled font)."""
    out = img.copy()
    draw = ImageDraw.Draw(out)
    band = out.height // 5
    font = ImageFont.load_default(size=max(10, int(band * 0.6)))
    while font.getlength(text) > out.width * 0.92 and font.size > 10:
        font = ImageFont.load_default(size=font.size - 2)
    draw.rectangle((0, out.height - band, out.width, out.height), fill="white")
    draw.text((out.width * 0.04, out.height - band * 0.85), text, fill="black", font=font)
    return out


def with_qr_code(img: Image.Image, text: str) -> Image.Image:
    """``img`` with a QR code of ``text`` (OpenCV's encoder, white quiet zone) over its top-left 40%."""
    import cv2
    import numpy as np

    modules = cv2.QRCodeEncoder.create().encode(text)
    modules = np.pad(modules, 4, constant_values=255)
    side = int(min(img.size) * 0.4)
    code = Image.fromarray(modules).resize((side, side), Image.Resampling.NEAREST).convert("RGB")
    out = img.copy()
    out.paste(code, (0, 0))
    return out


@dataclass(frozen=True)
class Sample:
    path: str  # URL path on the corpus server ("" for a URL that is never served)
    caption: str
    kind: str  # what the sample is meant to exercise
    photo: str | None = None


def build_corpus(samples: int = 300, seed: int = 0) -> tuple[dict[str, bytes], list[Sample]]:
    """Files to serve (path -> bytes) and the URL list rows, about ``samples`` of them, deterministic."""
    rng = random.Random(seed)
    photos = load_photos()
    names = sorted(photos)
    files: dict[str, bytes] = {}
    rows: list[Sample] = []

    def add(path: str, data: bytes | None, caption: str, kind: str, photo: str | None = None) -> None:
        if data is not None:
            files[path] = data
        rows.append(Sample(path, caption, kind, photo))

    for name in names:
        img, caption = photos[name]
        add(f"/img/{name}.jpg", jpeg(img), caption, "original", name)
        add(f"/img/{name}.png", png(img), caption, "lossless_copy", name)
        add(f"/img/{name}.jpg", None, caption, "same_url", name)
        for kind, variant, quality in variants(img, rng):
            add(f"/img/{name}-{kind}.jpg", jpeg(variant, quality), caption, kind, name)
        thumb = img.copy()
        thumb.thumbnail((96, 96))
        add(f"/img/{name}-thumb.jpg", jpeg(thumb), caption, "too_small", name)
    for name, text in zip(names, BANNERS):
        add(f"/img/{name}-banner.jpg", jpeg(with_banner(photos[name][0], text)), text.lower(), "text_banner", name)
    qr_photo = names[-1]
    add(f"/img/{qr_photo}-qr.jpg", jpeg(with_qr_code(photos[qr_photo][0], "https://example.com/offer")),
        photos[qr_photo][1] + " with a code to scan", "qr_code", qr_photo)
    broken = jpeg(photos[names[0]][0])
    specials = [
        ("/broken/truncated.jpg", broken[: len(broken) // 3], "a photo cut off halfway", "truncated"),
        ("/broken/page.html", b"<html><body>not an image</body></html>", "a web page, not a photo", "not_image"),
        ("/broken/empty.jpg", b"", "an empty file served as a photo", "zero_bytes"),
        ("/missing/gone.jpg", None, "a photo that no longer exists", "not_found"),
    ]
    for path, data, caption, kind in specials:
        add(path, data, caption, kind)
    while len(rows) < samples:
        name, other = rng.sample(names, 2)
        img = photos[name][0]
        roll = rng.random()
        if roll < 0.45:  # a fresh crop of a photo under its own caption: a distinct sample or a near-dup
            s = rng.uniform(0.35, 0.6)
            w, h = img.size
            x, y = rng.randint(0, int(w * (1 - s))), rng.randint(0, int(h * (1 - s)))
            crop = img.crop((x, y, x + int(w * s), y + int(h * s)))
            add(f"/img/{name}-part{len(rows)}.jpg", jpeg(crop.resize((max(224, crop.width), max(224, crop.height)))),
                photos[name][1], "part", name)
        elif roll < 0.7:
            add(f"/img/{name}-mismatch{len(rows)}.jpg", jpeg(img, rng.randint(60, 95)), photos[other][1],
                "mismatched_caption", name)
        elif roll < 0.9:
            add(f"/img/{name}-boiler{len(rows)}.jpg", jpeg(ImageOps.mirror(img), rng.randint(60, 95)),
                rng.choice(BOILERPLATE), "boilerplate_caption", name)
        else:
            path, data, caption, kind = specials[len(rows) % len(specials)]
            add(path, data, caption, kind)
    return files, rows
