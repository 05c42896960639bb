"""The shared decode, planned from what the stages need: one plan, one pure function per batch.

``plan_decode`` takes each stage's declared needs (``Stage.needs(config)``) and whether any stage still
reads the raw ``image`` bytes; ``decode_batch`` is what each decode task runs (in the Ray score phase and,
called directly, in ``bench/score_path.py``): decode each row once, make every need, drop the bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from manifests import schema as col
from manifests.images import Need, PixelNeed, TextNeed, prepare

DecodeDevice = Literal["cpu", "gpu"]


@dataclass(frozen=True)
class DecodePlan:
    """The distinct needs in first-declared order, which of them the model's GPU makes from JPEG bytes, and
    whether the encoded bytes must travel on (a stage without needs reads ``image`` itself)."""

    needs: tuple[Need, ...]
    on_device: tuple[PixelNeed, ...] = ()
    keep_image: bool = False
    device_decodes: bool = True  # on_device needs: the device decodes JPEGs too (else it resizes CPU-decoded RGB)

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(n.column for n in self.needs)


def plan_decode(stage_needs: list[tuple[Need, ...]], reads_image: bool = False,
                device: DecodeDevice = "cpu", resize: DecodeDevice = "cpu") -> DecodePlan | None:
    """One plan for all stages; None when no stage needs anything prepared. ``device: gpu``: the needs that
    can be made on the model's device are decoded and resized there; ``resize: gpu``: decoded here, resized
    and cropped there."""
    needs = tuple(dict.fromkeys(n for declared in stage_needs for n in declared))
    if not needs:
        return None
    gpu = "gpu" in (device, resize)
    on_device = tuple(n for n in needs if gpu and isinstance(n, PixelNeed) and n.device_decodable)
    return DecodePlan(needs, on_device, reads_image, device_decodes=device == "gpu")


def check_needs(name: str, needs: tuple) -> list[str]:
    """What is wrong with one stage's declared needs (empty when nothing): each a Need of a batch column."""
    problems = []
    for need in needs:
        if not isinstance(need, (PixelNeed, TextNeed)):
            problems.append(f"stage {name!r} declares {need!r}, which is not a manifests.images PixelNeed/TextNeed")
        elif need.source not in (col.IMAGE, col.CAPTION):
            problems.append(f"stage {name!r} needs {need.column} from {need.source!r}, which score batches lack")
    return problems


def decode_batch(batch: dict[str, np.ndarray], plan: DecodePlan) -> dict[str, np.ndarray]:
    """One decode task: every row decoded once, every planned need made, the encoded bytes dropped unless a
    stage reads them (model actors get ready arrays, never JPEG bytes)."""
    out = prepare(batch, plan.needs, plan.on_device, plan.device_decodes)
    if not plan.keep_image:
        out.pop(col.IMAGE, None)
    return out
