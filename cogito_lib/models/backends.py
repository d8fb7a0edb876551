"""Generation backends behind one interface: HF in-process (default), vLLM (GPU, optional), and an
OpenAI-compatible chat endpoint (for the annotator and judge roles at paper scale).

Every backend takes `GenerationRequest`s (messages or a rendered prompt, audio as a path or a waveform,
sampling parameters, K samples) and returns one `GenerationResult` per request, in order, with each text already
split into thinking and answer_prediction.
"""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import http.client
import io
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import numpy as np

from .generate import SamplingConfig, ThinkingSplit, generate_texts, load_audio, split_thinking

SAMPLE_RATE = 16_000


class BackendError(RuntimeError):
    """A backend could not produce results (the message says why and what to do)."""


@dataclass
class GenerationRequest:
    """One prompt to answer `num_samples` times."""

    request_id: str
    messages: list[dict] | None = None  # chat messages (content: str or [{"type": "audio"|"text", ...}])
    prompt: str | None = None  # an already rendered prompt (HF / vLLM only), instead of messages
    audio_path: str | None = None  # the clip, as a file ...
    waveform: Any = None  # ... or as samples (numpy, mono)
    sample_rate: int = SAMPLE_RATE  # rate of `waveform`
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    num_samples: int = 1
    seed: int = 0
    stop: tuple[str, ...] = ()  # end a sample at the first of these strings (it stays in the text)
    # the caller's check of a reply text (raise ValueError to reject it): a cached backend re-asks a rejected
    # reply and never caches it, so a reply the caller could not read is never kept as an answer
    accept: Callable[[str], Any] | None = None
    # a script continuing the prompt (`models.decode.Segment`s: forced text, then sampled tokens up to a stop
    # string, EOS or a budget); empty = one sampled part of `max_new_tokens`. The HF backend runs a script in one
    # pass over the KV cache; other backends run it one segment per call (`generate_by_segments`)
    segments: tuple = ()

    def has_audio(self) -> bool:
        return self.audio_path is not None or self.waveform is not None

    def audio(self) -> np.ndarray | None:
        """The clip as a 16 kHz mono float32 waveform (None when the request has no audio)."""
        if self.waveform is not None:
            return load_audio(self.waveform, SAMPLE_RATE, source_rate=self.sample_rate)
        if self.audio_path is not None:
            return load_audio(self.audio_path, SAMPLE_RATE)
        return None

    def sampling(self) -> SamplingConfig:
        return SamplingConfig(max_new_tokens=self.max_new_tokens, temperature=self.temperature, top_p=self.top_p,
                              num_samples=self.num_samples, seed=self.seed, stop=tuple(self.stop))


@dataclass
class GenerationResult:
    """The `num_samples` outputs of one request, each split into thinking / answer_prediction."""

    request_id: str
    texts: list[str]
    splits: list[ThinkingSplit] = field(default_factory=list)
    finish_reasons: list[str | None] = field(default_factory=list)
    backend: str = ""
    cached: bool = False
    num_prompt_tokens: int | None = None

    def __post_init__(self):
        if not self.splits:
            self.splits = [split_thinking(t) for t in self.texts]

    @property
    def num_parse_failed(self) -> int:
        return sum(s.parse_failed for s in self.splits)


@runtime_checkable
class GenerationBackend(Protocol):
    name: str

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        ...


def _render(messages_or_prompt: GenerationRequest, render: Callable[[list[dict]], str]) -> str:
    if messages_or_prompt.prompt is not None:
        return messages_or_prompt.prompt
    if messages_or_prompt.messages is None:
        raise ValueError(f"request {messages_or_prompt.request_id}: give messages or prompt")
    return render(messages_or_prompt.messages)


