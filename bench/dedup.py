"""Dedup benchmarks: MinHash signature rate, caption LSH at 1M, float kNN at 1M x 512, pHash search at 1M,
PDQ descriptor time per image and PDQ region search at 1M codes.

    PYTHONPATH=. python bench/dedup.py [--scale 0.1] [--only minhash,lsh,knn,phash,pdq] [--threads 2]

Each section runs in its own forked process, so its peak RSS is its own. Prints a table and writes
bench/results/dedup-<time>.json. --scale multiplies every size (1.0 = the sizes in the issue).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dedup.config import MinHashConfig, SearchConfig  # noqa: E402
from dedup.minhash import MinHasher  # noqa: E402
from support.dedup_synthetic import captions  # noqa: E402


def cpu_seconds() -> float:
    """User + system CPU of this process, all threads: with the wall time it shows how contended the run was."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _datasketch_loop(sets: list[list[str]], **kwargs) -> list[np.ndarray]:
    """datasketch's per-object update loop over already-made shingles (shingling not timed)."""
    from datasketch import MinHash

    out = []
    for shingles in sets:
        mh = MinHash(num_perm=128, seed=1, **kwargs)
        for shingle in shingles:
            mh.update(shingle.encode())
        out.append(mh.hashvalues)
    return out


def _rate(hasher: MinHasher, texts: list[str]) -> tuple[np.ndarray, float, float]:
    """Signatures, captions per CPU second of this (single-threaded) process, per wall second."""
    hasher.signatures(texts[:2000])  # warm up
    start, wall = time.process_time(), time.perf_counter()
    sigs, _ = hasher.signatures(texts)
    return sigs, len(texts) / (time.process_time() - start), len(texts) / (time.perf_counter() - wall)


