"""Generated evaluation images: Copydays-style edits of a photo, and hard negatives that fool perceptual hashes.

Deterministic for a seed. Used by tests/dedup and bench/neardup_eval.py, never by a run. Photos come
from packages only (``pipelines.corpus.load_photos`` and a few more bundled files read from disk).
"""

from __future__ import annotations

import random
from pathlib import Path

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
    matplotlib's data folders, see ``pipelines.corpus.photo_dirs``) hold."""
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
