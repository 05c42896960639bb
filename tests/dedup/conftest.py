"""A generated near-duplicate image set from the bundled photos."""

from __future__ import annotations

import random

import pytest

from manifests.images import decode_rgb
from pipelines.cli.corpus import jpeg, load_photos, png
from support.dedup_synthetic import near_duplicates
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
            # Variants' captions differ in their first word only: 3-gram Jaccard >= 9/11, real caption
            # near-duplicates at the default 0.8 (not ones that pass only by MinHash estimation noise).
            caption = f"{edit} {n}: a variant made from the bundled demo photo called {name}"
            items.append((jpeg(variant, quality), caption, name, edit))
    order = rng.sample(range(len(items)), len(items))  # sample ids do not follow photos
    return [Item(f"{k:06d}", *items[i]) for k, i in enumerate(order)]

