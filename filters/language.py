"""Caption language: an ISO 639-1 code and a confidence per caption, from lingua's offline n-gram models.

lingua-language-detector ships every language model inside its wheel, so the stage works offline.
It was chosen over gcld3 (whose wheel does not build without a protobuf compiler) and measured on short
captions in ``bench/filters.py``: high-accuracy mode identified 144 of 144 captions of 3-9 words in 12
languages. The rule that uses it is ``filters.rules.languages`` (reason ``caption_language``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from filters.config import LanguageConfig
from manifests import schema as col

UNDETERMINED = "und"  # BCP 47's code for "no language": an empty caption, digits, punctuation


def load_detector(config: LanguageConfig) -> Any:
    """A lingua detector over all its languages, or over ``config.candidates``; raises on an unknown code."""
    from lingua import IsoCode639_1, LanguageDetectorBuilder

    if config.candidates:
        codes = []
        for code in config.candidates:
            try:
                codes.append(IsoCode639_1.from_str(code.lower()))
            except ValueError:
                raise ValueError(f"filters.language.candidates: {code!r} is no ISO 639-1 code lingua knows") from None
        if len(codes) < 2:
            raise ValueError("filters.language.candidates needs at least two languages to choose among")
        builder = LanguageDetectorBuilder.from_iso_codes_639_1(*codes)
    else:
        builder = LanguageDetectorBuilder.from_all_languages()
    if config.low_accuracy:
        builder = builder.with_low_accuracy_mode()
    return builder.build()


def iso_code(language: Any) -> str:
    return language.iso_code_639_1.name.lower()


def identify(detector: Any, captions: list[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """(codes, confidences) of each caption: the most likely language and its share of lingua's confidence.

    One caption at a time, not lingua's ``*_in_parallel_of``: its thread pool would take every core of the
    node, while a Ray actor has the CPUs its resources say.
    """
    codes = np.empty(len(captions), dtype=object)
    probs = np.zeros(len(captions), dtype=np.float32)
    for i, caption in enumerate(captions):
        values = detector.compute_language_confidence_values(caption.strip()) if caption else []
        if values and values[0].value > 0:
            codes[i], probs[i] = iso_code(values[0].language), values[0].value
        else:
            codes[i] = UNDETERMINED
    return codes, probs


class CaptionLanguageIdentifier:
    """Reads ``caption``; writes ``caption_lang`` (ISO 639-1, "und" when nothing is recognisable, e.g. an
    empty caption) and ``caption_lang_prob`` (float32 confidence, 0 for "und"). No input fails a row."""

    reads = (col.CAPTION,)
    writes = (col.CAPTION_LANG, col.CAPTION_LANG_PROB)

    def __init__(self, config: LanguageConfig) -> None:
        self.detector = load_detector(config)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        captions = [None if c is None else str(c) for c in batch[col.CAPTION]]
        batch[col.CAPTION_LANG], batch[col.CAPTION_LANG_PROB] = identify(self.detector, captions)
        return batch
