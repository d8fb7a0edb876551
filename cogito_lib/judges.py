"""Rubric judges for MMAR-Rubrics: the interface every judge implements and an OpenAI-compatible HTTP judge.

`cogito_lib.mmar.score_rubrics` calls `judge.score(item, thinking_prediction, answer_prediction, run)` only for
correctly answered items, once per rater run, and expects one integer per rubric item (0/1 in MMAR-Rubrics).
The miniature plugs in an offline, metadata-grounded judge with the same method; the paper profile uses
`OpenAIRubricJudge` (gpt-4o-2024-11-20, temperature 0, seed 42, as the official evaluation_rubrics.py does).

The API key is read from the environment at request time and never kept on the object, printed, logged,
written to the cache or put into a cache key; error messages have it scrubbed.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

from .io import atomic_write_text

DEFAULT_MODEL = "gpt-4o-2024-11-20"
DEFAULT_SEED = 42
DEFAULT_BASE_URL = "https://api.openai.com/v1"
RETRY_STATUS = (408, 409, 418, 425, 429)   # plus every 5xx

SYSTEM_PROMPT = (
    "You are an impartial, meticulous evaluator of reasoning. You judge a model's reasoning about an audio "
    "question against the ground truth and a scoring rubric, and you follow the rubric literally."
)


@runtime_checkable
class RubricJudge(Protocol):
    """Scores one correctly answered item: one integer per rubric item (0 or 1 in MMAR-Rubrics)."""

    def score(self, item: dict, thinking_prediction: str, answer_prediction: str, run: int) -> list[int]:
        ...


class JudgeError(RuntimeError):
    """The judge could not produce valid scores (after retries); the item stays unevaluated."""


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


class RateLimiter:
    """At most `requests_per_minute` requests, spaced evenly (thread-safe)."""

    def __init__(self, requests_per_minute: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.interval = 60.0 / requests_per_minute if requests_per_minute and requests_per_minute > 0 else 0.0
        self._clock, self._sleep = clock, sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            now = self._clock()
            if now < self._next:
                self._sleep(self._next - now)
                now = self._clock()
            self._next = now + self.interval


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class OpenAIRubricJudge:
    """MMAR-Rubrics judge over an OpenAI-compatible `/chat/completions` endpoint (urllib, no SDK).

    Official settings by default (model gpt-4o-2024-11-20, temperature 0, seed 42 for every rater run; the
    official script sends the identical request 5 times). `vary_seed=True` sends seed 42 + run instead.
    Retries with exponential backoff on 429/5xx/timeouts/connection errors; a malformed reply is re-asked up
    to `parse_retries` times, then `JudgeError`. Valid replies are cached as JSON files under `cache_dir`,
    keyed by a hash of model + messages + temperature + seed + run, so a rerun makes no request."""

    def __init__(self, model: str = DEFAULT_MODEL, base_url: str | None = None, *,
                 api_key_env: str = "OPENAI_API_KEY", cache_dir: str | os.PathLike | None = None,
                 temperature: float = 0.0, seed: int = DEFAULT_SEED, vary_seed: bool = False,
                 requests_per_minute: float = 60.0, max_retries: int = 6, parse_retries: int = 2,
                 timeout: float = 120.0, backoff_base: float = 1.0, backoff_max: float = 60.0,
                 system_prompt: str = SYSTEM_PROMPT, sleep: Callable[[float], None] = time.sleep):
        self.model = model
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.api_key_env = api_key_env
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.temperature, self.seed, self.vary_seed = temperature, seed, vary_seed
        self.max_retries, self.parse_retries, self.timeout = max_retries, parse_retries, timeout
        self.backoff_base, self.backoff_max = backoff_base, backoff_max
        self.system_prompt = system_prompt
        self._sleep = sleep
        self._limiter = RateLimiter(requests_per_minute, sleep=sleep)
        self.stats = {"requests": 0, "cache_hits": 0, "retries": 0, "parse_failures": 0}

    def __repr__(self) -> str:
        return (f"OpenAIRubricJudge(model={self.model!r}, base_url={self.base_url!r}, "
                f"api_key_env={self.api_key_env!r}, seed={self.seed}, vary_seed={self.vary_seed}, "
                f"cache_dir={str(self.cache_dir) if self.cache_dir else None!r})")

    # -- pieces -------------------------------------------------------------------------------------------

    def messages(self, item: Mapping, thinking_prediction: str, answer_prediction: str) -> list[dict]:
        return [{"role": "system", "content": self.system_prompt},
                {"role": "user", "content": build_rubric_prompt(item, thinking_prediction, answer_prediction)}]

    def seed_for(self, run: int) -> int:
        return self.seed + run if self.vary_seed else self.seed

    def cache_key(self, messages: list[dict], run: int) -> str:
        material = json.dumps({"model": self.model, "messages": messages, "temperature": self.temperature,
                               "seed": self.seed_for(run), "run": run}, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(material.encode("utf-8")).hexdigest()

    def _cache_path(self, key: str) -> Path | None:
        return self.cache_dir / key[:2] / f"{key}.json" if self.cache_dir is not None else None

    def _api_key(self) -> str:
        key = os.environ.get(self.api_key_env, "")
        if not key:
            raise JudgeError(f"environment variable {self.api_key_env} is not set: export it to call "
                             f"{self.base_url} (cached replies need no key)")
        return key

    def _scrub(self, text: str) -> str:
        key = os.environ.get(self.api_key_env, "")
        return text.replace(key, "***") if key else text

    def _post(self, payload: dict) -> str:
        """One HTTP request; returns the reply's message content or raises _Retryable / JudgeError."""
        request = urllib.request.Request(
            f"{self.base_url}/chat/completions", data=json.dumps(payload).encode("utf-8"), method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self._api_key()}"})
        self._limiter.acquire()
        self.stats["requests"] += 1
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = response.read().decode("utf-8", errors="replace")
        except urllib.error.HTTPError as err:
            detail = self._scrub(err.read().decode("utf-8", errors="replace")[:300])
            if err.code in RETRY_STATUS or err.code >= 500:
                retry_after = err.headers.get("Retry-After") if err.headers else None
                try:
                    wait = float(retry_after) if retry_after is not None else None
                except ValueError:
                    wait = None
                raise _Retryable(f"HTTP {err.code}: {detail}", wait) from None
            raise JudgeError(f"{self.base_url} returned HTTP {err.code}: {detail}") from None
        except (urllib.error.URLError, http.client.HTTPException, TimeoutError, OSError) as err:
            raise _Retryable(f"{type(err).__name__}: {self._scrub(str(err))}") from None
        try:
            return json.loads(body)["choices"][0]["message"]["content"] or ""
        except (json.JSONDecodeError, KeyError, IndexError, TypeError):
            return body   # not a chat-completions envelope: treat as a malformed reply (re-asked)

    def _complete(self, payload: dict) -> str:
        """Request with retries and exponential backoff on transient failures."""
        last = ""
        for attempt in range(self.max_retries + 1):
            try:
                return self._post(payload)
            except _Retryable as err:
                last = str(err)
                if attempt == self.max_retries:
                    break
                self.stats["retries"] += 1
                wait = min(self.backoff_max, self.backoff_base * (2 ** attempt))
                if err.retry_after is not None:
                    wait = min(self.backoff_max, max(wait, err.retry_after))
                self._sleep(wait)
        raise JudgeError(f"{self.base_url}: gave up after {self.max_retries + 1} attempts ({last})")

    # -- the judge -----------------------------------------------------------------------------------------

    def score(self, item: dict, thinking_prediction: str, answer_prediction: str, run: int) -> list[int]:
        rubric = item["rubric"]
        messages = self.messages(item, thinking_prediction, answer_prediction)
        key = self.cache_key(messages, run)
        path = self._cache_path(key)
        if path is not None and path.exists():
            try:
                cached = json.loads(path.read_text(encoding="utf-8"))
                scores = parse_rubric_scores(cached["response"], rubric)
                self.stats["cache_hits"] += 1
                return scores
            except (ValueError, KeyError, TypeError):
                pass   # a stale or damaged entry: ask again and overwrite
        payload = {"model": self.model, "messages": messages, "temperature": self.temperature,
                   "seed": self.seed_for(run)}
        problem = ""
        for _ in range(self.parse_retries + 1):
            reply = self._complete(payload)
            try:
                scores = parse_rubric_scores(reply, rubric)
            except ValueError as err:
                self.stats["parse_failures"] += 1
                problem = str(err)
                continue
            if path is not None:
                atomic_write_text(path, json.dumps(
                    {"model": self.model, "seed": payload["seed"], "run": run, "item_id": item.get("id"),
                     "response": reply, "scores": scores}, ensure_ascii=False, indent=1) + "\n")
            return scores
        raise JudgeError(f"item {item.get('id')} run {run}: malformed judge reply after "
                         f"{self.parse_retries + 1} tries ({problem})")


