"""Throughput of the filter stages: images/s, batched vs one image at a time. Prints a table, writes JSON.

CPU (always): the tiny random-initialised CLIP (``support.random_models.TINY_ARCHITECTURE``) through
``ClipScorer``, open_nsfw through ``OpenNsfwScorer`` (the real ONNX weights), and the LAION heads (aesthetic v2,
CLIP-NSFW L/14; random weights, the compute is the same) on 768-d embeddings. Inputs are the demo photos staged as
256-px JPEGs, as ingest stages them, so decoding is included.

Curation signals (issue 16), one core each (ONNX Runtime and OpenCV held to one thread): OCR (RapidOCR
PP-OCRv4, the demo photos with and without an advert banner), blur and QR (OpenCV), watermark (EfficientNet-B3,
random weights) in images/s; caption language ID in captions/s with accuracy on ``support/language_captions.py``
(144 short captions, 12 languages) for lingua's high- and low-accuracy modes, and the memory each detector
holds. ``--signals`` runs only these rows. gcld3, the other wheel-shipped identifier, was not measured: its
sdist needs a protobuf compiler to build and no wheel exists for this Python.

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
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from filters.clip import ClipScorer  # noqa: E402
from filters.config import ClipScorerConfig, NsfwConfig  # noqa: E402
from filters.nsfw import OpenNsfwScorer  # noqa: E402
from manifests import schema as col  # noqa: E402
from support.random_models import write_architecture  # noqa: E402

VIT_L14_GFLOP = 162.0
RESULTS = Path(__file__).resolve().parent / "results"


def staged_images(n: int, images: list | None = None) -> list[bytes]:
    """``images`` (default: the demo photos), fitted into 256 px and JPEG-encoded like ingest's staged images,
    repeated to ``n``."""
    from pipelines.cli.corpus import load_photos

    encoded = []
    for img in images if images is not None else [img for img, _ in load_photos().values()]:
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


def _rss_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def language_row(name: str, config_json: str) -> dict:
    """One detector in a fresh process (so its memory is its own): captions/s on one core, accuracy, MiB held."""
    from filters.config import LanguageConfig
    from filters.language import identify, load_detector
    from support.language_captions import labelled

    texts, codes = labelled()
    before = _rss_mib()
    detector = load_detector(LanguageConfig.model_validate_json(config_json))
    identify(detector, texts)  # lingua loads a language's models on first use
    held = _rss_mib() - before
    start = time.perf_counter()
    for _ in range(5):
        found, _ = identify(detector, texts)
    rate = 5 * len(texts) / (time.perf_counter() - start)
    accuracy = float(np.mean(found == np.array(codes, dtype=object)))
    return {"stage": f"language: {name}", "batched": rate, "unit": "captions/s/core", "accuracy": accuracy,
            "memory_mib": held}


def language_rows() -> list[dict]:
    import multiprocessing

    from filters.config import LanguageConfig
    from support.language_captions import CAPTIONS

    configs = {"lingua high accuracy (75 languages)": LanguageConfig(),
               "lingua low accuracy (75 languages)": LanguageConfig(low_accuracy=True),
               "lingua high accuracy (12 candidates)": LanguageConfig(candidates=sorted(CAPTIONS))}
    with multiprocessing.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
        return [pool.apply(language_row, (name, c.model_dump_json())) for name, c in configs.items()]


def signal_rows(n: int, batch_size: int) -> list[dict]:
    """Images/s on one core of each new signal stage (decode included), and caption language ID."""
    import cv2
    import torch

    from filters.config import OcrConfig, QualityConfig, WatermarkConfig
    from filters.ocr import OcrScorer
    from filters.quality import QualityScorer, blur_var, grey, qr_codes
    from filters.watermark import WatermarkScorer
    from pipelines.cli.corpus import BANNERS, load_photos, with_banner

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    photos = [img for img, _ in load_photos().values()]
    banners = [with_banner(img, BANNERS[i % len(BANNERS)]) for i, img in enumerate(photos)]

    plain, text = staged_images(n, photos), staged_images(n, banners)
    rgb = [np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in plain]
    ocr = OcrScorer(OcrConfig(intra_op_threads=1))
    rows = [{"stage": "ocr (plain photos)", "batched": images_per_s(ocr, plain, batch_size),
             "one_at_a_time": images_per_s(ocr, plain[: max(8, n // 4)], 1)},
            {"stage": "ocr (photos with a banner)", "batched": images_per_s(ocr, text, batch_size)},
            {"stage": "quality stage (blur + qr + entropy)",
             "batched": images_per_s(QualityScorer(QualityConfig()), plain, batch_size)}]
    for name, fn in {"blur only (decoded pixels)": lambda x: blur_var(grey(x, 256)),
                     "qr only (decoded pixels)": qr_codes}.items():
        start = time.perf_counter()
        for x in rgb:
            fn(x)
        rows.append({"stage": name, "batched": len(rgb) / (time.perf_counter() - start)})
    watermark = WatermarkScorer(WatermarkConfig(random_init=True, device="cpu", batch_size=batch_size))
    rows.append({"stage": "watermark EfficientNet-B3 (random weights)",
                 "batched": images_per_s(watermark, plain[: max(batch_size, n // 2)], batch_size)})
    return rows + language_rows()


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
    rows = signal_gpu_rows(batch_size)
    return rows + [{"stage": "ViT-L-14 image tower (bf16, device pixels)", "batched": model_rate,
             "fraction_of_peak": model_rate * VIT_L14_GFLOP * 1e9 / peak, "peak_tflops": peak / 1e12,
             "device": torch.cuda.get_device_name()},
            {"stage": "ClipScorer ViT-L-14 (decode+preprocess on CPU)", "batched": stage_rate}]


def signal_gpu_rows(batch_size: int) -> list[dict]:
    """The watermark classifier on CUDA, and OCR through onnxruntime's CUDA provider where this build has it."""
    import onnxruntime as ort

    from filters.config import OcrConfig, WatermarkConfig
    from filters.ocr import OcrScorer
    from filters.watermark import WatermarkScorer

    images = staged_images(4 * batch_size)
    rows = [{"stage": "watermark EfficientNet-B3 (CUDA, fp32)", "batched": images_per_s(
        WatermarkScorer(WatermarkConfig(random_init=True, device="cuda", batch_size=batch_size)), images, batch_size)}]
    if "CUDAExecutionProvider" in ort.get_available_providers():
        rows.append({"stage": "ocr (CUDA provider)",
                     "batched": images_per_s(OcrScorer(OcrConfig(device="cuda")), images, batch_size)})
    return rows


def table(rows: list[dict]) -> str:
    lines = [f"{'stage':48} {'batched img/s':>14} {'one-at-a-time':>14} {'speed-up':>9}"]
    for r in rows:
        single = r.get("one_at_a_time")
        extra = f" {single:14.1f} {r['batched'] / single:8.1f}x" if single else ""
        peak = f"   {r['fraction_of_peak']:.1%} of {r['peak_tflops']:.0f} TFLOP/s" if "fraction_of_peak" in r else ""
        if "accuracy" in r:
            extra += f"   {r['unit']}, accuracy {r['accuracy']:.3f}, {r['memory_mib']:.0f} MiB"
        lines.append(f"{r['stage']:48} {r['batched']:14.1f}{extra}{peak}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--gpu", action="store_true", help="also the real-size ViT-L/14 on CUDA")
    parser.add_argument("--signals", action="store_true", help="only the curation-signal rows (OCR, language, ...)")
    args = parser.parse_args()
    import torch

    rows = [] if args.signals else cpu_rows(args.images, args.batch_size)
    rows += signal_rows(args.images, args.batch_size)
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
