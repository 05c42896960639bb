"""Which duplicate detectors run, and their thresholds.

Every detector stores the pairs it finds with a similarity in [0, 1] (``store_threshold`` and up), and
the clustering keeps those at or above its ``threshold``: so a threshold can be tightened, or loosened
down to ``store_threshold``, by re-clustering ``dedup/pairs.parquet`` without recomputing descriptors.

Defaults:
- exact (the one detector on by default): sha256 of the original bytes, and sha256 of the decoded pixels at
  ``canonical_size`` squared.
- minhash: 128 permutations (datasketch's default), word 3-grams of the normalised caption, Jaccard 0.8
  (the usual near-duplicate point for short texts); captions of fewer than 4 words carry too little
  text to call two samples duplicates ("image", "click here") and get no signature. Shingles are hashed
  with the vectorised "poly64" hash (``hashfunc="sha1"`` gives datasketch's default hash, slower).
- phash: 64-bit DCT pHash of the image and of its mirror, Hamming distance <= 10 (similarity >= 0.84375);
  the closest two distinct bundled photos are 20 apart. pHash survives re-encodes, rescales, flips and
  colour changes, not much cropping or rotation: those are what SSCD is for.
- sscd: sscd_disc_mixup, cosine >= 0.75 (the SSCD authors' 90%-precision point on DISC2021); pairs of
  two near-blank images (cosine >= 0.9 with a blank image's descriptor) are refused.
- pdq: the default image detector (the demo's): 256-bit PDQ of the content region, Hamming distance
  <= 31 (PDQ's reference point), regions = the full image in 8 flips/rot90s + centre crops at 0.8 and
  0.64 of each side; images with PDQ quality < 50 (flat colours, gradients) get no perceptual pair.
  On bench/neardup_eval.py: precision 0.998 (the only false pairs: one shape in two colours), recall
  0.95 over the main edits; pHash: 0.986 and 0.75. Memory: 10 codes x 32 bytes per sample in the index.
  ``pdq.verify`` (off by default; on in the demo): pairs to distance 80 count when ORB + RANSAC finds
  >= 12 inliers; it lifts centred 60% crops from 0 to ~0.6 and 5-degree rotations from 0 to ~0.7.
  The region is hashed with its luminance stretched (gain <= 2.5; not under a 48-level spread): contrast x0.5-0.8
  copies of photos kept their PDQ hash (distance <= 12) but fell under min_quality, and lost their pairs.
  Colour gate: PDQ hashes luminance, so one design in two colours (a recolour) hashes alike (PDQ 0-24 apart). A
  pdq or pdq_verified pair counts only when the less colourful image's chroma lies >= 0.2 at hues the other has
  (24 CIELAB hue bins, ``dedup.pdq.colour_overlap``), or either image is grey (mean chroma < 0.005). Chosen by
  bench/colour_gate.py on the tune split: of 32 recolour twins within PDQ distance 80 (seeds 0 and 1) the highest
  overlap is 0.165; of 2774 true pairs (crops, photometric edits, banner, grey) 5 fall under 0.2 (a banner
  over the coloured part; copies of a near-grey slide), 3 of them within distance 31.
- layout (on whenever pdq is): the images under pdq.min_quality + 20 get a 16 x 16 CIELAB colour layout,
  matched at RMS Delta E <= 4 and <= 0.15 of the two images' own variation, over the whole image or all but its
  top or bottom quarter (``dedup.layout``). Chosen on the tune split of bench/neardup_eval.py, where 0.2 and
  0.25 paired brightened and grey copies of two different pastel landscapes.
  With verification, the ``keypoints`` detector (``pdq.verify.keypoints``, on unless turned off) pairs images
  sharing ORB keypoint keys once a similarity with >= 10 inliers spread across one image verifies them and their
  thumbnails agree (off-centre crops and rotations PDQ never reaches); about 2 x ``max_candidates`` verified
  per image at most, see bench/keypoint_scale.py for its cost as the corpus grows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

from pydantic import Field, model_validator

from manifests import schema as col
from manifests.config import DECIDES, FINDS, SCORES, StrictModel
from manifests.schema import DupKind


class _Detector(StrictModel):
    enabled: bool = Field(False, description="run this detector: its duplicate pairs feed dedup's clusters")
    # Clustering re-applies both to the stored pairs; the dedup phase is done again only when a new
    # config needs pairs below those it stored (``stored_from``), see pipelines/run/phase_inputs.py.
    threshold: float = Field(0.8, ge=0, le=1, description="pairs at or above this similarity are duplicates",
                             json_schema_extra=DECIDES)
    store_threshold: float | None = Field(
        None, ge=0, le=1, description="pairs at or above this are stored for later re-clustering; default threshold",
        json_schema_extra=DECIDES)

    @property
    def stored_from(self) -> float:
        return self.threshold if self.store_threshold is None else self.store_threshold

    @model_validator(mode="after")
    def _store_below_threshold(self):
        if self.store_threshold is not None and self.store_threshold > self.threshold:
            raise ValueError(f"store_threshold={self.store_threshold} must be <= threshold={self.threshold}")
        return self


class ExactConfig(StrictModel):
    enabled: bool = Field(True, description="find exact duplicates (by sha256 and/or pixels, below): on by default, "
                                            "so no two kept samples share bytes or pixels")
    sha256: bool = Field(True, description="identical original bytes (ingest's sha256 column)",
                         json_schema_extra=FINDS)
    pixels: bool = Field(True, description="identical decoded pixels at canonical_size (the pixel_hash stage)")
    canonical_size: int = Field(
        64, ge=8, le=1024, description="side in pixels of the square the content region is resized to for pixels",
        json_schema_extra=SCORES)


class MinHashConfig(_Detector):
    """Caption near-duplicates: MinHash (datasketch's affine32 scheme) + LSH banding + verification."""

    threshold: float = Field(0.8, gt=0, le=1, description="estimated Jaccard similarity of shingle sets",
                             json_schema_extra=DECIDES)
    num_perm: int = Field(128, ge=8, le=1024, description="MinHash permutations (signature length)")
    ngram: int = Field(3, ge=1, le=16, description="word n-gram shingles of the normalised caption")
    min_words: int = Field(4, ge=1, description="shorter captions get no signature", json_schema_extra=SCORES)
    seed: int = Field(1, description="datasketch MinHash seed: picks the permutations")
    hashfunc: Literal["poly64", "sha1"] = Field(
        "poly64", description="shingle hash. poly64: a vectorised polynomial hash of the shingle's bytes "
                              "(dedup.shingles.hash32; equal to datasketch MinHash(hashfunc=hash32)); sha1: "
                              "datasketch's default hashfunc, bit-identical to MinHash().update(shingle.encode()), "
                              "several times slower. Changing it changes every signature")
    bands: int | None = Field(None, ge=1, description="LSH bands; default: datasketch's optimum for threshold",
                              json_schema_extra=FINDS)
    false_negative_weight: float = Field(0.9, gt=0, lt=1, description="weight of misses vs candidates in that optimum",
                                         json_schema_extra=FINDS)
    max_bucket: int = Field(64, ge=2, description="a bucket larger than this pairs identical signatures with their "
                                                  "first and distinct ones with its first max_bucket distinct ones",
                            json_schema_extra=FINDS)


class PHashConfig(_Detector):
    """Image near-duplicates by perceptual hash, searched in a FAISS binary index by Hamming radius."""

    bits: Literal[64, 256] = Field(64, description="pHash length in bits (an 8x8 or 16x16 DCT hash)")
    mirror: bool = Field(True, description="also hash the mirrored image, so left-right flips match")
    min_quality: int = Field(50, ge=0, le=100, description="gradient quality (PDQ's measure, 0-100) below which an "
                                                          "image gets no pHash: flat and smooth images all hash alike",
                             json_schema_extra=SCORES)
    threshold: float = Field(0.84375, gt=0, le=1, description="1 - hamming/bits; 0.84375 = distance 10 of 64",
                             json_schema_extra=DECIDES)


class SscdConfig(_Detector):
    """Image near-duplicates by SSCD descriptors (sscd_disc_mixup: ResNet-50, GeM, 512-d, L2-normalised)."""

    threshold: float = Field(0.75, gt=-1, le=1, description="cosine similarity", json_schema_extra=DECIDES)
    checkpoint: str | None = Field(None, description="official TorchScript file or a state dict (.pt/.pth)")
    random_init: bool = Field(False, description="no checkpoint: random weights (tests and benchmarks only)")
    layers: tuple[int, int, int, int] = Field(
        (3, 4, 6, 3), description="ResNet blocks per stage (ResNet-50); must match the checkpoint")
    init_planes: int = Field(64, ge=1, description="ResNet width of the first stage; must match the checkpoint")
    dims: int = Field(512, ge=1, description="descriptor dimensions; must match the checkpoint")
    pool_param: float = Field(3.0, gt=0, description="GeM pooling exponent p", json_schema_extra=SCORES)
    image_size: int = Field(288, ge=16, description="the short side is resized to this")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="where the model runs; auto: cuda when available, else cpu")
    max_blank_similarity: float = Field(
        0.9, gt=-1, le=1, description="a pair is refused when both descriptors have at least this cosine with the "
                                      "descriptor of a blank image (white, black or grey): near-blank images carry "
                                      "too little to match on (SSCD's authors normalise by a background set)",
        json_schema_extra=FINDS)

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

    exact_max: int = Field(200_000, ge=1, description="up to this many rows the search is exact (flat index)")
    nlist: int | None = Field(None, ge=1, description="IVF lists; default 4*sqrt(n) (float), sqrt(n) (binary)")
    nprobe: int = Field(16, ge=1, description="IVF lists searched per query: more finds more pairs, slower")
    train_sample: int = Field(100_000, ge=1, description="rows the IVF quantizer is trained on")
    train_iterations: int = Field(10, ge=1, description="k-means iterations of the float IVF quantizer")
    train_per_list: int = Field(20, ge=1, description="k-means sample per list for the CPU float IVF self-join: its "
                                                       "lists only need to be balanced, not a faithful quantizer")
    add_batch: int = Field(65_536, ge=1, description="rows added to the index at a time (bounds memory)")
    query_batch: int = Field(16_384, ge=1, description="queries searched at a time (bounds memory)")
    k: int = Field(16, ge=2, description="neighbours per query kept if above the threshold")
    use_gpu: bool = Field(True, description="use a GPU index when faiss has GPU support and sees a GPU")
    seed: int = Field(0, description="seeds the training sample and k-means, so a run repeats exactly")


