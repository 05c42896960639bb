"""The base of every config model: immutable, and a misspelt field is an error, not a silent default.

A stage's config section holds two kinds of field: those that change what the stage writes (model,
weights, preprocessing, hash parameters) and those a later phase reads (a decision threshold, a dedup
search setting). Score files are stamped with a digest of the first kind only (``stage_inputs``), so a
new threshold never re-scores. A field a later phase reads says so with ``json_schema_extra=DECIDES``
(the decision or dedup's clustering applies it to stored scores or pairs) or ``FINDS`` (the dedup phase
uses it to find pairs from stored descriptors); ``SCORES`` states that a threshold-looking field does
change the stage's output. ``tests/pipelines/test_stage_digest.py`` fails on a threshold-like field of
a stage section that says neither.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, model_validator

USED_BY = "used_by"
DECIDES = {USED_BY: "decide"}  # applied to stored scores or pairs: a change re-decides, never re-scores
FINDS = {USED_BY: "dedup"}  # the dedup phase reads it over stored descriptors: never re-scores
SCORES = {USED_BY: "score"}  # changes what the stage itself writes
log = logging.getLogger(__name__)


class StrictModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    # fields a later version removed: a run directory's config.yaml (every field, as recorded) may still hold
    # them, and that run must still resume, tune and re-export, so they are dropped with a warning, not refused
    retired: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _drop_retired(cls, data: Any) -> Any:
        if not cls.retired or not isinstance(data, dict) or not cls.retired & data.keys():
            return data
        log.warning("%s: %s no longer exist (a config recorded by an earlier version?) and are ignored",
                    cls.__name__, ", ".join(sorted(cls.retired & data.keys())))
        return {key: value for key, value in data.items() if key not in cls.retired}


def used_by(model: type[BaseModel], name: str) -> str | None:
    """The phase a field declares it is read by (``DECIDES``, ``FINDS``, ``SCORES``); None: undeclared."""
    extra = model.model_fields[name].json_schema_extra
    return extra.get(USED_BY) if isinstance(extra, dict) else None


def dump_without(model: BaseModel, phases: frozenset[str]) -> dict[str, Any]:
    """``model.model_dump(mode="json")`` without the fields (at any depth) read by one of ``phases``."""
    out: dict[str, Any] = {}
    for name in type(model).model_fields:
        if used_by(type(model), name) in phases:
            continue
        value = getattr(model, name)
        nested = isinstance(value, BaseModel)
        out[name] = dump_without(value, phases) if nested else model.model_dump(mode="json", include={name})[name]
    return out


def stage_inputs(model: BaseModel) -> dict[str, Any]:
    """The part of a stage's config section that changes what the stage writes (what its digest hashes)."""
    return dump_without(model, frozenset({"decide", "dedup"}))
