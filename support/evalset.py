"""Generated evaluation images: Copydays-style edits of a photo, and hard negatives that fool perceptual hashes.

Deterministic for a seed. Used by tests/dedup and bench/neardup_eval.py, never by a run. Photos come
from packages only (``pipelines.cli.corpus.load_photos`` and a few more bundled files read from disk).

Issue 24's set: ``split_originals(split)`` (bundled photos and generated hard-to-hash originals, split in two
by a stable hash of the name), ``EDIT_SETS[split]`` (the tuning split's Copydays edits, the reporting split's
edits drawn from ``REPORT_RANGES``), and ``low_texture_negatives`` (distinct designs, with recolour twins).
"""

from __future__ import annotations

import colorsys
import hashlib
import random
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

BANNER = "SALE -50% TODAY ONLY  www.example-shop.com"
WORDS = ["Thresher", "OPEN", "Data 2024", "Welcome!", "Sale", "Contact us", "Hello world", "ACME Corp"]
COLOURS = [(230, 30, 30), (30, 120, 230), (40, 170, 70), (250, 200, 40), (140, 60, 180), (20, 20, 20),
           (245, 245, 245), (128, 128, 128), (0, 160, 160), (250, 120, 0)]


def _crop(img: Image.Image, fraction: float, rng: random.Random | None) -> Image.Image:
    """Keep ``fraction`` of each side: centred (Copydays), or at a random position with ``rng`` (a real
    crop is not always centred, and PDQ moves ~25 of 256 bits per 1% shift)."""
    w, h = img.size
    cw, ch = round(w * fraction), round(h * fraction)
    x, y = ((w - cw) // 2, (h - ch) // 2) if rng is None else (rng.randint(0, w - cw), rng.randint(0, h - ch))
    return img.crop((x, y, x + cw, y + ch))


def _banner(img: Image.Image) -> Image.Image:
    img = img.copy()
    w, h = img.size
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, round(h * 0.85), w, h), fill=(200, 20, 40))
    draw.text((round(w * 0.03), round(h * 0.88)), BANNER, fill=(255, 255, 255), font_size=max(8, h // 20))
    return img


def copydays_edits(img: Image.Image, rng: random.Random) -> dict[str, tuple[Image.Image, int]]:
    """edit name -> (edited image, JPEG quality to save it with)."""
    w, h = img.size
    return {
        "resize50": (img.resize((w // 2, h // 2), Image.Resampling.LANCZOS), 90),
        "jpeg20": (img, 20),
        "crop80": (_crop(img, 0.8, None), 90),
        "crop60": (_crop(img, 0.6, None), 90),
        "crop80_off": (_crop(img, 0.8, rng), 90),
        "crop60_off": (_crop(img, 0.6, rng), 90),
        "flip": (ImageOps.mirror(img), 90),
        "grey": (ImageOps.grayscale(img).convert("RGB"), 90),
        "bright13": (ImageEnhance.Brightness(img).enhance(1.3), 90),
        "contrast07": (ImageEnhance.Contrast(img).enhance(0.7), 90),
        "blur2": (img.filter(ImageFilter.GaussianBlur(2)), 90),
        "banner": (_banner(img), 90),
        "stretch13": (img.resize((round(w * 1.3), h), Image.Resampling.LANCZOS), 90),
        "rot5": (img.rotate(5, resample=Image.Resampling.BICUBIC), 90),
    }


def flat(colour: tuple[int, int, int], size: tuple[int, int] = (320, 240)) -> Image.Image:
    return Image.new("RGB", size, colour)


def linear_gradient(c0: tuple, c1: tuple, angle: float, size: tuple[int, int] = (320, 240)) -> Image.Image:
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    t = x * np.cos(angle) + y * np.sin(angle)
    t = (t - t.min()) / max(1e-6, float(t.max() - t.min()))
    rgb = np.array(c0, np.float32) * (1 - t[..., None]) + np.array(c1, np.float32) * t[..., None]
    return Image.fromarray(rgb.round().astype(np.uint8))


def radial_gradient(c0: tuple, c1: tuple, centre: tuple[float, float], size: tuple[int, int] = (300, 300)) -> Image.Image:
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.hypot(x - centre[0] * w, y - centre[1] * h)
    t = (r / r.max())[..., None]
    return Image.fromarray((np.array(c0, np.float32) * (1 - t) + np.array(c1, np.float32) * t).round().astype(np.uint8))


def stripes(c0: tuple, c1: tuple, period: int, angle: float, size: tuple[int, int] = (320, 240)) -> Image.Image:
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    on = ((x * np.cos(angle) + y * np.sin(angle)) // (period / 2)) % 2 == 0
    return Image.fromarray(np.where(on[..., None], np.array(c0, np.uint8), np.array(c1, np.uint8)))


def text_on_white(text: str, colour: tuple, logo: bool, size: tuple[int, int] = (400, 200)) -> Image.Image:
    img = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(img)
    x = 20
    if logo:  # a simple mark before the word: what a company logo looks like
        draw.ellipse((20, 60, 100, 140), fill=colour)
        x = 115
    draw.text((x, 75), text, fill=colour, font_size=44)
    return img


def object_on_white(shape: str, colour: tuple, size: tuple[int, int] = (320, 320)) -> Image.Image:
    """A shaded product-like shape centred on white."""
    img = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(img)
    w, h = size
    box = (w * 0.25, h * 0.2, w * 0.75, h * 0.8)
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    elif shape == "triangle":
        draw.polygon([(w * 0.5, h * 0.15), (w * 0.8, h * 0.8), (w * 0.2, h * 0.8)], fill=colour)
    else:  # a bottle: body and neck
        draw.rectangle((w * 0.38, h * 0.35, w * 0.62, h * 0.85), fill=colour)
        draw.rectangle((w * 0.46, h * 0.15, w * 0.54, h * 0.35), fill=colour)
    shade = tuple(max(0, c - 60) for c in colour)
    draw.line((w * 0.3, h * 0.82, w * 0.7, h * 0.82), fill=shade, width=4)
    return img


def low_texture_set() -> dict[str, Image.Image]:
    """Distinct flat colours, linear and radial gradients, stripes, and text/logos on white."""
    out: dict[str, Image.Image] = {}
    for i, c in enumerate(COLOURS[:8]):
        out[f"flat_{i}"] = flat(c)
    pairs = [(COLOURS[0], COLOURS[1]), (COLOURS[2], COLOURS[3]), (COLOURS[5], COLOURS[6]), (COLOURS[4], COLOURS[3]),
             (COLOURS[1], COLOURS[6]), (COLOURS[7], COLOURS[5])]
    for i, ((c0, c1), angle) in enumerate(zip(pairs, [0, np.pi / 2, np.pi / 4, 0, np.pi, 3 * np.pi / 4])):
        out[f"linear_{i}"] = linear_gradient(c0, c1, angle)
    for i, ((c0, c1), centre) in enumerate(zip(pairs, [(0.5, 0.5), (0.2, 0.3), (0.8, 0.7), (0.5, 0.9)])):
        out[f"radial_{i}"] = radial_gradient(c0, c1, centre)
    for i, ((c0, c1), period, angle) in enumerate(zip(pairs, [12, 24, 40, 16, 60, 30],
                                                        [0, np.pi / 2, np.pi / 4, np.pi / 3, 0, 2.5])):
        out[f"stripes_{i}"] = stripes(c0, c1, period, angle)
    for i, word in enumerate(WORDS):
        out[f"text_{i}"] = text_on_white(word, COLOURS[i % 6], logo=i % 2 == 1)
    return out


def objects_on_white(photo_dirs: dict[str, Path]) -> dict[str, Image.Image]:
    """Shaded shapes, and the logos and silhouettes on white that ``photo_dirs`` (scikit-image's and
    matplotlib's data folders, see ``pipelines.cli.corpus.photo_dirs``) hold."""
    out = {f"object_{shape}_{i}": object_on_white(shape, COLOURS[i])
           for i, shape in enumerate(["circle", "square", "triangle", "bottle", "circle", "bottle"])}
    for name, path in bundled_graphics(photo_dirs).items():
        with Image.open(path) as img:
            rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        out[f"graphic_{name}"] = Image.alpha_composite(white, rgba).convert("RGB")
    return out


def bundled_graphics(dirs: dict[str, Path]) -> dict[str, Path]:
    found = {"horse": dirs["skimage"] / "horse.png", "skimage_logo": dirs["skimage"] / "logo.png",
             "mpl_logo": dirs["matplotlib"] / "logo2.png", "present": dirs["matplotlib"] / "Minduka_Present_Blue_Pack.png"}
    return {k: p for k, p in found.items() if p.exists()}


def similar_scenes(photos: dict[str, Image.Image]) -> dict[str, Image.Image]:
    """Two far-apart crops (top-left and bottom-right 45% of each side) of each photo: same kind of
    scene, different shots."""
    out = {}
    for name, img in photos.items():
        w, h = img.size
        cw, ch = round(w * 0.45), round(h * 0.45)
        out[f"scene_{name}_a"] = img.crop((0, 0, cw, ch))
        out[f"scene_{name}_b"] = img.crop((w - cw, h - ch, w, h))
    return out


# ---------------------------------------------------------------------------------------------------------------
# Issue 24: originals that are hard to hash, distinct low-texture negatives (with recolours), and edit sets split
# into a tuning part and a reporting part whose originals and parameters differ.

SPLITS = ("tune", "report")
HARD_TYPES = ("flat_mark", "soft_gradient", "line_art", "pastel_landscape", "text_slide", "product_white")
SIZES = ((384, 288), (320, 320), (288, 384), (400, 240))
SLIDE_WORDS = ["Quarterly results", "Roadmap 2025", "Team offsite", "Thank you", "Agenda", "Next steps",
               "Our mission", "Key metrics", "Questions?", "Launch plan", "Customer stories", "Budget review"]
LINE_WORDS = ["growth in every region", "ship the new app", "hire two engineers", "cut costs by 10%",
              "open a Berlin office", "train the model", "review the design", "plan the event"]


class Edit(NamedTuple):
    """One edited copy: the image, the JPEG quality it is saved with, and the parameters drawn for it."""

    image: Image.Image
    quality: int
    params: dict


def split_of(name: str) -> str:
    """"tune" or "report" from a stable hash of an original's name: the two splits never share an original."""
    return SPLITS[hashlib.sha1(name.encode()).digest()[0] & 1]


def _rng(seed: int, name: str) -> random.Random:
    return random.Random(f"{seed}:{name}")


def _colour(rng: random.Random, lightness: tuple[float, float] = (0.25, 0.8),
            saturation: tuple[float, float] = (0.3, 1.0)) -> tuple[int, int, int]:
    r, g, b = colorsys.hls_to_rgb(rng.random(), rng.uniform(*lightness), rng.uniform(*saturation))
    return round(r * 255), round(g * 255), round(b * 255)


def _shape(draw: ImageDraw.ImageDraw, kind: str, box: tuple[float, float, float, float], fill=None, outline=None,
           width: int = 1) -> None:
    x0, y0, x1, y1 = box
    if kind == "circle":
        draw.ellipse(box, fill=fill, outline=outline, width=width)
    elif kind == "rect":
        draw.rectangle(box, fill=fill, outline=outline, width=width)
    elif kind == "triangle":
        draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=fill, outline=outline, width=width)
    else:  # a diamond
        draw.polygon([((x0 + x1) / 2, y0), (x1, (y0 + y1) / 2), ((x0 + x1) / 2, y1), (x0, (y0 + y1) / 2)],
                     fill=fill, outline=outline, width=width)


SHAPES = ("circle", "rect", "triangle", "diamond")


def _mark_box(rng: random.Random, w: int, h: int, lo: float, hi: float) -> tuple[float, float, float, float]:
    s = rng.uniform(lo, hi) * min(w, h)
    x, y = rng.uniform(0.05 * w, 0.95 * w - s), rng.uniform(0.05 * h, 0.95 * h - s)
    return x, y, x + s, y + s


def flat_mark(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    """A flat colour with one to three small solid marks."""
    img = flat(_colour(rng), size)
    draw = ImageDraw.Draw(img)
    for _ in range(rng.randint(1, 3)):
        _shape(draw, rng.choice(SHAPES), _mark_box(rng, *size, 0.1, 0.22), fill=_colour(rng))
    return img


def soft_gradient(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    """A low-contrast linear or radial gradient with one soft shape: a design, not just a ramp."""
    c0 = _colour(rng, (0.4, 0.8))
    c1 = tuple(min(255, max(0, c + rng.randint(-60, 60))) for c in c0)
    img = (linear_gradient(c0, c1, rng.uniform(0, 2 * np.pi), size) if rng.random() < 0.6
           else radial_gradient(c0, c1, (rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8)), size))
    layer = Image.new("L", size, 0)
    _shape(ImageDraw.Draw(layer), rng.choice(SHAPES), _mark_box(rng, *size, 0.18, 0.35), fill=255)
    mark = Image.new("RGB", size, _colour(rng, (0.3, 0.7)))
    return Image.composite(mark, img, layer.filter(ImageFilter.GaussianBlur(rng.uniform(2, 6))))


def line_art(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    """Outlined shapes and strokes on a light background: an icon or a drawing."""
    img = flat(_colour(rng, (0.9, 0.98), (0.0, 0.4)), size)
    draw = ImageDraw.Draw(img)
    ink, w, h = _colour(rng, (0.1, 0.4)), *size
    for _ in range(rng.randint(2, 5)):
        _shape(draw, rng.choice(SHAPES), _mark_box(rng, w, h, 0.15, 0.5), outline=ink, width=rng.randint(2, 5))
    for _ in range(rng.randint(1, 3)):
        draw.line([(rng.uniform(0, w), rng.uniform(0, h)) for _ in range(rng.randint(2, 4))], fill=ink,
                  width=rng.randint(2, 4))
    return img


def pastel_landscape(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    """A pale sky gradient over two to four smooth low-contrast hills, sometimes a sun."""
    w, h = size
    sky = _colour(rng, (0.8, 0.92), (0.3, 0.7))
    rgb = np.asarray(linear_gradient(sky, tuple(min(255, c + 25) for c in sky), np.pi / 2, size)).astype(np.float32)
    x = np.arange(w, dtype=np.float32) / w
    y = np.arange(h, dtype=np.float32)[:, None] / h
    if rng.random() < 0.5:
        sx, sy, r = rng.uniform(0.15, 0.85), rng.uniform(0.1, 0.35), rng.uniform(0.05, 0.1)
        sun = (x[None, :] - sx) ** 2 * (w / h) ** 2 + (y - sy) ** 2 < r ** 2
        rgb[sun] = _colour(rng, (0.8, 0.9), (0.6, 0.9))
    n = rng.randint(2, 4)
    for k in range(n):
        base = 0.35 + 0.5 * (k + 1) / (n + 1)
        ridge = base + sum(rng.uniform(0.02, 0.08) * np.sin(2 * np.pi * (rng.uniform(0.5, 2.5) * x + rng.random()))
                           for _ in range(2))
        rgb[y >= ridge[None, :]] = _colour(rng, (0.6 + 0.08 * (n - k), 0.9), (0.2, 0.6))
    return Image.fromarray(rgb.round().clip(0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1))


def text_slide(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    """A title and two to four lines of text on a plain or gradient background."""
    w, h = size
    bg = _colour(rng, (0.85, 0.97), (0.0, 0.5))
    img = (flat(bg, size) if rng.random() < 0.5
           else linear_gradient(bg, _colour(rng, (0.75, 0.95)), rng.uniform(0, 3), size))
    draw, ink = ImageDraw.Draw(img), _colour(rng, (0.05, 0.35))
    draw.text((0.06 * w, 0.08 * h), rng.choice(SLIDE_WORDS), fill=ink, font_size=max(12, h // 9))
    for k in range(rng.randint(2, 4)):
        draw.text((0.1 * w, (0.32 + 0.14 * k) * h), "- " + rng.choice(LINE_WORDS), fill=ink, font_size=max(9, h // 16))
    return img


def product_white(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    """A shaded product (bottle, box, ball, mug) with a soft shadow, on white."""
    w, h = size
    img = flat((255, 255, 255), size)
    draw = ImageDraw.Draw(img)
    colour, kind = _colour(rng), rng.choice(["bottle", "box", "ball", "mug"])
    cx, s = w * rng.uniform(0.4, 0.6), min(w, h) * rng.uniform(0.35, 0.55)
    bottom = h * rng.uniform(0.75, 0.88)
    draw.ellipse((cx - s * 0.6, bottom - s * 0.08, cx + s * 0.6, bottom + s * 0.08), fill=(225, 225, 225))
    dark = tuple(max(0, c - 70) for c in colour)
    if kind == "bottle":
        draw.rectangle((cx - s * 0.25, bottom - s * 1.2, cx + s * 0.25, bottom), fill=colour)
        draw.rectangle((cx - s * 0.08, bottom - s * 1.6, cx + s * 0.08, bottom - s * 1.2), fill=dark)
    elif kind == "box":
        draw.rectangle((cx - s * 0.5, bottom - s, cx + s * 0.5, bottom), fill=colour)
        draw.polygon([(cx - s * 0.5, bottom - s), (cx - s * 0.3, bottom - s * 1.2), (cx + s * 0.7, bottom - s * 1.2),
                      (cx + s * 0.5, bottom - s)], fill=dark)
    elif kind == "ball":
        draw.ellipse((cx - s * 0.5, bottom - s, cx + s * 0.5, bottom), fill=colour)
    else:
        draw.rectangle((cx - s * 0.35, bottom - s * 0.9, cx + s * 0.35, bottom), fill=colour)
        draw.arc((cx + s * 0.2, bottom - s * 0.75, cx + s * 0.6, bottom - s * 0.25), -90, 90, fill=dark, width=6)
    highlight = tuple(min(255, c + 60) for c in colour)
    draw.rectangle((cx - s * 0.2, bottom - s * 0.6, cx - s * 0.1, bottom - s * 0.2), fill=highlight)
    return img


HARD_MAKERS = {"flat_mark": flat_mark, "soft_gradient": soft_gradient, "line_art": line_art,
               "pastel_landscape": pastel_landscape, "text_slide": text_slide, "product_white": product_white}


def hard_originals(split: str, seed: int = 0, per_type: int = 8) -> dict[str, tuple[Image.Image, str]]:
    """name -> (image, image type): ``per_type`` generated originals of each hard type whose name falls in
    ``split``; each image depends only on ``seed`` and its name."""
    out = {}
    for kind, make in HARD_MAKERS.items():
        found, i = 0, 0
        while found < per_type:
            name = f"{kind}_{seed}_{i:03d}"
            if split_of(name) == split:
                rng = _rng(seed, name)
                out[name] = (make(rng, rng.choice(SIZES)), kind)
                found += 1
            i += 1
    return out


# More bundled scikit-image pictures beyond the corpus's photos: microscopy, text, a CT phantom (mostly flat), a
# chessboard (a pattern that looks like stripes), a motion-blurred clock.
EXTRA_PHOTOS = ("cell.png", "text.png", "microaneurysms.png", "clock_motion.png", "phantom.png", "chessboard_GRAY.png")
SCENE_PHOTOS = ("brick", "grass", "gravel", "hubble_deep_field")  # negatives only, never originals


def bundled_photos() -> dict[str, Image.Image]:
    """Every bundled photo (``pipelines.cli.corpus.load_photos``) and ``EXTRA_PHOTOS``, RGB, by name."""
    from pipelines.cli.corpus import load_photos, photo_dirs

    photos = {name: img for name, (img, _) in sorted(load_photos().items())}
    for name in EXTRA_PHOTOS:
        path = photo_dirs()["skimage"] / name
        if path.exists():
            with Image.open(path) as img:
                photos[Path(name).stem] = img.convert("RGB")
    return photos


def split_originals(split: str, seed: int = 0, per_type: int = 8,
                    max_side: int = 512) -> dict[str, tuple[Image.Image, str]]:
    """name -> (image at most ``max_side``, image type): the bundled photos whose name falls in ``split``
    (type "photo", scene photos excluded) and the hard originals of that split."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    out = {}
    for name, img in bundled_photos().items():
        if name not in SCENE_PHOTOS and split_of(name) == split:
            img = img.copy()
            img.thumbnail((max_side, max_side))
            out[name] = (img, "photo")
    return out | hard_originals(split, seed, per_type)


def tune_edits(img: Image.Image, rng: random.Random) -> dict[str, Edit]:
    """The tuning split's edits: today's Copydays set (``copydays_edits``), with their fixed parameters."""
    params = {"resize50": {"scale": 0.5}, "jpeg20": {"quality": 20}, "crop80": {"fraction": 0.8},
              "crop60": {"fraction": 0.6}, "crop80_off": {"fraction": 0.8}, "crop60_off": {"fraction": 0.6},
              "bright13": {"brightness": 1.3}, "contrast07": {"contrast": 0.7}, "blur2": {"radius": 2},
              "stretch13": {"stretch": 1.3}, "rot5": {"degrees": 5}}
    return {name: Edit(image, quality, params.get(name, {}))
            for name, (image, quality) in copydays_edits(img, rng).items()}


# The reporting split's parameter ranges (inclusive); ``report_edits`` draws from them and the tests check it.
REPORT_RANGES = {
    "resize": {"scale": (0.3, 0.7)}, "jpeg": {"quality": (15, 40)},
    "crop80_off": {"fraction": (0.8, 0.8)}, "crop60_any": {"fraction": (0.6, 0.6)},
    "crop_any": {"fraction": (0.5, 0.9)},
    "rot": {"degrees": (3.0, 10.0)}, "contrast": {"contrast": (0.5, 0.8)}, "bright": {"brightness": (0.7, 1.4)},
    "gamma": {"gamma": (0.6, 1.6)}, "blur": {"radius": (1.0, 3.0)}, "banner": {"height": (0.08, 0.22)},
}
REPORT_BANNERS = ["FREE DELIVERY", "NEW ARRIVALS - shop now", "Limited offer 2 for 1", "www.deals.example.org"]


def _crop_at(img: Image.Image, fraction: float, rng: random.Random, off_centre: bool) -> tuple[Image.Image, dict]:
    """A crop keeping ``fraction`` of each side at a random position; ``off_centre``: its centre moved at least half
    of the largest possible shift along one axis."""
    w, h = img.size
    cw, ch = round(w * fraction), round(h * fraction)
    while True:
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        shift = max(abs(2 * x - (w - cw)) / max(1, w - cw), abs(2 * y - (h - ch)) / max(1, h - ch))
        if not off_centre or shift >= 0.5:
            return img.crop((x, y, x + cw, y + ch)), {"fraction": fraction, "x": x, "y": y, "shift": round(shift, 3)}


def _away_from_one(rng: random.Random, lo: float, hi: float, gap: float) -> float:
    """A factor in [lo, hi] at least ``gap`` from 1 (an edit that changes the image)."""
    while True:
        f = rng.uniform(lo, hi)
        if abs(f - 1) >= gap:
            return f


def _other_banner(img: Image.Image, rng: random.Random) -> tuple[Image.Image, dict]:
    img = img.copy()
    w, h = img.size
    height, top = rng.uniform(*REPORT_RANGES["banner"]["height"]), rng.random() < 0.5
    y0, y1 = (0, round(h * height)) if top else (round(h * (1 - height)), h)
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, y0, w, y1), fill=_colour(rng, (0.2, 0.6)))
    draw.text((round(w * 0.04), y0 + (y1 - y0) // 4), rng.choice(REPORT_BANNERS), fill=(255, 255, 255),
              font_size=max(8, (y1 - y0) // 2))
    return img, {"height": height, "top": top}


def report_edits(img: Image.Image, rng: random.Random) -> dict[str, Edit]:
    """The reporting split's edits: parameters drawn from ``REPORT_RANGES``, other than the tuning split's."""
    w, h = img.size
    scale = rng.uniform(*REPORT_RANGES["resize"]["scale"])
    quality = rng.randint(*REPORT_RANGES["jpeg"]["quality"])
    contrast = rng.uniform(*REPORT_RANGES["contrast"]["contrast"])
    brightness = _away_from_one(rng, *REPORT_RANGES["bright"]["brightness"], 0.15)
    gamma = _away_from_one(rng, *REPORT_RANGES["gamma"]["gamma"], 0.2)
    degrees = rng.uniform(*REPORT_RANGES["rot"]["degrees"]) * rng.choice((-1, 1))
    radius = rng.uniform(*REPORT_RANGES["blur"]["radius"])
    lut = [round(255 * (v / 255) ** gamma) for v in range(256)] * 3
    edits = {
        "resize": Edit(img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS), 90,
                       {"scale": scale}),
        "jpeg": Edit(img, quality, {"quality": quality}),
        "flip": Edit(ImageOps.mirror(img), 90, {}),
        "grey": Edit(ImageOps.grayscale(img).convert("RGB"), 90, {}),
        "contrast": Edit(ImageEnhance.Contrast(img).enhance(contrast), 90, {"contrast": contrast}),
        "bright": Edit(ImageEnhance.Brightness(img).enhance(brightness), 90, {"brightness": brightness}),
        "gamma": Edit(img.point(lut), 90, {"gamma": gamma}),
        "blur": Edit(img.filter(ImageFilter.GaussianBlur(radius)), 90, {"radius": radius}),
        "rot": Edit(img.rotate(degrees, resample=Image.Resampling.BICUBIC), 90,
                    {"degrees": abs(degrees), "signed": degrees}),
    }
    for name, fraction in (("crop80_off", 0.8), ("crop60_any", 0.6),
                           ("crop_any", rng.uniform(*REPORT_RANGES["crop_any"]["fraction"]))):
        crop, params = _crop_at(img, fraction, rng, off_centre=name == "crop80_off")
        edits[name] = Edit(crop, 90, params)
    banner, params = _other_banner(img, rng)
    edits["banner"] = Edit(banner, 90, params)
    return edits


EDIT_SETS = {"tune": tune_edits, "report": report_edits}


class Negative(NamedTuple):
    """A low-texture negative: its image, its kind, and its design (shared only by two recolours of one design)."""

    image: Image.Image
    kind: str
    design: str


def _plain_gradient(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    c0, c1 = _colour(rng, (0.15, 0.9)), _colour(rng, (0.15, 0.9))
    return (linear_gradient(c0, c1, rng.uniform(0, 2 * np.pi), size) if rng.random() < 0.5
            else radial_gradient(c0, c1, (rng.uniform(0, 1), rng.uniform(0, 1)), size))


def _stripes(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    return stripes(_colour(rng), _colour(rng), rng.randint(10, 80), rng.uniform(0, np.pi), size)


def _words(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    """A word or phrase, with or without a round mark, on white: its own layout (size, position), not only its own
    colour, since one layout in two colours is a recolour."""
    img = flat((255, 255, 255), (400, 200))
    draw, colour = ImageDraw.Draw(img), _colour(rng, (0.1, 0.5))
    font, x, y = rng.randint(26, 56), rng.randint(10, 70), rng.randint(30, 120)
    if rng.random() < 0.5:
        draw.ellipse((x, y, x + font * 1.6, y + font * 1.6), fill=colour)
        x += round(font * 1.9)
    draw.text((x, y + font // 4), rng.choice(WORDS + SLIDE_WORDS + LINE_WORDS), fill=colour, font_size=font)
    return img


NEGATIVE_MAKERS = {"flat": lambda rng, size: flat(_colour(rng, (0.05, 0.95), (0.0, 1.0)), size),
                   "gradient": _plain_gradient, "soft_gradient": soft_gradient, "stripes": _stripes,
                   "mark": flat_mark, "icon": line_art, "text": _words, "slide": text_slide,
                   "product": product_white, "pastel": pastel_landscape}
RECOLOURED = ("mark", "icon", "product", "stripes", "gradient", "slide")  # kinds a recolour twin is made of


def recolour(img: Image.Image, turn: float) -> Image.Image:
    """The same design with every hue turned by ``turn`` (0-1): whites, greys and blacks stay as they are."""
    h, s, v = img.convert("HSV").split()
    h = h.point(lambda x: (x + round(turn * 256)) % 256)
    return Image.merge("HSV", (h, s, v)).convert("RGB")


def _thumb(img: Image.Image) -> np.ndarray:
    """(8, 16, 16, 3) float: the 16 x 16 thumbnail in its eight dihedral variants (flips and quarter turns)."""
    t = np.asarray(img.convert("RGB").resize((16, 16), Image.Resampling.BOX), dtype=np.float32)
    turns = [np.rot90(t, k) for k in range(4)]
    return np.stack(turns + [r[:, ::-1] for r in turns])


def _distinct(thumb: np.ndarray, seen: np.ndarray, skip: int | None = None) -> bool:
    """At least 3% of the thumbnail differs by more than 30 levels from every variant of every ``seen`` (but
    ``skip``)."""
    if skip is not None:
        seen = np.delete(seen, skip, axis=0)
    if not len(seen):
        return True
    differs = (np.abs(seen - thumb[0]).max(-1) > 30).mean((-1, -2))
    return bool(differs.min() >= 0.03)


def low_texture_negatives(seed: int = 0, n: int = 300, recolour_every: int = 7) -> dict[str, Negative]:
    """name -> Negative: ``n`` distinct low-texture designs (no two alike under a flip or quarter turn, none like a
    hard original of either split) and, for every ``recolour_every``-th design of a kind in ``RECOLOURED``, its
    recolour (same design, hues turned by a third to two thirds): a pair between the two is a false pair."""
    known = [_thumb(img) for split in SPLITS for img, _ in hard_originals(split, seed).values()]
    seen = np.zeros((len(known) + 2 * n, 8, 16, 16, 3), np.float32)
    seen[:len(known)], count = known, len(known)
    out: dict[str, Negative] = {}
    kinds = list(NEGATIVE_MAKERS)
    i = designs = 0
    while designs < n:
        kind = kinds[i % len(kinds)]
        name = f"neg_{kind}_{seed}_{i:04d}"
        rng = _rng(seed, name)
        img, i = NEGATIVE_MAKERS[kind](rng, rng.choice(SIZES)), i + 1
        thumb = _thumb(img)
        if not _distinct(thumb, seen[:count]):
            continue
        seen[count], count = thumb, count + 1
        out[name], designs = Negative(img, kind, name), designs + 1
        if kind in RECOLOURED and designs % recolour_every == 0:
            twin = recolour(img, rng.uniform(1 / 3, 2 / 3))
            twin_thumb = _thumb(twin)
            if _distinct(twin_thumb, seen[:count], skip=count - 1):
                seen[count], count = twin_thumb, count + 1
                out[f"{name}_recolour"] = Negative(twin, kind, name)
    return out
