"""Generated text -> a caption, or a status saying why there is none. Pure functions, no model."""

from __future__ import annotations

import re

ROLE_MARKERS = ("ASSISTANT:", "Assistant:", "assistant:", "Answer:", "answer:")
WORD = re.compile(r"\w+", re.UNICODE)
MAX_WORD_RUN = 4  # the same word this many times in a row is a decoding loop, not a description
MIN_WORDS_FOR_RATIO = 8
MIN_DISTINCT_TRIGRAMS = 0.5  # share of distinct word trigrams below which the text repeats itself
# How instruction-tuned models decline: checked at the start of the answer only, so "a sign reading
# I'm sorry" stays a caption.
REFUSAL = re.compile(
    r"^(i'?m sorry|i am sorry|sorry,|i apologi[sz]e|i cannot|i can'?t|i can not|i'?m (unable|not able)|"
    r"i am (unable|not able)|i won'?t|as an ai\b|unfortunately,? i (cannot|can'?t|am unable))", re.IGNORECASE)
RESTATED_PROMPT = 0.8  # share of the answer's words that are the prompt's: it said nothing of the image


class CaptionStatus:
    OK = "ok"
    EMPTY = "empty"  # nothing left after stripping the prompt echo and whitespace
    DEGENERATE = "degenerate"  # repetition loops
    UNDECODABLE = "failed_to_decode"  # the staged image could not be opened
    REFUSED = "refused"  # the model declined to describe the image
    TRUNCATED = "truncated"  # generation stopped at max_new_tokens, not at end of text: kept, flagged
    ERROR = "error"  # generation raised for the batch (recorded per row; the actor goes on)


def echoes(text: str, prompt: str) -> bool:
    """``text`` starts with ``prompt`` as whole words (the prompt "a" is no echo in "ASSISTANT")."""
    if not prompt or not text.lower().startswith(prompt.lower()):
        return False
    return len(text) == len(prompt) or not (prompt[-1].isalnum() and text[len(prompt)].isalnum())


def strip_echo(text: str, prompt: str) -> str:
    """Drop a leading copy of the prompt and chat role markers, and surrounding whitespace."""
    text = text.strip()
    changed = True
    while changed:
        changed = False
        if echoes(text, prompt.strip()):
            text, changed = text[len(prompt.strip()):].lstrip(" :\n\t"), True
        for marker in ROLE_MARKERS:
            if text.startswith(marker):
                text, changed = text[len(marker):].lstrip(), True
    return " ".join(text.split())


def longest_word_run(words: list[str]) -> int:
    best = run = 0
    for i, word in enumerate(words):
        run = run + 1 if i and word == words[i - 1] else 1
        best = max(best, run)
    return best


def is_degenerate(text: str) -> bool:
    """True for repetition loops: one word over and over, or the same phrases cycling."""
    words = [w.lower() for w in WORD.findall(text)]
    if longest_word_run(words) >= MAX_WORD_RUN:
        return True
    if len(words) < MIN_WORDS_FOR_RATIO:
        return False
    trigrams = list(zip(words, words[1:], words[2:]))
    return len(set(trigrams)) / len(trigrams) < MIN_DISTINCT_TRIGRAMS


def is_refusal(text: str) -> bool:
    return REFUSAL.match(text.strip().strip("\"'")) is not None


def restates_prompt(text: str, prompt: str) -> bool:
    """True when nearly every word of ``text`` is a word of the prompt (an echo with the words shuffled)."""
    words = [w.lower() for w in WORD.findall(text)]
    asked = {w.lower() for w in WORD.findall(prompt)}
    return bool(words) and bool(asked) and sum(w in asked for w in words) / len(words) >= RESTATED_PROMPT


def clean_caption(text: str, prompt: str, truncated: bool = False) -> tuple[str | None, str]:
    """(caption, status): the caption is None unless the status is ok, or truncated (cut at the token limit)."""
    caption = strip_echo(text, prompt)
    if not WORD.search(caption) or restates_prompt(caption, prompt):
        return None, CaptionStatus.EMPTY
    if is_degenerate(caption):
        return None, CaptionStatus.DEGENERATE
    if is_refusal(caption):
        return None, CaptionStatus.REFUSED
    return caption, CaptionStatus.TRUNCATED if truncated else CaptionStatus.OK


def merge_status(previous: str | None, stage: str, statuses: list[str]) -> str:
    """Combine a row's statuses: ``ok`` when every captioner so far succeeded, else ``name:status;...``."""
    problems = [] if previous in (None, CaptionStatus.OK) else previous.split(";")
    problems += [f"{stage}:{s}" for s in statuses if s != CaptionStatus.OK]
    return ";".join(dict.fromkeys(problems)) or CaptionStatus.OK