# --- the miniature's metadata judge ---------------------------------------------------------------------------

class Verdict:
    """A judge's decision on one reasoning trace: `ok`, and the reasons when not."""

    __slots__ = ("ok", "reasons")

    def __init__(self, reasons: list[str]):
        self.reasons = reasons
        self.ok = not reasons

    def __repr__(self) -> str:
        return "Verdict(ok)" if self.ok else f"Verdict({'; '.join(self.reasons)})"


def _norm(text: str) -> str:
    return re.sub(r"[^\w\s]", "", text.lower()).strip()


class MetadataJudge:
    """Checks a trace's claims against the clip's ground truth (offline, deterministic).

    A trace passes when its listing names every event correctly and in order, every gold step of the question
    is stated with its true value, any other step is a true fact about the clip, and it ends by stating the
    answer it gives. It is both the auditor's judge (`verify`) and MMAR-synth's rubric judge (`score`).
    """

    def verify(self, question: Mapping, thinking: str, answer_prediction: str,
               clip: Mapping | None = None) -> Verdict:
        from .tasks import clip_truths, parse_reasoning

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
        for key, value in gold_steps.items():
            if key not in stated:
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

    def score(self, item: Mapping, thinking_prediction: str, answer_prediction: str, run: int = 0) -> list[int]:
        """MMAR-Rubrics for a miniature item: one 0/1 per rubric item (deterministic: every run agrees)."""
        from .tasks import parse_reasoning

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
