"""Which duplicate detectors run, and their thresholds.

Every detector stores the pairs it finds with a similarity in [0, 1] (``store_threshold`` and up), and
the clustering keeps those at or above its ``threshold``: so a threshold can be tightened, or loosened
down to ``store_threshold``, by re-clustering ``dedup/pairs.parquet`` without recomputing descriptors.

Defaults:
- exact: sha256 of the original bytes, and sha256 of the decoded pixels at ``canonical_size`` squared.
- minhash: 128 permutations (datasketch's default), word 3-grams of the normalised caption, Jaccard 0.8
  (the usual near-duplicate point for short texts); captions of fewer than 4 words carry too little
  text to call two samples duplicates ("image", "click here") and get no signature. Shingles are hashed
  with the vectorised "poly64" hash (``hashfunc="sha1"`` gives datasketch's default hash, slower).
- phash: 64-bit DCT pHash of the image and of its mirror, Hamming distance <= 10 (similarity >= 0.84375);
  the closest two distinct bundled photos are 20 apart. pHash survives re-encodes, rescales, flips and
  colour changes, not much cropping or rotation: those are what SSCD is for.
- sscd: sscd_disc_mixup, cosine >= 0.75 (the SSCD authors' 90%-precision point on DISC2021).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from manifests import schema as col
from manifests.config import StrictModel


class _Detector(StrictModel):
    enabled: bool = False
    threshold: float = Field(0.8, ge=0, le=1, description="pairs at or above this similarity are duplicates")
    store_threshold: float | None = Field(
        None, ge=0, le=1, description="pairs at or above this are stored for later re-clustering; default threshold")

    @property
    def stored_from(self) -> float:
        return self.threshold if self.store_threshold is None else self.store_threshold

    @model_validator(mode="after")
    def _store_below_threshold(self):
        if self.store_threshold is not None and self.store_threshold > self.threshold:
            raise ValueError(f"store_threshold={self.store_threshold} must be <= threshold={self.threshold}")
        return self


class ExactConfig(StrictModel):
    enabled: bool = False
    sha256: bool = Field(True, description="identical original bytes (ingest's sha256 column)")
    pixels: bool = Field(True, description="identical decoded pixels at canonical_size (the pixel_hash stage)")
    canonical_size: int = Field(64, ge=8, le=1024)


class MinHashConfig(_Detector):
    """Caption near-duplicates: MinHash (datasketch's affine32 scheme) + LSH banding + verification."""

    threshold: float = Field(0.8, gt=0, le=1, description="estimated Jaccard similarity of shingle sets")
    num_perm: int = Field(128, ge=8, le=1024)
    ngram: int = Field(3, ge=1, le=16, description="word n-gram shingles of the normalised caption")
    min_words: int = Field(4, ge=1, description="shorter captions get no signature")
    seed: int = Field(1, description="datasketch MinHash seed: picks the permutations")
    hashfunc: Literal["poly64", "sha1"] = Field(
        "poly64", description="shingle hash. poly64: a vectorised polynomial hash of the shingle's bytes "
                              "(dedup.shingles.hash32; equal to datasketch MinHash(hashfunc=hash32)); sha1: "
                              "datasketch's default hashfunc, bit-identical to MinHash().update(shingle.encode()), "
                              "several times slower. Changing it changes every signature")
    bands: int | None = Field(None, ge=1, description="LSH bands; default: datasketch's optimum for threshold")
    false_negative_weight: float = Field(0.9, gt=0, lt=1, description="weight of misses vs candidates in that optimum")
    max_bucket: int = Field(64, ge=2, description="a bucket larger than this pairs each member with its first only")


class PHashConfig(_Detector):
    """Image near-duplicates by perceptual hash, searched in a FAISS binary index by Hamming radius."""

    bits: Literal[64, 256] = 64
    mirror: bool = Field(True, description="also hash the mirrored image, so left-right flips match")
    threshold: float = Field(0.84375, gt=0, le=1, description="1 - hamming/bits; 0.84375 = distance 10 of 64")


class SscdConfig(_Detector):
    """Image near-duplicates by SSCD descriptors (sscd_disc_mixup: ResNet-50, GeM, 512-d, L2-normalised)."""

    threshold: float = Field(0.75, gt=-1, le=1, description="cosine similarity")
    checkpoint: str | None = Field(None, description="official TorchScript file or a state dict (.pt/.pth)")
    random_init: bool = Field(False, description="no checkpoint: random weights (tests and benchmarks only)")
    layers: tuple[int, int, int, int] = (3, 4, 6, 3)
    init_planes: int = Field(64, ge=1)
    dims: int = Field(512, ge=1)
    pool_param: float = Field(3.0, gt=0)
    image_size: int = Field(288, ge=16, description="the short side is resized to this")
    device: Literal["auto", "cpu", "cuda"] = "auto"

    @model_validator(mode="after")
    def _weights(self):
        if self.enabled and self.checkpoint is None and not self.random_init:
            raise ValueError("dedup.sscd is enabled without weights: set dedup.sscd.checkpoint to the "
                             "sscd_disc_mixup TorchScript file or state dict (random_init=true is for tests)")
        return self


class SearchConfig(StrictModel):
    """FAISS search of SSCD vectors and pHash codes: exact up to exact_max rows, IVF beyond.

    Float vectors beyond exact_max on CPU go through the IVF self-join (``dedup.ivfjoin``): recall of
    near-duplicates grows with nprobe/nlist (1M random 512-d vectors, nlist 4000: 0.91 at nprobe 8,
    0.965 at 16; real descriptors cluster, which helps), cost with nlist + nprobe * n / nlist.
    """

    exact_max: int = Field(200_000, ge=1)
    nlist: int | None = Field(None, ge=1, description="IVF lists; default 4*sqrt(n) (float), sqrt(n) (binary)")
    nprobe: int = Field(16, ge=1)
    train_sample: int = Field(100_000, ge=1)
    train_iterations: int = Field(10, ge=1, description="k-means iterations of the float IVF quantizer")
    train_per_list: int = Field(20, ge=1, description="k-means sample per list for the CPU float IVF self-join: its "
                                                       "lists only need to be balanced, not a faithful quantizer")
    add_batch: int = Field(65_536, ge=1)
    query_batch: int = Field(16_384, ge=1)
    k: int = Field(16, ge=2, description="neighbours per query kept if above the threshold")
    use_gpu: bool = Field(True, description="use a GPU index when faiss has GPU support and sees a GPU")
    seed: int = 0


class KeepConfig(StrictModel):
    """One sample per cluster: highest value of each column in turn, then the smallest sample_id."""

    order: tuple[str, ...] = (col.AESTHETIC_SCORE, col.CLIP_SCORE, "resolution")
    mode: Literal["greedy", "component"] = Field(
        "greedy", description="component: exactly one kept per connected component; greedy: best first, keep "
                              "each sample with no direct duplicate among the kept (caption and image links "
                              "chain distinct pictures into one component, e.g. via a reused caption)")


class PartitionsConfig(StrictModel):
    """How the dedup phase's global steps are cut into tasks (``dedup.partitioned``).

    Every shuffle (exact keys, LSH band keys, signatures, IVF lists, graph edges, clusters) gets
    ceil(rows x row size / bytes_per_bucket) buckets, so a task's memory follows ``bytes_per_bucket``
    (a task peaks at a few times its bucket's bytes), not the run.
    """

    enabled: bool = Field(True, description="run dedup as partitioned tasks on the cluster; false: in one "
                                            "process (the reference implementation, for small runs and tests)")
    bytes_per_bucket: int = Field(128 << 20, ge=1, description="shuffled bytes per bucket (one task's input)")
    buckets: int | None = Field(None, ge=1, description="a fixed bucket count for every shuffle (tests)")



class DedupConfig(StrictModel):
    exact: ExactConfig = ExactConfig()
    minhash: MinHashConfig = MinHashConfig()
    phash: PHashConfig = PHashConfig()
    sscd: SscdConfig = SscdConfig()
    search: SearchConfig = SearchConfig()
    keep: KeepConfig = KeepConfig()
    partitions: PartitionsConfig = PartitionsConfig()

    def thresholds(self) -> dict[str, float]:
        """Decision threshold per detector, as ``cluster()`` takes them."""
        return {"sha256": 1.0, "pixels": 1.0, "minhash": self.minhash.threshold,
                "phash": self.phash.threshold, "sscd": self.sscd.threshold}
