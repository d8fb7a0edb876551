"""MMAR evaluation: the benchmark loader, the official string-match scorer, breakdowns, MMAR-Rubrics/CRS and
the Interspeech 2026 Audio Reasoning Challenge submission format.

Every stage that asks "is this answer right?" (the auditor's QA-consistency check, chapter 07's accuracy)
calls the one `is_correct` below, so the kit can never disagree with itself about a match. The rule is
MMAR's official one (ddlBoJack/MMAR, code/evaluation.py), re-implemented here:

* lower-case the text and take the *set* of word tokens matched by `\\b\\w+\\b`;
* a prediction with no tokens is wrong;
* the "wrong tokens" are the tokens of every choice whose token set differs from the answer's, minus the
  answer's own tokens (so a word shared by the answer and a distractor never counts against);
* correct  <=>  every answer token is in the prediction  and  no wrong token is.

One quirk of the official rule is kept on purpose: a distractor with exactly the answer's token set (e.g.
"From near to far" vs "From far to near") contributes no wrong tokens, so predicting it also counts as correct.

CLI:
    python -m cogito_lib.mmar score --meta META.jsonl --predictions PRED.jsonl --out scores.json
    python -m cogito_lib.mmar validate-submission --meta META.jsonl --predictions PRED.jsonl
    python -m cogito_lib.mmar rubrics --meta META.jsonl --predictions PRED.jsonl --out rubrics.json [--cache-dir D]

A bad meta row stops every command (`--exclude-bad-rows` scores without the bad rows and lists them); a repeated
prediction id stops `score` and `rubrics` (`--duplicates first|last` chooses which counts); every error is one
line naming the file and line (`--debug` shows the traceback).
"""
from __future__ import annotations

from .meta import MetaError, MetaLoad, MetaProblem, load_meta, resolve_audio, validate_row
from .rubrics import score_rubrics, trimmed_run_mean
from .rule import (CATEGORIES, LAYERS, MODALITIES, PROMPT_INSTRUCTION, RUBRIC_SIZE, SUBMISSION_KEYS,
                   THINKING_LIMIT, format_prompt, is_correct, item_prompt, normalise_category, tokenize)
from .scoring import (format_table, index_predictions, is_parse_failure, read_predictions,
                      score_predictions)
from .stats import bootstrap_ci
from .submission import validate_submission, write_submission

__all__ = [
    "CATEGORIES", "LAYERS", "MODALITIES", "PROMPT_INSTRUCTION", "RUBRIC_SIZE", "SUBMISSION_KEYS", "THINKING_LIMIT",
    "MetaError", "MetaLoad", "MetaProblem", "bootstrap_ci", "format_prompt", "format_table", "index_predictions",
    "is_correct", "is_parse_failure", "item_prompt", "load_meta", "normalise_category", "read_predictions", "resolve_audio",
    "score_predictions", "score_rubrics", "tokenize", "trimmed_run_mean", "validate_row", "validate_submission",
    "write_submission",
]
