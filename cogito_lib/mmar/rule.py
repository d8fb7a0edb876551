"""MMAR vocabulary, the official prompt format and the official string-match rule (`is_correct`)."""
from __future__ import annotations

import re
from typing import Sequence

MODALITIES: tuple[str, ...] = (
    "sound", "music", "speech",
    "mix-sound-music", "mix-sound-speech", "mix-music-speech", "mix-sound-music-speech",
)
CATEGORIES: tuple[str, ...] = ("Signal Layer", "Perception Layer", "Semantic Layer", "Cultural Layer")
LAYERS: tuple[str, ...] = ("Signal", "Perception", "Semantic", "Cultural")  # short names used in breakdowns
RUBRIC_SIZE = 5                 # MMAR-Rubrics: 5 binary rubric items per item
THINKING_LIMIT = 10_000         # challenge rule: each thinking_prediction must be < 10,000 characters
SUBMISSION_KEYS: tuple[str, ...] = ("id", "thinking_prediction", "answer_prediction")
PROMPT_INSTRUCTION = "Select one option from the provided choices:"

_WORD = re.compile(r"\b\w+\b")


def format_prompt(question: str, choices: Sequence[str]) -> str:
    """The MMAR prompt: the question, a newline, the instruction line, a newline, then one choice per line."""
    return f"{question}\n{PROMPT_INSTRUCTION}\n" + "\n".join(choices)


def item_prompt(item) -> str:
    """`format_prompt` of an MMAR-format item (its `question` and `choices`)."""
    return format_prompt(item["question"], item["choices"])


def tokenize(text: str | None) -> set[str]:
    """Lower-cased set of word tokens (`\\b\\w+\\b`), as the official scorer sees a string."""
    return set(_WORD.findall((text or "").lower()))


def is_correct(prediction: str | None, answer: str, choices: Sequence[str]) -> bool:
    """MMAR's official string-match rule: all answer tokens present, no token owned only by a wrong choice.

    The single matching rule of the kit (auditor, evaluation and rubrics all call it). Note the argument order:
    prediction first (the official `string_match` takes the answer first)."""
    prediction_tokens = tokenize(prediction)
    if not prediction_tokens:
        return False
    answer_tokens = tokenize(answer)
    wrong_tokens: set[str] = set()
    for choice in choices:
        choice_tokens = tokenize(choice)
        if choice_tokens != answer_tokens:
            wrong_tokens |= choice_tokens - answer_tokens
    return answer_tokens <= prediction_tokens and not (prediction_tokens & wrong_tokens)


def normalise_category(category: str) -> str:
    """'Signal Layer' (official) or 'Signal' -> 'Signal'; the short layer name used in every breakdown."""
    text = str(category).strip()
    short = text[:-len(" Layer")] if text.lower().endswith(" layer") else text
    for layer in LAYERS:
        if short.lower() == layer.lower():
            return layer
    raise ValueError(f"unknown MMAR category {category!r}: expected one of {list(CATEGORIES)}")
