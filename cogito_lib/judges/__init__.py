"""The judges: one room, two roles, one factory from the profile.

    from cogito_lib.judges import make_judge
    trace_judge = make_judge(profile, "trace", run_dir=run_dir)    # stage 4: keep or reject a reasoning trace
    rubric_judge = make_judge(profile, "rubric", cache_dir=stage_dir / "judge-cache")   # MMAR-Rubrics in 07

| role | miniature (`models.judge = "metadata"`, MMAR-synth) | paper scale |
|---|---|---|
| trace | `MetadataTraceJudge`: the world's ground truth | `LLMTraceJudge`: `models.judge` on `models.backend` |
| rubric | `MetadataRubricJudge`: the item's gold listing and steps | `OpenAIRubricJudge`: GPT-4o, the official setting |
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .base import JudgeError, JudgeOutputError, JudgeUnavailable, RubricJudge, TraceJudge, Verdict
from .llm import LLMTraceJudge, build_judge_prompt, parse_judge_output
from .metadata import MetadataRubricJudge, MetadataTraceJudge
from .rubric import OpenAIRubricJudge, build_rubric_prompt, parse_rubric_scores

ROLES = ("trace", "rubric")


def make_judge(profile, role: str, *, run_dir: str | Path | None = None, cache_dir: str | Path | None = None,
               **kwargs: Any):
    """The profile's judge for `role`.

    trace: the metadata judge when `models.judge` is "metadata", else `LLMTraceJudge` on `models.backend`
    (audio paths resolved under `run_dir`; OpenAI replies cached under `cache_dir`; extra kwargs such as
    `with_audio` or `max_new_tokens` go to it).
    rubric: the metadata judge for MMAR-synth, the official OpenAI-compatible judge for MMAR; JudgeUnavailable
    when its API key is not set."""
    if role == "trace":
        if profile.models.judge == "metadata":
            return MetadataTraceJudge()
        from ..models.backends import make_backend

        kind, model = profile.models.backend, profile.models.judge
        if kind == "openai":
            backend = make_backend("openai", model, cache_dir=cache_dir, timeout=profile.llm.timeout_s,
                                   max_retries=profile.llm.retries, backoff_max=profile.llm.backoff_max_s)
        elif kind == "hf":
            backend = make_backend("hf", model, device=profile.models.device, dtype=profile.models.dtype)
        else:
            backend = make_backend(kind, model)
        return LLMTraceJudge(backend, model, audio_root=run_dir, **kwargs)
    if role == "rubric":
        if profile.eval.benchmark == "mmar-synth":
            return MetadataRubricJudge()
        judge = OpenAIRubricJudge(cache_dir=cache_dir, **kwargs)
        if not os.environ.get(judge.api_key_env):
            raise JudgeUnavailable(f"{judge.api_key_env} is not set: MMAR-Rubrics needs the OpenAI-compatible judge "
                                   f"({judge.model}); export the key, or read accuracy without rubrics")
        return judge
    raise ValueError(f"unknown judge role {role!r}; the roles are: {', '.join(ROLES)}")


def describe(judge) -> str:
    """A judge in words, for tables and metrics."""
    if isinstance(judge, (MetadataTraceJudge, MetadataRubricJudge)):
        return "metadata judge (offline, deterministic)"
    if isinstance(judge, OpenAIRubricJudge):
        return f"OpenAI-compatible judge {judge.model}"
    return str(getattr(judge, "name", type(judge).__name__))


__all__ = ["JudgeError", "JudgeOutputError", "JudgeUnavailable", "LLMTraceJudge", "MetadataRubricJudge",
           "MetadataTraceJudge", "OpenAIRubricJudge", "ROLES", "RubricJudge", "TraceJudge", "Verdict",
           "build_judge_prompt", "build_rubric_prompt", "describe", "make_judge", "parse_judge_output",
           "parse_rubric_scores"]