# ----------------------------------------------------------------------------------------------- HF in-process
class HFBackend:
    """transformers in-process generation (the default; CPU or GPU), batched and left-padded.

    `batch_size` is the number of rows (samples) per batch. A model with a cacheable audio front-end (the
    miniature; `models.frontend`) decodes with `models.decode`: clip features cached (in memory, and on disk under
    `feature_cache` when given), each distinct prompt prefilled once for all its samples and scripts, each
    sample's randomness keyed by (seed, request id, sample index)."""

    name = "hf"
    scripts = True  # runs `segments` itself (`generate_scripts`)

    def __init__(self, model, processor, batch_size: int = 8, progress: bool = False,
                 feature_cache: str | Path | None = None):
        from .frontend import make_frontend

        self.model, self.processor = model, processor
        self.batch_size, self.progress = batch_size, progress
        self.frontend = make_frontend(model, processor, feature_cache)

    @classmethod
    def from_pretrained(cls, name_or_path: str, batch_size: int = 8, progress: bool = False,
                        feature_cache: str | Path | None = None, **load_kwargs) -> "HFBackend":
        from .loading import load_model

        model, processor = load_model(name_or_path, **load_kwargs)
        return cls(model, processor, batch_size=batch_size, progress=progress, feature_cache=feature_cache)

    def render(self, messages: list[dict]) -> str:
        return self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        if self.frontend is not None and requests and all(r.has_audio() for r in requests):
            return self._decode(requests)
        if any(r.segments for r in requests):
            return generate_by_segments(self, requests)
        # one generate_texts call per distinct sampling setting, results put back in request order
        groups: dict[SamplingConfig, list[int]] = {}
        for index, request in enumerate(requests):
            groups.setdefault(request.sampling(), []).append(index)
        results: list[GenerationResult | None] = [None] * len(requests)
        for sampling, indices in groups.items():
            prompts = [_render(requests[i], self.render) for i in indices]
            audios = [requests[i].audio() for i in indices]
            per_batch = max(1, self.batch_size // (1 if sampling.greedy else sampling.num_samples))
            texts = generate_texts(self.model, self.processor, prompts, audios, sampling, per_batch,
                                   self.progress, frontend=False)
            for i, samples in zip(indices, texts):
                results[i] = GenerationResult(requests[i].request_id, samples, backend=self.name)
        return results  # type: ignore[return-value]

    def _decode(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        from .decode import Row, Segment, decode
        from .generate import _eos_ids

        features = self.frontend.features([r.audio() for r in requests], progress=self.progress)
        prompts, prompt_features, prompt_of, seen = [], [], [], {}
        for request, feature in zip(requests, features):
            text = _render(request, self.render)
            key = (text, id(feature))  # one prefill per distinct prompt and clip
            if key not in seen:
                seen[key] = len(prompts)
                prompts.append(text)
                prompt_features.append(feature)
            prompt_of.append(seen[key])
        groups: dict[tuple[float, float], list[int]] = {}
        for index, request in enumerate(requests):
            temperature = max(request.temperature, 0.0)
            groups.setdefault((temperature, request.top_p if temperature > 0 else 1.0), []).append(index)
        eos = _eos_ids(self.model, self.processor.tokenizer)
        texts: dict[int, list[str]] = {}
        for (temperature, top_p), indices in groups.items():
            rows, owners = [], []
            for i in indices:
                request = requests[i]
                if len(request.stop) > 1:
                    raise ValueError(f"request {request.request_id}: one stop string per sample with a cached "
                                     "front-end (use segments for more)")
                script = tuple(request.segments) or (
                    Segment("", request.max_new_tokens, request.stop[0] if request.stop else None),)
                k = 1 if temperature <= 0 else request.num_samples
                for s in range(k):
                    rows.append(Row(prompt_of[i], f"{request.seed}|{request.request_id}|{s}", script))
                    owners.append(i)
            out = decode(self.model, self.processor, self.frontend, prompts, prompt_features, rows,
                         temperature=temperature, top_p=top_p, eos_ids=eos, max_rows=self.batch_size,
                         progress=self.progress)
            for i, text in zip(owners, out):
                texts.setdefault(i, []).append(text)
        results = []
        for i, request in enumerate(requests):
            samples = texts[i]
            if len(samples) < request.num_samples:  # greedy: one decode, repeated
                samples = samples * request.num_samples
            results.append(GenerationResult(request.request_id, samples, backend=self.name))
        return results


def generate_scripts(backend, requests: list[GenerationRequest]) -> list[GenerationResult]:
    """Requests with scripts (`segments`) through any backend: in one pass where the backend runs scripts itself
    (`backend.scripts`, the HF backend), else one segment per call (`generate_by_segments`)."""
    if getattr(backend, "scripts", False):
        return backend.generate(requests)
    return generate_by_segments(backend, requests)


def generate_by_segments(backend, requests: list[GenerationRequest]) -> list[GenerationResult]:
    """Requests with a script (`segments`), one segment per `backend.generate` call: the text so far is appended
    to the rendered prompt, then the segment's forced text; the p-th segment that samples uses seed `seed + p`.
    One sample per scripted request. Requests without a script are passed through in the first call."""
    from .decode import Segment

    texts = {i: "" for i, r in enumerate(requests) if r.segments}
    plain = [i for i, r in enumerate(requests) if not r.segments]
    results: list[GenerationResult | None] = [None] * len(requests)
    if plain:
        for i, result in zip(plain, backend.generate([requests[i] for i in plain])):
            results[i] = result
    for i in texts:
        if requests[i].num_samples != 1:
            raise ValueError(f"request {requests[i].request_id}: a script runs one sample at a time here")
    prompts = {i: _render(requests[i], backend.render) for i in texts}
    for phase in range(max((len(requests[i].segments) for i in texts), default=0)):
        active = [i for i in texts if phase < len(requests[i].segments)]
        calls = []
        for i in active:
            segment: Segment = requests[i].segments[phase]
            texts[i] += segment.text
            if segment.max_new_tokens > 0:
                calls.append(i)
        if not calls:
            continue
        phase_requests = []
        for i in calls:
            request, segment = requests[i], requests[i].segments[phase]
            phase_requests.append(dataclasses.replace(
                request, request_id=f"{request.request_id}/{phase}", messages=None, prompt=prompts[i] + texts[i],
                max_new_tokens=segment.max_new_tokens, num_samples=1,
                seed=request.seed + sum(s.max_new_tokens > 0 for s in request.segments[:phase]),
                stop=(segment.stop,) if segment.stop else (), segments=()))
        for i, result in zip(calls, backend.generate(phase_requests)):
            segment = requests[i].segments[phase]
            piece = result.texts[0]
            if segment.stop and (segment.close or segment.stop in piece):
                piece = piece.split(segment.stop, 1)[0] + segment.stop
            texts[i] += piece
    for i, text in texts.items():
        results[i] = GenerationResult(requests[i].request_id, [text], backend=getattr(backend, "name", ""))
    return results  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------- vLLM
VLLM_MISSING = ("vLLM is not installed: it is an optional GPU-only extra. Install it on a CUDA machine with "
                "`pip install -e .[vllm]` (or use backend 'hf', which needs nothing more).")


def _import_vllm():
    try:
        import vllm  # noqa: F401
    except ImportError:
        raise BackendError(VLLM_MISSING) from None
    return vllm


def request_to_vllm(request: GenerationRequest, render: Callable[[list[dict]], str]) -> tuple[dict, dict]:
    """A vLLM prompt dict (text + `multi_modal_data`) and the keyword arguments of its `SamplingParams`.

    vLLM expands the single audio placeholder itself, so the prompt keeps the chat template's one placeholder.
    """
    prompt: dict[str, Any] = {"prompt": _render(request, render)}
    audio = request.audio()
    if audio is not None:
        prompt["multi_modal_data"] = {"audio": [(audio, SAMPLE_RATE)]}
    params = dict(n=request.num_samples, max_tokens=request.max_new_tokens, seed=request.seed,
                  temperature=max(request.temperature, 0.0), top_p=request.top_p if request.temperature > 0 else 1.0)
    if request.stop:
        params.update(stop=list(request.stop), include_stop_str_in_output=True)
    return prompt, params


def vllm_output_to_result(request: GenerationRequest, output: Any) -> GenerationResult:
    """A `GenerationResult` from one vLLM `RequestOutput` (`.outputs[i].text`, `.finish_reason`)."""
    completions = sorted(output.outputs, key=lambda c: getattr(c, "index", 0))
    prompt_ids = getattr(output, "prompt_token_ids", None)
    return GenerationResult(
        request.request_id, [c.text for c in completions],
        finish_reasons=[getattr(c, "finish_reason", None) for c in completions], backend="vllm",
        num_prompt_tokens=len(prompt_ids) if prompt_ids is not None else None)


class VLLMBackend:
    """vLLM offline engine (GPU only). `llm` may be any object with vLLM's `generate(prompts, sampling_params)`."""

    name = "vllm"

    def __init__(self, model: str | None = None, llm: Any = None, render: Callable[[list[dict]], str] | None = None,
                 sampling_params_cls: Any = None, **engine_kwargs: Any):
        if llm is None:
            vllm = _import_vllm()
            if model is None:
                raise ValueError("VLLMBackend needs a model id/folder or an llm engine")
            engine_kwargs.setdefault("limit_mm_per_prompt", {"audio": 1})
            llm = vllm.LLM(model=str(model), **engine_kwargs)
        if sampling_params_cls is None:
            sampling_params_cls = _import_vllm().SamplingParams
        if render is None:
            if model is None:
                raise ValueError("VLLMBackend needs render= or a model folder to read the chat template from")
            from .loading import load_processor

            processor = load_processor(model)

            def render(messages: list[dict]) -> str:
                return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        self.llm, self.render, self.sampling_params_cls = llm, render, sampling_params_cls

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        if any(r.segments for r in requests):
            return generate_by_segments(self, requests)
        prompts, params = [], []
        for request in requests:
            prompt, kwargs = request_to_vllm(request, self.render)
            prompts.append(prompt)
            params.append(self.sampling_params_cls(**kwargs))
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        if len(outputs) != len(requests):
            raise BackendError(f"vLLM returned {len(outputs)} outputs for {len(requests)} requests")
        return [vllm_output_to_result(r, o) for r, o in zip(requests, outputs)]


# ----------------------------------------------------------------------------------------------- OpenAI-compatible
DEFAULT_BASE_URL = "https://api.openai.com/v1"
RETRY_STATUS = frozenset({408, 409, 418, 425, 429})  # plus every 5xx


class MalformedResponseError(BackendError):
    """Every reply to one request failed the caller's `check` (after `tries` tries; `problem` is the last reason,
    `response` the last reply, which is not cached)."""

    def __init__(self, message: str, tries: int, problem: str, response: dict | None = None):
        super().__init__(message)
        self.tries, self.problem, self.response = tries, problem, response


class RateLimiter:
    """At most `requests_per_minute` requests, spaced evenly (thread-safe); 0 or None means no limit."""

    def __init__(self, requests_per_minute: float | None, clock: Callable[[], float] = time.monotonic,
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


class OpenAIChatClient:
    """A minimal client of an OpenAI-compatible `/chat/completions` endpoint (urllib, no SDK).

    The API key is read from the environment variable `api_key_env` at request time only: it is never stored on
    the object, printed, logged, cached or put in a cache key, and it is scrubbed from error messages. Requests
    are spaced to at most `requests_per_minute` (0: no limit). Transient failures (408/409/418/425/429, 5xx,
    timeouts, connection errors, a body that is not a chat-completions response) are retried with exponential
    backoff, honouring Retry-After. A caller may pass `check` to `chat`: a response it rejects (ValueError) is
    re-asked up to `parse_retries` times, then `MalformedResponseError`. Accepted responses are cached as
    atomic JSON files under `cache_dir`, keyed by a hash of the base URL, the request body and an optional
    `cache_tag`, so a rerun makes no request and needs no key.
    """

    def __init__(self, model: str, base_url: str | None = None, *, api_key_env: str = "OPENAI_API_KEY",
                 cache_dir: str | os.PathLike | None = None, max_retries: int = 2, backoff_base: float = 1.0,
                 backoff_max: float = 8.0, timeout: float = 30.0, requests_per_minute: float | None = 0.0,
                 parse_retries: int = 2, sleep: Callable[[float], None] = time.sleep, quiet: bool = False):
        self.model = model
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.api_key_env = api_key_env
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.max_retries, self.backoff_base, self.backoff_max, self.timeout = (
            max_retries, backoff_base, backoff_max, timeout)
        self.parse_retries = parse_retries
        self.quiet = quiet  # no line on stderr when a try fails and is retried
        self._sleep = sleep
        self._limiter = RateLimiter(requests_per_minute, sleep=sleep)
        self.stats = {"requests": 0, "cache_hits": 0, "retries": 0, "parse_failures": 0}

    def __repr__(self) -> str:
        return (f"OpenAIChatClient(model={self.model!r}, base_url={self.base_url!r}, "
                f"api_key_env={self.api_key_env!r}, cache_dir={str(self.cache_dir) if self.cache_dir else None!r})")

    def payload(self, messages: list[dict], *, temperature: float = 0.0, top_p: float | None = None,
                max_tokens: int | None = None, n: int = 1, seed: int | None = None, **extra: Any) -> dict:
        """The request body `chat` sends for these arguments."""
        payload: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": temperature, "n": n}
        for name, value in (("top_p", top_p), ("max_tokens", max_tokens), ("seed", seed)):
            if value is not None:
                payload[name] = value
        payload.update(extra)
        return payload

    def cache_key(self, payload: dict, cache_tag: Any = None) -> str:
        """Hash of base URL + request body (+ `cache_tag` when given, e.g. a rater run); never the API key."""
        material: dict[str, Any] = {"base_url": self.base_url, "payload": payload}
        if cache_tag is not None:
            material["tag"] = cache_tag
        return hashlib.sha256(json.dumps(material, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()

    def _cache_path(self, key: str) -> Path | None:
        return self.cache_dir / key[:2] / f"{key}.json" if self.cache_dir is not None else None

    def _scrub(self, text: str) -> str:
        key = os.environ.get(self.api_key_env, "")
        return text.replace(key, "***") if key else text

    def _post(self, payload: dict) -> dict:
        """One HTTP request (rate limited); the parsed response, or raises _Retryable / BackendError."""
        key = os.environ.get(self.api_key_env, "")
        if not key:
            raise BackendError(f"environment variable {self.api_key_env} is not set: export it to call "
                               f"{self.base_url} (cached responses need no key)")
        request = urllib.request.Request(
            f"{self.base_url}/chat/completions", data=json.dumps(payload).encode("utf-8"), method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
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
            raise BackendError(f"{self.base_url} returned HTTP {err.code}: {detail}") from None
        except (urllib.error.URLError, http.client.HTTPException, TimeoutError, OSError) as err:
            raise _Retryable(f"{type(err).__name__}: {self._scrub(str(err))}") from None
        try:
            data = json.loads(body)
            data["choices"][0]["message"]
        except (json.JSONDecodeError, KeyError, IndexError, TypeError):
            raise _Retryable(f"not a chat-completions response: {self._scrub(body[:200])}") from None
        return data

    def _complete(self, payload: dict) -> dict:
        """`_post` with retries and exponential backoff (Retry-After honoured) on transient failures."""
        for attempt in range(self.max_retries + 1):
            try:
                return self._post(payload)
            except _Retryable as err:
                if attempt == self.max_retries:
                    raise BackendError(f"{self.base_url}: gave up after {attempt + 1} attempts ({err})") from None
                self.stats["retries"] += 1
                wait = min(self.backoff_max, self.backoff_base * (2 ** attempt))
                if err.retry_after is not None:
                    wait = min(self.backoff_max, max(wait, err.retry_after))
                if not self.quiet:
                    print(f"{self.base_url}: try {attempt + 1} of {self.max_retries + 1} failed ({str(err)[:160]}); "
                          f"trying again in {wait:.0f} s", file=sys.stderr, flush=True)
                self._sleep(wait)
        raise AssertionError("unreachable")

    def chat(self, messages: list[dict], *, temperature: float = 0.0, top_p: float | None = None,
             max_tokens: int | None = None, n: int = 1, seed: int | None = None, cache_tag: Any = None,
             check: Callable[[dict], Any] | None = None, **extra: Any) -> dict:
        """The endpoint's JSON response for one chat request (from the cache when present).

        `cache_tag` (JSON-able, not sent) separates cache entries of identical requests, e.g. repeated rater
        runs. `check(response)` raising ValueError rejects a response: a rejected cache entry is re-asked and
        overwritten, a rejected reply is re-asked up to `parse_retries` times and never cached."""
        from cogito_lib.io import atomic_write_text

        payload = self.payload(messages, temperature=temperature, top_p=top_p, max_tokens=max_tokens, n=n,
                               seed=seed, **extra)
        path = self._cache_path(self.cache_key(payload, cache_tag))
        if path is not None and path.exists():
            try:
                response = json.loads(path.read_text(encoding="utf-8"))["response"]
                if check is not None:
                    check(response)
                self.stats["cache_hits"] += 1
                return response
            except (ValueError, KeyError, TypeError):
                pass  # a damaged or stale entry: ask again and overwrite
        tries = self.parse_retries + 1 if check is not None else 1
        problem = ""
        response = None
        for _ in range(tries):
            response = self._complete(payload)
            if check is not None:
                try:
                    check(response)
                except ValueError as err:
                    self.stats["parse_failures"] += 1
                    problem = str(err)
                    continue
            if path is not None:
                entry: dict[str, Any] = {"model": self.model, "response": response}
                if cache_tag is not None:
                    entry["tag"] = cache_tag
                atomic_write_text(path, json.dumps(entry, ensure_ascii=False, indent=1) + "\n")
            return response
        raise MalformedResponseError(f"{self.base_url}: malformed response after {tries} tries ({problem})",
                                     tries, problem, response)


def _wav_base64(waveform: np.ndarray, sample_rate: int = SAMPLE_RATE) -> str:
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, waveform, sample_rate, format="WAV", subtype="PCM_16")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def request_to_openai_messages(request: GenerationRequest) -> list[dict]:
    """OpenAI chat messages from a request: text parts as text, the audio part as base64 WAV `input_audio`."""
    if request.messages is None:
        if request.prompt is None:
            raise ValueError(f"request {request.request_id}: give messages or prompt")
        messages = [{"role": "user", "content": [{"type": "audio"}, {"type": "text", "text": request.prompt}]}
                    if request.has_audio() else {"role": "user", "content": request.prompt}]
    else:
        messages = request.messages
    converted = []
    for message in messages:
        content = message["content"]
        if isinstance(content, str):
            converted.append({"role": message["role"], "content": content})
            continue
        parts = []
        for part in content:
            if part.get("type") == "audio" or "audio" in part or "audio_url" in part:
                audio = request.audio()
                if audio is None and part.get("audio"):
                    audio = load_audio(part["audio"])
                if audio is None:
                    raise ValueError(f"request {request.request_id}: an audio part but no audio_path/waveform")
                parts.append({"type": "input_audio", "input_audio": {"data": _wav_base64(audio), "format": "wav"}})
            else:
                parts.append({"type": "text", "text": part.get("text", "")})
        converted.append({"role": message["role"], "content": parts})
    return converted


def openai_choice_text(choice: dict) -> str:
    """The text of one choice; a separate `reasoning_content` (vLLM reasoning parsers) is put back in think tags."""
    message = choice.get("message") or {}
    content = message.get("content") or ""
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    return f"<think>\n{reasoning}\n</think>\n\n{content}" if reasoning else content


class OpenAIChatBackend:
    """Generation through an OpenAI-compatible chat endpoint (annotator / judge roles; any served model)."""

    name = "openai"

    def __init__(self, client: OpenAIChatClient):
        self.client = client

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        results = []
        for request in requests:
            hits = self.client.stats["cache_hits"]
            check = _reply_check(request.accept) if request.accept is not None else None
            try:
                response = self.client.chat(request_to_openai_messages(request), temperature=request.temperature,
                                            top_p=request.top_p if request.temperature > 0 else None,
                                            max_tokens=request.max_new_tokens, n=request.num_samples,
                                            seed=request.seed, check=check)
            except MalformedResponseError as err:  # the caller reads the last reply as the failure it is
                response = err.response or {}
            choices = sorted(response.get("choices", []), key=lambda c: c.get("index", 0))
            usage = response.get("usage") or {}
            results.append(GenerationResult(
                request.request_id, [openai_choice_text(c) for c in choices],
                finish_reasons=[c.get("finish_reason") for c in choices], backend=self.name,
                cached=self.client.stats["cache_hits"] > hits, num_prompt_tokens=usage.get("prompt_tokens")))
        return results


def _reply_check(accept: Callable[[str], Any]) -> Callable[[dict], None]:
    """A response check for `OpenAIChatClient.chat` from a request's `accept` (applied to every choice's text)."""
    def check(response: dict) -> None:
        choices = response.get("choices") or []
        if not choices:
            raise ValueError("the response has no choices")
        for choice in choices:
            accept(openai_choice_text(choice))
    return check


def make_backend(kind: str, model: Any = None, processor: Any = None, **kwargs: Any) -> GenerationBackend:
    """A backend by name: "hf" (a loaded model + processor, or a checkpoint), "vllm" (a checkpoint), or "openai"
    (an API model name; base_url, cache_dir, api_key_env in kwargs)."""
    if kind == "hf":
        if processor is not None:
            return HFBackend(model, processor, **kwargs)
        return HFBackend.from_pretrained(model, **kwargs)
    if kind == "vllm":
        return VLLMBackend(model, **kwargs)
    if kind == "openai":
        return OpenAIChatBackend(OpenAIChatClient(model, **kwargs))
    raise ValueError(f"unknown backend {kind!r}; choose hf, vllm or openai")


def results_parse_failures(results: Sequence[GenerationResult]) -> dict:
    """Counts of outputs and parse failures over results (reported, never hidden)."""
    outputs = sum(len(r.texts) for r in results)
    failed = sum(r.num_parse_failed for r in results)
    return {"num_outputs": outputs, "num_parse_failed": failed,
            "parse_failure_rate": round(failed / outputs, 4) if outputs else 0.0}
