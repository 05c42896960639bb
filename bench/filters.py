"""Throughput of the filter stages: images/s, batched vs one image at a time. Prints a table, writes JSON.

CPU (always): the tiny random-initialised CLIP (``filters.clip.TINY_ARCHITECTURE``) through ``ClipScorer``,
open_nsfw through ``OpenNsfwScorer`` (the real ONNX weights), and the LAION heads (aesthetic v2, CLIP-NSFW
L/14; random weights, the compute is the same) on 768-d embeddings. Inputs are the demo photos staged as
256-px JPEGs, as ingest stages them, so decoding is included.

GPU (``--gpu``, needs CUDA): the real-size ViT-L/14 architecture with random weights (throughput does not
depend on weight values), bf16 autocast + inference_mode: model-only images/s on device-resident pixels, the
fraction of the GPU's measured bf16 matmul peak that represents (ViT-L/14 image tower: 162 GFLOP per image),
and the whole ClipScorer stage (decode + preprocess on CPU included).

    PYTHONPATH=. python bench/filters.py [--images 64] [--gpu]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from filters.clip import ClipScorer, write_architecture  # noqa: E402
from filters.config import ClipScorerConfig, NsfwConfig  # noqa: E402
from filters.nsfw import OpenNsfwScorer  # noqa: E402
from manifests import schema as col  # noqa: E402

VIT_L14_GFLOP = 162.0
RESULTS = Path(__file__).resolve().parent / "results"


def staged_images(n: int) -> list[bytes]:
    """The demo photos, fitted into 256 px and JPEG-encoded like ingest's staged images, repeated to ``n``."""
    from pipelines.corpus import load_photos

    encoded = []
    for img, _ in load_photos().values():
        img = img.copy()
        img.thumbnail((256, 256))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=90)
        encoded.append(buf.getvalue())
    return [encoded[i % len(encoded)] for i in range(n)]


def batches(images: list[bytes], size: int) -> list[dict[str, np.ndarray]]:
    out = []
    for start in range(0, len(images), size):
        chunk = images[start:start + size]
        out.append({col.IMAGE: np.array(chunk, dtype=object),
                    col.CAPTION: np.array(["a photo of something"] * len(chunk), dtype=object)})
    return out


def images_per_s(stage, images: list[bytes], batch_size: int) -> float:
    work = batches(images, batch_size)
    stage(dict(work[0]))  # warm-up: first-call allocations and lazy init
    start = time.perf_counter()
    for batch in work:
        stage(dict(batch))
    return len(images) / (time.perf_counter() - start)


def head_images_per_s(module, n: int, batch_size: int) -> float:
    from filters.heads import run_head

    emb = np.random.default_rng(0).standard_normal((n, 768)).astype(np.float16)
    run_head(module, emb[:batch_size], "cpu")
    start = time.perf_counter()
    for i in range(0, n, batch_size):
        run_head(module, emb[i:i + batch_size], "cpu")
    return n / (time.perf_counter() - start)


def cpu_rows(n: int, batch_size: int) -> list[dict]:
    from filters.nets import aesthetic_head, nsfw_head

    images = staged_images(n)
    folder = Path(tempfile.mkdtemp(prefix="thresher-bench-"))
    arch = write_architecture(folder, "thresher-tiny")
    stages = {
        "clip (tiny, random weights)": ClipScorer(ClipScorerConfig(model="thresher-tiny", pretrained=None,
                                                                   architecture_file=str(arch))),
        "nsfw open_nsfw (ONNX)": OpenNsfwScorer(NsfwConfig()),
    }
    rows = []
    for name, stage in stages.items():
        rows.append({"stage": name, "batched": images_per_s(stage, images, batch_size),
                     "one_at_a_time": images_per_s(stage, images[: max(8, n // 4)], 1)})
    heads = {"aesthetic v2 head": aesthetic_head("v2"), "nsfw clip_l14 head": nsfw_head("clip_l14")}
    for name, module in heads.items():
        module.eval()
        rows.append({"stage": name, "batched": head_images_per_s(module, 4096, 256),
                     "one_at_a_time": head_images_per_s(module, 256, 1)})
    return rows


def measured_peak_flops(n: int = 8192, steps: int = 20) -> float:
    """bf16 dense matmul FLOP/s on this GPU: the practical peak the model is compared with."""
    import torch

    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        a @ b
    torch.cuda.synchronize()
    return 2 * n**3 * steps / (time.perf_counter() - start)


def gpu_rows(batch_size: int = 256, steps: int = 20) -> list[dict]:
    import open_clip
    import torch

    model = open_clip.create_model("ViT-L-14", pretrained=None, device="cuda").eval()
    pixels = torch.randn(batch_size, 3, 224, 224, device="cuda")
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        for _ in range(3):
            model.encode_image(pixels)
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            model.encode_image(pixels)
        torch.cuda.synchronize()
    model_rate = batch_size * steps / (time.perf_counter() - start)
    peak = measured_peak_flops()
    stage = ClipScorer(ClipScorerConfig(model="ViT-L-14", pretrained=None, device="cuda", precision="bf16"))
    stage_rate = images_per_s(stage, staged_images(4 * batch_size), batch_size)
    return [{"stage": "ViT-L-14 image tower (bf16, device pixels)", "batched": model_rate,
             "fraction_of_peak": model_rate * VIT_L14_GFLOP * 1e9 / peak, "peak_tflops": peak / 1e12,
             "device": torch.cuda.get_device_name()},
            {"stage": "ClipScorer ViT-L-14 (decode+preprocess on CPU)", "batched": stage_rate}]


def table(rows: list[dict]) -> str:
    lines = [f"{'stage':48} {'batched img/s':>14} {'one-at-a-time':>14} {'speed-up':>9}"]
    for r in rows:
        single = r.get("one_at_a_time")
        extra = f" {single:14.1f} {r['batched'] / single:8.1f}x" if single else ""
        peak = f"   {r['fraction_of_peak']:.1%} of {r['peak_tflops']:.0f} TFLOP/s" if "fraction_of_peak" in r else ""
        lines.append(f"{r['stage']:48} {r['batched']:14.1f}{extra}{peak}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--gpu", action="store_true", help="also the real-size ViT-L/14 on CUDA")
    args = parser.parse_args()
    import torch

    rows = cpu_rows(args.images, args.batch_size)
    if args.gpu:
        rows += gpu_rows()
    print(table(rows))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "filters.json"
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    out.write_text(json.dumps({"rows": rows, "images": args.images, "batch_size": args.batch_size,
                               "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                               "load_average": os.getloadavg(), "machine": platform.platform(), "when": when},
                              indent=2))
    print(f"\nwritten {out}")


if __name__ == "__main__":
    main()
