"""A curation run, top to bottom: ingest -> score -> dedup -> decide -> caption -> export.

Each phase leaves its files and a ``_DONE`` marker under the run directory. ``thresher run`` resumes:
it skips the expensive phases that are already done and always redoes the cheap decision and export,
so a changed threshold takes effect without touching a model. Running a phase invalidates the
phases after it.
"""

from __future__ import annotations

import json
import time
from typing import Callable

import polars as pl

from captioning.weights import MissingWeightsError, check_weights
from filters.models import FilterSetupError, check_filters
from manifests.io import update_run_json, write_json
from manifests.layout import PHASES, RunLayout
from pipelines import phases, report
from pipelines.config import ConfigError, RunConfig, dump_config
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


def prepare(config: RunConfig) -> RunLayout:
    validate(config)
    layout = RunLayout.at(config.output_dir)
    layout.root.mkdir(parents=True, exist_ok=True)
    layout.config.write_text(dump_config(config))
    update_run_json(layout.run_json, config=config.model_dump(mode="json"), versions=report.versions(),
                    git_revision=report.git_revision())
    return layout


def run_phase(name: str, config: RunConfig, layout: RunLayout) -> dict:
    for later in PHASES[PHASES.index(name):]:
        layout.done_marker(later).unlink(missing_ok=True)
    layout.phase_dir(name).mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    result = PHASE_FUNCS[name](config, layout)
    result["wall_s"] = round(time.perf_counter() - start, 3)
    write_json(result, layout.done_marker(name))
    update_run_json(layout.run_json, phases={name: result})
    return result


def finish(layout: RunLayout) -> dict:
    """Counts from the final manifest into run.json; returns them."""
    stats = report.counts(pl.read_parquet(layout.manifest))
    update_run_json(layout.run_json, counts=stats)
    return stats


def run(config: RunConfig, redo: tuple[str, ...] = ()) -> dict:
    layout = prepare(config)
    start = time.perf_counter()
    for name in PHASES:
        if name in RESUMABLE and layout.is_done(name) and name not in redo:
            print(f"{name}: done already, skipped ({json.loads(layout.done_marker(name).read_text())['wall_s']} s)")
            continue
        run_phase(name, config, layout)
    stats = finish(layout)
    update_run_json(layout.run_json, wall_s=round(time.perf_counter() - start, 3))
    print(report.summary_table(stats, layout.root))
    return stats
