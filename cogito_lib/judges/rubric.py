"""The MMAR-Rubrics judge at paper scale: GPT-4o (or any OpenAI-compatible model) over HTTP.

`cogito_lib.mmar.score_rubrics` calls `judge.score(item, thinking_prediction, answer_prediction, run)` only for
correctly answered items, once per rater run, and expects one integer per rubric item (0/1 in MMAR-Rubrics).
The miniature plugs in `MetadataRubricJudge` with the same method; the paper profile uses
`OpenAIRubricJudge` (gpt-4o-2024-11-20, temperature 0, seed 42, as the official evaluation_rubrics.py does).

The API key is read from the environment at request time and never kept on the object, printed, logged,
written to the cache or put into a cache key; error messages have it scrubbed.
"""
from __future__ import annotations

import json
import os
import re
import time
from typing import Any, Callable, Mapping, Sequence

from ..models.backends import BackendError, MalformedResponseError, OpenAIChatClient
from .base import JudgeError

DEFAULT_MODEL = "gpt-4o-2024-11-20"
DEFAULT_SEED = 42

SYSTEM_PROMPT = (
    "You are an impartial, meticulous evaluator of reasoning. You judge a model's reasoning about an audio "
    "question against the ground truth and a scoring rubric, and you follow the rubric literally."
)


def build_rubric_prompt(item: Mapping, thinking_prediction: str, answer_prediction: str) -> str:
    """The user prompt: problem and reference reasoning, each rubric criterion, the submission, strict JSON out."""
    rubric = item["rubric"]
    criteria = "\n".join(
        f"{i}. {entry['name']}\n   Rule: {entry['scoring_point']}\n   Allowed scores: {entry.get('choices', [0, 1])}"
        for i, entry in enumerate(rubric, start=1))
    choices = "; ".join(item.get("choices", []))
    return (
        "# Problem\n"
        f"Question: {item['question']}\n"
        f"Choices: {choices}\n"
        f"Correct answer: {item['answer']}\n"
        f"Reference reasoning: {item.get('thinking', '')}\n\n"
        f"# Rubric ({len(rubric)} criteria)\n{criteria}\n\n"
        "# Submission to evaluate\n"
        f"Reasoning: {thinking_prediction}\n"
        f"Final answer: {answer_prediction}\n\n"
        "# Output\n"
        f"Score each criterion in order, using only its allowed scores. Reply with one JSON object and nothing "
        f"else: {{\"scores\": [s1, ..., s{len(rubric)}]}} with exactly {len(rubric)} integers."
    )


def _strip_fences(text: str) -> str:
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.DOTALL)
    return fenced.group(1) if fenced else text


def _as_score(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"score must be a number, got {value!r}")
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        raise ValueError(f"score must be an integer, got {value!r}")
    return value


def parse_rubric_scores(text: str | None, rubric: Sequence[Mapping]) -> list[int]:
    """Scores from a judge reply: `{"scores": [...]}` (our format) or the official list of {name, score}.

    Tolerates code fences and prose around the JSON; raises ValueError when the count or a value is wrong."""
    if not text or not text.strip():
        raise ValueError("empty judge response")
    body = _strip_fences(text)
    candidates = [body.strip()]
    for pattern in (r"\{.*\}", r"\[.*\]"):
        match = re.search(pattern, body, re.DOTALL)
        if match:
            candidates.append(match.group(0))
    parsed: Any = None
    for candidate in candidates:
        try:
            parsed = json.loads(candidate)
            break
        except json.JSONDecodeError:
            continue
    else:
        raise ValueError(f"judge response is not JSON: {text[:120]!r}")
    if isinstance(parsed, dict) and "scores" in parsed:
        raw = parsed["scores"]
    elif isinstance(parsed, list) and all(isinstance(e, dict) and "score" in e for e in parsed):
        raw = [e["score"] for e in parsed]
    elif isinstance(parsed, list):
        raw = parsed
    else:
        raise ValueError(f"judge JSON has no 'scores': {text[:120]!r}")
    if not isinstance(raw, list) or len(raw) != len(rubric):
        raise ValueError(f"expected {len(rubric)} scores, got {raw!r}")
    scores = [_as_score(v) for v in raw]
    for score, entry in zip(scores, rubric):
        allowed = entry.get("choices", [0, 1])
        if score not in allowed:
            raise ValueError(f"score {score} for {entry.get('name')!r} not in {allowed}")
    return scores


