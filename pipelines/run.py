"""A curation run, top to bottom: ingest -> score -> dedup -> decide -> caption -> export.

Each phase leaves its files and a ``_DONE`` marker under the run directory. ``thresher run`` resumes:
it skips the expensive phases that are already done and always redoes the cheap decision and export,
so a changed threshold takes effect without touching a model. Running a phase invalidates the
phases after it.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Callable

import polars as pl

from captioning.weights import MissingWeightsError, check_weights
from crawl.inputcheck import check_input
from filters.models import FilterSetupError, check_filters
from manifests import storage
from manifests.io import update_run_json, write_json
from manifests.layout import PHASES, RunLayout
from pipelines import cluster, console, phases, report
from pipelines.config import ConfigError, RunConfig, dump_config
from pipelines.cpufit import fit_local_cluster
from pipelines.stages import check_resources, check_stages, score_stages, caption_stages

PHASE_FUNCS: dict[str, Callable[[RunConfig, RunLayout], dict]] = {
    "ingest": phases.ingest,
    "score": phases.score,
    "dedup": phases.dedup,
    "decide": phases.decide,
    "caption": phases.caption,
    "export": phases.export,
}
RESUMABLE = ("ingest", "score", "dedup", "caption")
POOLED = ("ingest", "score", "caption", "export")  # phases that start actor pools


def validate(config: RunConfig) -> None:
    """Everything that can be checked before work starts."""
    check_resources(config)
    check_stages(config, score_stages(config))
    check_stages(config, caption_stages(config))
    try:
        check_filters(config.filters)
        check_weights(config.caption)
    except (FilterSetupError, MissingWeightsError) as exc:
        raise ConfigError(str(exc)) from None


def local_config(config: RunConfig) -> RunConfig:
    """The config with URI input and output paths replaced by their local copies (the input is downloaded)."""
    if not storage.is_uri(config.output_dir) and not storage.is_uri(config.input.path):
        return config
    root = Path(config.output_dir)
    if storage.is_uri(config.output_dir):
        root = storage.staging_root(config.output_dir, config.staging_dir)
    update: dict = {"output_dir": str(root)}
    if storage.is_uri(config.input.path):
        local_input = storage.fetch_input(config.input.path, root.parent / f"{root.name}.input")
        update["input"] = config.input.model_copy(update={"path": str(local_input)})
    return config.model_copy(update=update)


def sync(config: RunConfig, layout: RunLayout) -> None:
    """Mirror the local run directory to a URI output_dir (no-op for a local one)."""
    if storage.is_uri(config.output_dir):
        storage.push(layout.root, config.output_dir)


def prepare(config: RunConfig) -> RunLayout:
    """Validate, and set up the local run directory; a URI one is first downloaded to resume from it."""
    validate(config)
    if not storage.is_uri(config.input.path):  # before the run directory exists; a URI input once downloaded
        check_input(config.input)
    layout = RunLayout.at(local_config(config).output_dir)
    if storage.is_uri(config.output_dir):
        storage.pull(config.output_dir, layout.root)
    layout.root.mkdir(parents=True, exist_ok=True)
    layout.config.write_text(dump_config(config))
    update_run_json(layout.run_json, config=config.model_dump(mode="json"), versions=report.versions(),
                    git_revision=report.git_revision())
    return layout


def _phase_specs(name: str, config: RunConfig, options: dict) -> list:
    if "specs" in options:
        return options["specs"]
    return score_stages(config) if name == "score" else caption_stages(config) if name == "caption" else []


def check_cluster(names: tuple[str, ...], config: RunConfig, phase_options: dict[str, dict]) -> None:
    """Fail before any work when a phase's actor pools cannot be placed on the connected cluster."""
    cluster.check_cluster({n: _phase_specs(n, config, phase_options.get(n, {})) for n in names if n in POOLED},
                          config)


def run_phase(name: str, config: RunConfig, layout: RunLayout, options: dict | None = None) -> dict:
    """Run one phase; ``options`` are its keyword arguments (``retry_failed`` for ingest, ``specs`` for score)."""
    options = options or {}
    config = fit_local_cluster(config)
    check_cluster((name,), config, {name: options})
    local = local_config(config)
    for later in PHASES[PHASES.index(name):]:
        layout.done_marker(later).unlink(missing_ok=True)
    layout.phase_dir(name).mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    result = console.phase(name, PHASE_FUNCS[name], local, layout, **options)
    result["wall_s"] = round(time.perf_counter() - start, 3)
    write_json(result, layout.done_marker(name))
    update_run_json(layout.run_json, phases={name: result})
    sync(config, layout)
    return result


def finish(layout: RunLayout, config: RunConfig | None = None) -> dict:
    """Counts from the final manifest into run.json; returns them."""
    stats = report.counts(pl.read_parquet(layout.manifest))
    update_run_json(layout.run_json, counts=stats)
    if config is not None:
        sync(config, layout)
    return stats


def run(config: RunConfig, redo: tuple[str, ...] = (), phase_options: dict[str, dict] | None = None) -> dict:
    """All phases in order, skipping finished resumable ones; ``--redo`` phases start over from nothing."""
    phase_options = phase_options or {}
    layout = prepare(config)
    config = fit_local_cluster(config)
    check_cluster(PHASES, config, phase_options)
    start = time.perf_counter()
    for name in PHASES:
        if name in RESUMABLE and layout.is_done(name) and name not in redo:
            print(f"{name}: done already, skipped ({json.loads(layout.done_marker(name).read_text())['wall_s']} s)")
            continue
        if name in redo:
            shutil.rmtree(layout.phase_dir(name), ignore_errors=True)
        run_phase(name, config, layout, phase_options.get(name))
    stats = finish(layout, config)
    update_run_json(layout.run_json, wall_s=round(time.perf_counter() - start, 3))
    sync(config, layout)
    print(report.summary_table(stats, layout.root))
    return stats
