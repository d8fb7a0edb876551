"""The judges: one room, two roles, one factory from the profile.

    from cogito_lib.judges import make_judge
    trace_judge = make_judge(profile, "trace", run_dir=run_dir)    # stage 4: keep or reject a reasoning trace
    rubric_judge = make_judge(profile, "rubric", cache_dir=stage_dir / "judge-cache")   # MMAR-Rubrics in 07

| role | miniature (`models.judge = "metadata"`, MMAR-synth) | paper scale |
|---|---|---|
| trace | `MetadataTraceJudge`: the world's ground truth | `LLMTraceJudge`: `models.judge` on its backend |
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
               backend: Any = None, **kwargs: Any):
    """The profile's judge for `role`.

    trace: the metadata judge when `models.judge` is "metadata", else `LLMTraceJudge` on `backend` (default: the
    judge role's backend, `cogito_lib.models.serving.role_backend`; audio paths resolved under `run_dir`; served
    replies cached under `cache_dir`; extra kwargs such as `with_audio` go to it; its reply budget is
    `audit.judge_max_new_tokens`).
    rubric: the metadata judge for MMAR-synth; for MMAR the OpenAI-compatible judge `models.rubric_judge` on
    `models.rubric_backend` (an API with the key in `serve.api_key_env`, or a vLLM server in
    `serve.rubric_urls`); JudgeUnavailable when it cannot run here (no API key, no server)."""
    if role == "trace":
        if profile.models.judge == "metadata":
            return MetadataTraceJudge()
        if backend is None:
            from ..models.serving import role_backend

            backend = role_backend(profile, "judge", cache_dir=cache_dir)
        kwargs.setdefault("max_new_tokens", profile.audit.judge_max_new_tokens)
        kwargs.setdefault("with_audio", profile.audit.judge_with_audio)
        return LLMTraceJudge(backend, profile.models.judge, audio_root=run_dir, **kwargs)
    if role == "rubric":
        if profile.eval.benchmark == "mmar-synth":
            return MetadataRubricJudge()
        return _rubric_judge(profile, cache_dir, **kwargs)
    raise ValueError(f"unknown judge role {role!r}; the roles are: {', '.join(ROLES)}")


def rubric_judge_for(config: str | Path | None = None, sets=(), *, cache_dir: str | Path | None = None,
                     **kwargs: Any) -> OpenAIRubricJudge:
    """The MMAR-Rubrics judge of a run configuration (`python -m cogito_lib.mmar rubrics --config FILE`): the
    paper profile's unless the file names another. A missing API key is not an error here: cached replies need
    none, and the first request that needs it says so."""
    from ..config import resolve_config

    _, profile = resolve_config(None, config, sets, default="paper")
    return _rubric_judge(profile, cache_dir, check_key=False, **kwargs)


def _rubric_judge(profile, cache_dir: str | Path | None, *, check_key: bool = True, **kwargs: Any) -> OpenAIRubricJudge:
    from ..models.backends import BackendError
    from ..models.serving import VLLM_KEY_ENV, served_name

    model, urls = profile.models.rubric_judge, profile.serve.rubric_urls
    kwargs.setdefault("timeout", profile.serve.timeout_s)
    if profile.models.rubric_backend == "vllm":
        if not urls:
            raise JudgeUnavailable(f"models.rubric_backend is vllm but serve.rubric_urls is empty: start a server "
                                   f"for {model} and list it there, or read accuracy without rubrics")
        try:
            name = served_name(urls[0], model, role="rubric")
        except BackendError as err:
            raise JudgeUnavailable(f"the rubric judge's server: {err}") from None
        kwargs["requests_per_minute"] = 0  # a local server: no rate limit
        return OpenAIRubricJudge(model=name, base_url=urls[0], api_key_env=VLLM_KEY_ENV, require_key=False,
                                 cache_dir=cache_dir, **kwargs)
    judge = OpenAIRubricJudge(model=model, base_url=urls[0] if urls else None, api_key_env=profile.serve.api_key_env,
                              cache_dir=cache_dir, **kwargs)
    if check_key and not os.environ.get(judge.api_key_env):
        raise JudgeUnavailable(f"{judge.api_key_env} is not set: MMAR-Rubrics needs the OpenAI-compatible judge "
                               f"({judge.model}); export the key, or read accuracy without rubrics")
    return judge


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
           "parse_rubric_scores", "rubric_judge_for"]
