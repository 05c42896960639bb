"""A curation run, top to bottom: ingest -> score -> dedup -> decide -> caption -> export.

``prepare(config)`` validates the config once and returns a ``Run``: the config, its local copy, the
run directory and the model stages, built and checked once. ``pipelines.run.phases.PHASES`` is the one
list of phases, each holding the function that runs it; the cluster check and the resume logic read it.
Each phase leaves its files and a ``_DONE`` marker under the run directory, naming what its output
depends on (``pipelines.run.phase_inputs``).
``run_all`` resumes: it skips every phase whose inputs are unchanged, so a rerun of a finished run
does nothing, and a changed threshold redoes the decision and export without touching a model.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from captioning.weights import MissingWeightsError, check_weights
from crawl.inputcheck import check_input
from filters.weights import FilterSetupError, check_filters
from manifests import integrity, storage
from manifests.io import atomic_path, update_run_json, write_json
from manifests.layout import PHASE_NAMES, RunLayout
from pipelines.config import ConfigError, ResourcesConfig, RunConfig, absolute_paths, dump_config
from pipelines.run import console, cpufit, cluster, nodeloss, phase_inputs, report, runlock
from pipelines.run.phases import PHASES, Phase
from pipelines.run.prepared import Run

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from pipelines.run.stages import StageSpec


def phase(name: str) -> Phase:
    for candidate in PHASES:
        if candidate.name == name:
            return candidate
    raise ValueError(f"unknown phase {name!r}; phases are {', '.join(PHASE_NAMES)}")


def validate(config: RunConfig) -> tuple[list[StageSpec], list[StageSpec]]:
    """Everything that can be checked before work starts; returns the score and caption stages it checked."""
    from crawl.blocklist import BlocklistError, load_blocklists
    from pipelines.run.stages import caption_stages, check_resources, check_stages, score_stages

    check_resources(config)
    specs = score_stages(config), caption_stages(config)
    for stage_list in specs:
        check_stages(config, stage_list)
    try:
        check_filters(config.filters)
        check_weights(config.caption)
    except (FilterSetupError, MissingWeightsError) as exc:
        raise ConfigError(str(exc)) from None
    try:
        load_blocklists(config.crawl.blocklists)  # a missing file or a bad line fails here, not in a worker
    except BlocklistError as exc:
        raise ConfigError(str(exc)) from None
    return specs


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


def check_output_dir(output_dir: str) -> None:
    """A local output_dir (or a folder above it) that is a file fails here, in one line, before anything is written."""
    if storage.is_uri(output_dir):
        return
    root = Path(output_dir).expanduser()
    for path in (root, *root.parents):
        if path.exists() and not path.is_dir():
            what = "is" if path == root else f"is inside {path}, which is"
            raise ConfigError(f"output_dir: {root} {what} a file, not a folder; set output_dir to a new folder or "
                              f"an existing run directory (--set output_dir=PATH)")
        if path.exists():
            return


def prepare(config: RunConfig, retry_failed: bool = False) -> Run:
    """Validate, and set up the local run directory; a URI one is first downloaded to resume from it."""
    score_specs, caption_specs = validate(config)
    config = absolute_paths(config)
    check_output_dir(config.output_dir)
    local = local_config(config)
    layout = RunLayout.at(local.output_dir)
    if retry_failed or not layout.is_done("ingest"):  # once staged, the input is read again only by a retry
        check_input(local.input)  # before the run directory exists, so a bad input leaves none behind
    if storage.is_uri(config.output_dir):
        storage.pull(config.output_dir, layout.root)
    layout.root.mkdir(parents=True, exist_ok=True)
    runlock.acquire(layout.root)  # before the first write: a second driver on this directory stops here
    integrity.repair(layout)  # a truncated or zero-byte intermediate is redone, never read
    with atomic_path(layout.config) as tmp:  # a reader (review, a trainer) never sees a half-written config
        tmp.write_text(dump_config(config))
    update_run_json(layout.run_json, config=config.model_dump(mode="json"), versions=report.versions(),
                    git_revision=report.git_revision())
    return Run(config, local, layout, tuple(score_specs), tuple(caption_specs), retry_failed)


def sync(run: Run) -> None:
    """Mirror the local run directory to a URI output_dir (no-op for a local one)."""
    if storage.is_uri(run.config.output_dir):
        storage.push(run.layout.root, run.config.output_dir)


def check_cluster(run: Run, names: tuple[str, ...]) -> None:
    """Fail before any work when a phase's actor pools cannot be placed on the connected cluster."""
    cluster.check_cluster({p.name: p.pools(run) for p in PHASES if p.name in names}, run.config)


