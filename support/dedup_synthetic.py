"""Generated test and benchmark data: captions with planted near-duplicates, edited copies of photos.

Deterministic for a seed. Used by tests/dedup and bench/dedup.py, never by a run.
"""

from __future__ import annotations

import random

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

PUNCTUATION = [",", ".", "!", " -", ":"]


def vocabulary(size: int, rng: random.Random) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = set()
    while len(words) < size:
        words.add("".join(rng.choice(letters) for _ in range(rng.randint(2, 9))))
    return sorted(words)


def edit_caption(caption: str, rng: random.Random, vocab: list[str]) -> str:
    """A near-copy: case and punctuation changes, a word added, dropped or replaced near one end."""
    words = caption.split()
    roll = rng.random()
    if roll < 0.25:
        words = [w.upper() if rng.random() < 0.3 else w for w in words]
    elif roll < 0.5:
        words.append(rng.choice(vocab))
    elif roll < 0.7:
        words = words[1:] if rng.random() < 0.5 else words[:-1]
    elif roll < 0.85:
        words[-1] = rng.choice(vocab)
    else:
        words[rng.randrange(len(words))] = rng.choice(vocab)
    text = " ".join(words)
    return text + rng.choice(PUNCTUATION) if rng.random() < 0.5 else text


def captions(n: int, dup_fraction: float = 0.2, seed: int = 0, vocab_size: int = 20_000) -> tuple[list[str], np.ndarray]:
    """``n`` captions and the index of the caption each was copied from (-1 for an original)."""
    rng = random.Random(seed)
    vocab = vocabulary(vocab_size, rng)
    out: list[str] = []
    source = np.full(n, -1, dtype=np.int64)
    for i in range(n):
        if out and rng.random() < dup_fraction:
            j = rng.randrange(len(out))
            out.append(edit_caption(out[j], rng, vocab))
            source[i] = j
        else:
            out.append(" ".join(rng.choice(vocab) for _ in range(rng.randint(6, 20))))
    return out, source


def _rotate(img: Image.Image, rng: random.Random) -> Image.Image:
    return img.rotate(rng.uniform(-2, 2), resample=Image.Resampling.BICUBIC, fillcolor=(0, 0, 0))


def _crop(img: Image.Image, rng: random.Random) -> Image.Image:
    w, h = img.size
    s = rng.uniform(0.95, 0.98)
    cw, ch = int(w * s), int(h * s)
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    return img.crop((x, y, x + cw, y + ch))


def _jitter(img: Image.Image, rng: random.Random) -> Image.Image:
    img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.8, 1.2))
    img = ImageEnhance.Contrast(img).enhance(rng.uniform(0.8, 1.2))
    return ImageEnhance.Color(img).enhance(rng.uniform(0.6, 1.4))


def _text(img: Image.Image, rng: random.Random) -> Image.Image:
    img = img.copy()
    draw = ImageDraw.Draw(img)
    w, h = img.size
    draw.text((int(w * 0.05), int(h * rng.uniform(0.75, 0.9))), "© stock photo 2024", fill=(255, 255, 255),
              font_size=max(8, h // 24))
    return img


def _border(img: Image.Image, rng: random.Random) -> Image.Image:
    pad = int(min(img.size) * rng.uniform(0.01, 0.03))
    return ImageOps.expand(img, border=pad, fill=(255, 255, 255))


EDITS = {
    "crop": _crop,
    "rescale": lambda img, rng: img.resize((int(img.width * 0.5), int(img.height * 0.5)), Image.Resampling.LANCZOS),
    "jpeg": lambda img, rng: img,  # the re-encode below at a low quality is the edit
    "flip": lambda img, rng: ImageOps.mirror(img),
    "rotate": _rotate,
    "jitter": _jitter,
    "text": _text,
    "border": _border,
}


def near_duplicates(img: Image.Image, rng: random.Random) -> list[tuple[str, Image.Image, int]]:
    """(edit, image, JPEG quality) for every edit in ``EDITS``; quality 20-90 (20-30 for "jpeg")."""
    out = []
    for name, edit in EDITS.items():
        quality = rng.randint(20, 30) if name == "jpeg" else rng.randint(20, 90)
        out.append((name, edit(img, rng), quality))
    return out
