"""A ``thresher run`` of the demo corpus for the scale-out tests, run as its own process so a test can kill it.

Serves the demo corpus (slowly, on a fixed address so reruns see the same URLs), writes the URL
list, and runs every phase with the pixel-hash stage in the score phase. Run as a script.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from pipelines.config import build_config
from pipelines.corpus import build_corpus
from pipelines.demo import demo_config, serve_files, write_url_list
from pipelines.stages import StageSpec
from pixel_stage import PixelHasher, PixelHasherConfig

ROWS_PER_UNIT = 10


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", required=True, help="folder for the URL list, config and run directory")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--fetch-delay", type=float, default=0.0)
    parser.add_argument("--score-delay", type=float, default=0.0)
    parser.add_argument("--address", default=None, help="Ray cluster to join")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    return parser.parse_args()


def config_data(args: argparse.Namespace, url_list: Path) -> dict:
    data = demo_config(url_list, Path(args.work) / "run")
    data["input"]["rows_per_shard"] = ROWS_PER_UNIT
    data["crawl"].update(concurrency=2, retries=0)
    data["export"]["shard_size"] = 25
    data["ray"] = {"num_cpus": 2}
    return data


def main() -> None:
    from pipelines.run import prepare, run_all, with_score_stages
    from pipelines.runtime import init_ray

    args = parse()
    work = Path(args.work)
    files, rows = build_corpus(0)
    with serve_files(files, host=args.host, port=args.port, delay_s=args.fetch_delay) as base_url:
        url_list = write_url_list(rows, base_url, work / "urls.parquet")
        data = config_data(args, url_list)
        (work / "config.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
        config = build_config(data, args.overrides)
        init_ray(config.ray, args.address)
        stage = PixelHasherConfig(delay_s=args.score_delay, record_dir=str(work / "stage_nodes"))
        spec = StageSpec("pixel_hash", PixelHasher, stage, config.resources.for_stage("pixel_hash"))
        import ray

        (work / "nodes.json").write_text(json.dumps(
            {"driver": ray.get_runtime_context().get_node_id(),
             "nodes": {n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]}}))
        run_all(with_score_stages(prepare(config), [spec]))


if __name__ == "__main__":
    main()
