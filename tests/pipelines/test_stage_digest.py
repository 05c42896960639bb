"""Score files are stamped with what changes a score, never with a threshold (no Ray, no model)."""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path

import pyarrow as pa
import pytest
from pydantic import BaseModel

from manifests import schema as col
from manifests.config import USED_BY, used_by
from manifests.io import write_parquet
from manifests.layout import RunLayout
from manifests.schema import INGEST_SCHEMA, Status
from pipelines.config import RunConfig, build_config
from pipelines.run import phase_inputs, score_units
from pipelines.run.stages import STAGES, score_stages

THRESHOLD_LIKE = re.compile(r"^(min|max)_|threshold|^reject_|eps$|_prob$|_frac$")

# Every score stage on (none needs weights to be configured, only to run).
ALL_ON = ["filters.clip.enabled=true", "filters.aesthetic.enabled=true", "filters.nsfw.enabled=true",
          "filters.language.enabled=true", "filters.ocr.enabled=true", "filters.quality.enabled=true",
          "filters.watermark.enabled=true", "dedup.exact.enabled=true", "dedup.phash.enabled=true",
          "dedup.minhash.enabled=true", "dedup.sscd.enabled=true", "dedup.sscd.random_init=true",
          "dedup.pdq.enabled=true", "dedup.pdq.verify.enabled=true", "dedup.semantic.enabled=true"]


def _config(overrides: list[str] = ()) -> RunConfig:
    return build_config({"output_dir": "/tmp/never-written", "input": {"path": "urls.parquet"}},
                        [*ALL_ON, *overrides])


def _floaty(annotation) -> bool:
    args = typing.get_args(annotation)
    return annotation is float or float in args or any(_floaty(a) for a in args)


