"""phash_string computes the mirrored pHash from the image's own DCT: it must equal imagehash's pHash of the
image and of the mirrored image, on photos cut and scaled every way and on the images that fool hashes
(flat colours, gradients, stripes, noise, images smaller than the hash grid)."""

from __future__ import annotations

import imagehash
import numpy as np
import pytest
from PIL import Image, ImageOps

from dedup.phash import phash_string


def images() -> list[Image.Image]:
    import skimage.data as data

    rng = np.random.default_rng(0)
    photos = [Image.fromarray(getattr(data, name)()) for name in ("astronaut", "camera", "coffee", "chelsea", "rocket",
                                                                   "coins", "brick", "page", "text", "retina")]
    out = list(photos)
    for photo in photos:
        w, h = photo.size
        for _ in range(8):
            cw, ch = int(rng.integers(max(8, w // 5), w + 1)), int(rng.integers(max(8, h // 5), h + 1))
            x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            scale = rng.uniform(0.05, 1.5)
            out.append(photo.crop((x, y, x + cw, y + ch)).resize((max(1, int(cw * scale)), max(1, int(ch * scale)))))
    for _ in range(60):
        w, h = (int(v) for v in rng.integers(1, 300, 2))
        kind = len(out) % 4
        if kind == 0:
            a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        elif kind == 1:
            a = np.broadcast_to(np.linspace(0, 255, w).astype(np.uint8)[None, :, None], (h, w, 3)).copy()
        elif kind == 2:
            a = ((np.indices((h, w)).sum(0) // int(rng.integers(1, 20))) % 2 * 255).astype(np.uint8)
        else:
            a = np.full((h, w, 3), int(rng.integers(0, 256)), np.uint8)
        out.append(Image.fromarray(a))
    return out


@pytest.mark.parametrize("hash_size", [8, 16])
def test_mirrored_phash_equals_imagehash_on_the_mirrored_image(hash_size):
    for img in images():
        expected = f"{imagehash.phash(img, hash_size)}:{imagehash.phash(ImageOps.mirror(img), hash_size)}"
        assert phash_string(img, hash_size, mirror=True) == expected, img.size
        assert phash_string(img, hash_size, mirror=False) == str(imagehash.phash(img, hash_size))
