"""Reasoning generation shared by the thinker (stage 3), the MMAR evaluation and the notebooks.

- prompts: (audio, question, choices) in MMAR's text format through the family's chat template;
- `encode_batch` (from `encoding`): a fast batched encoder that gives the same ids and features as the family's
  processor;
- `generate_texts` / `generate_reasoning`: batched, left-padded generation, greedy or K samples per prompt (with a
  cached audio front-end through `decode`);
- `split_thinking`: thinking / answer_prediction split at the LAST `</think>`; never invents an answer;
- `build_training_text` / `encode_training_batch`: the full chat text with `<think>reasoning</think>answer` built
  explicitly (some Qwen3-Omni templates drop assistant reasoning) and labels on assistant tokens only.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .encoding import (IGNORE_INDEX, SAMPLE_RATE, _audio_features, _feature_kwargs, encode_batch,  # noqa: F401
                       load_audio, num_audio_tokens, processor_family)
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"

# parse statuses of split_thinking
PARSE_OK = "ok"  # <think>...</think>answer (or ...</think>answer when the prompt opened the tag)
PARSE_EMPTY_ANSWER = "empty_answer"  # closed reasoning, nothing after it
PARSE_UNCLOSED = "unclosed_think"  # <think> opened, never closed (ran out of tokens)
PARSE_NO_THINK = "no_think"  # no tags at all


# ----------------------------------------------------------------------------------------------- audio and prompts
def format_mmar_question(question: str, choices: Sequence[str]) -> str:
    """MMAR's text prompt (question, the instruction, the choices) from `cogito_lib.mmar.format_prompt`."""
    try:
        from cogito_lib.mmar import format_prompt
    except ImportError as err:  # imported lazily: cogito_lib.mmar is written by another module owner
        raise ImportError("cogito_lib.mmar.format_prompt is not available: MMAR prompts need cogito_lib.mmar") from err
    return format_prompt(question, list(choices))


def build_messages(prompt_text: str, with_audio: bool = True, system: str | None = None,
                   audio: Any = None) -> list[dict]:
    """Chat messages: optional system turn, then a user turn holding the audio (first) and the text."""
    messages: list[dict] = []
    if system:
        messages.append({"role": "system", "content": [{"type": "text", "text": system}]})
    content: list[dict] = []
    if with_audio:
        part: dict = {"type": "audio"}
        if isinstance(audio, (str, Path)):
            part["audio"] = str(audio)
        content.append(part)
    content.append({"type": "text", "text": prompt_text})
    messages.append({"role": "user", "content": content})
    return messages


def build_prompt(processor, prompt_text: str, with_audio: bool = True, system: str | None = None) -> str:
    """The generation prompt string (chat template, generation prompt added) for one question."""
    return processor.apply_chat_template(build_messages(prompt_text, with_audio, system), tokenize=False,
                                         add_generation_prompt=True)


def build_mmar_prompt(processor, question: str, choices: Sequence[str], with_audio: bool = True,
                      system: str | None = None) -> str:
    """The generation prompt for an MMAR item (question + choices in MMAR's format)."""
    return build_prompt(processor, format_mmar_question(question, choices), with_audio, system)


def processor_encode(processor, texts: Sequence[str], audios: Sequence[np.ndarray] | None = None) -> dict:
    """The reference path: the family's processor itself (slow for training batches, exact by definition)."""
    kwargs: dict[str, Any] = dict(text=list(texts), return_tensors="pt", padding=True, padding_side="left")
    if audios is not None:
        kwargs["audio"] = [load_audio(a) for a in audios]
        kwargs["sampling_rate"] = processor.feature_extractor.sampling_rate
    return dict(processor(**kwargs))


# ----------------------------------------------------------------------------------------------- thinking / answer
@dataclass(frozen=True)
class ThinkingSplit:
    """One output split into its reasoning and its answer."""

    thinking: str
    answer_prediction: str
    parse_status: str  # ok, empty_answer, unclosed_think, no_think
    parse_failed: bool


def split_thinking(text: str, require_think: bool = True) -> ThinkingSplit:
    """Split `text` at the LAST `</think>`: what precedes (minus a leading `<think>`) is the thinking, what follows
    the answer. Without a closing tag nothing is taken as an answer (parse_failed=True) unless `require_think` is
    False and there is no tag at all, in which case the whole text is the answer (a non-thinking model).
    """
    text = text or ""
    close = text.rfind(THINK_CLOSE)
    if close >= 0:
        thinking = text[:close]
        open_at = thinking.find(THINK_OPEN)
        if open_at >= 0 and not thinking[:open_at].strip():
            thinking = thinking[open_at + len(THINK_OPEN):]
        answer = text[close + len(THINK_CLOSE):].strip()
        if not answer:
            return ThinkingSplit(thinking.strip(), "", PARSE_EMPTY_ANSWER, True)
        return ThinkingSplit(thinking.strip(), answer, PARSE_OK, False)
    open_at = text.find(THINK_OPEN)
    if open_at >= 0:
        return ThinkingSplit(text[open_at + len(THINK_OPEN):].strip(), "", PARSE_UNCLOSED, True)
    if require_think:
        return ThinkingSplit(text.strip(), "", PARSE_NO_THINK, True)
    return ThinkingSplit("", text.strip(), PARSE_NO_THINK, not text.strip())


