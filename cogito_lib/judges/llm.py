"""The auditor's LLM trace judge (paper scale): does a reasoning trace hallucinate or break its logic?

The paper's auditor asks Qwen3-Omni-30B-A3B-Instruct to read the clip (audio + metadata), the question, the
label and the thinker's reasoning, and to reject traces with hallucinated claims or broken logic. `LLMTraceJudge`
does this through any `cogito_lib.models.backends` backend (hf, vllm, or an OpenAI-compatible endpoint, cached)
with a rubric prompt and a structured reply, `{"verdict": "pass"|"fail", "reasons": [...]}`, which is parsed and
validated: a reply that is not that object is a `JudgeOutputError` (the auditor rejects the sample with reason
`judge_output_invalid`), never a silent pass. Transport failures (`BackendError`) propagate, so an endpoint that
is down stops the stage (resumable) instead of rejecting every sample.

It has the trace judge's interface (`verify`) plus `verify_batch`, which sends one backend call per batch.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..io import stable_id
from ..mmar import format_prompt
from .base import JudgeOutputError, Verdict

VERDICTS = ("pass", "fail")
PROMPT_VERSION = "audit-judge-v1"  # part of the judge's fingerprint: change it when the prompt changes

SYSTEM_PROMPT = (
    "You are the auditor of a dataset of reasoning about audio. You check one model-written reasoning trace "
    "against the audio clip and its ground-truth metadata, strictly and literally, and you reply with JSON only."
)

RUBRIC = """\
Fail the reasoning if ANY of these holds:
1. Hallucination: it claims an event, count, order, timing, loudness, pitch, sound source, speaker, spoken word,
   instrument or other property that contradicts the metadata or the audio, or that neither supports.
2. Broken logic: a step does not follow from the previous ones, the conclusion does not follow from the steps,
   or the conclusion differs from the final answer.
3. It skips the evidence the question needs (e.g. it never identifies the events it counts or compares).
Otherwise pass it. Correct facts stated in other words are fine."""


def _strip_think(text: str) -> str:
    """A thinking judge's reply without its `<think>...</think>` block."""
    close = text.rfind("</think>")
    return text[close + len("</think>"):] if close >= 0 else text


def parse_judge_output(text: str | None) -> Verdict:
    """A `Verdict` from the judge's reply; JudgeOutputError unless it holds exactly one valid verdict object.

    Accepted: `{"verdict": "pass"|"fail", "reasons": [str, ...]}`, optionally inside a code fence, after a think
    block or among prose. A "fail" must give at least one reason; reasons of a "pass" are ignored."""
    if text is None or not str(text).strip():
        raise JudgeOutputError("empty judge reply")
    body = _strip_think(str(text))
    fenced = re.search(r"```(?:json)?\s*(.*?)```", body, re.DOTALL)
    if fenced:
        body = fenced.group(1)
    start = body.find("{")
    if start < 0:
        raise JudgeOutputError(f"judge reply has no JSON object: {text[:120]!r}")
    try:
        parsed, _ = json.JSONDecoder().raw_decode(body[start:])
    except json.JSONDecodeError as err:
        raise JudgeOutputError(f"judge reply is not valid JSON ({err.msg}): {text[:120]!r}") from None
    if not isinstance(parsed, dict):
        raise JudgeOutputError(f"judge JSON is not an object: {text[:120]!r}")
    verdict = parsed.get("verdict")
    if not isinstance(verdict, str) or verdict.strip().lower() not in VERDICTS:
        raise JudgeOutputError(f"judge verdict must be 'pass' or 'fail', got {verdict!r}")
    reasons = parsed.get("reasons", [])
    if not isinstance(reasons, list) or not all(isinstance(r, str) for r in reasons):
        raise JudgeOutputError(f"judge 'reasons' must be a list of strings, got {reasons!r}")
    reasons = [r.strip() for r in reasons if r.strip()]
    if verdict.strip().lower() == "pass":
        return Verdict([])
    if not reasons:
        raise JudgeOutputError("judge said 'fail' without giving a reason")
    return Verdict(reasons)


def _metadata_text(clip: Mapping | None) -> str:
    if not clip:
        return "(no metadata for this clip)"
    lines = []
    if clip.get("caption"):
        lines.append(f"Caption: {clip['caption']}")
    events = sorted(clip.get("events") or [], key=lambda e: (e.get("onset_s", 0.0), e.get("offset_s", 0.0)))
    if events:
        lines.append("Events in time order:")
        for e in events:
            extras = ", ".join(f"{k} {e[k]}" for k in ("role", "loudness", "pitch", "voice") if e.get(k))
            said = f' says "{e["text"]}"' if e.get("text") else ""
            lines.append(f"- {e.get('onset_s', 0):.2f}-{e.get('offset_s', 0):.2f} s: {e.get('label', '?')}{said}"
                         + (f" ({extras})" if extras else ""))
    facts = clip.get("facts") or {}
    if facts:
        lines.append("Facts:")
        lines += [f"- {k}: {v if isinstance(v, str) else json.dumps(v)}" for k, v in facts.items()]
    return "\n".join(lines) or "(no metadata for this clip)"