def bench_minhash(scale: float, threads: int) -> dict:
    from dedup.shingles import hash32

    n = max(2000, int(200_000 * scale))
    texts, _ = captions(n, seed=1)
    ours, ours_core, ours_wall = _rate(MinHasher(128, 3, 1, hashfunc="poly64"), texts)
    sha1, sha1_core, _ = _rate(MinHasher(128, 3, 1, hashfunc="sha1"), texts)
    m = max(1000, n // 10)
    sets = MinHasher(128, 3, 1).shingle_sets(texts[:m])
    start = time.process_time()
    reference = _datasketch_loop(sets)
    loop_core = m / (time.process_time() - start)
    k = min(m, 2000)  # the pure-Python hash32 is slow: a smaller check
    reference_poly = _datasketch_loop(sets[:k], hashfunc=hash32)
    return {"captions": n, "shingles_per_caption": float(np.mean([len(s) for s in sets])),
            "ours_poly64_per_s_core": ours_core, "ours_poly64_per_s_wall": ours_wall,
            "ours_sha1_per_s_core": sha1_core,
            "datasketch_captions": m, "datasketch_loop_per_s_core": loop_core,
            "speedup_poly64_vs_datasketch": ours_core / loop_core,
            "speedup_sha1_vs_datasketch": sha1_core / loop_core,
            "sha1_identical_to_datasketch": all(np.array_equal(a, b) for a, b in zip(reference, sha1[:m])),
            "poly64_checked_captions": k,
            "poly64_identical_to_datasketch_hash32": all(np.array_equal(a, b) for a, b in zip(reference_poly, ours[:k]))}


def bench_lsh(scale: float, threads: int) -> dict:
    import polars as pl
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dedup.artefacts import SampleIndex
    from support.dedup_reference import caption_pairs

    n = int(1_000_000 * scale)
    start = time.perf_counter()
    texts, source = captions(n, dup_fraction=0.1, seed=2)
    generate = time.perf_counter() - start
    config = MinHashConfig(enabled=True)
    hasher = MinHasher.of(config)
    ids = np.array([f"{i:09d}" for i in range(n)])
    with tempfile.TemporaryDirectory(prefix="dedup-bench-") as tmp:
        files = []
        start = time.perf_counter()
        for k, part in enumerate(np.array_split(np.arange(n), 10)):
            sigs, valid = hasher.signatures([texts[i] for i in part])
            blobs = [s.astype("<u4").tobytes() if v else None for s, v in zip(sigs, valid)]
            files.append(Path(tmp) / f"{k:03d}.parquet")
            pq.write_table(pa.table({"sample_id": ids[part], "caption_minhash": pa.array(blobs, pa.binary())}), files[-1])
        signing = time.perf_counter() - start
        del sigs, blobs
        start, cpu = time.perf_counter(), cpu_seconds()
        pairs = caption_pairs(config, files, SampleIndex.of(pl.Series(ids)), Path(tmp) / "work")
        lsh, lsh_cpu = time.perf_counter() - start, cpu_seconds() - cpu
    found = set(zip(pairs["sample_a"].to_list(), pairs["sample_b"].to_list()))
    planted = [(ids[s], ids[i]) for i, s in enumerate(source) if s >= 0]
    needed = sorted({int(i) for pair in planted for i in pair})  # one columnar call, not one per caption
    sets = dict(zip(needed, hasher.shingle_sets([texts[i] for i in needed])))
    def shingle_set(i: int) -> set:
        return set(sets[i] or [])
    above = [(a, b) for a, b in planted
             if len(shingle_set(int(a)) & shingle_set(int(b))) / max(1, len(shingle_set(int(a)) | shingle_set(int(b))))
             >= config.threshold]
    recall = sum((a, b) in found for a, b in above) / max(1, len(above))
    return {"captions": n, "generate_s": generate, "signatures_s": signing, "lsh_cluster_s": lsh, "lsh_cluster_cpu_s": lsh_cpu,
            "pairs": pairs.height, "planted_pairs_jaccard_ge_0.8": len(above), "recall_of_those": recall,
            "peak_rss_mib": peak_rss_mib()}


def planted_vectors(n: int, d: int, planted: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, 100_000):
        x[start:start + 100_000] = rng.standard_normal((min(100_000, n - start), d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    src = rng.choice(n - planted, planted, replace=False)
    dst = np.arange(n - planted, n)
    noise = rng.standard_normal((planted, d), dtype=np.float32) * rng.uniform(0.3, 0.7, (planted, 1)).astype(np.float32)
    x[dst] = x[src] + noise / np.sqrt(d)
    x[dst] /= np.linalg.norm(x[dst], axis=1, keepdims=True)
    return x, np.stack([src, dst], axis=1)


def bench_knn(scale: float, threads: int, sample_queries: int = 20_000) -> dict:
    """The library's CPU path (IVF self-join, default nlist/nprobe) on the whole set; FAISS's own
    IndexIVFFlat search with the same centroids and nprobe, and exact IndexFlatIP search, timed on
    ``sample_queries`` queries and extrapolated to all n: they would find the same (IVF) or more (exact)
    pairs, so only their time is compared."""
    import faiss

    from dedup.ivfjoin import train_centroids
    from dedup.search import float_pairs

    faiss.omp_set_num_threads(threads)
    n, planted = int(1_000_000 * scale), max(100, int(10_000 * scale))
    x, pairs = planted_vectors(n, 512, planted)
    config = SearchConfig(exact_max=1, use_gpu=False)
    nlist = int(4 * np.sqrt(n))  # the library default
    start, cpu = time.perf_counter(), cpu_seconds()
    a, b, _ = float_pairs(x, 0.75, config)
    join_s, join_cpu, join_rss = time.perf_counter() - start, cpu_seconds() - cpu, peak_rss_mib()
    found = set(zip(a.tolist(), b.tolist()))
    recall = np.mean([(min(s, d), max(s, d)) in found for s, d in pairs])
    q = min(n, sample_queries)
    queries = x[np.random.default_rng(1).choice(n, q, replace=False)]
    start = time.perf_counter()
    quantizer = faiss.IndexFlatIP(512)
    quantizer.add(train_centroids(x, nlist, config))
    ivf = faiss.IndexIVFFlat(quantizer, 512, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.is_trained = True
    for lo in range(0, n, 65_536):
        ivf.add(x[lo:lo + 65_536])
    ivf.nprobe = config.nprobe
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    ivf.search(queries, config.k)
    ivf_s = build_s + (time.perf_counter() - start) * n / q
    exact = faiss.IndexFlatIP(512)
    exact.add(x)
    start = time.perf_counter()
    exact.search(queries[:q // 4], config.k)
    exact_s = (time.perf_counter() - start) * n / (q // 4)
    return {"vectors": n, "dim": 512, "threads": threads, "planted": planted, "nlist": nlist, "nprobe": config.nprobe,
            "ivf_join_wall_s": join_s, "ivf_join_cpu_s": join_cpu, "ivf_join_recall_planted": float(recall),
            "ivf_join_pairs": len(found), "faiss_ivf_search_wall_s_extrapolated": ivf_s,
            "exact_wall_s_extrapolated": exact_s, "measured_queries_ivf_exact": [q, q // 4],
            "speedup_vs_faiss_ivf": ivf_s / join_s, "speedup_vs_exact": exact_s / join_s,
            "peak_rss_mib_after_join": join_rss, "peak_rss_mib": peak_rss_mib()}


def bench_phash(scale: float, threads: int) -> dict:
    import faiss

    from dedup.search import binary_pairs, build_binary_index

    faiss.omp_set_num_threads(threads)
    n, planted = int(1_000_000 * scale), max(100, int(10_000 * scale))
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 256, size=(n, 8), dtype=np.uint8)
    codes[n - planted:] = codes[:planted] ^ (rng.random((planted, 8)) < 0.08).astype(np.uint8)
    nlist = max(16, int(np.sqrt(n)))
    config = SearchConfig(exact_max=1, nlist=nlist, nprobe=16, train_sample=20_000, query_batch=65_536)
    start, cpu = time.perf_counter(), cpu_seconds()
    a, b, _ = binary_pairs(codes, 10, config)
    ivf_s, ivf_cpu = time.perf_counter() - start, cpu_seconds() - cpu
    found = set(zip(a.tolist(), b.tolist()))
    dist = np.unpackbits(codes[:planted] ^ codes[n - planted:], axis=1).sum(1)
    within = [(i, n - planted + i) for i in range(planted) if dist[i] <= 10]
    recall = np.mean([p in found for p in within])
    flat = build_binary_index(codes, SearchConfig(exact_max=n))
    q = min(n, 20_000)
    start = time.perf_counter()
    flat.range_search(codes[:q], 11)
    flat_s = (time.perf_counter() - start) * n / q
    return {"codes": n, "bits": 64, "threads": threads, "radius": 10, "ivf_nlist": nlist, "ivf_nprobe": 16,
            "ivf_wall_s": ivf_s, "ivf_cpu_s": ivf_cpu, "ivf_recall_planted": float(recall),
            "flat_wall_s_extrapolated": flat_s,
            "flat_measured_queries": q, "peak_rss_mib": peak_rss_mib()}


def descriptor_ms(stage, images: list[bytes], repeat: int = 2) -> float:
    """Milliseconds per image of a score stage on staged JPEG bytes (decode included), best of ``repeat``."""
    batch = {"image": np.array(images, dtype=object)}
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        stage(dict(batch))
        best = min(best, time.perf_counter() - start)
    return 1000 * best / len(images)


def staged_photos(n: int) -> list[bytes]:
    """``n`` 256-px JPEGs of the bundled photos (as ingest stages them), cycling through the photos."""
    from pipelines.cli.corpus import jpeg, load_photos

    photos = [img for img, _ in load_photos().values()]
    out = []
    for i in range(n):
        img = photos[i % len(photos)].copy()
        img.thumbnail((256, 256))
        out.append(jpeg(img, 90))
    return out


def bench_pdq(scale: float, threads: int) -> dict:
    """Descriptor time per image (PDQ + regions + flips, PDQ alone, pHash) and the region search at 1M codes."""
    import faiss

    from dedup.config import PdqConfig, PHashConfig, VerifyConfig
    from dedup.pdq import PdqHasher
    from dedup.phash import PerceptualHasher
    from dedup.search import build_binary_index, region_pairs

    UNVERIFIED = VerifyConfig(enabled=False)

    faiss.omp_set_num_threads(threads)
    images = staged_photos(max(34, int(200 * scale)))
    ms = {"phash64_mirror_ms": descriptor_ms(PerceptualHasher(PHashConfig()), images),
          "pdq_plain_ms": descriptor_ms(PdqHasher(PdqConfig(regions=(), dihedral=False, verify=UNVERIFIED)), images),
          "pdq_regions_flips_ms": descriptor_ms(PdqHasher(PdqConfig(verify=UNVERIFIED)), images),
          "pdq_regions_flips_orb_ms": descriptor_ms(PdqHasher(PdqConfig()), images)}
    per_sample, queried = 10, 3  # 8 flips/rot90s + 2 crops indexed; identity + 2 crops query
    n_codes = int(1_000_000 * scale)
    samples, planted = n_codes // per_sample, max(100, int(10_000 * scale))
    rng = np.random.default_rng(4)
    codes = rng.integers(0, 256, size=(samples, per_sample, 32), dtype=np.uint8)
    # A planted copy: its identity code 20 bits (on average) from its original's first crop region.
    noise = np.packbits(rng.random((planted, 256)) < 20 / 256, axis=1)
    codes[samples - planted:, 0] = codes[:planted, 8] ^ noise
    owner = np.repeat(np.arange(samples), per_sample)
    query_cols = [0, 8, 9]
    queries, query_owner = codes[:, query_cols].reshape(-1, 32), np.repeat(np.arange(samples), queried)
    nlist = max(16, int(np.sqrt(n_codes)))
    config = SearchConfig(exact_max=1, nlist=nlist, nprobe=16, train_sample=50_000, query_batch=65_536)
    start, cpu = time.perf_counter(), cpu_seconds()
    a, b, _ = region_pairs(codes.reshape(-1, 32), owner, queries, query_owner, 31, config)
    ivf_s, ivf_cpu = time.perf_counter() - start, cpu_seconds() - cpu
    found = set(zip(a.tolist(), b.tolist()))
    dist = np.unpackbits(noise, axis=1).sum(1)
    within = [(i, samples - planted + i) for i in range(planted) if dist[i] <= 31]
    flat = build_binary_index(codes.reshape(-1, 32), SearchConfig(exact_max=n_codes))
    q = min(len(queries), 5_000)
    start = time.perf_counter()
    flat.range_search(np.ascontiguousarray(queries[:q]), 32)
    flat_s = (time.perf_counter() - start) * len(queries) / q
    return {**ms, "images_timed": len(images), "indexed_codes": n_codes, "samples": samples, "query_codes": len(queries),
            "bits": 256, "radius": 31, "threads": threads, "ivf_nlist": nlist, "ivf_nprobe": 16,
            "ivf_wall_s": ivf_s, "ivf_cpu_s": ivf_cpu, "ivf_recall_planted": float(np.mean([p in found for p in within])),
            "flat_wall_s_extrapolated": flat_s, "flat_measured_queries": q, "peak_rss_mib": peak_rss_mib()}


SECTIONS = {"minhash": bench_minhash, "lsh": bench_lsh, "knn": bench_knn, "phash": bench_phash}
SECTIONS["pdq"] = bench_pdq


def _child(name: str, scale: float, threads: int, queue: mp.Queue) -> None:
    start = time.perf_counter()
    result = SECTIONS[name](scale, threads)
    result["section_wall_s"] = time.perf_counter() - start
    queue.put(result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--only", default=",".join(SECTIONS))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    results = {"scale": args.scale, "threads": args.threads, "load_average_at_start": list(os.getloadavg()),
               "sections": {}}
    ctx = mp.get_context("fork")
    for name in args.only.split(","):
        queue = ctx.Queue()
        proc = ctx.Process(target=_child, args=(name, args.scale, args.threads, queue))
        proc.start()
        results["sections"][name] = queue.get()
        proc.join()
        print(f"\n== {name} (scale {args.scale})")
        for key, value in results["sections"][name].items():
            print(f"  {key:32s} {value:,.3f}" if isinstance(value, float) else f"  {key:32s} {value}")
    out = Path(__file__).resolve().parent / "results" / f"dedup-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=float))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