class SemanticConfig(StrictModel):
    """SemDeDup (Abbas et al. 2023) over the stored CLIP image embeddings: spherical k-means into ``clusters``
    clusters, then within each cluster every pair at cosine >= 1 - eps is a ``semantic`` duplicate pair.

    Pairs are stored down to cosine 1 - store_eps, so ``--set dedup.semantic.eps=...`` re-clusters from
    dedup/pairs.parquet. SemDeDup removed 37-50% of LAION-440M at its larger eps; the default here only takes
    pictures CLIP can barely tell apart. ``keep: least_prototypical`` is SemDeDup's (and NeMo Curator's
    "hard") choice: in each group keep the sample farthest from its k-means centroid.
    """

    enabled: bool = Field(False, description="run SemDeDup on clip_embedding (needs filters.clip.enabled)")
    eps: float = Field(0.03, ge=0, lt=1, description="pairs at cosine >= 1 - eps are duplicates",
                       json_schema_extra=DECIDES)
    store_eps: float | None = Field(0.1, ge=0, lt=1, description="pairs down to cosine 1 - store_eps are stored "
                                    "for re-clustering with a larger eps; None: eps", json_schema_extra=DECIDES)
    clusters: int | None = Field(None, ge=1, description="k-means clusters; default: rows / rows_per_cluster")
    rows_per_cluster: int = Field(5_000, ge=1, description="the default k's target cluster size (SemDeDup: ~9k)")
    iterations: int = Field(20, ge=1, description="k-means iterations")
    train_sample: int = Field(200_000, ge=1, description="rows k-means trains on (all rows are assigned)")
    max_neighbours: int = Field(64, ge=1, description="stored pairs per row, the most similar first")
    bucket_rows: int = Field(500_000, ge=1, description="rows per bucket of whole clusters searched in memory "
                                                      "(float16 spill files under dedup/work)")
    keep: Literal["policy", "least_prototypical"] = Field(
        "policy", description="policy: dedup.keep.order; least_prototypical: farthest from the centroid first",
        json_schema_extra=DECIDES)
    seed: int = Field(0, description="seeds the k-means sample and initialisation, so a run repeats exactly")

    @property
    def threshold(self) -> float:
        return 1.0 - self.eps

    @property
    def stored_from(self) -> float:
        return 1.0 - max(self.eps, self.store_eps if self.store_eps is not None else self.eps)


