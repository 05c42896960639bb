"""``thresher demo``: bundled photos -> a loopback HTTP server -> a URL list -> a full curation run."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from filters.config import AestheticConfig, ClipScorerConfig, WatermarkConfig
from filters.weights import FETCH_COMMAND, cache_root, clip_weights, head_entry, watermark_entry
from pipelines.cli.corpus import build_corpus
from pipelines.config import build_config


@contextmanager
def serve_files(files: dict[str, bytes], host: str = "127.0.0.1", port: int = 0, delay_s: float = 0.0,
                failing: set[str] | None = None) -> Iterator[str]:
    """Serve ``files`` (path -> bytes) on ``host`` (a free port by default); yields the base URL. Unknown paths are 404.

    Tests slow every answer by ``delay_s`` and answer 500 for paths in ``failing`` (a set they may change).
    """
    failing = set() if failing is None else failing

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            time.sleep(delay_s)
            body = files.get(self.path)
            if self.path in failing:
                self.send_error(500)
                return
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")  # deliberately trusting nothing: sniffing decides
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def write_url_list(rows, base_url: str, path: Path) -> Path:
    table = pa.table({
        "url": [base_url + r.path for r in rows],
        "caption": [r.caption for r in rows],
        "kind": [r.kind for r in rows],
    })
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def demo_filters() -> tuple[dict, list[str]]:
    """The demo's filters section: every model whose weights are present (open_nsfw always), and why the
    others are skipped. CLIP is ViT-L-14/openai when present (the heads' CLIP), else ViT-B-32/openai."""
    section: dict = {"nsfw": {"enabled": True, "backend": "open_nsfw"}}
    skipped = ["nsfw clip head: the demo's nsfw_prob comes from open_nsfw, which always runs"]
    if watermark_entry(WatermarkConfig()).present:
        section["watermark"] = {"enabled": True}
    else:
        skipped.append(f"watermark: LAION's watermark_model_v1.pt is missing under {cache_root(None)}; {FETCH_COMMAND}")
    choices = [ClipScorerConfig(enabled=True, model=m, pretrained="openai") for m in ("ViT-L-14", "ViT-B-32")]
    clip = next((c for c in choices if clip_weights(c).present), None)
    if clip is None:
        return section, skipped + [f"clip: weights of open_clip ViT-L-14 and ViT-B-32 (openai) are missing; "
                                   f"{FETCH_COMMAND} fetches them", "aesthetic: needs clip"]
    section["clip"] = {"enabled": True, "model": clip.model, "pretrained": clip.pretrained}
    head = "v2" if clip.model == "ViT-L-14" else "v1_b32"
    if head_entry("filters.aesthetic", head, AestheticConfig(head=head)).present:
        section["aesthetic"] = {"enabled": True, "head": head}
    else:
        skipped.append(f"aesthetic: head {head} weights are missing under {cache_root(None)}; {FETCH_COMMAND}")
    return section, skipped


# The signals that need no download: caption language (English captions only), OCR (text-dominated
# images and captions that read the image), QR codes and flat images.
DEMO_SIGNALS = {"rules": {"languages": ["en"]}, "language": {"enabled": True},
                "ocr": {"enabled": True, "intra_op_threads": 1},
                "quality": {"enabled": True, "reject_qr": True, "min_grey_entropy": 1.0}}


def demo_config(url_list: Path, run_dir: Path) -> dict:
    """Every stage that can run offline; the loopback server needs the SSRF guard's allow flag."""
    return {
        "output_dir": str(run_dir),
        "input": {"kind": "url_list", "path": str(url_list), "rows_per_shard": 100},
        "crawl": {"allow_private_addresses": True, "retries": 1, "image_size": 256, "resize_mode": "border"},
        "filters": {**demo_filters()[0], **DEMO_SIGNALS},
        # PDQ rather than pHash, with regions, verification and its keypoints detector: the best of
        # bench/neardup_eval.py.
        "dedup": {"exact": {"enabled": True}, "pdq": {"enabled": True},
                  "minhash": {"enabled": True}, "semantic": {"enabled": "clip" in demo_filters()[0]}},
        "export": {"shard_size": 100},
        # Fractions of a CPU so that every model pool fits a 2-CPU local Ray next to the read tasks.
        "resources": {"ingest": {"concurrency": 2}, "export": {"concurrency": 2},
                      "stages": {**{name: {"num_cpus": 0.5} for name in ("clip", "aesthetic", "nsfw")},
                                 **{name: {"num_cpus": 0.25} for name in ("pixel_hash", "pdq", "layout", "minhash")},
                                 **{name: {"num_cpus": 0.05} for name in ("language", "ocr", "quality", "watermark")}}},
        "ray": {"num_cpus": 2},
    }


def run_demo(out: str, samples: int = 300, verbose: bool = False) -> dict:
    from pipelines.run import console
    from pipelines.run.driver import run
    from pipelines.run.runtime import init_ray

    out_dir = Path(out).resolve()
    files, rows = build_corpus(samples)
    with serve_files(files) as base_url:
        url_list = write_url_list(rows, base_url, out_dir / "corpus" / "urls.parquet")
        data = demo_config(url_list, out_dir / "run")
        (out_dir / "config.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
        config = build_config(data)
        for reason in demo_filters()[1]:
            print(f"skipped {reason}")
        console.setup(out_dir / "run", verbose)
        init_ray(config.ray, log_to_driver=verbose)
        with console.native_stderr(out_dir / "run", verbose):
            stats = run(config)
    print(f"\nDemo done: {len(rows)} URLs from {len(files)} served files.")
    print(f"  shards:   {out_dir / 'run' / 'shards'}")
    print(f"  manifest: {out_dir / 'run' / 'manifest'}/ (one Parquet part per ingest unit)")
    print(f"  summary:  {out_dir / 'run' / 'run.json'}")
    print(f"  review:   thresher review {out_dir / 'run'}   (tune thresholds, audit and label in a browser)")
    return stats
