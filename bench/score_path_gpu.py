"""``bench/score_path.py --gpu``: the score phase's own code on one GPU, without Ray.

Staged tars (written with ``manifests.shards.write_tar``, read back with ``iter_tar``) -> the shared decode
stage (``manifests.decode.decode_batch``) in a pool of CPU processes that prefetch batches ahead of the GPU,
handed over through shared memory as Ray's object store does (``support/shm_feed.py``; the pool's pipe as a
baseline) -> the stage callables the Ray actors run (``ClipScorer``,
``AestheticScorer``, ``ClipNsfwScorer``, ``SscdEmbedder``), with random weights built from the real configs (throughput does not depend on weight
values; the heads' random state dicts go through the same ``load_state`` seam as the published files).

Per configuration: images/s, the model alone on device-resident inputs (images/s), GPU busy fraction
(end-to-end rate / model-alone rate: the share of the time the GPU had work), FLOP per image (counted by
``torch.utils.flop_counter`` on the model's own forward, image + text towers) and MFU against the device's
dense bf16 peak (datasheet for H100/H200/A100, else the measured matmul peak; both are printed).
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures as cf
import contextlib
import multiprocessing
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from manifests import schema as col
from manifests.decode import DecodePlan, decode_batch, plan_decode
from manifests.shards import iter_tar, write_tar

DATASHEET_BF16 = {"H100": 989.4e12, "H200": 989.4e12, "A100": 312e12, "L40S": 362e12}
TINY_CLIP = {"embed_dim": 768, "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 32,
                                              "patch_size": 16},
             "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}}


def architecture(model: str, tiny: bool) -> tuple[str, dict | None]:
    """(open_clip model name, config to register or None): ``model`` itself, or with ``tiny`` a two-layer
    stand-in of its embedding width (the LAION heads read 768-d for L/14, 512-d for B/32)."""
    if not tiny:
        return model, None
    return f"tiny-{model}", {**TINY_CLIP, "embed_dim": 768 if "L" in model else 512}


def write_staged_tars(folder: Path, n: int, per_tar: int = 1024) -> list[Path]:
    from bench.score_inputs import staged_images

    blobs, captions = staged_images(n)
    tars = []
    for t, start in enumerate(range(0, n, per_tar)):
        samples = [(f"{i:09d}", {"jpg": blobs[i], "txt": captions[i].encode()})
                   for i in range(start, min(n, start + per_tar))]
        write_tar(folder / f"{t:05d}.tar", samples)
        tars.append(folder / f"{t:05d}.tar")
    return tars


def read_batches(tars: list[Path], batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    """Score batches (sample_id, image, caption) from the staged tars, cycling for as long as asked."""
    while True:
        rows: list[tuple[str, bytes, str]] = []
        for tar in tars:
            for key, members in iter_tar(tar):
                rows.append((key, members["jpg"], members["txt"].decode()))
                if len(rows) == batch_size:
                    yield {col.SAMPLE_ID: np.array([r[0] for r in rows], dtype=object),
                           col.IMAGE: np.array([r[1] for r in rows], dtype=object),
                           col.CAPTION: np.array([r[2] for r in rows], dtype=object)}
                    rows = []


def prefetched(submit: Callable[[dict], cf.Future], batches: Iterator[dict], depth: int) -> Iterator[dict]:
    """Decoded batches in order, ``depth`` of them decoding ahead while the GPU works."""
    queue: collections.deque = collections.deque(submit(next(batches)) for _ in range(depth))
    while True:
        done = queue.popleft().result()
        queue.append(submit(next(batches)))
        yield done


def run_pipeline(stages: list, pool: cf.Executor, tars: list[Path], plan: DecodePlan, args: Any,
                 shm: bool = False) -> float:
    """End-to-end images/s of ``stages`` over the staged tars for ``args.seconds`` after a warm-up, fed by
    ``args.feeders`` threads (as Ray runs several actors per GPU with ``num_gpus: 0.5``: one's host-side
    work overlaps another's forward pass). ``shm``: decoded arrays come back through shared memory
    (``support.shm_feed``, as Ray's object store hands blocks over), not pickled through the pool's pipe."""
    from support.shm_feed import Ring, decode_into, slot_bytes

    batches, depth = read_batches(tars, args.batch_size), 2 * args.workers
    ring = Ring(depth + args.feeders + 1, slot_bytes(decode_batch(next(batches), plan))) if shm else None
    submit = ((lambda batch: ring.submit(pool, decode_into, batch, plan)) if ring
              else (lambda batch: pool.submit(decode_batch, batch, plan)))
    release = ring.release if ring else (lambda batch: None)
    feed = prefetched(submit, batches, depth)
    lock = threading.Lock()

    def step() -> int:
        with lock:
            batch = next(feed)
        out = run_stages(stages, batch)
        release(out)
        return len(out[col.SAMPLE_ID])

    try:
        for _ in range(3):
            step()
        start = time.perf_counter()

        def feeder() -> int:
            images = 0
            while time.perf_counter() - start < args.seconds:
                images += step()
            return images

        with cf.ThreadPoolExecutor(args.feeders + 1) as feeders:
            util = feeders.submit(nvml_utilisation, start, args.seconds, args.device)
            images = sum(f.result() for f in [feeders.submit(feeder) for _ in range(args.feeders)])
            rate = images / (time.perf_counter() - start)
            UTILISATION.append(util.result())
    finally:
        feed.close()  # the decodes still in flight finish into slots nobody reads
        if ring:
            ring.close()
    return rate


UTILISATION: list[float | None] = []  # NVML's busy percentage of each run_pipeline call, in order


def nvml_utilisation(start: float, seconds: float, device: str) -> float | None:
    """Mean of NVML's GPU utilisation (share of time a kernel ran), sampled every 0.2 s; None without NVML."""
    import torch

    if not device.startswith("cuda"):
        return None
    samples = []
    while time.perf_counter() - start < seconds:
        try:
            samples.append(torch.cuda.utilization())
        except (RuntimeError, ImportError):  # no pynvml: the figure is absent, the run goes on
            return None
        time.sleep(0.2)
    return sum(samples) / len(samples) / 100 if samples else None


def run_stages(stages: list, batch: dict) -> dict:
    for stage in stages:
        batch = stage(batch)
    return batch


def synchronize(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def device_inputs(clip: Any, batch_size: int) -> tuple[Any, Any]:
    """Seeded uint8 pixels and caption tokens on the model's device. Caption lengths (to the end-of-text
    token) are uniform over 6-77 tokens, longer than most alt-texts: the text tower's length groups
    (``filters.clip.length_groups``) save less here than on crawled captions."""
    import torch

    h, w, _ = clip.pixels_need.shape()
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (batch_size, h, w, 3), dtype=torch.uint8, generator=generator)
    tokens = torch.randint(1, 49406, (batch_size, 77), dtype=torch.int64, generator=generator)
    ends = torch.randint(5, 77, (batch_size,), generator=generator)
    tokens[torch.arange(77) > ends[:, None]] = 0
    tokens[torch.arange(batch_size), ends] = 49407
    return pixels.to(clip.model.device), tokens.to(clip.model.device)


def alone_step(clip: Any, heads: list, batch_size: int) -> Callable[[], None]:
    """One batch of CLIP (+ heads) on device-resident inputs: the model alone, no decode, no copies in."""
    import torch

    from filters.clip import score

    pixels, tokens = device_inputs(clip, batch_size)

    def step() -> None:
        _, emb = score(clip.model, pixels, tokens)
        with torch.inference_mode():
            for head in heads:
                head.module(torch.from_numpy(emb).to(clip.model.device))

    return step


def model_alone(clip: Any, heads: list, batch_size: int, seconds: float) -> tuple[float, float]:
    """(images/s, FLOP per image) of CLIP (+ heads) on device-resident uint8 pixels and tokens."""
    from torch.utils.flop_counter import FlopCounterMode

    step = alone_step(clip, heads, batch_size)
    step()  # a compiled forward compiles here, not under the counter
    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops() / batch_size
    return timed(step, batch_size, seconds, clip.model.device), flops


SWEEP = [("bf16", False), ("bf16", True), ("fp8", False), ("fp8", True)]  # (precision, torch.compile)


def sweep_rows(args: Any, folder: Path, peak: float | None, emit: Callable[[str, dict], None]) -> None:
    """The model alone (CLIP + heads) under each ``SWEEP`` setting, with the largest change of a score
    against fp32 on the same random weights and inputs. (Random weights: a trained checkpoint's
    activations are not these, so the score change there is to be measured on it.)"""
    import torch

    from filters import fastpath
    from filters.clip import score

    for model, head, nsfw in (("ViT-L-14", "v2", "clip_l14"), ("ViT-B-32", "v1_b32", "clip_b32")):
        name, arch = architecture(model, args.tiny)
        reference = None
        for precision, compiled in [("fp32", False), *SWEEP]:
            if precision == "fp8" and not fastpath.float8_supported(torch.device(args.device)):
                continue
            variant = argparse.Namespace(**{**vars(args), "precision": precision, "compile": compiled})
            stages = clip_stages(name, arch, head, nsfw, variant, folder)
            with no_tf32():
                scores = score(stages[0].model, *device_inputs(stages[0], args.batch_size))[0]
            if reference is None:
                reference = scores
                continue
            alone, flops = model_alone(stages[0], stages[1:], args.batch_size, args.seconds / 2)
            emit("sweep", {"model": model, "precision": precision, "compiled": compiled, "images_per_s": alone,
                           "gflop_per_image": flops / 1e9, "mfu": alone * flops / peak if peak else None,
                           "max_score_change_vs_fp32": float(np.abs(scores - reference).max())})
            del stages
            if torch.cuda.is_available():
                torch.cuda.empty_cache()


@contextlib.contextmanager
def no_tf32() -> Iterator[None]:
    """fp32 as fp32 for the reference scores (cuDNN convolutions default to TF32)."""
    import torch

    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def profile_table(args: Any, folder: Path) -> str:
    """The kernels one ViT-L/14 (+ heads) model-alone batch spends its device time in, under the run's
    precision and compile settings: where the time goes that MFU does not explain."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    name, arch = architecture("ViT-L-14", args.tiny)
    stages = clip_stages(name, arch, "v2", "clip_l14", args, folder)
    step = alone_step(stages[0], stages[1:], args.batch_size)
    for _ in range(3):
        step()
    cuda = torch.device(args.device).type == "cuda"
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
        for _ in range(3):
            step()
        synchronize(torch.device(args.device))
    return prof.key_averages().table(sort_by="cuda_time_total" if cuda else "cpu_time_total", row_limit=30)


def timed(step: Any, batch_size: int, seconds: float, device: Any) -> float:
    for _ in range(3):
        step()
    synchronize(device)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        count += batch_size
    synchronize(device)
    return count / (time.perf_counter() - start)


def peak_flops(device: Any) -> tuple[float | None, float | None, str]:
    """(datasheet dense bf16 FLOP/s or None, measured bf16 matmul FLOP/s or None, device name)."""
    import torch

    if device.type != "cuda":
        return None, None, "cpu"
    name = torch.cuda.get_device_name()
    sheet = next((v for k, v in DATASHEET_BF16.items() if k in name), None)
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ a
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(20):
        a @ a
    torch.cuda.synchronize()
    return sheet, 2 * 8192**3 * 20 / (time.perf_counter() - start), name


def clip_stages(model: str, arch: dict | None, head: str, nsfw: str, args: Any, folder: Path) -> list:
    """ClipScorer + aesthetic + CLIP-NSFW heads, built through the stages' own configs and load seams."""
    import torch

    from filters.aesthetic import AestheticScorer
    from filters.clip import ClipScorer
    from support.random_models import write_architecture
    from filters.config import AestheticConfig, ClipScorerConfig, NsfwConfig
    from filters.nets import aesthetic_head, nsfw_head
    from filters.nsfw import ClipNsfwScorer

    arch_file = str(write_architecture(folder, model, arch)) if arch else None
    clip = ClipScorer(ClipScorerConfig(enabled=True, model=model, pretrained=None, architecture_file=arch_file,
                                       device=args.device, compile=args.compile, precision=args.precision))
    torch.save(aesthetic_head(head).state_dict(), folder / f"{head}.pth")
    torch.save(nsfw_head(nsfw).state_dict(), folder / f"{nsfw}.pth")
    return [clip, AestheticScorer(AestheticConfig(enabled=True, head=head, weights=str(folder / f"{head}.pth"),
                                                  device=args.device)),
            ClipNsfwScorer(NsfwConfig(enabled=True, backend=nsfw, weights=str(folder / f"{nsfw}.pth"),
                                      device=args.device))]


def clip_rows(pools: dict[str, cf.Executor], tars: list[Path], args: Any, folder: Path, peak: float | None,
              emit: Callable[[str, dict], None]) -> None:
    """ViT-L/14 and ViT-B/32: the CPU decode handed over through the pool's pipe and through shared memory,
    the CPU decode with the resize on the GPU, and the GPU decode (nvJPEG)."""
    from filters.clip import ClipScorer

    runs = [("cpu", "processes"), ("cpu", "processes (shm)"), ("cpu, gpu resize", "processes (shm)"),
            ("gpu", "processes")]
    variants = [("ViT-L-14", "v2", "clip_l14", runs), ("ViT-B-32", "v1_b32", "clip_b32", runs)]
    for model, head, nsfw, runs in variants:
        name, arch = architecture(model, args.tiny)
        stages = clip_stages(name, arch, head, nsfw, args, folder)
        alone, flops = model_alone(stages[0], stages[1:], args.batch_size, args.seconds / 2)
        for decode, pool in runs:
            plan = plan_decode([ClipScorer.needs(stages[0].config)], device=decode.split(",")[0],
                               resize="gpu" if "gpu" in decode else "cpu")
            try:
                rate = run_pipeline(stages, pools[pool.split()[0]], tars, plan, args, shm="shm" in pool)
            except OSError as error:  # no room in /dev/shm for the ring: say so, keep the other rows
                print(f"skipped {model} {decode} decode ({pool}): {error}")
                continue
            emit("rows", row(f"{model} + heads {head}, {nsfw}; {args.precision}{' compiled' if args.compile else ''}; "
                             f"{decode} decode ({pool})", rate, alone, flops, peak))
        del stages


def sscd_row(pool: cf.Executor, tars: list[Path], args: Any, peak: float | None) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from dedup.config import SscdConfig
    from dedup.sscd import SscdEmbedder

    tiny = {"layers": (1, 1, 1, 1), "init_planes": 8, "dims": 16, "image_size": 64} if args.tiny else {}
    stage = SscdEmbedder(SscdConfig(enabled=True, random_init=True, device=args.device, **tiny))
    size = stage.config.image_size
    pixels = [np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)] * args.batch_size
    with FlopCounterMode(display=False) as counter:
        stage.embed(pixels)
    flops = counter.get_total_flops() / args.batch_size
    alone = timed(lambda: stage.embed(pixels), args.batch_size, args.seconds / 2, torch.device(stage.device))
    plan = plan_decode([SscdEmbedder.needs(stage.config)])
    try:
        rate, how = run_pipeline([stage], pool, tars, plan, args, shm=True), "processes (shm)"
    except OSError as error:  # no room in /dev/shm: the pipe hand-over
        print(f"SSCD through the pool's pipe: {error}")
        rate, how = run_pipeline([stage], pool, tars, plan, args), "processes"
    return row(f"SSCD ResNet-50 ({size} px short side); cpu decode ({how})", rate, alone, flops, peak)


def row(name: str, rate: float, alone: float, flops: float, peak: float | None) -> dict:
    return {"config": name, "images_per_s": rate, "model_alone_images_per_s": alone,
            "gpu_busy_fraction": min(1.0, rate / alone), "nvml_utilisation": UTILISATION[-1],
            "gflop_per_image": flops / 1e9, "mfu": rate * flops / peak if peak else None}


def gpu_report(args: Any) -> dict:
    """Every row is saved (``score_path_gpu.json``) and printed as it lands: a run cut short by a time limit
    keeps what it measured."""
    import torch

    from bench.score_inputs import write

    device = torch.device(args.device)
    args.workers = args.workers or max(1, (os.cpu_count() or 2) - 2)
    if args.tiny:
        args.batch_size, args.seconds = min(args.batch_size, 16), min(args.seconds, 1.0)
    sheet, measured, name = peak_flops(device)
    report = {"device": name, "peak_bf16_datasheet_tflops": sheet and sheet / 1e12,
              "peak_bf16_measured_tflops": measured and measured / 1e12, "decode_workers": args.workers,
              "batch_size": args.batch_size, "feeders": args.feeders, "seconds": args.seconds,
              "precision": args.precision, "compile": args.compile, "tiny": args.tiny, "rows": [], "sweep": [],
              "profile": None}
    print_header(report)

    def emit(key: str, item: Any) -> None:
        report[key] = [*report[key], item] if isinstance(report[key], list) else item
        write("score_path_gpu.json", report, quiet=True)
        print_item(key, item, report)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        tars = write_staged_tars(folder, 64 if args.tiny else 4096)
        context = multiprocessing.get_context("spawn")  # the parent holds CUDA: never fork it
        with cf.ProcessPoolExecutor(args.workers, mp_context=context) as processes:
            clip_rows({"processes": processes}, tars, args, folder, sheet or measured, emit)
            emit("rows", sscd_row(processes, tars, args, sheet or measured))
        if args.sweep:
            sweep_rows(args, folder, sheet or measured, emit)
        if args.profile:
            emit("profile", profile_table(args, folder))
    return report


def peak_of(r: dict) -> float | None:
    return r["peak_bf16_datasheet_tflops"] or r["peak_bf16_measured_tflops"]


def print_header(r: dict) -> None:
    print(f"device {r['device']}; bf16 peak: datasheet {r['peak_bf16_datasheet_tflops']} TFLOP/s, measured "
          f"{r['peak_bf16_measured_tflops'] and round(r['peak_bf16_measured_tflops'])} TFLOP/s; "
          f"{r['decode_workers']} decode workers, batch {r['batch_size']}, {r['feeders']} feeder threads"
          + (f" (MFU against {peak_of(r):.0f} TFLOP/s)" if peak_of(r) else ""))
    print("GPU busy: end-to-end img/s over the model alone on device-resident inputs; NVML: the driver's share "
          "of time a kernel ran")
    print(f"{'configuration':80} {'img/s':>7} {'model alone':>11} {'GPU busy':>8} {'NVML':>5} {'GFLOP/img':>9} "
          f"{'MFU':>6}")


def print_item(key: str, x: Any, r: dict) -> None:
    """One row of the end-to-end table or of the sweep (its header before its first row), or the profile."""
    if key == "profile":
        print("\nViT-L/14 model alone, where the device time goes:\n" + x)
        return
    mfu = f"{x['mfu']:.1%}" if x["mfu"] is not None else "-"
    if key == "rows":
        nvml = f"{x['nvml_utilisation']:.0%}" if x["nvml_utilisation"] is not None else "-"
        print(f"{x['config']:80} {x['images_per_s']:7.0f} {x['model_alone_images_per_s']:11.0f} "
              f"{x['gpu_busy_fraction']:8.1%} {nvml:>5} {x['gflop_per_image']:9.1f} {mfu:>6}")
        return
    if len(r["sweep"]) == 1:
        print(f"\nmodel alone (CLIP + heads, batch {r['batch_size']}, device-resident inputs; random weights: a "
              f"trained checkpoint's score change is to be measured on it)")
        print(f"{'model':10} {'precision':9} {'compiled':8} {'img/s':>7} {'MFU':>6} {'max |score change| vs fp32':>27}")
    print(f"{x['model']:10} {x['precision']:9} {str(x['compiled']):8} {x['images_per_s']:7.0f} {mfu:>6} "
          f"{x['max_score_change_vs_fp32']:27.4f}")