def _fields(model: type[BaseModel], prefix: str):
    """(dotted name, model class, field name) of every field, nested sections walked."""
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel) and used_by(model, name) is None:
            yield from _fields(annotation, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", model, name


def _stage_sections(config: RunConfig) -> dict[str, BaseModel]:
    sections = {"filters.rules": config.filters.rules}
    for stage in STAGES:
        section = stage.section(config)
        path = next(f"{top}.{name}" for top in ("filters", "dedup", "caption")
                    for name, value in getattr(config, top) if value is section)
        sections[path] = section
    return sections


def test_every_threshold_like_field_of_a_stage_section_says_which_phase_reads_it() -> None:
    """A new threshold cannot silently enter the score digest: it fails here until it is declared."""
    undeclared = []
    for path, section in _stage_sections(_config()).items():
        if path.startswith("caption.") or path == "filters.rules":
            continue  # captions are written after the decision; rules are no stage's section
        for dotted, model, name in _fields(type(section), f"{path}."):
            info = model.model_fields[name]
            if (THRESHOLD_LIKE.search(name) or _floaty(info.annotation)) and used_by(model, name) is None:
                undeclared.append(dotted)
    assert undeclared == [], f"declare json_schema_extra=DECIDES, FINDS or SCORES (manifests/config.py) on {undeclared}"


def _nudged(model: BaseModel, name: str):
    """Another valid value of ``model.name``."""
    value = getattr(model, name)
    if isinstance(value, bool):
        candidates = [not value]
    elif value is None:
        candidates = [0.5, 5, ["en"]]
    elif isinstance(value, (int, float)):
        candidates = [round(value * 0.9, 6), value - 1, 0.5, 1]
    elif isinstance(value, str):
        candidates = [c for c in typing.get_args(type(model).model_fields[name].annotation) if c != value]
    else:
        candidates = []
    for candidate in candidates:
        try:
            type(model).model_validate({**model.model_dump(), name: candidate})
        except ValueError:
            continue
        if candidate != value:
            return candidate
    raise AssertionError(f"no other valid value for {type(model).__name__}.{name}")


def _decision_overrides(config: RunConfig) -> list[str]:
    """A --set for every field of the filters and dedup sections that the decision or clustering reads."""
    overrides = []
    for top in ("filters", "dedup"):
        for dotted, model, name in _fields(type(getattr(config, top)), f"{top}."):
            if used_by(model, name) != "decide" or dotted.startswith("dedup.keep"):
                continue
            holder = config
            for key in dotted.split(".")[:-1]:
                holder = getattr(holder, key)
            new = _nudged(holder, name)
            overrides.append(f"{dotted}={str(new).lower() if isinstance(new, bool) else new}")
    return overrides


def _scored_unit(layout: RunLayout, digest: str) -> None:
    ids = ["a", "b"]
    shard = layout.relative(layout.staged_tar(0))
    rows = [{col.SAMPLE_ID: i, col.STATUS: Status.SUCCESS, col.SHARD: shard} for i in ids]
    write_parquet(pa.Table.from_pylist(rows, schema=INGEST_SCHEMA), layout.staged_rows(0))
    table = pa.table({col.SAMPLE_ID: ids}).replace_schema_metadata({score_units.DIGEST_KEY: digest.encode()})
    write_parquet(table, score_units.unit_file(layout, "00000"))


def _pending(layout: RunLayout, config: RunConfig) -> dict:
    return score_units.pending_units(layout, score_units.accepted_digests(score_stages(config)))


def test_every_threshold_changed_leaves_every_score_unit_valid(tmp_path: Path) -> None:
    before = _config()
    overrides = _decision_overrides(before)
    after = _config(overrides)
    assert len(overrides) >= 26, overrides  # every filter rule and threshold, every detector's thresholds
    assert "filters.nsfw.max_prob=0.45" in overrides and "dedup.pdq.threshold=0.791016" in overrides
    layout = RunLayout.at(tmp_path)
    _scored_unit(layout, score_units.stages_digest(score_stages(before)))
    assert _pending(layout, after) == {}


@pytest.mark.parametrize("override", ["filters.clip.model=ViT-L-14", "filters.clip.precision=fp16",
                                      "filters.ocr.min_text_score=0.6", "filters.nsfw.backend=clip_l14",
                                      "dedup.exact.canonical_size=32", "dedup.pdq.regions=[0.8]",
                                      "dedup.pdq.verify.features=100", "dedup.minhash.num_perm=64",
                                      "dedup.phash.min_quality=10", "dedup.sscd.image_size=224"])
def test_a_model_or_descriptor_setting_changed_makes_the_units_stale(tmp_path: Path, override: str) -> None:
    layout = RunLayout.at(tmp_path)
    _scored_unit(layout, score_units.stages_digest(score_stages(_config())))
    assert _pending(layout, _config([override])) == {"00000": {"a", "b"}}


def test_a_dedup_search_setting_changes_the_dedup_digest_not_the_score_digest() -> None:
    run = types.SimpleNamespace(local=_config(), score_specs=tuple(score_stages(_config())))
    changed = _config(["dedup.pdq.verify.min_inliers=20"])
    other = types.SimpleNamespace(local=changed, score_specs=tuple(score_stages(changed)))
    assert phase_inputs.config_digest(run, "score") == phase_inputs.config_digest(other, "score")
    assert phase_inputs.config_digest(run, "dedup") != phase_inputs.config_digest(other, "dedup")
    raised = _config(["dedup.pdq.threshold=0.95", "filters.nsfw.max_prob=0.2"])
    assert phase_inputs.config_digest(run, "dedup") == phase_inputs.config_digest(
        types.SimpleNamespace(local=raised), "dedup")


def test_stored_pairs_cover_a_raised_threshold_not_a_lowered_one() -> None:
    stored = _config().dedup.stored_from()
    assert phase_inputs.covers(stored, _config(["dedup.pdq.threshold=0.95"]).dedup.stored_from())
    assert phase_inputs.covers(stored, _config(["dedup.semantic.eps=0.05"]).dedup.stored_from())
    assert not phase_inputs.covers(stored, _config(["dedup.pdq.threshold=0.8"]).dedup.stored_from())
    assert not phase_inputs.covers(stored, _config(["dedup.minhash.store_threshold=0.5"]).dedup.stored_from())
    assert not phase_inputs.covers({}, stored)  # a detector that stored nothing


def test_used_by_is_declared_with_the_manifests_constants() -> None:
    for path, section in _stage_sections(_config()).items():
        for dotted, model, name in _fields(type(section), f"{path}."):
            extra = model.model_fields[name].json_schema_extra
            if isinstance(extra, dict) and USED_BY in extra:
                assert extra[USED_BY] in ("decide", "dedup", "score"), dotted