def build_judge_prompt(question: Mapping, thinking: str, answer_prediction: str, clip: Mapping | None = None) -> str:
    """The judge's user prompt: metadata, question with choices and label, the reasoning, the rubric, JSON out."""
    reference = ""
    if question.get("listing") or question.get("steps"):
        steps = "\n".join(f"- {k}: {v}" for k, v in (question.get("steps") or []))
        listing = "; ".join(question.get("listing") or [])
        reference = f"\n# Reference (from the metadata)\nEvents heard: {listing}\n{steps}\n"
    return (
        f"# Clip metadata (ground truth)\n{_metadata_text(clip)}\n{reference}\n"
        f"# Question\n{format_prompt(question['question'], list(question['choices']))}\n"
        f"Correct answer: {question['answer']}\n\n"
        f"# Reasoning to audit\n{thinking}\n\n# Its final answer\n{answer_prediction}\n\n"
        f"# Rubric\n{RUBRIC}\n\n"
        "# Output\nReply with one JSON object and nothing else: "
        '{"verdict": "pass" or "fail", "reasons": ["one short sentence per problem found"]} '
        "(reasons may be empty for a pass)."
    )


class LLMTraceJudge:
    """Trace judge over a generation backend (hf / vllm / openai); greedy, one reply per trace.

    `with_audio` sends the clip to the judge (Qwen3-Omni-Instruct hears it); set it False for a text-only model.
    `audio_root` resolves relative `audio_path`s of questions (the run dir)."""

    def __init__(self, backend: Any, model: str = "", *, with_audio: bool = True, audio_root: str | Path | None = None,
                 max_new_tokens: int = 512, system_prompt: str = SYSTEM_PROMPT):
        self.backend, self.model = backend, model
        self.with_audio, self.max_new_tokens, self.system_prompt = with_audio, max_new_tokens, system_prompt
        self.audio_root = Path(audio_root) if audio_root is not None else None

    requires: tuple[str, ...] = ()  # reads the clip's metadata and audio; needs no gold steps

    @property
    def name(self) -> str:
        """Identifies the verdicts this judge gives (backend, model, prompt): part of the audit fingerprint."""
        backend = getattr(self.backend, "name", type(self.backend).__name__)
        return (f"llm:{backend}:{self.model}:"
                f"{stable_id(PROMPT_VERSION, self.system_prompt, self.with_audio, self.max_new_tokens, length=8)}")

    def __repr__(self) -> str:
        return f"LLMTraceJudge({self.name!r})"

    def _audio_path(self, question: Mapping) -> str | None:
        path = question.get("audio_path")
        if not self.with_audio or not path:
            return None
        path = Path(path)
        return str(path if path.is_absolute() or self.audio_root is None else self.audio_root / path)

    def request(self, request_id: str, question: Mapping, thinking: str, answer_prediction: str,
                clip: Mapping | None = None):
        """The backend request for one trace (audio first, then the rubric prompt)."""
        from ..models.backends import GenerationRequest

        text = build_judge_prompt(question, thinking, answer_prediction, clip)
        audio_path = self._audio_path(question)
        user: Any = ([{"type": "audio", "audio": audio_path}, {"type": "text", "text": text}]
                     if audio_path else text)
        messages = [{"role": "system", "content": self.system_prompt}, {"role": "user", "content": user}]
        return GenerationRequest(request_id=request_id, messages=messages, audio_path=audio_path,
                                 max_new_tokens=self.max_new_tokens, temperature=0.0, num_samples=1, seed=0,
                                 accept=parse_judge_output)  # a reply without a verdict is never cached

    def verify_batch(self, items: Sequence[Mapping]) -> list[Verdict | JudgeOutputError]:
        """One verdict (or JudgeOutputError) per item {id, question, thinking, answer_prediction, clip}."""
        requests = [self.request(str(item.get("id", i)), item["question"], item["thinking"],
                                 item["answer_prediction"], item.get("clip")) for i, item in enumerate(items)]
        if not requests:
            return []
        results = self.backend.generate(requests)
        by_id = {r.request_id: r for r in results} if len(results) != len(requests) else None
        out: list[Verdict | JudgeOutputError] = []
        for index, request in enumerate(requests):
            result = by_id.get(request.request_id) if by_id is not None else results[index]
            if result is None or not getattr(result, "texts", None):
                out.append(JudgeOutputError("the judge backend returned no reply for this trace"))
                continue
            try:
                out.append(parse_judge_output(result.texts[0]))
            except JudgeOutputError as err:
                out.append(err)
        return out

    def verify(self, question: Mapping, thinking: str, answer_prediction: str, clip: Mapping | None = None) -> Verdict:
        """A Verdict, or JudgeOutputError when the reply is malformed."""
        result = self.verify_batch([{"id": "0", "question": question, "thinking": thinking,
                                     "answer_prediction": answer_prediction, "clip": clip}])[0]
        if isinstance(result, JudgeOutputError):
            raise result
        return result
