"""Scores and thresholds -> ``keep`` and ``reject_reasons``. Pure: no model, no image, no I/O.

Reads whatever score and duplicate columns the manifest has; a column that is absent (its stage did
not run) contributes no reason, and a null score (the stage could not score that row) contributes
none either. Every reason that applies is listed, not only the first, so a threshold can be tuned
later without recomputing anything.
"""

from __future__ import annotations

import polars as pl

from filters.config import FiltersConfig, threshold_rules
from manifests import schema as col
from manifests.schema import DUPLICATE_REASONS, Reason, Status


def _reason(condition: pl.Expr, reason: str | pl.Expr) -> pl.Expr:
    value = pl.lit(reason) if isinstance(reason, str) else reason
    return pl.when(condition).then(value).otherwise(None)


_CAPTION = pl.col(col.CAPTION).fill_null("").str.strip_chars()
# What the caption rules measure of a caption. ``reason_exprs(..., measured=True)`` reads them as columns
# of these names instead, for a caller that holds them (the review app computes them once, not per move).
CAPTION_MEASURES = {"_caption_present": pl.col(col.CAPTION).is_not_null(),
                    "_caption_words": _CAPTION.str.count_matches(r"\S+"),
                    "_caption_chars": _CAPTION.str.len_chars()}


def reason_exprs(config: FiltersConfig, columns: set[str], measured: bool = False) -> list[pl.Expr]:
    rules = config.rules
    ok = pl.col(col.STATUS) == Status.SUCCESS
    present, words, chars = (pl.col(name) if measured else expr for name, expr in CAPTION_MEASURES.items())
    short_side = pl.min_horizontal(col.ORIGINAL_WIDTH, col.ORIGINAL_HEIGHT)
    long_side = pl.max_horizontal(col.ORIGINAL_WIDTH, col.ORIGINAL_HEIGHT)
    exprs = [
        _reason(~ok, pl.lit(Reason.STATUS_PREFIX) + pl.col(col.STATUS)),
        # A null caption means the row has no caption source (a URL-only list): the caption rules do not
        # apply, and a recaption may still supply one. An empty caption is judged like any other.
        _reason(present & ((words < rules.min_caption_words) | (chars < rules.min_caption_chars)),
                Reason.CAPTION_TOO_SHORT),
        _reason(ok & (short_side < rules.min_image_side), Reason.IMAGE_TOO_SMALL),
        _reason(ok & (long_side > rules.max_aspect_ratio * short_side), Reason.ASPECT_RATIO),
    ]
    for rule in threshold_rules(config):
        if rule.column in columns:
            exprs.append(_reason(ok & rule.violated(), rule.reason))
    if rules.drop_ai_generated and col.AI_GENERATED_DECLARED in columns:
        exprs.append(_reason(ok & pl.col(col.AI_GENERATED_DECLARED).fill_null(False), Reason.AI_GENERATED))
    if rules.languages and col.CAPTION_LANG in columns:
        exprs.append(_reason(ok & pl.col(col.CAPTION_LANG).is_not_null()
                             & ~pl.col(col.CAPTION_LANG).is_in(rules.languages), Reason.CAPTION_LANGUAGE))
    if col.DUPLICATE_OF in columns and col.DUP_KIND in columns:
        reason = pl.col(col.DUP_KIND).replace_strict(DUPLICATE_REASONS, default=None, return_dtype=pl.String)
        exprs.append(_reason(pl.col(col.DUPLICATE_OF).is_not_null(), reason))
    return exprs


SCORE_COLUMNS = (col.CLIP_SCORE, col.AESTHETIC_SCORE, col.NSFW_PROB, col.CAPTION_LANG_PROB, col.TEXT_AREA_FRAC,
                 col.CAPTION_TEXT_OVERLAP, col.BLUR_VAR, col.QR_CODES, col.GREY_ENTROPY, col.WATERMARK_PROB)


def nan_to_null(lazy: pl.LazyFrame) -> pl.LazyFrame:
    """Model stages mark a row they could not score with NaN (a numpy batch has no null); the manifest says null.

    Polars orders NaN above every number, so a NaN left in place would fail every ``maximum`` rule.
    """
    schema = lazy.collect_schema()
    floats = [c for c in SCORE_COLUMNS if c in schema and schema[c].is_float()]
    return lazy.with_columns(pl.col(c).fill_nan(None) for c in floats) if floats else lazy


def decide(frame: pl.LazyFrame | pl.DataFrame, config: FiltersConfig) -> pl.LazyFrame:
    """Add ``keep`` and ``reject_reasons`` (replacing earlier ones) to a manifest-shaped frame."""
    lazy = nan_to_null(frame.lazy())
    columns = set(lazy.collect_schema().names())
    lazy = lazy.drop([c for c in (col.KEEP, col.REJECT_REASONS) if c in columns])
    return lazy.with_columns(reason_list(reason_exprs(config, columns))).with_columns(
        (pl.col(col.REJECT_REASONS).list.len() == 0).alias(col.KEEP))


_SEP = "\x1f"  # never part of a reason: reasons are identifiers and status names


def reason_list(exprs: list[pl.Expr]) -> pl.Expr:
    """The non-null reasons of each row as a list, in rule order.

    Joining into one string and splitting it is about twice as fast in polars as
    concat_list(...).list.drop_nulls() on a 10M-row manifest.
    """
    joined = pl.concat_str(exprs, separator=_SEP, ignore_nulls=True)
    empty = pl.lit([], dtype=pl.List(pl.String))
    return (pl.when(joined.is_null() | (joined == "")).then(empty).otherwise(joined.str.split(_SEP))
            .alias(col.REJECT_REASONS))


def passes_rules(frame: pl.LazyFrame, config: FiltersConfig) -> pl.LazyFrame:
    """sample_id + ``keep`` as ``decide`` would set it, without building the reason lists: with the
    duplicate columns left out, whether a row passes every other rule (dedup's eligibility)."""
    lazy = nan_to_null(frame.lazy())
    reasons = reason_exprs(config, set(lazy.collect_schema().names()))
    return lazy.select(col.SAMPLE_ID, pl.all_horizontal([r.is_null() for r in reasons]).alias(col.KEEP))
