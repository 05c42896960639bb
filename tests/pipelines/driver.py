"""A ``thresher run`` of part of the demo corpus for the scale-out tests, run as its own process so a test can kill it.

Serves the corpus (slowly, on a fixed address so reruns see the same URLs), writes the URL list, and
runs every phase with the score stages the config builds, as ``thresher run`` does: the shared decode,
open_nsfw, RapidOCR, lingua and pHash, all offline on CPU (a test turns one off with ``--set``). Run as a script.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from pipelines.cli.corpus import build_corpus
from pipelines.cli.demo import demo_config, serve_files, write_url_list
from pipelines.config import build_config

ROWS_PER_UNIT = 6
# The open_nsfw stage's class: a test finds its actors' processes by it (Ray Data titles an actor's process
# after its stages, e.g. "ray::MapWorker(MapBatches(_stage_batch)->MapBatches(decode_batch)->MapBatches(OpenNsfwScorer))").
NSFW_ACTOR = "OpenNsfwScorer"
PHOTOS = ("/img/astronaut", "/img/camera", "/img/page")


def corpus() -> tuple[dict[str, bytes], list]:
    """Three photos with their near-duplicates (one a page of text), the text banners, the QR code and the
    broken rows: small for a 2-CPU machine, yet with every outcome and text for the OCR to read."""
    files, rows = build_corpus(0)
    return files, [r for r in rows if r.path.startswith(PHOTOS) or r.kind in ("text_banner", "qr_code")
                   or not r.path.startswith("/img/")]


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", required=True, help="folder for the URL list, config and run directory")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--fetch-delay", type=float, default=0.0)
    parser.add_argument("--address", default=None, help="Ray cluster to join")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    return parser.parse_args()


def config_data(args: argparse.Namespace, url_list: Path) -> dict:
    """The demo's config with the score stages that need no download and are light on 2 CPUs; small batches,
    so score units finish one after another and a kill can land between them."""
    data = demo_config(url_list, Path(args.work) / "run")
    data["input"]["rows_per_shard"] = ROWS_PER_UNIT
    data["crawl"].update(concurrency=2, retries=0)
    data["filters"] = {
        "rules": {"languages": ["en"]},
        "nsfw": {"enabled": True, "backend": "open_nsfw", "intra_op_threads": 1},
        "ocr": {"enabled": True, "intra_op_threads": 1},
        "language": {"enabled": True, "candidates": ["en", "de", "fr", "es"]},  # all 75 would take 1 GB per actor
    }
    data["dedup"] = {"exact": {"enabled": True, "pixels": False}, "phash": {"enabled": True}}
    data["export"]["shard_size"] = 10
    # decode too: a model stage's bundle is at least the decode's batch, so 64 rows would make the score
    # phase one bundle here, and every unit would be committed at the very end.
    data["resources"]["stages"] = {name: {"num_cpus": cpus, "batch_size": 4}
                                   for name, cpus in (("decode", 0.5), ("nsfw", 0.5), ("ocr", 0.25),
                                                      ("language", 0.05), ("phash", 0.25))}
    data["ray"] = {"num_cpus": 2}
    return data


def main() -> None:
    from pipelines.run.driver import prepare, run_all
    from pipelines.run.runtime import init_ray

    args = parse()
    work = Path(args.work)
    files, rows = corpus()
    with serve_files(files, host=args.host, port=args.port, delay_s=args.fetch_delay) as base_url:
        url_list = write_url_list(rows, base_url, work / "urls.parquet")
        data = config_data(args, url_list)
        (work / "config.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
        config = build_config(data, args.overrides)
        init_ray(config.ray, args.address)
        import ray

        (work / "nodes.json").write_text(json.dumps(
            {"driver": ray.get_runtime_context().get_node_id(),
             "nodes": {n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]}}))
        run_all(prepare(config))


if __name__ == "__main__":
    main()
