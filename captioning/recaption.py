"""One batch through one captioner: decode, prompt, generate, clean, and a status per row.

The captioner classes differ only in the model class and how an instruction becomes a model
prompt (``to_model_prompt``); everything else lives here.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from captioning.config import CAPTION_PLACEHOLDER, CaptionerConfig, GenerationConfig
from captioning.postprocess import CaptionStatus, clean_caption, merge_status
from captioning.vlm import Vlm, decode_images, generate_texts
from manifests import schema as col

PromptFormat = Callable[[Any, str], str]  # (processor, instruction) -> the text the model is given


def fill_prompt(template: str, caption: str | None, max_chars: int) -> str:
    """Quote the original caption where the template asks for it, cut to ``max_chars``."""
    if CAPTION_PLACEHOLDER not in template:
        return template
    return template.replace(CAPTION_PLACEHOLDER, " ".join((caption or "").split())[:max_chars])


def caption_images(vlm: Vlm, images: list, originals: list, instruction: str, gen: GenerationConfig,
                   config: CaptionerConfig, to_model_prompt: PromptFormat) -> tuple[list[str | None], list[str]]:
    """(captions, statuses) for decodable ``images``, one generate call for the whole batch."""
    if not images:
        return [], []
    filled = [fill_prompt(instruction, c, config.max_caption_chars) for c in originals]
    texts = generate_texts(vlm, images, [to_model_prompt(vlm.processor, p) for p in filled], gen)
    cleaned = [clean_caption(t, p) for t, p in zip(texts, filled)]
    return [c for c, _ in cleaned], [s for _, s in cleaned]


def _scatter(n: int, rows: list[int], values: list, fill: Any) -> list:
    out = [fill] * n
    for row, value in zip(rows, values):
        out[row] = value
    return out


def recaption(vlm: Vlm, config: CaptionerConfig, batch: dict[str, np.ndarray], name: str,
              columns: tuple[str, str], to_model_prompt: PromptFormat) -> dict[str, np.ndarray]:
    """Add ``columns`` (caption, short caption) and merge this captioner's outcome into caption_status."""
    images = decode_images(batch[col.IMAGE])
    n = len(images)
    rows = [i for i, img in enumerate(images) if img is not None]
    good = [images[i] for i in rows]
    originals = [batch[col.CAPTION][i] for i in rows] if col.CAPTION in batch else [None] * len(rows)
    runs = [(name, columns[0], config.prompt, config.generation)]
    if config.short_prompt is not None:
        runs.append((f"{name}_short", columns[1], config.short_prompt, config.short_generation))
    out = dict(batch)
    out[columns[1]] = np.array([None] * n, dtype=object)
    previous = batch.get(col.CAPTION_STATUS, [None] * n)
    merged = list(previous)
    for label, column, instruction, gen in runs:
        captions, run_status = caption_images(vlm, good, originals, instruction, gen, config, to_model_prompt)
        out[column] = np.array(_scatter(n, rows, captions, None), dtype=object)
        per_row = _scatter(n, rows, run_status, CaptionStatus.UNDECODABLE)
        merged = [merge_status(m, label, [s]) for m, s in zip(merged, per_row)]
    out[col.CAPTION_STATUS] = np.array(merged, dtype=object)
    return out