class KeepConfig(StrictModel):
    """One sample per cluster: highest value of each column in turn, then the smallest sample_id."""

    order: tuple[str, ...] = Field(
        (col.AESTHETIC_SCORE, col.CLIP_SCORE, "resolution"),
        description="manifest columns ranked highest first to pick the kept sample (resolution: original "
                    "width x height); columns a run lacks are skipped; rows the decision keeps always come first")
    mode: Literal["greedy", "component"] = Field(
        "greedy", description="component: exactly one kept per connected component; greedy: best first, keep "
                              "each sample with no direct duplicate among the kept (caption and image links "
                              "chain distinct pictures into one component, e.g. via a reused caption)")


class PlacementConfig(StrictModel):
    """Copies of the images ORB finds too few keypoints in (pastels, soft gradients, flat designs with a mark):
    found by where one 48-pixel CIELAB thumbnail lies in the other (``dedup.placement``). An image with fewer
    than ``below_keypoints`` keypoints also gets palette keys: each pair of colours covering ``palette_share`` of
    its thumbnail, quantised on two offset grids; two images sharing one are a keypoints candidate. A candidate
    with fewer than ``below_keypoints`` keypoints on one side (too few for RANSAC to be sure) counts when the best
    placement of one thumbnail in the other, as a crop (45-95% of each side, any position) or a copy turned
    1.5-10.5 degrees, differs in at most ``max_differing`` of its pixels, by an RMS CIELAB distance (OpenCV's
    8-bit scale) of at most ``max_distance`` and at most ``max_relative`` of the placed part's own variation,
    which must reach ``min_variation`` (a flat part fits anywhere), and the subjects agree
    (``max_subject_distance``); when it places nothing, RANSAC may still verify it. Chosen on the tuning split
    (``bench/placement_eval.py``, the most copies placed with no false pair): 120 of its 125 crops and turned
    copies with under 25 keypoints; on the reporting split 98 of 107, no false pair among the candidates of 300
    low-texture negatives (recolours included); about 9 ms per placement. A flat design's copy that cropped its
    mark away is a flat field: it places nothing. Palette keys add 12% key rows and 40% candidates per image at
    1M images (``bench/palette_cost.py``).
    """

    enabled: bool = Field(True, description="with keypoints.enabled: palette keys for keypoint-poor images, and "
                                            "their candidates judged by placement", json_schema_extra=FINDS)
    below_keypoints: int = Field(50, ge=0, description="images with fewer ORB keypoints get palette keys, and "
                                                       "pairs with one are placed", json_schema_extra=FINDS)
    palette_share: float = Field(0.01, gt=0, le=1, description="share of the thumbnail a colour must cover to "
                                                               "enter a palette key", json_schema_extra=FINDS)
    max_differing: float = Field(0.08, ge=0, le=1, description="share of the placed pixels that may differ "
                                                              "(CIELAB distance over 16)", json_schema_extra=FINDS)
    max_distance: float = Field(10.0, ge=0, description="RMS CIELAB distance (OpenCV 8-bit) of the placement",
                                json_schema_extra=FINDS)
    max_relative: float = Field(0.3, ge=0, description="that distance over the placed part's own variation + 1",
                                json_schema_extra=FINDS)
    min_variation: float = Field(3.0, ge=0, description="RMS CIELAB distance of the placed part from its mean "
                                                        "colour: a flatter part places nothing",
                                 json_schema_extra=FINDS)
    max_subject_distance: float = Field(10.0, ge=0, description="subject distance (``keypoints."
                                        "max_subject_distance``'s measure) of the placement: on the tuning split "
                                        "true placements reach 9.9, a look-alike product placed on another 15.4",
                                        json_schema_extra=FINDS)
    tone: bool = Field(True, description="a candidate that places nothing also counts when the layouts of the "
                                         "two thumbnails match photometrically (dedup.layout.tone, when enabled): "
                                         "brightness, contrast, gamma and greyscale copies of smooth images PDQ "
                                         "hashes apart and ORB cannot verify (a colour wheel brightened until it "
                                         "clips)", json_schema_extra=FINDS)


