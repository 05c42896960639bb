"""One batch through one captioner: decode, prompt, generate, clean, and a status per row.

The captioner classes differ only in the model class and how an instruction becomes a model
prompt (``to_model_prompt``); everything else lives here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from captioning.config import CAPTION_PLACEHOLDER, CaptionerConfig, GenerationConfig
from captioning.postprocess import CaptionStatus, clean_caption, merge_status
from captioning.vlm import Generated, Vlm, decode_images, generate
from manifests import schema as col

log = logging.getLogger(__name__)
PromptFormat = Callable[[Any, str], str]  # (processor, instruction) -> the text the model is given


def fill_prompt(template: str, caption: str | None, max_chars: int) -> str:
    """Quote the original caption where the template asks for it, cut to ``max_chars``."""
    if CAPTION_PLACEHOLDER not in template:
        return template
    return template.replace(CAPTION_PLACEHOLDER, " ".join((caption or "").split())[:max_chars])


@dataclass
class Captions:
    """One captioner's outcome for the decodable images of a batch."""

    captions: list[str | None]
    statuses: list[str]
    prompt_tokens: list[int | None]
    output_tokens: list[int | None]


def caption_images(vlm: Vlm, images: list, originals: list, instruction: str, gen: GenerationConfig,
                   config: CaptionerConfig, to_model_prompt: PromptFormat) -> Captions:
    """Captions, statuses and token counts for decodable ``images``, one generate call for the whole batch.

    A batch whose generation raises (a CUDA error, an image the processor refuses) gets status ``error`` on
    every row, so the rows stay in the manifest and the other batches go on.
    """
    filled = [fill_prompt(instruction, c, config.max_caption_chars) for c in originals]
    try:
        out = generate(vlm, images, [to_model_prompt(vlm.processor, p) for p in filled], gen) if images else \
            Generated([], [], [], [])
    except Exception:  # noqa: BLE001 - recorded per row as caption_status error; the traceback goes to the log
        log.exception("caption batch of %d images failed", len(images))
        return Captions([None] * len(images), [CaptionStatus.ERROR] * len(images), [None] * len(images),
                        [None] * len(images))
    cleaned = [clean_caption(t, p, cut) for t, p, cut in zip(out.texts, filled, out.truncated)]
    return Captions([c for c, _ in cleaned], [s for _, s in cleaned], out.prompt_tokens, out.output_tokens)


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
    runs = [(name, columns[0], config.instruction(), config.generation)]
    if config.short_prompt is not None:
        runs.append((f"{name}_short", columns[1], config.short_prompt, config.short_generation))
    out = dict(batch)
    out[columns[1]] = np.array([None] * n, dtype=object)
    previous = batch.get(col.CAPTION_STATUS, [None] * n)
    merged = list(previous)
    for label, column, instruction, gen in runs:
        result = caption_images(vlm, good, originals, instruction, gen, config, to_model_prompt)
        out[column] = np.array(_scatter(n, rows, result.captions, None), dtype=object)
        per_row = _scatter(n, rows, result.statuses, CaptionStatus.UNDECODABLE)
        merged = [merge_status(m, label, [s]) for m, s in zip(merged, per_row)]
        if column == columns[0]:
            for counts, token_col in zip((result.prompt_tokens, result.output_tokens), col.CAPTION_TOKENS[name]):
                out[token_col] = np.array(_scatter(n, rows, counts, None), dtype=object)
    out[col.CAPTION_STATUS] = np.array(merged, dtype=object)
    return out