def fit_local_cluster(run: Run) -> Run:
    """On a local single-node cluster, CPU requests whose pools cannot start together are scaled down, with a
    warning (``pipelines/run/cpufit.py``); a remote cluster's run is unchanged."""
    cpus = cpufit.local_cpus(run.config.ray)
    if cpus is None:
        return run
    scaled, warnings = cpufit.fit_cpus({p.name: p.pools(run) for p in PHASES}, cpus)
    for warning in warnings:
        log.warning(warning)
    return with_resources(run, cpufit.with_cpus(run.config.resources, scaled)) if scaled else run


def with_resources(run: Run, resources: ResourcesConfig) -> Run:
    """The run with other resources (never a result: the stage digests ignore them)."""
    def respec(specs: tuple[StageSpec, ...]) -> tuple[StageSpec, ...]:
        return tuple(dataclasses.replace(s, resources=resources.for_stage(s.name)) for s in specs)

    return dataclasses.replace(run, config=run.config.model_copy(update={"resources": resources}),
                               local=run.local.model_copy(update={"resources": resources}),
                               score_specs=respec(run.score_specs), caption_specs=respec(run.caption_specs))


def run_phase(run: Run, name: str, fresh: bool = False) -> dict:
    """Run one phase, after checking that its pools fit the cluster; marks it done with what its output
    depends on (``fresh``: under a new name, so that every phase after it runs again) and syncs. A phase
    after it stays done if this phase's output is named as before (``pipelines.run.phase_inputs``)."""
    current, layout = phase(name), run.layout
    if name != "ingest" and not layout.is_done("ingest") and layout.staged_row_files():
        log.warning("ingest is not complete (interrupted, or a corrupt unit was removed): staging first")
        run_phase(run, "ingest")
    run = fit_local_cluster(run)
    check_cluster(run, (name,))
    before = phase_inputs.output_of(layout, name)
    layout.done_marker(name).unlink(missing_ok=True)
    layout.phase_dir(name).mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with nodeloss.watched(name, current.pools(run), run.config.ray):  # a lost node's pool: one line
        result = console.phase(name, current, run, idle=current.idle(run))
    result["wall_s"] = round(time.perf_counter() - start, 3)
    result = phase_inputs.stamp(run, name, result, before, fresh)
    write_json(result, layout.done_marker(name))
    update_run_json(layout.run_json, phases={name: result})
    sync(run)
    return result


def finish(run: Run, **extra) -> dict:
    """Counts from the final manifest (and ``extra``, e.g. wall_s) into run.json, then one sync; returns the counts."""
    stats = report.counts(pl.scan_parquet([str(f) for f in run.layout.manifest_files()]))
    update_run_json(run.layout.run_json, counts=stats, **extra)
    sync(run)
    return stats


def nothing_to_do(run: Run, redo: tuple[str, ...] = ()) -> bool:
    """Whether every phase is done with the inputs it would have now (no Ray needed to rerun the run)."""
    return not redo and all(phase_inputs.is_current(run, name) for name in PHASE_NAMES)


def run_all(run: Run, redo: tuple[str, ...] = ()) -> dict:
    """All phases in order, skipping those done with the inputs they would have now; ``redo`` phases start
    over from nothing, and the phases after them run again. With nothing to do, Ray is never asked."""
    layout, idle = run.layout, nothing_to_do(run, redo)
    if not idle:
        run = fit_local_cluster(run)
        check_cluster(run, PHASE_NAMES)
    start = time.perf_counter()
    for current in PHASES:
        name = current.name
        if name not in redo and phase_inputs.is_current(run, name):
            print(f"{name}: done already, skipped ({json.loads(layout.done_marker(name).read_text())['wall_s']} s)")
            continue
        if name in redo:
            shutil.rmtree(layout.phase_dir(name), ignore_errors=True)
        run_phase(run, name, fresh=name in redo)
    stats = finish(run, wall_s=round(time.perf_counter() - start, 3))
    print(report.summary_table(stats, layout.root))
    return stats


def run(config: RunConfig, redo: tuple[str, ...] = ()) -> dict:
    """Prepare and run every phase: ``run_all(prepare(config), redo)``."""
    return run_all(prepare(config), redo)