class KeypointConfig(StrictModel):
    """Candidates an off-centre crop or a small rotation can reach (detector ``keypoints``), verified before
    a pair counts. PDQ moves ~25 of 256 bits per 1% shift, so such copies never become PDQ candidates; their
    ORB keypoints still match. Each image's ``points`` strongest keypoints give ``tables`` keys apiece (``bits``
    bits sampled from the 128 most balanced bits of the descriptor); images sharing ``min_shared`` keys are
    candidates, those among the ``max_candidates`` sharing the most of their ``a`` or their ``b``. A key held by
    more than ``max_bucket`` images (text corners, white-background edges, and in a large corpus most keys) is
    lengthened by ``refine_bits`` of the same descriptors, up to ``refine_levels`` times, and its holders pair
    within the parts that are small enough; what is still too common pairs nobody. So verification costs at most
    2 x ``max_candidates`` per image on average and the shared-key rows at most ``key rows x (max_bucket - 1)
    / 2`` per image, whatever the corpus (``bench/keypoint_scale.py``: a background of 9,600 generated hard
    images, tuning split, 1,210 -> 10,810 images: 26.3 -> 33.8 candidates and 872 -> 2,190 shared rows per
    image; the geometric copies among the candidates 271 -> 247 of 290, 247 -> 211 without the refinement,
    text slides losing most).
    A candidate counts when ORB + RANSAC finds ``min_inliers`` inliers of a similarity (rotation, uniform
    scale, shift) turned at most ``max_rotation`` degrees (90-degree turns and flips are PDQ's), whose inliers
    reach across one image (``min_spread``: a shared banner or logo does not) and whose thumbnails, laid one over
    the other by that transform, differ in at most ``verify.max_differing`` of the overlap and agree over their
    subject (``max_subject_distance``: a look-alike product on white agrees over the white and differs across the
    product; one shape in two colours differs across the shape).
    Key settings chosen on a scratch half of the bundled photos (crops 50-90% at any position, rotations 3-10
    degrees); verification settings (``min_inliers``, ``min_spread``, ``max_subject_distance``, the placement
    gate) by replaying every candidate of ``bench/neardup_eval.py``'s tuning split at its 256-pixel staged size
    (``bench/figures/neardup-similarity.json``).
    """

    # the keypoints' colour check (the subject check does its work), and the squash check (a fitted similarity
    # has none)
    retired = frozenset({"max_gain", "max_hue_shift", "max_anisotropy"})

    enabled: bool = Field(True, description="with pdq.verify.enabled: find keypoints pairs (crops at any "
                                            "position, small rotations; on the reporting split precision 0.999, "
                                            "off-centre crops 0.95, 60% crops 0.81, rotations 0.98)")
    points: int = Field(100, ge=4, le=5000, description="strongest ORB keypoints per image turned into keys",
                        json_schema_extra=FINDS)
    bits: int = Field(24, ge=8, le=48, description="descriptor bits per key: more, fewer chance collisions "
                                                   "and fewer true ones", json_schema_extra=FINDS)
    tables: int = Field(4, ge=1, le=32, description="keys per keypoint (independent bit samples)",
                        json_schema_extra=FINDS)
    min_shared: int = Field(6, ge=1, description="keys two images must share to be a candidate",
                            json_schema_extra=FINDS)
    max_bucket: int = Field(64, ge=2, description="a key held by more images than this pairs none of them",
                            json_schema_extra=FINDS)
    refine_bits: int = Field(6, ge=1, le=12, description="bits a key over max_bucket is lengthened by, per "
                             "level: its holders pair within the parts that are small enough (``keypoints."
                             "key_groups``)", json_schema_extra=FINDS)
    refine_levels: int = Field(5, ge=0, le=5, description="times a key over max_bucket is lengthened before its "
                               "holders pair nobody (0: dropped at once)", json_schema_extra=FINDS)
    max_candidates: int = Field(30, ge=1, description="candidates each image keeps as a and as b, those sharing "
                                "the most keys: verification costs at most twice this per image on average, "
                                "whatever the corpus "
                                "(on the tuning split 30 keeps 271 of the 273 geometric copies among candidates, "
                                "10 keeps 250)", json_schema_extra=FINDS)
    min_inliers: int = Field(10, ge=4, description="RANSAC inliers of a similarity for a candidate to count "
                                                   "(the thumbnails must then agree): on the tuning split 6 "
                                                   "paired unrelated slides and icons, 8 and 10 none",
                             json_schema_extra=FINDS)
    max_rotation: float = Field(20.0, ge=0, le=180, description="degrees of rotation a verified transform may "
                                                               "have", json_schema_extra=FINDS)
    min_spread: float = Field(0.1, ge=0, le=1, description="share of the width and of the height the inliers "
                                                          "must reach across one of the two images (10th-90th "
                                                          "percentile): a shared banner or logo is a strip or a "
                                                          "patch", json_schema_extra=FINDS)
    max_subject_distance: float = Field(4.0, ge=0, description="median CIELAB distance (OpenCV's 8-bit scale) "
                                        "between the laid thumbnails over their subject, the pixels off the "
                                        "background, a pixel of misregistration forgiven: on the tuning split "
                                        "crops and turns agree within 3.4, look-alike products and slides "
                                        "sharing a title differ by 3.6-40",
                                        json_schema_extra=FINDS)
    placement: PlacementConfig = Field(PlacementConfig(), description="copies of keypoint-poor images, found by "
                                       "placing one thumbnail in the other")


