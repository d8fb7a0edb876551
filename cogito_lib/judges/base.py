"""The two judge roles and what they share.

- A **trace judge** (the auditor's, stage 4) decides whether one reasoning trace is grounded and logical:
  `verify(question, thinking, answer_prediction, clip) -> Verdict`.
- A **rubric judge** (MMAR-Rubrics, notebook 07) scores a correctly answered item against its 5 rubric items:
  `score(item, thinking_prediction, answer_prediction, run) -> [0/1, ...]`.

Judges say what they can do with attributes, not with their class: `name` identifies a judge's verdicts (part of
the audit's fingerprint), `requires` lists the question fields a trace judge checks the reasoning against.
"""
from __future__ import annotations

from typing import Mapping, Protocol, Sequence, runtime_checkable


class Verdict:
    """A judge's decision on one reasoning trace: `ok`, and the reasons when not."""

    __slots__ = ("ok", "reasons")

    def __init__(self, reasons: list[str]):
        self.reasons = reasons
        self.ok = not reasons

    def __repr__(self) -> str:
        return "Verdict(ok)" if self.ok else f"Verdict({'; '.join(self.reasons)})"


class JudgeOutputError(ValueError):
    """The judge produced no valid verdict (malformed or missing reply): the sample is rejected, never passed."""


class JudgeError(RuntimeError):
    """The judge could not produce valid scores (after retries); the item stays unevaluated."""


class JudgeUnavailable(RuntimeError):
    """The profile's judge cannot run here (e.g. no API key); the message says why and what to do."""


@runtime_checkable
class TraceJudge(Protocol):
    """The auditor's judge: is this reasoning trace grounded in the clip and logically sound?"""

    name: str  # identifies the verdicts this judge gives
    requires: Sequence[str]  # question fields the judge needs (a question without them cannot be judged)

    def verify(self, question: Mapping, thinking: str, answer_prediction: str,
               clip: Mapping | None = None) -> Verdict:
        ...


@runtime_checkable
class RubricJudge(Protocol):
    """Scores one correctly answered item: one integer per rubric item (0 or 1 in MMAR-Rubrics)."""

    def score(self, item: dict, thinking_prediction: str, answer_prediction: str, run: int) -> list[int]:
        ...