def reply_content(response: Any) -> str:
    """The first choice's message content of a chat-completions response ("" when null); ValueError if absent."""
    try:
        content = response["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as err:
        raise ValueError(f"not a chat-completions response ({type(err).__name__}: {err})") from None
    return content or ""


class OpenAIRubricJudge:
    """MMAR-Rubrics judge over an OpenAI-compatible `/chat/completions` endpoint, built on `OpenAIChatClient`.

    Official settings by default (model gpt-4o-2024-11-20, temperature 0, seed 42 for every rater run; the
    official script sends the identical request 5 times). `vary_seed=True` sends seed 42 + run instead.
    The client does the transport: rate limiting to `requests_per_minute`, retries with exponential backoff on
    429/5xx/timeouts/connection errors, re-asking a malformed reply up to `parse_retries` times (then
    `JudgeError`), and caching valid replies as JSON files under `cache_dir`, keyed by a hash of base URL +
    request body + run, so a rerun makes no request. Client errors are raised as `JudgeError`."""

    def __init__(self, model: str = DEFAULT_MODEL, base_url: str | None = None, *,
                 api_key_env: str = "OPENAI_API_KEY", cache_dir: str | os.PathLike | None = None,
                 temperature: float = 0.0, seed: int = DEFAULT_SEED, vary_seed: bool = False,
                 requests_per_minute: float = 60.0, max_retries: int = 6, parse_retries: int = 2,
                 timeout: float = 120.0, backoff_base: float = 1.0, backoff_max: float = 60.0,
                 system_prompt: str = SYSTEM_PROMPT, sleep: Callable[[float], None] = time.sleep,
                 require_key: bool = True):
        self.client = OpenAIChatClient(
            model, base_url, api_key_env=api_key_env, cache_dir=cache_dir, max_retries=max_retries,
            backoff_base=backoff_base, backoff_max=backoff_max, timeout=timeout,
            requests_per_minute=requests_per_minute, parse_retries=parse_retries, sleep=sleep,
            require_key=require_key)
        self.temperature, self.seed, self.vary_seed = temperature, seed, vary_seed
        self.system_prompt = system_prompt

    # the client's settings, read through the judge
    model = property(lambda self: self.client.model)
    base_url = property(lambda self: self.client.base_url)
    api_key_env = property(lambda self: self.client.api_key_env)
    cache_dir = property(lambda self: self.client.cache_dir)
    stats = property(lambda self: self.client.stats)   # requests, cache_hits, retries, parse_failures

    def __repr__(self) -> str:
        return (f"OpenAIRubricJudge(model={self.model!r}, base_url={self.base_url!r}, "
                f"api_key_env={self.api_key_env!r}, seed={self.seed}, vary_seed={self.vary_seed}, "
                f"cache_dir={str(self.cache_dir) if self.cache_dir else None!r})")

    def messages(self, item: Mapping, thinking_prediction: str, answer_prediction: str) -> list[dict]:
        return [{"role": "system", "content": self.system_prompt},
                {"role": "user", "content": build_rubric_prompt(item, thinking_prediction, answer_prediction)}]

    def seed_for(self, run: int) -> int:
        return self.seed + run if self.vary_seed else self.seed

    def cache_key(self, messages: list[dict], run: int) -> str:
        payload = self.client.payload(messages, temperature=self.temperature, seed=self.seed_for(run))
        return self.client.cache_key(payload, {"run": run})

    def score(self, item: dict, thinking_prediction: str, answer_prediction: str, run: int) -> list[int]:
        rubric = item["rubric"]
        try:
            response = self.client.chat(
                self.messages(item, thinking_prediction, answer_prediction), temperature=self.temperature,
                seed=self.seed_for(run), cache_tag={"run": run},
                check=lambda reply: parse_rubric_scores(reply_content(reply), rubric))
        except MalformedResponseError as err:
            raise JudgeError(f"item {item.get('id')} run {run}: malformed judge reply after {err.tries} tries "
                             f"({err.problem})") from None
        except BackendError as err:
            raise JudgeError(str(err)) from None
        return parse_rubric_scores(reply_content(response), rubric)