# ----------------------------------------------------------------------------------------------- generation
@dataclass(frozen=True)
class SamplingConfig:
    """How to decode: greedy when temperature == 0 (evaluation), else K samples with temperature/top-p."""

    max_new_tokens: int = 160  # reasoning + answer budget
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0  # nucleus sampling
    num_samples: int = 1  # K outputs per prompt (sampling only; greedy repeats its one output)
    seed: int = 0  # torch seed, offset by batch index so reruns give the same samples
    stop: tuple[str, ...] = ()  # stop a sample once its new text contains one of these (kept in the text)

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


def _decode(tokenizer, ids, eos_ids: set[int]) -> str:
    ids = [int(t) for t in ids]
    for k, token in enumerate(ids):
        if token in eos_ids:
            ids = ids[:k]
            break
    return tokenizer.decode(ids, skip_special_tokens=True)


def _eos_ids(model, tokenizer) -> list[int]:
    eos = model.generation_config.eos_token_id
    eos = [eos] if isinstance(eos, int) else list(eos or [])
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end >= 0 and im_end not in eos:
        eos.append(im_end)
    return eos


def generate_texts(model, processor, prompts: Sequence[str], audios: Sequence[Any] | None = None,
                   sampling: SamplingConfig = SamplingConfig(), batch_size: int = 8, progress: bool = False,
                   *, keys: Sequence[str] | None = None, frontend: Any = None, sort_by_length: bool = True,
                   ) -> list[list[str]]:
    """Generate for each prompt (`num_samples` texts each), in left-padded batches of `batch_size` prompts.
    Returns texts per prompt.

    A model with a cacheable audio front-end (the miniature's Qwen2-Audio; `models.frontend`) decodes with
    `models.decode`: features from `frontend` (one is made, memory only, when None), each prompt prefilled once
    for its K samples, batches of `batch_size` x K rows (by prompt length when `sort_by_length`), finished rows
    dropped. Each sample's randomness is keyed by (`sampling.seed`, its prompt's key in `keys` (default: its
    index), its sample index), not by its batch. Other models (or `frontend=False`) use transformers' `generate`,
    seeded per batch."""
    import torch

    tokenizer = processor.tokenizer
    audios = list(audios) if audios is not None else [None] * len(prompts)
    eos = _eos_ids(model, tokenizer)
    k = sampling.num_samples
    if frontend is not False and audios and all(a is not None for a in audios):
        from .frontend import make_frontend

        frontend = frontend if frontend is not None else make_frontend(model, processor)
        if frontend is not None:
            return _decode_texts(model, processor, frontend, prompts, audios, sampling, batch_size, progress, eos,
                                 keys, sort_by_length)
    gen_kwargs: dict[str, Any] = dict(max_new_tokens=sampling.max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                      eos_token_id=eos)
    if sampling.greedy:
        gen_kwargs.update(do_sample=False, num_return_sequences=1)
    else:
        gen_kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p,
                          top_k=0, num_return_sequences=k)
    if sampling.stop:
        gen_kwargs.update(stop_strings=list(sampling.stop), tokenizer=tokenizer)
    starts = range(0, len(prompts), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="generate", unit="batch")
    results: list[list[str]] = []
    device = next(model.parameters()).device
    for b, start in enumerate(starts):
        batch = encode_batch(processor, prompts[start:start + batch_size], audios[start:start + batch_size])
        batch = {key: value.to(device) for key, value in batch.items()}
        if "input_features" in batch:
            batch["input_features"] = batch["input_features"].to(model.dtype)
        if not sampling.greedy:
            torch.manual_seed(sampling.seed + b)
        with torch.no_grad():
            out = model.generate(**batch, **gen_kwargs)
        new_tokens = out[:, batch["input_ids"].shape[1]:].cpu()
        per_row = 1 if sampling.greedy else k
        eos_set = set(eos)
        texts = [_decode(tokenizer, row, eos_set) for row in new_tokens]
        for i in range(len(texts) // per_row):
            chunk = texts[i * per_row:(i + 1) * per_row]
            results.append(chunk * k if sampling.greedy else chunk)
    return results


def _decode_texts(model, processor, frontend, prompts, audios, sampling: SamplingConfig, batch_size: int,
                  progress: bool, eos: list[int], keys, sort_by_length: bool) -> list[list[str]]:
    from .decode import Row, Segment, decode

    if sampling.stop and len(sampling.stop) > 1:
        raise ValueError("decoding with a cached front-end takes one stop string per sample")
    features = frontend.features([load_audio(a) for a in audios], progress=progress)
    k = 1 if sampling.greedy else sampling.num_samples
    keys = [str(key) for key in keys] if keys is not None else [str(i) for i in range(len(prompts))]
    script = (Segment("", sampling.max_new_tokens, sampling.stop[0] if sampling.stop else None),)
    rows = [Row(i, f"{sampling.seed}|{keys[i]}|{s}", script) for i in range(len(prompts)) for s in range(k)]
    texts = decode(model, processor, frontend, prompts, features, rows, temperature=sampling.temperature,
                   top_p=sampling.top_p, eos_ids=eos, max_rows=max(1, batch_size) * k,
                   sort_by_length=sort_by_length, progress=progress)
    per_prompt = [texts[i * k:(i + 1) * k] for i in range(len(prompts))]
    return [chunk * sampling.num_samples if sampling.greedy else chunk for chunk in per_prompt]


@dataclass
class ThinkerOutput:
    """One generated sample, split."""

    prompt_index: int
    sample_index: int
    text: str
    thinking: str
    answer_prediction: str
    parse_status: str
    parse_failed: bool


@dataclass
class GenerationReport:
    """All outputs of a batch run, with parse failures counted (never silently dropped)."""

    outputs: list[list[ThinkerOutput]]
    num_outputs: int = 0
    num_parse_failed: int = 0
    status_counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def parse_failure_rate(self) -> float:
        return self.num_parse_failed / self.num_outputs if self.num_outputs else 0.0

    def summary(self) -> dict:
        return {"num_outputs": self.num_outputs, "num_parse_failed": self.num_parse_failed,
                "parse_failure_rate": round(self.parse_failure_rate, 4), "status_counts": dict(self.status_counts),
                "seconds": round(self.seconds, 3),
                "outputs_per_second": round(self.num_outputs / self.seconds, 3) if self.seconds else None}


def split_outputs(texts: list[list[str]], require_think: bool = True) -> GenerationReport:
    """Split every text of `generate_texts` and count parse statuses."""
    outputs, statuses = [], Counter()
    for p, samples in enumerate(texts):
        row = []
        for s, text in enumerate(samples):
            split = split_thinking(text, require_think=require_think)
            statuses[split.parse_status] += 1
            row.append(ThinkerOutput(p, s, text, split.thinking, split.answer_prediction, split.parse_status,
                                     split.parse_failed))
        outputs.append(row)
    failed = sum(o.parse_failed for row in outputs for o in row)
    return GenerationReport(outputs, sum(len(r) for r in outputs), failed, dict(statuses))


def generate_reasoning(model, processor, prompts: Sequence[str], audios: Sequence[Any] | None = None,
                       sampling: SamplingConfig = SamplingConfig(), batch_size: int = 8, progress: bool = False,
                       require_think: bool = True, **decode_options: Any) -> GenerationReport:
    """Generate, then split each output into thinking and answer_prediction; parse failures are counted.
    `decode_options` (keys, frontend, sort_by_length) go to `generate_texts`."""
    started = time.perf_counter()
    texts = generate_texts(model, processor, prompts, audios, sampling, batch_size, progress, **decode_options)
    report = split_outputs(texts, require_think=require_think)
    report.seconds = time.perf_counter() - started
    return report


# ----------------------------------------------------------------------------------------------- training text
def assistant_text(reasoning: str, answer: str, prompt_opens_think: bool = False) -> str:
    """The assistant turn, written explicitly so the reasoning can never be dropped by a chat template."""
    head = "" if prompt_opens_think else THINK_OPEN + "\n"
    return f"{head}{reasoning.strip()}\n{THINK_CLOSE}\n\n{answer.strip()}<|im_end|>"


@dataclass(frozen=True)
class TrainingText:
    """A full training sequence as text: prompt (system?/user with audio + question) and assistant target."""

    prompt: str
    target: str

    @property
    def text(self) -> str:
        return self.prompt + self.target


def build_training_text(processor, prompt_text: str, reasoning: str | None, answer: str, with_audio: bool = True,
                        system: str | None = None) -> TrainingText:
    """Prompt through the chat template (generation prompt only), assistant part built by hand.

    `reasoning=None` gives an answer-only target (no think block) for the answer_only control.
    """
    prompt = build_prompt(processor, prompt_text, with_audio, system)
    opens = prompt.rstrip().endswith(THINK_OPEN)
    if reasoning is None:
        target = f"{answer.strip()}<|im_end|>"
    else:
        target = assistant_text(reasoning, answer, prompt_opens_think=opens)
    return TrainingText(prompt, target)


def encode_training_batch(processor, examples: Sequence[TrainingText], audios: Sequence[Any] | None = None,
                          padding_side: str = "right", features: Sequence[Any] | None = None) -> dict:
    """Encode training sequences with labels on assistant tokens only (padding right by default); with
    `features` (cached front-end output per clip) instead of `audios`, token ids only (see `encode_batch`)."""
    return encode_batch(processor, [e.prompt for e in examples], audios, targets=[e.target for e in examples],
                        padding_side=padding_side, features=features)


def reasoning_token_span(tokenizer, input_ids: Iterable[int], reasoning: str) -> tuple[int, int] | None:
    """(start, end) of the reasoning's tokens inside `input_ids`, or None if they are not there contiguously."""
    needle = tokenizer("\n" + reasoning.strip(), add_special_tokens=False)["input_ids"][1:]
    haystack = list(input_ids)
    for start in range(len(haystack) - len(needle) + 1):
        if haystack[start:start + len(needle)] == needle:
            return start, start + len(needle)
    return None
