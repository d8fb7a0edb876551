"""The miniature's judges: reasoning checked against the world's ground-truth metadata (offline, deterministic)."""
from __future__ import annotations

import re
from typing import Mapping

from ..world.skills import clip_truths, parse_reasoning
from .base import Verdict


def _norm(text: str) -> str:
    return re.sub(r"[^\w\s]", "", text.lower()).strip()


class MetadataTraceJudge:
    """The miniature's trace judge: checks a trace's claims against the clip's ground truth (offline,
    deterministic).

    A trace passes when its listing names every event correctly and in order, every gold step of the question
    is stated with its true value, any other step is a true fact about the clip, and it ends by stating the
    answer it gives.
    """

    name = "metadata"
    requires = ("listing", "steps")  # the question's gold listing and steps: what the reasoning is checked against

    def verify(self, question: Mapping, thinking: str, answer_prediction: str,
               clip: Mapping | None = None) -> Verdict:
        parsed = parse_reasoning(thinking or "")
        reasons = []
        gold_listing = list(question["listing"])
        if parsed.listing is None:
            reasons.append("no listing of the events")
        elif parsed.listing != gold_listing:
            if len(parsed.listing) != len(gold_listing):
                reasons.append(f"listing has {len(parsed.listing)} events, the clip has {len(gold_listing)}")
            else:
                wrong = [f"'{got}' should be '{want}'" for got, want in zip(parsed.listing, gold_listing)
                         if got != want]
                reasons.append("listing wrong: " + ", ".join(wrong))
        gold_steps = {key: value for key, value in question["steps"]}
        stated = {}
        for key, value in parsed.steps:
            stated.setdefault(key, value)
        optional = set(question.get("optional_steps") or ())
        for key, value in gold_steps.items():
            if key not in stated:
                if key not in optional:  # a step that only restates the listing may be left out
                    reasons.append(f"skipped step '{key}'")
            elif stated[key] != value:
                reasons.append(f"false step '{key}: {stated[key]}' (true: {value})")
        truths = clip_truths(dict(clip)) if clip is not None else {}
        for key, value in stated.items():
            if key in gold_steps:
                continue
            if key not in truths:
                reasons.append(f"unsupported step '{key}'")
            elif truths[key] != value:
                reasons.append(f"false step '{key}: {value}' (true: {truths[key]})")
        if parsed.other_lines:
            reasons.append(f"{len(parsed.other_lines)} line(s) that are not reasoning steps")
        if parsed.conclusion is None:
            reasons.append("no conclusion")
        elif _norm(parsed.conclusion) != _norm(answer_prediction or ""):
            reasons.append(f"conclusion '{parsed.conclusion}' does not match the answer '{answer_prediction}'")
        return Verdict(reasons)


class MetadataRubricJudge:
    """The miniature's rubric judge for MMAR-synth: each of an item's 5 rubric items checked against its gold
    listing and steps (offline, deterministic: every rater run agrees)."""

    name = "metadata"

    def score(self, item: Mapping, thinking_prediction: str, answer_prediction: str, run: int = 0) -> list[int]:
        """MMAR-Rubrics for a miniature item: one 0/1 per rubric item (deterministic: every run agrees)."""
        parsed = parse_reasoning(thinking_prediction or "")
        gold_listing = list(item["listing"])
        stated = dict(reversed(parsed.steps))  # the first statement of each key wins
        first_key, first_value = item["steps"][0]
        last_key, last_value = item["steps"][-1]
        checks = {
            "event count": parsed.listing is not None and len(parsed.listing) == len(gold_listing),
            "event descriptions": parsed.listing == gold_listing,
            "first step": stated.get(first_key) == first_value,
            "deciding step": stated.get(last_key) == last_value,
            "conclusion": parsed.conclusion is not None and _norm(parsed.conclusion) == _norm(answer_prediction or ""),
        }
        return [int(checks[r["name"]]) for r in item["rubric"]]