class VerifyConfig(StrictModel):
    """Geometric verification of candidate PDQ pairs: ORB keypoints matched (Lowe's ratio test), then a
    RANSAC homography; a pair passes when at least ``min_inliers`` matches agree on one plausible transform
    and the two thumbnails, laid one over the other by it, differ in at most ``max_differing`` of the overlap
    (on the tuning split: false pairs 89 -> 6, main-edit recall 0.940 -> 0.936).

    Verification lets the hash look further than its threshold: pairs between the PDQ threshold and
    ``max_distance`` count when verified (detector ``pdq_verified``): crops and rotations the hash alone
    misses. ``verify_all`` also verifies the pairs within the threshold, which removes look-alikes but
    loses the copies ORB finds no keypoints in (blurred, low-contrast pictures).

    On whenever PDQ is: without it PDQ + regions reaches 0.03 of the crops and rotations on the reporting
    split, with it (and its keypoints detector) 0.89 at the same precision, for 2.3-2.5x the descriptor cost
    of PDQ + regions (``bench/descriptor_cost.py --split report``, three runs: 2.28, 2.48, 2.39; 11.5 against
    4.8 ms in the last, ``bench/figures/descriptor-cost.json``) and, in the dedup phase, about 50 ms of CPU per
    photo verifying its ~34 candidates, 250-400 ms per flat design or pastel (placement).
    """

    enabled: bool = Field(True, description="verify PDQ pairs with ORB + RANSAC, counting pairs out to max_distance, "
                                            "and find keypoints pairs (crops, rotations); false: PDQ pairs alone, "
                                            "two thirds of the descriptor cost and a fraction of the dedup phase's")
    features: int = Field(300, ge=16, le=5000, description="ORB keypoints per image (content region)")
    ratio: float = Field(0.8, gt=0, lt=1, description="Lowe's ratio test on the two nearest descriptors",
                         json_schema_extra=FINDS)
    min_inliers: int = Field(12, ge=4, description="RANSAC homography inliers for a pair to pass: distinct "
                                                   "photos reach 10, words sharing a logo mark 14-31, copies 20-300",
                             json_schema_extra=FINDS)
    reprojection_px: float = Field(5.0, gt=0, description="RANSAC inlier distance, in content pixels",
                                   json_schema_extra=FINDS)
    max_distance: int = Field(80, ge=0, le=128, description="PDQ Hamming distance up to which verified pairs "
                                                            "count; each query code keeps its search.k closest "
                                                            "candidates beyond the PDQ threshold",
                              json_schema_extra=FINDS)
    cache_samples: int = Field(40_000, ge=2, description="keypoint sets held at once (about 31 KB each with "
                                                         "their thumbnail, 1.2 GB); more candidates are "
                                                         "verified in several passes",
                               json_schema_extra=FINDS)
    max_differing: float = Field(0.15, ge=0, le=1, description="share of the overlap where two verified images' "
                                                              "thumbnails, laid one over the other by the "
                                                              "transform, may differ (CIELAB distance over 16): a "
                                                              "copy differs at its edges, a look-alike product or "
                                                              "slide across its subject; 1: not checked",
                                 json_schema_extra=FINDS)
    verify_all: bool = Field(False, description="verify the pairs within the PDQ threshold too",
                             json_schema_extra=FINDS)
    keypoints: KeypointConfig = Field(KeypointConfig(), description="the keypoints detector: candidates from "
                                      "shared ORB keypoint keys, verified (crops at any position, small rotations)")


class PdqConfig(_Detector):
    """Image near-duplicates by PDQ (Meta's 256-bit perceptual hash with a quality score), searched in a
    FAISS binary index by Hamming radius over several regions per image.

    ``min_quality``: PDQ's quality is its gradient energy; below it an image (flat colour, gradient,
    near-blank) carries too little structure to hash, so it gets exact pairs only. ``regions``: centre
    crops keeping this fraction of each side, indexed beside the full content region, so a cropped copy
    meets the matching region of its original. ``dihedral``: the 8 flips/rotations by 90 degrees of the
    full region are indexed too. A pair's similarity is its best region match, 1 - hamming/256.
    """

    threshold: float = Field(0.87890625, gt=0, le=1, description="1 - hamming/256; 0.8789 = distance 31, "
                                                                 "PDQ's reference match distance",
                             json_schema_extra=DECIDES)
    min_quality: int = Field(50, ge=0, le=100, description="PDQ quality below which a region gets no pairs",
                             json_schema_extra=FINDS)
    regions: tuple[float, ...] = Field((0.8, 0.64), description="centre crops (fraction of each side) indexed too",
                                       json_schema_extra=SCORES)
    dihedral: bool = Field(True, description="index the 8 flips/rot90s of the full region")
    stretch_max_gain: float = Field(
        2.5, ge=1, le=8, description="luminance stretch before hashing (dedup.pdq.stretched): the largest gain; "
                                     "1: off. Makes the quality guard contrast-invariant",
        json_schema_extra=SCORES)
    stretch_min_spread: float = Field(
        48.0, ge=1, le=255, description="grey levels between the stretch percentiles below which an image is "
                                        "hashed unstretched (flat, smooth, near-blank: nothing to amplify but noise)",
        json_schema_extra=SCORES)
    stretch_percentile: float = Field(1.0, ge=0, lt=50, description="the stretch maps this percentile of the "
                                      "luminance, and 100 minus it, to 0 and 255", json_schema_extra=SCORES)
    colour_min_chroma: float = Field(
        10.0, ge=0, le=100, description="CIELAB chroma C* from which a pixel counts in the colour signature "
                                        "(dedup.pdq.colour_signature); under it a pixel is grey",
        json_schema_extra=SCORES)
    min_colour_overlap: float = Field(
        0.2, ge=0, le=1, description="a PDQ pair (pdq, pdq_verified) counts only when the less colourful image's "
                                     "chroma lies at least this much at hues the other has too (dedup.pdq.compatible): "
                                     "PDQ hashes luminance, so one design in two colours hashes alike; 0: no gate",
        json_schema_extra=FINDS)
    achromatic_chroma: float = Field(
        0.005, ge=0, le=100, description="an image whose mean chroma (its signature's sum) is under this is grey and "
                                         "passes the colour gate with every image (a greyscale copy is a copy)",
        json_schema_extra=FINDS)
    verify: VerifyConfig = Field(VerifyConfig(), description="the pdq_verified detector")

    @model_validator(mode="after")
    def _regions(self):
        if any(not 0.2 <= r < 1 for r in self.regions):
            raise ValueError(f"dedup.pdq.regions={self.regions}: each is a fraction of a side in [0.2, 1)")
        return self


