"""A generated near-duplicate image set from the bundled photos."""

from __future__ import annotations

import random

import pytest

from manifests.images import decode_rgb
from dedup.synthetic import near_duplicates
from pipelines.corpus import jpeg, load_photos, png
from tests.dedup.runs import Item


@pytest.fixture(scope="session")
def near_dup_set() -> list[Item]:
    rng = random.Random(0)
    items: list[tuple[bytes, str, str, str]] = []
    for n, (name, (img, caption)) in enumerate(sorted(load_photos().items())):
        img = img.copy()
        img.thumbnail((256, 256))
        original = jpeg(img, 90)
        items += [(original, caption, name, "original"), (original, f"copy number {n} of a photo", name, "copy"),
                  (png(decode_rgb(original)), f"lossless copy {n} of {name}", name, "png")]
        for edit, variant, quality in near_duplicates(img, rng):
            items.append((jpeg(variant, quality), f"{edit} {n} variant made from the photo {name}", name, edit))
    order = rng.sample(range(len(items)), len(items))  # sample ids do not follow photos
    return [Item(f"{k:06d}", *items[i]) for k, i in enumerate(order)]

