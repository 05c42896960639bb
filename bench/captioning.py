"""Captions/s and output tokens/s of the BLIP-2, LLaVA and Qwen2.5-VL stages at several batch sizes vs a plain one-image-at-a-time generate loop.

Every caption is forced to exactly ``--max-new-tokens`` tokens (min_new_tokens = max_new_tokens), so the
numbers measure the model, not where a random model happens to stop. Weights are random: no weights can
be downloaded, and the cost does not depend on their values.

  CPU (default without CUDA): tiny models, saved and loaded through the stages' own loading seam.
  GPU: the real-size architectures (BLIP-2 OPT-2.7b, LLaVA-1.5-7B, Qwen2.5-VL-7B) built on the GPU in bfloat16, and the
       fraction of the GPU's dense bf16 peak FLOP/s reached (FLOPs estimated as 2 x parameters x tokens).

    PYTHONPATH=. python bench/captioning.py [--device cuda] [--batch-sizes 1 8 32 64] [--images 64]

Prints a table and writes bench/results/captioning.json.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

if __package__ in (None, ""):  # run as a script: bench/ must not shadow the captioning package
    import sys

    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from captioning.blip2 import Blip2Captioner, blip2_prompt
from captioning.config import Blip2CaptionerConfig, GenerationConfig, LlavaCaptionerConfig, QwenVlCaptionerConfig
from captioning.llava import LlavaCaptioner, llava_prompt
from captioning.qwen_vl import QwenVlCaptioner, bound_pixels, qwen_prompt
from support.random_models import build_blip2, build_llava, build_qwen2_5_vl, save_random
from captioning.recaption import recaption
from captioning.vlm import Vlm, decode_images
from manifests import schema as col

RESULTS = Path(__file__).resolve().parent / "results" / "captioning.json"
BACKENDS = {
    "blip2": (Blip2CaptionerConfig, Blip2Captioner, build_blip2, blip2_prompt, col.CAPTION_BLIP2),
    "llava": (LlavaCaptionerConfig, LlavaCaptioner, build_llava, llava_prompt, col.CAPTION_LLAVA),
    "qwen2_5_vl": (QwenVlCaptionerConfig, QwenVlCaptioner, build_qwen2_5_vl, qwen_prompt, col.CAPTION_QWEN_VL),
}
STAGE_NAME = {"qwen2_5_vl": "qwen_vl"}  # the caption stage a backend runs as
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12}  # dense, no sparsity


def photos(n: int) -> np.ndarray:
    """``n`` JPEG-encoded real photos (scikit-image's bundled ones, cycled)."""
    try:
        from skimage import data

        arrays = [getattr(data, name)() for name in ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field")]
    except ImportError:  # the GPU machine may lack scikit-image; the cost of a forced caption does not need a photo
        rng = np.random.default_rng(0)
        arrays = [rng.integers(0, 255, (480, 640, 3), dtype=np.uint8) for _ in range(5)]
    encoded = []
    for array in arrays:
        buf = io.BytesIO()
        Image.fromarray(array).convert("RGB").save(buf, "JPEG", quality=90)
        encoded.append(buf.getvalue())
    return np.array([encoded[i % len(encoded)] for i in range(n)], dtype=object)


def load_stage_vlm(name: str, gen: GenerationConfig, device: str, workdir: Path) -> tuple[Any, Vlm]:
    """(config, Vlm): tiny through the stage's seam on CPU, real-size built in place on the GPU."""
    config_cls, stage_cls, build, _, _ = BACKENDS[name]
    if device == "cpu":
        config = config_cls(enabled=True, model=str(save_random(name, workdir / name)), generation=gen)
        return config, stage_cls(config).vlm
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model, processor = build(real_size=True)
    torch.set_default_dtype(torch.float32)
    processor.tokenizer.padding_side = "left"
    config = config_cls(enabled=True, generation=gen)
    if hasattr(config, "max_pixels"):
        bound_pixels(processor.image_processor, config.min_pixels, config.max_pixels)
    return config, Vlm(model.eval(), processor, torch.device("cuda"), torch.bfloat16)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_stage(name: str, config: Any, vlm: Vlm, images: np.ndarray, batch_size: int, device: str) -> float:
    """Captions/s of the stage's own batch path (decode, prompt, generate, clean) over ``images``."""
    _, _, _, prompt_format, column = BACKENDS[name]
    stage = STAGE_NAME.get(name, name)
    batches = [{col.IMAGE: images[i:i + batch_size]} for i in range(0, len(images), batch_size)]
    recaption(vlm, config, batches[0], stage, (column, column + "_short"), prompt_format)  # warm-up
    sync(device)
    start = time.perf_counter()
    for batch in batches:
        recaption(vlm, config, batch, stage, (column, column + "_short"), prompt_format)
    sync(device)
    return len(images) / (time.perf_counter() - start)


def time_plain_loop(name: str, config: Any, vlm: Vlm, images: np.ndarray, device: str) -> float:
    """Captions/s of the textbook loop: one image, processor, generate, decode."""
    prompt = BACKENDS[name][3](vlm.processor, config.instruction())
    gen = config.generation
    pil = decode_images(images)
    sync(device)
    start = time.perf_counter()
    for image in pil:
        inputs = vlm.processor(images=image, text=prompt, return_tensors="pt").to(vlm.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(vlm.dtype)
        with torch.no_grad():
            out = vlm.model.generate(**inputs, max_new_tokens=gen.max_new_tokens, min_new_tokens=gen.min_new_tokens)
        vlm.processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    sync(device)
    return len(pil) / (time.perf_counter() - start)


def _params(module: Any) -> int:
    return sum(p.numel() for p in module.parameters())


def flops_per_caption(vlm: Vlm, prompt_tokens: int, new_tokens: int) -> float:
    """2 x parameters x tokens: the vision tower per patch, the language model per prompt and new token.

    Attention's quadratic term and the Q-Former (32 queries, once per image) are left out: a lower bound.
    """
    model = vlm.model
    inner = getattr(model, "model", model)  # LLaVA and Qwen-VL nest their towers under .model
    vision = getattr(inner, "vision_tower", None) or getattr(inner, "visual", None) or inner.vision_model
    language = inner.language_model
    config = model.config.vision_config
    if hasattr(config, "image_size"):
        patches = (config.image_size // config.patch_size) ** 2 + 1
    else:  # Qwen-VL: a patch grid per image, its area bounded by the processor; 2x2 patches per prompt token
        patches = prompt_tokens * config.spatial_merge_size ** 2
    return 2.0 * _params(vision) * patches + 2.0 * _params(language) * (prompt_tokens + new_tokens)


def prompt_length(name: str, config: Any, vlm: Vlm, image: bytes) -> int:
    prompt = BACKENDS[name][3](vlm.processor, config.instruction())
    return vlm.processor(images=decode_images([image]), text=[prompt], return_tensors="pt")["input_ids"].shape[1]


def peak_flops() -> float | None:
    gpu = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_BF16.items() if k in gpu), None)


def bench_backend(name: str, args: argparse.Namespace, workdir: Path) -> list[dict]:
    gen = GenerationConfig(max_new_tokens=args.max_new_tokens, min_new_tokens=args.max_new_tokens)
    config, vlm = load_stage_vlm(name, gen, args.device, workdir)
    images = photos(max(args.images, max(args.batch_sizes)))
    rows = [{"backend": name, "mode": "plain loop", "batch_size": 1,
             "captions_per_s": time_plain_loop(name, config, vlm, images[:args.loop_images], args.device)}]
    for batch_size in args.batch_sizes:
        rows.append({"backend": name, "mode": "stage", "batch_size": batch_size,
                     "captions_per_s": time_stage(name, config, vlm, images, batch_size, args.device)})
    for row in rows:
        row["output_tokens_per_s"] = row["captions_per_s"] * args.max_new_tokens  # every caption is forced
    if args.device == "cuda" and peak_flops():
        flops = flops_per_caption(vlm, prompt_length(name, config, vlm, images[0]), args.max_new_tokens)
        for row in rows:
            row["peak_fraction"] = row["captions_per_s"] * flops / peak_flops()
    del vlm
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"{'backend':10} {'mode':11} {'batch':>5} {'captions/s':>11} {'out tok/s':>10} {'peak':>7}")
    for r in rows:
        peak = f"{r['peak_fraction']:.1%}" if "peak_fraction" in r else "-"
        print(f"{r['backend']:10} {r['mode']:11} {r['batch_size']:>5} {r['captions_per_s']:>11.2f} "
              f"{r['output_tokens_per_s']:>10.1f} {peak:>7}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--backends", nargs="+", choices=sorted(BACKENDS), default=sorted(BACKENDS))
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8, 32, 64])
    parser.add_argument("--max-new-tokens", type=int, default=30)
    parser.add_argument("--images", type=int, default=64, help="images per batched measurement")
    parser.add_argument("--loop-images", type=int, default=16, help="images for the plain loop")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for name in args.backends:
            rows += bench_backend(name, args, Path(workdir))
    print_table(rows)
    machine = {"device": torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu",
               "torch_threads": torch.get_num_threads(), "real_size": args.device == "cuda"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine, "max_new_tokens": args.max_new_tokens, "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