class ToneConfig(StrictModel):
    """The layout detector's photometric match (``dedup.layout.tone_match``), in the middle half of the rows (a
    banner stays outside): two layouts match when their lightness has the same shape (grey L less its mean,
    correlated) and their colour the same hues (the cosine of the (a, b) layouts, and of the (a, b) layouts less
    their means), whatever the brightness, contrast or gamma: those move lightness monotonically and scale chroma,
    where a recolour turns the hues. A greyscale copy (RMS chroma under ``grey_chroma``) has no hues: it matches a
    colour layout whose greyscale lightness (ITU-R 601 luma) it keeps, in shape and in level. A layout flat in
    lightness (spread under ``min_spread``) has no shape but noise; when its colour changes (a mark as light as its
    background: ``tint_*``) it is compared by its hues alone, else only the raw match applies to it.

    Chosen on the tuning split of bench/neardup_eval.py --fast (pdq_regions): recall of the contrast/brightness/
    grey copies 0.62/0.60/0.67 -> 0.97/0.78/0.93 (brightness x1.3 clips the pastels to white) with no false pair;
    min_change 0.9 lets a pair of distinct gradients in; a greyscale copy's own design sits at RMS grey-L
    difference <= 1.1 (one at 1.33) and other designs at >= 1.51 (grey_max_delta_l between). Reported on the
    reporting split (--fast): contrast/brightness/gamma/grey 0.56/0.53/0.60/0.60 -> 0.96/0.89/0.91/0.84, the
    flat_mark/pastel_landscape/soft_gradient originals 0.53/0.63/0.54 -> 0.85/0.96/0.90, and no false pair
    among the low-texture negatives and their recolours, as before.

    What it still misses on the tuning split, and why (bench/tone_misses.py): brightness x1.3 clips 57-64 of a
    pastel's 64 middle cells to white (its hue and change cosines fall to 0.15-0.78, its spread under min_spread) and
    turns a saturated gradient's hues as one channel clips (hue 0.93-0.94): the copy has lost what this match reads,
    so neither leaving clipped cells out of the L correlation (0-17 cells are left) nor a rank correlation (no miss
    fails on the correlation alone) recovers them. A greyscale copy of a mark as light as its background is flat
    grey; a mark outside the middle rows is outside this match. On the tuning originals with the reporting split's
    edit ranges (--edits report) the grey rule pairs a crop of one soft gradient with another's greyscale copy (grey-L
    correlation 0.973, RMS difference 1.00, spreads 0.75 and 1.57; true pairs' spreads differ up to x1.98): a grey
    16 x 16 gradient can be the copy of several colour ones.

    ``grey_min_correlation`` 0.95 -> 0.85, chosen on the tuning split (--fast, pdq_regions and pdq_keypoints; 0.95,
    0.9, 0.85, 0.8 tried): greyscale copies 0.931 -> 0.948 with no false pair at 0.85 and 0.8 (ties: the
    stricter); with the reporting split's edits on the tuning originals (bench/tone_misses.py --edits report) the
    same 2 false pairs as at 0.95 and grey 0.931 -> 0.948, the closest distinct pair refused by its level (RMS
    grey-L difference 1.54). A faint shape's grey-L correlation falls to 0.87-0.94 under JPEG noise while its
    level holds. Reporting split: greyscale 0.842 -> 0.895, flat_mark originals 0.847 -> 0.875, soft gradients
    0.903 -> 0.917, no new false pair (bench/figures/neardup-grey.json)."""

    enabled: bool = Field(True, description="also match layouts photometrically (else the raw CIELAB match only)",
                          json_schema_extra=FINDS)
    min_spread: float = Field(0.6, ge=0, description="RMS of a layout's grey L (the CIELAB L of its greyscale) "
                              "about its mean from which it has a shape to compare; under it only the raw match "
                              "applies", json_schema_extra=FINDS)
    min_correlation: float = Field(0.85, gt=-1, le=1, description="correlation of the two grey-L layouts",
                                   json_schema_extra=FINDS)
    min_hue: float = Field(0.95, gt=-1, le=1, description="cosine of the two (a, b) layouts: a common scale of the "
                           "chroma keeps it, a turn of the hues (a recolour) lowers it", json_schema_extra=FINDS)
    min_change: float = Field(0.94, gt=-1, le=1, description="cosine of the two (a, b) layouts less their means: "
                              "where the colour changes, and to which hue", json_schema_extra=FINDS)
    tint_min_spread: float = Field(2.0, ge=0, description="a layout flat in grey L (under min_spread) is compared by "
                                   "its colour changes alone when the RMS of its (a, b) about their mean is at least "
                                   "this (a mark as light as its background)", json_schema_extra=FINDS)
    tint_min_change: float = Field(0.97, gt=-1, le=1, description="two such layouts: cosine of their (a, b) layouts "
                                   "less their means (and min_hue)", json_schema_extra=FINDS)
    grey_chroma: float = Field(2.0, ge=0, description="RMS chroma under which a layout is grey (its hues are noise)",
                               json_schema_extra=FINDS)
    grey_min_correlation: float = Field(0.85, gt=-1, le=1, description="a grey layout and a colour one: correlation "
                                        "of their grey-L layouts (JPEG noise lowers it for a faint shape; the "
                                        "level, grey_max_delta_l, is the stricter check)", json_schema_extra=FINDS)
    grey_max_delta_l: float = Field(1.25, gt=0, description="a grey layout and a colour one: RMS difference of their "
                                    "grey L (a greyscale copy keeps it)", json_schema_extra=FINDS)


