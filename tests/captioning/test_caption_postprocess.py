"""Post-processing of generated text, and prompt filling: pure functions."""

from __future__ import annotations

import pytest

from captioning.postprocess import CaptionStatus, clean_caption, is_degenerate, merge_status, strip_echo
from captioning.recaption import fill_prompt

PROMPT = "Describe this image in one detailed sentence."


@pytest.mark.parametrize("raw, expected", [
    ("  a dog on a couch \n", "a dog on a couch"),
    (f"{PROMPT} A dog on a couch.", "A dog on a couch."),
    ("ASSISTANT: A dog   on a\ncouch.", "A dog on a couch."),
    (f"{PROMPT.upper()}\nASSISTANT: a cat", "a cat"),
])
def test_strip_echo_removes_prompt_role_markers_and_whitespace(raw: str, expected: str) -> None:
    assert strip_echo(raw, PROMPT) == expected


def test_strip_echo_leaves_a_caption_that_only_mentions_prompt_words() -> None:
    assert strip_echo("A detailed sentence carved in stone.", PROMPT) == "A detailed sentence carved in stone."


@pytest.mark.parametrize("text", [
    "the the the the",
    "a dog a dog a dog a dog a dog a dog",
    "red car on a road red car on a road red car on a road",
])
def test_repetition_loops_are_degenerate(text: str) -> None:
    assert is_degenerate(text)


@pytest.mark.parametrize("text", [
    "a dog sitting on a red couch next to a window",
    "a man and a woman walking a dog in a park on a sunny day",
    "very very good",
])
def test_ordinary_captions_are_not_degenerate(text: str) -> None:
    assert not is_degenerate(text)


@pytest.mark.parametrize("raw, status", [
    ("", CaptionStatus.EMPTY), ("   \n", CaptionStatus.EMPTY), (PROMPT, CaptionStatus.EMPTY),
    ("... !!", CaptionStatus.EMPTY), ("dog dog dog dog dog", CaptionStatus.DEGENERATE),
])
def test_rejected_outputs_get_a_status_and_no_caption(raw: str, status: str) -> None:
    assert clean_caption(raw, PROMPT) == (None, status)


def test_a_good_caption_is_kept() -> None:
    assert clean_caption(" a cat on a mat ", PROMPT) == ("a cat on a mat", CaptionStatus.OK)


def test_merge_status_accumulates_problems_per_captioner() -> None:
    status = merge_status(None, "blip2", [CaptionStatus.OK])
    assert status == CaptionStatus.OK
    status = merge_status(status, "blip2_short", [CaptionStatus.EMPTY])
    status = merge_status(status, "llava", [CaptionStatus.DEGENERATE])
    assert status == "blip2_short:empty;llava:degenerate"
    assert merge_status(status, "llava_short", [CaptionStatus.OK]) == status


def test_fill_prompt_quotes_the_original_caption_cut_to_length() -> None:
    assert fill_prompt("no placeholder", "x", 5) == "no placeholder"
    assert fill_prompt("Alt-text: {caption}. Describe it.", " a  long\ncaption ", 6) == "Alt-text: a long. Describe it."
    assert fill_prompt("Alt-text: {caption}.", None, 10) == "Alt-text: ."


@pytest.mark.parametrize("raw", ["I'm sorry, but I can't help with identifying people in images.",
                                 "I cannot describe this image.", "As an AI, I am not able to see images.",
                                 "Sorry, I can't assist with that.", "Unfortunately, I am unable to view it."])
def test_refusals_get_a_status_and_no_caption(raw: str) -> None:
    assert clean_caption(raw, "Describe this image in one detailed sentence.") == (None, CaptionStatus.REFUSED)


def test_an_answer_that_only_restates_the_prompt_is_empty() -> None:
    prompt = "Describe this image in one detailed sentence."
    assert clean_caption("this image, in one detailed sentence", prompt) == (None, CaptionStatus.EMPTY)
    assert clean_caption("a sign that reads I'm sorry on a shop window", prompt)[1] == CaptionStatus.OK


def test_a_caption_cut_at_the_token_limit_is_kept_and_flagged() -> None:
    assert clean_caption("a red bicycle leaning against a", PROMPT, truncated=True) == \
        ("a red bicycle leaning against a", CaptionStatus.TRUNCATED)
    assert clean_caption("dog dog dog dog dog", PROMPT, truncated=True) == (None, CaptionStatus.DEGENERATE)


def test_the_prompt_echo_is_stripped_on_a_word_boundary_only() -> None:
    assert strip_echo("ASSISTANT said hello", "a") == "ASSISTANT said hello"
    assert strip_echo("a photo of a dog", "a photo of") == "a dog"
