"""Caption language (lingua) and the rules that use it: filters.rules.languages and the datacomp_basic preset."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from support.language_captions import labelled
from filters.config import FiltersConfig, LanguageConfig, RulesConfig
from filters.decide import decide
from filters.language import UNDETERMINED, CaptionLanguageIdentifier, identify, load_detector
from manifests import schema as col
from manifests.schema import Reason, Status
from pipelines.config import build_config, dump_config


@pytest.fixture(scope="module")
def detector():
    return load_detector(LanguageConfig(enabled=True))


def test_known_language_captions_are_identified(detector):
    texts, codes = labelled()
    found, probs = identify(detector, texts)
    accuracy = float(np.mean(found == np.array(codes, dtype=object)))
    assert accuracy >= 0.95, [(t, c, f) for t, c, f in zip(texts, codes, found) if c != f]
    assert ((probs > 0) & (probs <= 1)).all()


def test_stage_marks_captions_without_language_und():
    stage = CaptionLanguageIdentifier(LanguageConfig(enabled=True, candidates=["en", "de"]))
    batch = stage({col.CAPTION: np.array(["a dog running on the beach", None, "", "  1234 !!", "ein Hund am Strand"],
                                         dtype=object)})
    assert list(batch[col.CAPTION_LANG]) == ["en", UNDETERMINED, UNDETERMINED, UNDETERMINED, "de"]
    assert batch[col.CAPTION_LANG_PROB].dtype == np.float32 and batch[col.CAPTION_LANG_PROB][1] == 0


def test_unknown_language_codes_fail_at_config_time():
    with pytest.raises(ValueError, match="'zz'"):
        LanguageConfig(candidates=["en", "zz"])
    with pytest.raises(ValueError, match="'qq'"):
        RulesConfig(languages=["en", "qq"])


def _rows(**columns) -> pl.DataFrame:
    n = len(next(iter(columns.values())))
    base = {col.SAMPLE_ID: [f"{i:03d}" for i in range(n)], col.STATUS: [Status.SUCCESS] * n,
            col.ORIGINAL_WIDTH: [400] * n, col.ORIGINAL_HEIGHT: [300] * n}
    return pl.DataFrame({**base, **columns})


def test_languages_rule_rejects_other_languages_only():
    frame = _rows(caption=["a dog on the beach", "ein Hund am Strand", "un chien", "x y z"],
                  caption_lang=["en", "de", "fr", UNDETERMINED])
    config = FiltersConfig(rules=RulesConfig(languages=["en", "de"], min_caption_words=0, min_caption_chars=0),
                           language=LanguageConfig(enabled=True))
    out = decide(frame, config).collect()
    assert [Reason.CAPTION_LANGUAGE in r for r in out[col.REJECT_REASONS].to_list()] == [False, False, True, True]


def test_languages_rule_needs_the_language_stage():
    with pytest.raises(ValueError, match="filters.language.enabled"):
        FiltersConfig(rules=RulesConfig(languages=["en"]))
    with pytest.raises(ValueError, match="languages"):
        RulesConfig(languages=["english"])


def test_datacomp_basic_preset_sets_the_published_rules_visibly(tmp_path):
    config = build_config({"output_dir": str(tmp_path), "input": {"kind": "url_list", "path": "x.parquet"},
                           "filters": {"preset": "datacomp_basic", "rules": {"min_image_side": 256}}})
    rules = config.filters.rules
    assert rules.languages == ["en"] and config.filters.language.enabled
    assert (rules.min_caption_words, rules.min_caption_chars, rules.max_aspect_ratio) == (3, 6, 3.0)
    assert rules.min_image_side == 256  # a value the config sets itself wins over the preset
    dumped = dump_config(config)
    assert "languages:\n    - en" in dumped and "min_caption_words: 3" in dumped


def test_datacomp_basic_decisions():
    frame = _rows(caption=["two words", "three short words", "a cat on a mat", "ein Hund läuft am Strand"],
                  caption_lang=["en", "en", "en", "de"]).with_columns(
        pl.Series(col.ORIGINAL_WIDTH, [400, 400, 700, 400]), pl.Series(col.ORIGINAL_HEIGHT, [300, 300, 199, 300]))
    out = decide(frame, FiltersConfig(preset="datacomp_basic")).collect()
    reasons = out[col.REJECT_REASONS].to_list()
    assert reasons == [[Reason.CAPTION_TOO_SHORT], [], [Reason.IMAGE_TOO_SMALL, Reason.ASPECT_RATIO],
                       [Reason.CAPTION_LANGUAGE]]
