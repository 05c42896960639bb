"""Staging img2dataset's output: images already at the target size copied as they are vs re-encoded.

    python bench/stage_passthrough.py [--images 400]

Builds 256 px border-mode JPEGs (quality 95, as img2dataset writes them) from the bundled photos, then
stages each with ``crawl.image.stage_image`` (which now copies them) and with the decode -> re-encode
path every image took before. Prints a table (images/s of each, the ratio, bytes changed, PSNR of the
re-encoded copy against the original) and writes bench/results/stage_passthrough.json.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from crawl.config import CrawlConfig
from crawl.image import encode, oriented, resize, stage_image, to_rgb
from pipelines.cli.corpus import load_photos

RESULTS = Path(__file__).resolve().parent / "results"


def corpus(count: int, config: CrawlConfig) -> list[bytes]:
    photos = [img for img, _ in load_photos().values()]
    images = []
    for i in range(count):
        img = photos[i % len(photos)]
        crop = img.crop((i % 37, i % 23, img.width - i % 19, img.height - i % 29))
        buf = io.BytesIO()
        resize(crop, config).save(buf, format="JPEG", quality=95)
        images.append(buf.getvalue())
    return images


def reencode(data: bytes, config: CrawlConfig) -> bytes:
    """What staging did before: decode, orient, RGB, resize (a no-op here), encode."""
    img = Image.open(io.BytesIO(data))
    img.load()
    return encode(resize(to_rgb(oriented(img)), config), config)


def psnr(a: bytes, b: bytes) -> float:
    x = np.asarray(Image.open(io.BytesIO(a)), dtype=np.float64)
    y = np.asarray(Image.open(io.BytesIO(b)), dtype=np.float64)
    mse = float(np.mean((x - y) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse)


def timed(fn, images: list[bytes]) -> tuple[float, list[bytes]]:
    start = time.perf_counter()
    out = [fn(d) for d in images]
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=400)
    args = parser.parse_args()
    config = CrawlConfig(image_size=256, resize_mode="border")
    images = corpus(args.images, config)
    copy_s, copied = timed(lambda d: stage_image(d, config).data, images)
    old_s, encoded = timed(lambda d: reencode(d, config), images)
    result = {
        "images": len(images),
        "copy_images_per_s": len(images) / copy_s,
        "reencode_images_per_s": len(images) / old_s,
        "ratio": old_s / copy_s,
        "copied_identical": sum(a == b for a, b in zip(images, copied)),
        "reencoded_identical": sum(a == b for a, b in zip(images, encoded)),
        "reencode_psnr_db_mean": float(np.mean([psnr(a, b) for a, b in zip(images, encoded)])),
        "reencode_bytes_ratio": sum(map(len, encoded)) / sum(map(len, images)),
    }
    print(f"{'path':<28}{'images/s':>12}{'identical':>12}")
    print(f"{'copy (now)':<28}{result['copy_images_per_s']:>12.0f}{result['copied_identical']:>12}")
    print(f"{'decode + re-encode (before)':<28}{result['reencode_images_per_s']:>12.0f}"
          f"{result['reencoded_identical']:>12}")
    print(f"ratio {result['ratio']:.1f}x; a re-encode changes the pixels (PSNR {result['reencode_psnr_db_mean']:.1f} dB) "
          f"and the size ({result['reencode_bytes_ratio']:.2f}x bytes)")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "stage_passthrough.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