class LayoutConfig(_Detector):
    """Colour layout of the images PDQ cannot hash (``dedup.layout``): a 16 x 16 CIELAB thumbnail of the content
    region, mirror-averaged, for every image whose PDQ quality is under ``dedup.pdq.min_quality +
    quality_margin``; two match when, over the whole image or all but its top or bottom quarter, their colours
    agree (RMS Delta E) and their layouts agree (that difference relative to the images' own variation), or when
    their tones agree (``tone``: the photometric match, for brightness, contrast, gamma and greyscale copies).

    On (with pdq) by default: the pdq detector leaves these images to exact pairs. Settings chosen on the
    tuning split of bench/neardup_eval.py (support/evalset.py); see there for the reporting split's figures.
    """

    enabled: bool = Field(True, description="run the layout detector whenever pdq runs (it needs pdq_quality)")
    threshold: float = Field(0.96, gt=0, le=1, description="1 - Delta E / 100 of the best matching window (RMS "
                                                           "CIELAB Delta E of its cells; 0.96: Delta E 4)",
                             json_schema_extra=DECIDES)
    quality_margin: int = Field(
        20, ge=0, le=100, description="images with PDQ quality under dedup.pdq.min_quality + this get a layout: an "
                                      "overlap, so a copy whose quality lands on the other side of min_quality "
                                      "still meets its original", json_schema_extra=FINDS)
    max_relative: float = Field(0.15, gt=0, le=1, description="that Delta E at most this fraction of the two "
                                                               "images' own colour variation in the window (+1)",
                                json_schema_extra=FINDS)
    tone: ToneConfig = Field(ToneConfig(), description="the photometric match: brightness, contrast, gamma, grey",
                             json_schema_extra=FINDS)

    @property
    def max_delta_e(self) -> float:
        """The RMS Delta E of the stored pairs: similarity = 1 - Delta E / 100."""
        return 100.0 * (1.0 - self.stored_from)


class PartitionsConfig(StrictModel):
    """How the dedup phase's global steps are cut into tasks (``dedup/partitioned.py``).

    Every shuffle (exact keys, LSH band keys, signatures, IVF lists, graph edges, clusters) gets
    ceil(rows x row size / bytes_per_bucket) buckets, so a task's memory follows ``bytes_per_bucket``
    (a task peaks at a few times its bucket's bytes), not the run. Its map side reads the input files
    in consecutive batches of about ``bytes_per_map_task`` (rows from the Parquet footers x row size),
    one task per batch, so a shuffle writes batches x buckets files, not input files x buckets.
    """

    enabled: bool = Field(True, description="run dedup's tasks on the cluster; false: the same tasks one "
                                            "after another in the driver process, one bucket per shuffle unless "
                                            "buckets is set (small runs and tests); the same part files either way")
    bytes_per_bucket: int = Field(128 << 20, ge=1, description="shuffled bytes per bucket (one task's input)")
    buckets: int | None = Field(None, ge=1, description="a fixed bucket count for every shuffle (tests)")
    bytes_per_map_task: int = Field(128 << 20, ge=1, description="in-memory bytes of input rows one map task "
                                    "of a shuffle reads (input files batched up to it; a file larger than it "
                                    "is a task of its own): fewer, larger map tasks write fewer shuffle files")
    max_component_rows: int = Field(100_000, ge=2, description="a duplicate component of more samples than "
                                    "this (a mass-copied picture, a long chain of edits) is not decided whole in "
                                    "one task but in rounds of tasks that each hold about a quarter of this many "
                                    "of its samples (dedup/giant.py), with the same survivors; keep.mode "
                                    "greedy only (component mode decides a component in one task)")
    join_gpus: float = Field(0.0, ge=0, description="GPUs each SSCD IVF list-join task holds (0: CPU, numpy); "
                             "> 0 runs its block products with torch on that GPU, so a cluster with GPU nodes "
                             "joins lists there (0.25: four join tasks share a GPU); checked before the phase "
                             "starts")


