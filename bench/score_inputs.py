"""What both score-path benches use: the staged demo photos they score and where their reports go
(``bench/score_path.py`` on CPU, ``bench/score_path_gpu.py`` on a GPU)."""

from __future__ import annotations

import io
import json
import os
import platform
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def staged_images(n: int, side: int = 256) -> tuple[list[bytes], list[str]]:
    """The demo photos as ingest stages them, repeated to ``n``, with their captions."""
    from crawl.config import CrawlConfig
    from crawl.image import stage_image
    from pipelines.cli.corpus import load_photos

    blobs, captions = [], []
    for img, caption in load_photos().values():
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        blobs.append(stage_image(buf.getvalue(), CrawlConfig(image_size=side)).data)
        captions.append(caption)
    return [blobs[i % len(blobs)] for i in range(n)], [captions[i % len(captions)] for i in range(n)]


def write(name: str, payload: dict, quiet: bool = False) -> Path:
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / name
    payload |= {"cpus": os.cpu_count(), "load_average": os.getloadavg(), "machine": platform.platform(),
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    out.write_text(json.dumps(payload, indent=2, default=str))
    if not quiet:
        print(f"\nwritten {out}")
    return out