class DedupConfig(StrictModel):
    exact: ExactConfig = Field(ExactConfig(), description="exact duplicates: same bytes or same pixels")
    minhash: MinHashConfig = Field(MinHashConfig(), description="the minhash detector: caption pairs")
    phash: PHashConfig = Field(PHashConfig(), description="the phash detector: image pairs")
    sscd: SscdConfig = Field(SscdConfig(), description="the sscd detector: image pairs (needs a checkpoint)")
    search: SearchConfig = Field(SearchConfig(), description="how sscd, phash and pdq search for pairs")
    keep: KeepConfig = Field(KeepConfig(), description="which sample of a duplicate cluster survives",
                             json_schema_extra=DECIDES)
    pdq: PdqConfig = Field(PdqConfig(), description="the pdq detector: image pairs")
    layout: LayoutConfig = Field(LayoutConfig(), description="the layout detector: image pairs among the images "
                                 "PDQ cannot hash (runs with pdq)")
    semantic: SemanticConfig = Field(SemanticConfig(), description="the semantic detector (needs filters.clip)")
    partitions: PartitionsConfig = Field(PartitionsConfig(), description="how the dedup phase is cut into "
                                         "tasks on the cluster (bounded memory per task)")

    def enabled_detectors(self) -> list[str]:
        return [d.name for d in DETECTORS if d.enabled(self)]

    def thresholds(self) -> dict[str, float]:
        """Decision threshold per detector, as ``cluster()`` takes them."""
        return {d.name: d.threshold(self) for d in DETECTORS}

    def stored_from(self) -> dict[str, float]:
        """Per enabled detector with a threshold of its own, the lowest similarity of the pairs it stores."""
        return {d.name: getattr(self, d.section).stored_from for d in DETECTORS
                if d.setting in ("threshold", "eps") and d.enabled(self)}


@dataclass(frozen=True)
class Detector:
    """One duplicate detector, its one row: everything else that names a detector derives from ``DETECTORS``
    (``dedup.finders.FINDERS``, the tune notes' sections, the review sliders). ``name`` is its value in the
    pairs table's ``detector`` column and, where a score stage computes its descriptor, that stage's name too."""

    name: str
    kind: str  # DupKind: what a pair of it means, and so the reject reason
    enabled: Callable[[DedupConfig], bool]
    threshold: Callable[[DedupConfig], float]
    # "module:Class" of the score stage, of the same name, that writes its descriptor (pipelines.run.stages
    # adds it, in this table's order); None: it reads a column another phase writes (sha256 from ingest).
    stage: str | None
    section: str  # dedup.<section> holds its settings (several detectors may share one)
    column: str  # the descriptor column its finder reads
    finder: str  # its partitioned finder: a function of dedup.finders, (Plan) -> pairs written
    # What sets its threshold under its section: "threshold" (a similarity, stored from ``stored_from`` up),
    # "eps" (semantic: a cosine distance, stored up to ``store_eps``), another setting, or None (fixed).
    setting: str | None


DETECTORS = (
    Detector("sha256", DupKind.EXACT, lambda d: d.exact.enabled and d.exact.sha256, lambda d: 1.0, None,
             "exact", col.SHA256, "sha256_pairs", None),
    Detector("pixel_hash", DupKind.EXACT, lambda d: d.exact.enabled and d.exact.pixels, lambda d: 1.0,
             "dedup.pixels:PixelHasher", "exact", col.PIXEL_HASH, "pixel_hash_pairs", None),
    Detector("phash", DupKind.IMAGE, lambda d: d.phash.enabled, lambda d: d.phash.threshold,
             "dedup.phash:PerceptualHasher", "phash", col.PHASH, "phash_pairs", "threshold"),
    Detector("minhash", DupKind.CAPTION, lambda d: d.minhash.enabled, lambda d: d.minhash.threshold,
             "dedup.minhash:CaptionMinHasher", "minhash", col.CAPTION_MINHASH, "minhash_pairs", "threshold"),
    Detector("sscd", DupKind.IMAGE, lambda d: d.sscd.enabled, lambda d: d.sscd.threshold,
             "dedup.sscd:SscdEmbedder", "sscd", col.SSCD_EMBEDDING, "sscd_pairs", "threshold"),
    Detector("pdq", DupKind.IMAGE, lambda d: d.pdq.enabled, lambda d: d.pdq.threshold, "dedup.pdq:PdqHasher",
             "pdq", col.PDQ_HASH, "pdq_pairs", "threshold"),
    # Beyond the PDQ threshold, out to verify.max_distance, a pair counts once ORB + RANSAC verify it.
    Detector("pdq_verified", DupKind.IMAGE, lambda d: d.pdq.enabled and d.pdq.verify.enabled,
             lambda d: 1.0 - d.pdq.verify.max_distance / 256, None,
             "pdq", col.ORB_FEATURES, "found_with_pdq", "verify.max_distance"),
    # The colour layout of the images under PDQ's quality guard (and a margin above it).
    Detector("layout", DupKind.IMAGE, lambda d: d.pdq.enabled and d.layout.enabled, lambda d: d.layout.threshold,
             "dedup.layout:LayoutHasher", "layout", col.LAYOUT_CODE, "layout_pairs", "threshold"),
    # Images sharing ORB keypoint keys (dedup.keypoints), verified: every verified pair counts.
    Detector("keypoints", DupKind.IMAGE,
             lambda d: d.pdq.enabled and d.pdq.verify.enabled and d.pdq.verify.keypoints.enabled,
             lambda d: 0.0, None, "pdq", col.ORB_FEATURES, "keypoint_pairs", None),
    # SemDeDup over the CLIP stage's clip_embedding (no stage of its own).
    Detector("semantic", DupKind.SEMANTIC, lambda d: d.semantic.enabled, lambda d: d.semantic.threshold, None,
             "semantic", col.CLIP_EMBEDDING, "semantic_pairs", "eps"),
)
KIND_OF_DETECTOR = {d.name: d.kind for d in DETECTORS}
# A dedup section -> its detectors (``pipelines.tools.decision``'s notes on a --set under dedup.SECTION).
SECTION_DETECTORS = {s: tuple(d.name for d in DETECTORS if d.section == s) for s in dict.fromkeys(
    d.section for d in DETECTORS)}
