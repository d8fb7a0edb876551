"""Cogito-pipe stage 2 (QA construction): the *Annotator* writes 1-3 multiple-choice questions per clip.

Paper: Qwen3-Omni-Instruct, prompted few-shot from a pool of 500 expert seed questions, reads each clip (audio +
metadata) and writes 1-3 MMAR-style questions with hard-negative distractors. Miniature: the same role played by a
deterministic, offline `MetadataAnnotator` that builds **composite** (multi-step) questions from the clip's
ground-truth metadata with `cogito_lib.world.skills`, steered by sampled seeds exactly as few-shot examples steer an LLM.
Both annotators sit behind one interface (`Annotator`); `LLMAnnotator` runs any HF, vLLM or OpenAI-compatible
backend from `cogito_lib.models.backends` and rejects output that does not parse or validate.

The annotator gives labels only: `qa.jsonl` never holds gold reasoning (`thinking`); the thinker (stage 3) has to
find it. `listing` and `steps` (metadata truth) are kept for the metadata judge of stage 4, which the thinker never
reads; LLM-annotated items have them null.

Layout of `RUN_DIR/03-qa-construction/`:
    journal.jsonl    one line per finished clip: {fingerprint, clip_id, clip_hash, questions, rejections};
                     appended (fsynced) as clips finish, compacted to the current run's clips at the end
    qa.jsonl         the questions, in manifest order (written atomically at the end)
    rejected.jsonl   one line per skipped clip or rejected item: {clip_id, reason, detail, ...}
    stats.json       counts by tier / skill / modality / category, rejections by reason, throughput
    llm-cache/       (served backends: vllm, openai) cached responses
    servers/         (serve.launch) the log of a server started for this stage

Resume: a clip is done when the journal holds its entry for the same annotator fingerprint and the same clip
record, and its wav is still the one stage 1 wrote (its content hash); a rerun after `kill -9` redoes only the
rest and ends with the same files. A model reply that could not be read is journalled as a failure, not as an
answer: `retry_failed=True` (`--retry-failed`) asks those clips again. Problems of the input that a
rerun may fix (a missing or unreadable wav, a backend error, an unexpected exception) are not journalled: they
are reported in rejected.jsonl and retried on every run. Deterministic outcomes (questions, a clip with no usable
metadata, a clip no requested skill fits, a rejected model output) are journalled.

Fallback when a clip supports no requested skill (music-only and speech-only clips support no composite skill):
`fallback="skip"` (default) skips the clip with the counted reason `no_supported_skill`, so the curation data stays
purely composite, the questions the base's own pretraining data cannot teach (docs/miniature.md); `fallback="atomic"`
asks atomic questions instead, flagged `"fallback": true` in their records.
"""
from __future__ import annotations

import argparse
import collections
import difflib
import hashlib
import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Protocol, Sequence, runtime_checkable

import numpy as np

from cogito_lib.world import skills
from cogito_lib.config import ConfigError, Profile, resolve_data_path, resolve_run_dir
from cogito_lib.io import AUDIO_HASH, JsonlJournal, read_jsonl, scan_jsonl, stable_id, write_json, write_jsonl
from cogito_lib.io import clip_problem as clip_integrity
from cogito_lib.layout import COLLECT, QA, StageFailed, require, writes_stage
from cogito_lib.mmar.rule import CATEGORIES, MODALITIES, normalise_category

STAGE_DIR = QA
MANIFEST_STAGE = COLLECT
JOURNAL = "journal.jsonl"
FALLBACKS = ("skip", "atomic")
DEFAULT_TIERS = ("composite",)
MIN_CHOICES, MAX_CHOICES = 2, 5

# Why a clip was skipped or an item rejected (rejected.jsonl `reason`, stats `rejections_by_reason`).
REASONS = {
    "manifest_line_invalid": "a manifest line is not a JSON object",
    "bad_clip_record": "the clip record lacks clip_id, modality or audio_path, or names an unknown modality",
    "duplicate_clip": "the clip_id appears earlier in the manifest",
    "empty_metadata": "the clip has no events and no facts to ground questions on",
    "audio_missing": "the clip's wav file does not exist",
    "audio_unreadable": "the clip's wav file cannot be decoded or holds no samples",
    "audio_truncated": "the clip's wav file is shorter than its header says (cut short)",
    "audio_changed": "the clip's wav file differs from the one stage 1 wrote (its recorded content hash)",
    "no_supported_skill": "no requested skill (tier) fits the clip",
    "annotator_error": "the annotator raised an unexpected exception on this clip",
    "backend_error": "the model backend failed (network, missing model...)",
    "malformed_json": "the model output holds no parsable JSON object",
    "bad_schema": "the model output is not {\"questions\": [...]}",
    "missing_field": "a question lacks question, choices, answer, category or sub-category",
    "bad_choices": "choices are not 2-5 distinct non-empty strings",
    "answer_not_in_choices": "the answer is not one of the choices",
    "unknown_category": "the category is not one of MMAR's four layers",
    "unknown_modality": "the modality is not one of MMAR's seven classes",
    "duplicate_question": "the same question was already written for this clip",
    "over_max_questions": "more questions than annotate.max_questions_per_clip",
}
TRANSIENT_REASONS = frozenset({"audio_missing", "audio_unreadable", "audio_truncated", "audio_changed",
                               "backend_error", "annotator_error", "manifest_line_invalid", "bad_clip_record",
                               "duplicate_clip"})
REQUEST_FAILURES = frozenset({"backend_error", "annotator_error", "malformed_json", "bad_schema"})
MAX_FAILED_BATCHES = 3  # batches in a row whose every request failed: the stage stops (the backend is down)


class SeedPoolError(ConfigError):
    """The seed question pool is missing or has bad lines (each named by file and line number)."""


# ------------------------------------------------------------------------------------------------- validation
def question_problem(item: Any, *, need_modality: bool = False) -> tuple[str, str] | None:
    """(reason, detail) when `item` is not a valid MMAR multiple-choice question, else None.

    One check for seeds, metadata questions and LLM output: answer among 2-5 distinct choices, a known layer."""
    if not isinstance(item, dict):
        return "bad_schema", f"a question must be a JSON object, got {type(item).__name__}"
    required = ("question", "choices", "answer", "category", "sub-category") + (("modality",) if need_modality else ())
    missing = [k for k in required if item.get(k) in (None, "")]
    if missing:
        return "missing_field", f"missing {', '.join(missing)}"
    for key in ("question", "answer", "category", "sub-category"):
        if not isinstance(item[key], str) or not item[key].strip():
            return "missing_field", f"{key} must be a non-empty string"
    choices = item["choices"]
    if not isinstance(choices, list) or not all(isinstance(c, str) and c.strip() for c in choices):
        return "bad_choices", "choices must be a list of non-empty strings"
    if not MIN_CHOICES <= len(choices) <= MAX_CHOICES:
        return "bad_choices", f"{len(choices)} choices (need {MIN_CHOICES}-{MAX_CHOICES})"
    if len({c.strip().lower() for c in choices}) != len(choices):
        return "bad_choices", f"repeated choices {choices}"
    if item["answer"] not in choices:
        return "answer_not_in_choices", f"answer {item['answer']!r} not in {choices}"
    try:
        normalise_category(item["category"])
    except ValueError:
        return "unknown_category", f"category {item['category']!r} is not one of {list(CATEGORIES)}"
    if need_modality and item["modality"] not in MODALITIES:
        return "unknown_modality", f"modality {item['modality']!r} is not one of {list(MODALITIES)}"
    return None


def _seed_problem(seed: Any) -> str | None:
    problem = question_problem(seed, need_modality=True)
    if problem is not None:
        return problem[1]
    if not isinstance(seed.get("id"), str) or not seed["id"]:
        return "id must be a non-empty string"
    if seed.get("tier") not in skills.TRAINED_TIERS:
        return (f"tier {seed.get('tier')!r} is not one of {list(skills.TRAINED_TIERS)} (the held-out tier is never "
                "asked for training, so it has no seeds)")
    if "skill" not in seed:
        return "skill is missing (use null for a seed only an LLM annotator can use)"
    skill = seed["skill"]
    if skill is not None:
        if skill not in skills.SKILLS:
            return f"skill {skill!r} is not a key of cogito_lib.world.skills.SKILLS (or null)"
        spec = skills.SKILLS[skill]
        expected = {"tier": spec.tier, "category": spec.category, "sub-category": spec.sub_category}
        wrong = {k: v for k, v in expected.items() if seed[k] != v}
        if wrong:
            return f"skill {skill!r} has {wrong}; the seed says {({k: seed[k] for k in wrong})}"
    return None


def load_seed_pool(path: str | Path) -> list[dict]:
    """Read and validate a seed question pool (JSONL). Raises SeedPoolError listing every bad line as file:line."""
    path = Path(path)
    if not path.is_file():
        raise SeedPoolError(f"seed question pool {path} not found: set annotate.seed_pool to a JSONL file of seeds "
                            "(see data/seed_questions.jsonl for the format)")
    seeds, problems, seen = [], [], set()
    for number, seed, problem in scan_jsonl(path):
        if problem:
            problems.append(f"{path}:{number}: {problem}")
            continue
        problem = _seed_problem(seed)
        if problem is None and seed["id"] in seen:
            problem = f"duplicate id {seed['id']!r}"
        if problem is not None:
            problems.append(f"{path}:{number}: {problem}")
            continue
        seen.add(seed["id"])
        seeds.append(seed)
    if problems:
        more = f"\n... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise SeedPoolError(f"{len(problems)} bad seed line(s):\n" + "\n".join(problems[:20]) + more)
    if not seeds:
        raise SeedPoolError(f"seed question pool {path} holds no seeds")
    return seeds


_NON_ALNUM = re.compile(r"[\W_]+")


def normalise_question(text: str) -> str:
    """A question as compared for copies: lower-case, each run of non-alphanumerics one space, stripped."""
    return _NON_ALNUM.sub(" ", str(text).lower()).strip()


def question_hash(text: str) -> str:
    """sha256 (hex) of `normalise_question(text)`; tests/fixtures/mmar_question_hashes.txt lists MMAR's this way, so
    the seed pool can be checked against MMAR's questions without holding their text."""
    return hashlib.sha256(normalise_question(text).encode("utf-8")).hexdigest()


def question_similarity(a: str, b: str, *, n: int = 5) -> tuple[float, float]:
    """(difflib ratio, word n-gram Jaccard) of two normalised questions: how close a seed comes to another question.

    A question shorter than n words counts as one n-gram of all its words."""
    a, b = normalise_question(a), normalise_question(b)
    ratio = difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()
    grams_a, grams_b = (word_ngrams(x, n) for x in (a, b))
    union = grams_a | grams_b
    return ratio, (len(grams_a & grams_b) / len(union) if union else 0.0)


def word_ngrams(normalised: str, n: int) -> set[tuple[str, ...]]:
    """The word n-grams of a normalised question (one n-gram of all its words when it is shorter)."""
    words = normalised.split()
    return {tuple(words[i:i + n]) for i in range(max(1, len(words) - n + 1))} if words else set()


def seed_coverage(seeds: Sequence[dict]):
    """Seeds per MMAR layer x modality class (a pandas DataFrame, every layer and class shown)."""
    import pandas as pd

    counts = collections.Counter((s["category"], s["modality"]) for s in seeds)
    return pd.DataFrame([[counts.get((c, m), 0) for m in MODALITIES] for c in CATEGORIES],
                        index=pd.Index(CATEGORIES, name="category"), columns=pd.Index(MODALITIES, name="modality"))


# ------------------------------------------------------------------------------------------------- annotators
@dataclass
class Annotation:
    """What an annotator made of one clip: its questions and the rejections (clip skipped or items dropped).

    `transient` marks outcomes a rerun may change (backend down, unreadable audio): they are not journalled.
    `failed` marks a model reply that could not be read: it is journalled as a failure, never as an answer, and
    asked again with `retry_failed`."""

    questions: list[dict] = field(default_factory=list)
    rejections: list[dict] = field(default_factory=list)
    transient: bool = False
    failed: bool = False


@runtime_checkable
class Annotator(Protocol):
    """The annotator role: one clip (metadata + audio) in, MMAR-format questions (labels only) out."""

    name: str
    batch_size: int

    def describe(self) -> dict:
        """Every setting that changes the output (JSON-able); its hash is the stage's resume fingerprint."""
        ...

    def annotate(self, clip: dict, rng: np.random.Generator, audio_file: Path | None = None) -> Annotation:
        """Questions about one clip (`rng`: the clip's own stream, see `clip_rng`; `audio_file`: its wav)."""
        ...

    def annotate_batch(self, items: Sequence[tuple[dict, np.random.Generator, Path | None]]) -> list[Annotation]:
        """Annotate (clip, rng, audio_file) items; one Annotation per item, in order (the stage calls this)."""
        ...


def clip_rng(clip_id: str, seed: int) -> np.random.Generator:
    """The random stream of one clip: depends only on (clip, seed), so a resumed run asks the same questions."""
    return np.random.default_rng([int(seed), int(stable_id(clip_id), 16)])


def sample_seed_pool(seeds: Sequence[dict], num: int, seed: int) -> list[dict]:
    """`num` seeds (all when fewer), drawn once per run like the paper's pool sampled from the 500 expert seeds."""
    if num <= 0 or num >= len(seeds):
        return list(seeds)
    rng = np.random.default_rng([int(seed), 7919])
    return [seeds[i] for i in sorted(rng.choice(len(seeds), size=num, replace=False))]


def _order_by_modality(seeds: Sequence[dict], modality: str, rng: np.random.Generator) -> list[dict]:
    """Seeds in a random order, those of the clip's modality class first (the most relevant examples)."""
    shuffled = [seeds[i] for i in rng.permutation(len(seeds))]
    return sorted(shuffled, key=lambda s: s["modality"] != modality)


def to_record(question: dict, *, annotator: str, seed_ids: list[str], audio_path: str, fallback: bool = False) -> dict:
    """A qa.jsonl record: the question without gold reasoning, audio relative to RUN_DIR, and its provenance."""
    record = {k: v for k, v in question.items() if k != "thinking"}
    record.update(audio_path=audio_path, annotator=annotator, seed_ids=list(seed_ids), fallback=fallback)
    return record


def rejection(clip_id: str | None, reason: str, detail: str, **extra: Any) -> dict:
    return {"clip_id": clip_id, "reason": reason, "detail": detail, **extra}


def _check_tiers(tiers: Iterable[str], fallback: str) -> tuple[str, ...]:
    tiers = tuple(dict.fromkeys(tiers))
    if not tiers or any(t not in skills.TRAINED_TIERS for t in tiers):
        raise ConfigError(f"tiers {list(tiers)} must be a non-empty subset of {list(skills.TRAINED_TIERS)} (the "
                          "held-out tier is only for MMAR-synth: nothing in training may ask it)")
    if fallback not in FALLBACKS:
        raise ConfigError(f"fallback {fallback!r} is not allowed; choose one of: {', '.join(FALLBACKS)}")
    return tiers


class MetadataAnnotator:
    """The miniature's annotator: questions built from ground-truth metadata with `cogito_lib.world.skills`.

    A working pool of `num_seed_questions` seeds with a skill is sampled once; for each clip the seeds are read in
    a random order (its modality class first) and each seed's skill is asked when the clip supports it, until the
    clip's 1-3 questions are written. Seeds steer which templates are asked as few-shot examples steer an LLM:
    a skill with more seeds is asked more often. Deterministic per (clip, seed)."""

    name = "metadata"
    batch_size = 1

    def __init__(self, seeds: Sequence[dict], *, num_seed_questions: int = 60, tiers: Sequence[str] = DEFAULT_TIERS,
                 fallback: str = "skip", min_questions: int = 1, max_questions: int = 3, num_choices: int = 4,
                 seed: int = 0):
        self.tiers = _check_tiers(tiers, fallback)
        self.fallback = fallback
        self.min_questions, self.max_questions, self.num_choices, self.seed = (
            min_questions, max_questions, num_choices, seed)

        def eligible(tiers):
            return [s for s in seeds if s.get("skill") and skills.SKILLS[s["skill"]].tier in tiers]

        self.pool = sample_seed_pool(eligible(self.tiers), num_seed_questions, seed)
        # the fallback tier gets a pool of its own, so it never crowds the requested tiers out of theirs
        self.fallback_pool = (sample_seed_pool(eligible(("atomic",)), num_seed_questions, seed + 1)
                              if fallback == "atomic" and "atomic" not in self.tiers else [])

    def describe(self) -> dict:
        return {"annotator": self.name, "tiers": list(self.tiers), "fallback": self.fallback,
                "min_questions": self.min_questions, "max_questions": self.max_questions,
                "num_choices": self.num_choices, "seed": self.seed, "pool": [s["id"] for s in self.pool],
                "fallback_pool": [s["id"] for s in self.fallback_pool],
                "pool_hash": stable_id(self.pool, self.fallback_pool)}

    def _ask(self, clip: dict, rng: np.random.Generator, seeds: Sequence[dict], target: int) -> list[tuple[dict, str]]:
        asked: set[str] = set()
        out = []
        for seed in _order_by_modality(seeds, clip["modality"], rng):
            if seed["skill"] in asked:
                continue
            asked.add(seed["skill"])  # tried once per clip, whether the clip supports it or not
            question = skills.make_question(clip, seed["skill"], rng, num_choices=self.num_choices)
            if question is not None:
                out.append((question, seed["id"]))
            if len(out) >= target:
                break
        return out

    def annotate(self, clip: dict, rng: np.random.Generator, audio_file: Path | None = None) -> Annotation:
        """The clip's questions. The metadata annotator reads metadata only (`audio_file` is not needed: the stage
        has checked that the wav decodes); records carry the clip's `audio_path`."""
        audio_path = clip["audio_path"]
        target = int(rng.integers(self.min_questions, self.max_questions + 1))
        made, fallback = self._ask(clip, rng, self.pool, target), False
        if not made and self.fallback_pool:
            made, fallback = self._ask(clip, rng, self.fallback_pool, target), True
        result = Annotation()
        for question, seed_id in made:
            problem = question_problem(question, need_modality=True)
            if problem is not None:  # the templates should never do this; report rather than trust
                result.rejections.append(rejection(clip["clip_id"], *problem, skill=question.get("skill")))
                continue
            result.questions.append(to_record(question, annotator=self.name, seed_ids=[seed_id],
                                              audio_path=audio_path, fallback=fallback))
        if not made:
            hint = "" if self.fallback == "atomic" else " (fallback='atomic' would ask an atomic question)"
            result.rejections.append(rejection(
                clip["clip_id"], "no_supported_skill",
                f"no {'/'.join(self.tiers)} skill of the seed pool fits this {clip['modality']} clip{hint}"))
        return result

    def annotate_batch(self, items):
        return [self.annotate(clip, rng, audio) for clip, rng, audio in items]


# ----------------------------------------------------------------------------------------- the LLM annotator
LLM_SYSTEM = ("You are an expert annotator of audio reasoning benchmarks. You write challenging multiple-choice "
              "questions about an audio clip in the style of MMAR.")
TIER_INSTRUCTION = {
    "composite": ("Each question must need several reasoning steps over what is heard (for example: count only "
                  "some of the events, relate two events in time, compare loudness or pitch across events, infer a "
                  "cause), not a single perceptual fact."),
    "atomic": "Questions may ask about a single perceptual fact (a count, an order, an instrument, a voice, words).",
}


def _compact_events(clip: dict) -> list[dict]:
    keep = ("label", "onset_s", "offset_s", "loudness", "pitch", "role", "text", "voice", "language", "instrument")
    return [{k: e[k] for k in keep if e.get(k) is not None} for e in clip.get("events") or []]


def build_annotator_prompt(clip: dict, shots: Sequence[dict], *, tiers: Sequence[str] = DEFAULT_TIERS,
                           min_questions: int = 1, max_questions: int = 3) -> str:
    """The few-shot prompt: instructions, k seed examples, then the clip's metadata; asks for JSON only."""
    examples = "\n".join(json.dumps({k: s[k] for k in ("question", "choices", "answer", "category", "sub-category")},
                                    ensure_ascii=False) for s in shots)
    metadata = {"modality": clip.get("modality"), "caption": clip.get("caption"),
                "events": _compact_events(clip), "facts": clip.get("facts") or {}}
    return "\n".join([
        f"Listen to the audio clip and read its ground-truth metadata. Write {min_questions} to {max_questions} "
        "multiple-choice questions about it.",
        " ".join(TIER_INSTRUCTION[t] for t in tiers),
        "Every question needs 4 choices (2 to 5 allowed), exactly one of them correct and equal to the answer; the "
        "wrong choices must be hard negatives (a count off by one, a confusable instrument or sound, the reverse "
        "order). The answer must follow from the metadata. Give each question an MMAR category (Signal Layer, "
        "Perception Layer, Semantic Layer or Cultural Layer) and sub-category. Do not explain the answer.",
        "",
        "Examples of good questions:",
        examples,
        "",
        "Metadata of this clip:",
        json.dumps(metadata, ensure_ascii=False),
        "",
        'Reply with JSON only: {"questions": [{"question": ..., "choices": [...], "answer": ..., "category": ..., '
        '"sub-category": ...}]}',
    ])


_FENCE = re.compile(r"^```[a-zA-Z]*\s*|\s*```$")


def parse_annotator_output(text: str | None) -> tuple[list | None, tuple[str, str] | None]:
    """(items, None) from a model reply holding {"questions": [...]}, or (None, (reason, detail)).

    Reasoning before a last `</think>` and markdown fences are ignored; the outermost {...} is parsed."""
    text = (text or "").strip()
    if "</think>" in text:
        text = text[text.rfind("</think>") + len("</think>"):].strip()
    text = _FENCE.sub("", text).strip()
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None, ("malformed_json", f"no JSON object in: {text[:200]!r}")
    try:
        data = json.loads(text[start:end + 1])
    except json.JSONDecodeError as err:
        return None, ("malformed_json", f"{err.msg} in: {text[start:start + 200]!r}")
    if not isinstance(data, dict) or not isinstance(data.get("questions"), list):
        got = f"keys {list(data)[:5]}" if isinstance(data, dict) else type(data).__name__
        return None, ("bad_schema", f'expected {{"questions": [...]}}, got {got}')
    return data["questions"], None


def readable_reply(text: str) -> None:
    """ValueError when a reply holds no {"questions": [...]} object: a cached backend never keeps such a reply."""
    _, problem = parse_annotator_output(text)
    if problem is not None:
        raise ValueError(f"{problem[0]}: {problem[1]}")


class LLMAnnotator:
    """The paper's annotator: an instruction-tuned audio LLM, few-shot from k sampled seeds, reading the clip's
    audio and metadata. Any backend of `cogito_lib.models.backends` (or an object with the same `generate`)."""

    name = "llm"

    def __init__(self, backend: Any, seeds: Sequence[dict], *, model: str = "", num_seed_questions: int = 500,
                 num_shots: int = 4, tiers: Sequence[str] = DEFAULT_TIERS, min_questions: int = 1,
                 max_questions: int = 3, temperature: float = 0.0, max_new_tokens: int = 1024, batch_size: int = 8,
                 seed: int = 0):
        self.backend, self.model = backend, model
        self.tiers = _check_tiers(tiers, "skip")
        self.pool = sample_seed_pool(list(seeds), num_seed_questions, seed)
        self.num_shots, self.min_questions, self.max_questions = num_shots, min_questions, max_questions
        self.temperature, self.max_new_tokens, self.batch_size, self.seed = (
            temperature, max_new_tokens, batch_size, seed)

    def describe(self) -> dict:
        return {"annotator": self.name, "model": self.model, "backend": getattr(self.backend, "name", "?"),
                "tiers": list(self.tiers), "num_shots": self.num_shots, "min_questions": self.min_questions,
                "max_questions": self.max_questions, "temperature": self.temperature,
                "max_new_tokens": self.max_new_tokens, "seed": self.seed, "pool_hash": stable_id(self.pool)}

    def shots(self, clip: dict, rng: np.random.Generator) -> list[dict]:
        """k seeds: about half of the clip's modality class, the rest from others (variety of layers)."""
        ordered = _order_by_modality(self.pool, clip["modality"], rng)
        same = [s for s in ordered if s["modality"] == clip["modality"]][: (self.num_shots + 1) // 2]
        rest = [s for s in ordered if s not in same]
        return same + rest[: self.num_shots - len(same)]

    def request(self, clip: dict, rng: np.random.Generator, audio_file: Path | None, shots: list[dict]):
        from cogito_lib.models.backends import GenerationRequest

        prompt = build_annotator_prompt(clip, shots, tiers=self.tiers, min_questions=self.min_questions,
                                        max_questions=self.max_questions)
        content = ([{"type": "audio", "audio": str(audio_file)}] if audio_file else []) + [
            {"type": "text", "text": prompt}]
        return GenerationRequest(
            request_id=clip["clip_id"], messages=[{"role": "system", "content": LLM_SYSTEM},
                                                  {"role": "user", "content": content}],
            audio_path=str(audio_file) if audio_file else None, max_new_tokens=self.max_new_tokens,
            temperature=self.temperature, seed=int(rng.integers(2**31)), accept=readable_reply)

    def read_reply(self, clip: dict, text: str | None, rng: np.random.Generator, shots: list[dict],
                   audio_path: str) -> Annotation:
        """Parse and validate one reply; each bad item is rejected with its reason, the rest become records."""
        result = Annotation()
        items, problem = parse_annotator_output(text)
        if problem is not None:
            result.rejections.append(rejection(clip["clip_id"], *problem))
            result.failed = True
            return result
        seen: set[str] = set()
        for index, item in enumerate(items):
            problem = question_problem(item)
            key = item.get("question", "").strip().lower() if isinstance(item, dict) else ""
            if problem is None and key in seen:
                problem = ("duplicate_question", f"question {item['question']!r} repeated")
            if problem is None and len(result.questions) >= self.max_questions:
                problem = ("over_max_questions", f"item {index} beyond the first {self.max_questions}")
            if problem is not None:
                result.rejections.append(rejection(clip["clip_id"], *problem, item=index))
                continue
            seen.add(key)
            choices = [item["choices"][i].strip() for i in rng.permutation(len(item["choices"]))]
            tier = item.get("tier") if item.get("tier") in self.tiers else self.tiers[0]
            question = {
                "id": stable_id(clip["clip_id"], self.name, item["question"], sorted(choices)),
                "clip_id": clip["clip_id"], "audio_path": audio_path, "question": item["question"].strip(),
                "choices": choices, "answer": item["answer"].strip(), "modality": clip["modality"],
                "category": f"{normalise_category(item['category'])} Layer",
                "sub-category": item["sub-category"].strip(),
                "tier": tier, "skill": None, "listing": None, "steps": None,
            }
            result.questions.append(to_record(question, annotator=self.name, seed_ids=[s["id"] for s in shots],
                                              audio_path=audio_path))
        return result

    def annotate(self, clip: dict, rng: np.random.Generator, audio_file: Path | None = None) -> Annotation:
        return self.annotate_batch([(clip, rng, audio_file)])[0]

    def annotate_batch(self, items):
        prepared = []
        for clip, rng, audio in items:
            shots = self.shots(clip, rng)
            prepared.append((clip, rng, shots, self.request(clip, rng, audio, shots)))
        try:
            results = self.backend.generate([p[3] for p in prepared])
            if len(results) != len(prepared):
                raise RuntimeError(f"{len(results)} results for {len(prepared)} requests")
        except Exception as err:  # noqa: BLE001 - a failed batch is reported per clip and retried next run
            return [Annotation(rejections=[rejection(c["clip_id"], "backend_error", f"{type(err).__name__}: {err}")],
                               transient=True) for c, *_ in prepared]
        out = []
        for (clip, rng, shots, _), res in zip(prepared, results):
            text = res.texts[0] if getattr(res, "texts", None) else None
            out.append(self.read_reply(clip, text, rng, shots, clip["audio_path"]))
        return out


def make_backend_for(profile: Profile, stage_dir: Path) -> Any:
    """The annotator's backend from the profile (models.annotator on models.annotator_backend, its servers in
    serve.annotator_urls); replies of a served model are cached in the stage's llm-cache/."""
    from cogito_lib.models.serving import role_backend

    return role_backend(profile, "annotator", cache_dir=stage_dir / "llm-cache")


def annotator_batch_size(profile: Profile) -> int:
    """Clips per annotator call: enough to keep every configured server's request slots busy."""
    from cogito_lib.models.serving import role_kind, role_urls

    if role_kind(profile, "annotator") == "hf":
        return 8
    return max(8, profile.serve.concurrency * max(1, len(role_urls(profile, "annotator"))))


def make_annotator(profile: Profile, stage_dir: Path, *, tiers: Sequence[str] = DEFAULT_TIERS,
                   fallback: str = "skip", seed: int | None = None, backend: Any = None) -> Annotator:
    """The profile's annotator: `MetadataAnnotator` when models.annotator is "metadata", else `LLMAnnotator`."""
    a = profile.annotate
    seeds = load_seed_pool(resolve_data_path(a.seed_pool))
    seed = profile.collect.seed if seed is None else int(seed)
    if profile.models.annotator == "metadata":
        return MetadataAnnotator(seeds, num_seed_questions=a.num_seed_questions, tiers=tiers, fallback=fallback,
                                 min_questions=a.min_questions_per_clip, max_questions=a.max_questions_per_clip,
                                 seed=seed)
    backend = backend if backend is not None else make_backend_for(profile, stage_dir)
    return LLMAnnotator(backend, seeds, model=profile.models.annotator, num_seed_questions=a.num_seed_questions,
                        tiers=tiers, min_questions=a.min_questions_per_clip, max_questions=a.max_questions_per_clip,
                        max_new_tokens=a.max_new_tokens, batch_size=annotator_batch_size(profile), seed=seed)


# ------------------------------------------------------------------------------------------------- the stage
def read_manifest(path: Path) -> tuple[list[dict], list[dict]]:
    """Clip records of the 02 manifest and a rejection per line that is not a JSON object (never raises on one)."""
    clips, bad = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            bad.append(rejection(None, "manifest_line_invalid", f"{path}:{number}: {err.msg}", line=number))
            continue
        if not isinstance(record, dict):
            bad.append(rejection(None, "manifest_line_invalid", f"{path}:{number}: not an object", line=number))
            continue
        clips.append(record)
    return clips, bad


def clip_problem(clip: dict, manifest_dir: Path) -> tuple[str, str] | None:
    """(reason, detail) when a clip cannot be annotated: a bad record, no metadata, a missing or broken wav."""
    if not isinstance(clip.get("clip_id"), str) or not isinstance(clip.get("audio_path"), str):
        return "bad_clip_record", f"clip_id and audio_path must be strings (keys: {sorted(clip)[:8]})"
    if clip.get("modality") not in MODALITIES:
        return "bad_clip_record", f"modality {clip.get('modality')!r} is not one of {list(MODALITIES)}"
    events, facts = clip.get("events"), clip.get("facts")
    if not isinstance(events, list) or not isinstance(facts, dict) or (not events and not facts):
        return "empty_metadata", "no events and no facts: nothing to ground a question on"
    wav = manifest_dir / clip["audio_path"]
    if not wav.is_file():
        return "audio_missing", f"{wav} does not exist: rerun collect (notebook 02) to make it again"
    damaged = audio_problem(wav, clip)
    if damaged is not None:
        return damaged
    try:
        import soundfile as sf

        samples, _ = sf.read(wav, dtype="float32", always_2d=True)
    except Exception as err:  # noqa: BLE001 - any decoding error means the clip is unusable
        return "audio_unreadable", f"{wav}: {type(err).__name__}: {err}"
    if samples.size == 0 or not np.isfinite(samples).all():
        return "audio_unreadable", f"{wav}: no samples or non-finite samples"
    return None


def audio_problem(wav: Path, clip: dict) -> tuple[str, str] | None:
    """(reason, detail) when the clip's wav is missing, cut short, unreadable or not the one stage 1 wrote (its
    manifest record's content hash); checked once per file per process."""
    problem = clip_integrity(wav, clip.get(AUDIO_HASH))
    if problem is None:
        return None
    return problem[0], f"{problem[1]}: rerun collect (notebook 02) to make it again"


def run_audio_path(clip: dict) -> str:
    """The clip's audio as the stage writes it: relative to RUN_DIR (absolute paths stay absolute)."""
    path = clip["audio_path"]
    return path if Path(path).is_absolute() else f"{MANIFEST_STAGE}/{path}"


def summarise(clips: list[dict], questions: list[dict], rejections: list[dict]) -> dict:
    """Counts by tier, skill, modality, MMAR category and sub-category; rejections by reason."""
    count = collections.Counter
    per_clip = count(q["clip_id"] for q in questions)
    return {
        "num_clips": len(clips),
        "num_clips_annotated": len(per_clip),
        "num_clips_skipped": len(clips) - len(per_clip),
        "num_questions": len(questions),
        "questions_per_clip": {str(k): v for k, v in sorted(count(per_clip.values()).items())},
        "questions_by_tier": {t: sum(q["tier"] == t for q in questions) for t in skills.TRAINED_TIERS},
        "questions_by_skill": dict(sorted(count(q["skill"] or "(llm)" for q in questions).items())),
        "questions_by_modality": {m: sum(q["modality"] == m for q in questions) for m in MODALITIES},
        "questions_by_category": {c: sum(q["category"] == c for q in questions) for c in CATEGORIES},
        "questions_by_sub_category": dict(sorted(count(q["sub-category"] for q in questions).items())),
        "num_fallback_questions": sum(bool(q.get("fallback")) for q in questions),
        "num_rejections": len(rejections),
        "rejections_by_reason": dict(sorted(count(r["reason"] for r in rejections).items())),
    }


@writes_stage(STAGE_DIR)
def annotate(profile: Profile, run_dir: str | Path, *, tiers: Sequence[str] = DEFAULT_TIERS, fallback: str = "skip",
             seed: int | None = None, annotator: Annotator | None = None, progress: bool = True,
             retry_failed: bool = False) -> dict:
    """Stage 2: write 1-3 questions per clip of `RUN_DIR/02-data-collection/manifest.jsonl` into
    `RUN_DIR/03-qa-construction/` (qa.jsonl, rejected.jsonl, stats.json). Returns the stats.

    `tiers` are the question tiers asked (default composite only), `fallback` what to do with a clip no requested
    skill fits ("skip" or "atomic"), `seed` the annotator's seed (default profile.collect.seed); `annotator`
    replaces the profile's one (tests, a custom backend). Resumable and crash-tolerant (module docstring).
    A model reply that could not be read is journalled as a failure and asked again only with `retry_failed`.
    When every clip's request failed, or the backend fails MAX_FAILED_BATCHES batches in a row, nothing is
    published and StageFailed says why (the journal keeps every finished clip).
    An LLM annotator on a served backend uses the role's servers, or one `serve.launch` starts for the stage."""
    if annotator is None and profile.models.annotator != "metadata":
        from cogito_lib.models.serving import served

        stage_dir = Path(run_dir) / STAGE_DIR
        with served(profile, "annotator", log_dir=stage_dir, cache_dir=stage_dir / "llm-cache") as backend:
            annotator = make_annotator(profile, stage_dir, tiers=tiers, fallback=fallback, seed=seed, backend=backend)
            return _annotate(profile, run_dir, tiers=tiers, fallback=fallback, seed=seed, annotator=annotator,
                             progress=progress, retry_failed=retry_failed)
    return _annotate(profile, run_dir, tiers=tiers, fallback=fallback, seed=seed, annotator=annotator,
                     progress=progress, retry_failed=retry_failed)


def _annotate(profile: Profile, run_dir: str | Path, *, tiers: Sequence[str], fallback: str, seed: int | None,
              annotator: Annotator | None, progress: bool, retry_failed: bool) -> dict:
    from ..progress import progress_bar

    start = time.perf_counter()
    run_dir = Path(run_dir)
    manifest_path = require(run_dir, "manifest")
    manifest_dir = manifest_path.parent
    stage_dir = run_dir / STAGE_DIR
    stage_dir.mkdir(parents=True, exist_ok=True)
    clips, bad_lines = read_manifest(manifest_path)
    if annotator is None:
        annotator = make_annotator(profile, stage_dir, tiers=tiers, fallback=fallback, seed=seed)
    settings = annotator.describe()
    fingerprint = stable_id(settings)
    annotator_seed = int(settings.get("seed", 0))

    try:
        journalled = read_jsonl(stage_dir / JOURNAL)  # a torn last line (kill -9 mid-append) is skipped
    except ValueError as err:  # damaged beyond its last line: start over rather than trust any of it
        print(f"warning: ignoring the journal ({err})", file=sys.stderr)
        journalled = []
        (stage_dir / JOURNAL).unlink()
    done = {e.get("clip_id"): e for e in journalled
            if isinstance(e, dict) and e.get("fingerprint") == fingerprint and isinstance(e.get("clip_id"), str)}
    entries: dict[int, dict] = {}  # manifest position -> journal entry (this run's and resumed)
    transient: dict[int, list[dict]] = {}  # manifest position -> rejections not journalled
    todo: list[tuple[int, dict]] = []
    seen_ids: set[str] = set()
    for position, clip in enumerate(clips):
        cid = clip.get("clip_id")
        if isinstance(cid, str) and cid in seen_ids:
            transient[position] = [rejection(cid, "duplicate_clip", "clip_id already annotated earlier")]
            continue
        if isinstance(cid, str):
            seen_ids.add(cid)
        previous = done.get(cid) if isinstance(cid, str) else None
        if previous is not None and previous.get("failed") and retry_failed:
            previous = None  # a reply that could not be read: ask again
        if previous is not None and previous.get("clip_hash") == stable_id(clip):
            damaged = audio_problem(manifest_dir / str(clip.get("audio_path")), clip)
            if damaged is not None:  # the clip changed since its questions were written: they no longer hold
                transient[position] = [rejection(cid, *damaged)]
                continue
            entries[position] = previous
        else:
            todo.append((position, clip))
    resumed = len(entries)

    made_now = 0
    failed_batches = 0
    with JsonlJournal(stage_dir / JOURNAL) as journal, \
            progress_bar(total=len(clips), initial=resumed + len(transient), desc="annotate", unit="clip",
                 disable=not progress, file=sys.stderr) as bar:
        for offset in range(0, len(todo), max(1, annotator.batch_size)):
            batch, ready = todo[offset:offset + max(1, annotator.batch_size)], []
            for position, clip in batch:
                problem = clip_problem(clip, manifest_dir)
                if problem is None:
                    ready.append((position, clip))
                    continue
                outcome = Annotation(rejections=[rejection(clip.get("clip_id"), *problem)],
                                     transient=problem[0] in TRANSIENT_REASONS)
                made_now += _keep(outcome, position, clip, fingerprint, entries, transient, journal)
                bar.update(1)
            if not ready:
                continue
            items = [(dict(clip, audio_path=run_audio_path(clip)), clip_rng(clip["clip_id"], annotator_seed),
                      manifest_dir / clip["audio_path"]) for _, clip in ready]
            try:
                outcomes = annotator.annotate_batch(items)
            except Exception as err:  # noqa: BLE001 - one bad batch never stops the stage; retried next run
                outcomes = [Annotation(rejections=[rejection(c["clip_id"], "annotator_error",
                                                             f"{type(err).__name__}: {err}")], transient=True)
                            for _, c in ready]
            for (position, clip), outcome in zip(ready, outcomes):
                made_now += _keep(outcome, position, clip, fingerprint, entries, transient, journal)
                bar.update(1)
            failed_batches = failed_batches + 1 if all(_request_failed(o) for o in outcomes) else 0
            if failed_batches >= MAX_FAILED_BATCHES:
                raise StageFailed(f"stage 2 stopped: the annotator's requests failed in {failed_batches} batches in "
                                  f"a row ({_failure_summary(outcomes)}); nothing was published; finished clips "
                                  f"are journalled in {stage_dir / JOURNAL}: fix the annotator backend and rerun")

    questions, rejections = [], list(bad_lines)
    for position in range(len(clips)):
        if position in entries:
            questions += entries[position]["questions"]
            rejections += entries[position]["rejections"]
        rejections += transient.get(position, [])
    failures = [r for r in rejections if r["reason"] in REQUEST_FAILURES and r.get("item") is None]
    if not questions and failures:
        raise StageFailed(f"stage 2 failed: every annotator request failed ({len(failures)} clip(s): "
                          f"{_failure_summary_of(failures)}); nothing was published: fix the annotator backend "
                          f"and rerun with retry_failed=True (--retry-failed, RETRY_FAILED=True)")
    write_jsonl(stage_dir / "qa.jsonl", questions)
    write_jsonl(stage_dir / "rejected.jsonl", rejections)
    # compact the journal to this run's clips, in manifest order, so it is the same after a resumed run
    write_jsonl(stage_dir / JOURNAL, [entries[p] for p in sorted(entries)])
    wall_s = time.perf_counter() - start
    stats = {**summarise(clips, questions, rejections), "num_manifest_lines_invalid": len(bad_lines),
             "annotator": annotator.name, "settings": settings, "fingerprint": fingerprint,
             "num_seeds_in_pool": len(getattr(annotator, "pool", [])),
             "skills_in_pool": sorted({s["skill"] for s in getattr(annotator, "pool", []) if s.get("skill")}),
             "resumed": resumed, "num_questions_this_run": made_now, "wall_s": round(wall_s, 3),
             "num_failed_requests": len(failures),
             "questions_per_s": round(made_now / wall_s, 3) if wall_s > 0 else 0.0,
             "clips_per_s": round(len(todo) / wall_s, 3) if wall_s > 0 else 0.0}
    write_json(stage_dir / "stats.json", stats)
    if failures:
        print(f"stage 2: {len(failures)} clip(s) got no readable reply ({_failure_summary_of(failures)}); rerun with "
              "retry_failed=True (--retry-failed, RETRY_FAILED=True) to ask those again", file=sys.stderr)
    return stats


def _request_failed(outcome: Annotation) -> bool:
    """Did the annotator's request for this clip fail (backend down, exception, unreadable reply)?"""
    return outcome.failed or (outcome.transient and any(r["reason"] in REQUEST_FAILURES for r in outcome.rejections))


def _failure_summary_of(failures: Sequence[dict]) -> str:
    counts = collections.Counter(r["reason"] for r in failures)
    return ", ".join(f"{reason} {n}" for reason, n in counts.most_common()) + f"; e.g. {failures[0]['detail'][:160]}"


def _failure_summary(outcomes: Sequence[Annotation]) -> str:
    return _failure_summary_of([r for o in outcomes for r in o.rejections if r["reason"] in REQUEST_FAILURES])


def _keep(outcome: Annotation, position: int, clip: dict, fingerprint: str, entries: dict, transient: dict,
          journal: JsonlJournal) -> int:
    """Journal a deterministic outcome (or hold a transient one for this run's report); questions made."""
    if outcome.transient:
        transient[position] = outcome.rejections
        return 0
    entry = {"fingerprint": fingerprint, "clip_id": clip["clip_id"], "clip_hash": stable_id(clip),
             "questions": outcome.questions, "rejections": outcome.rejections}
    if outcome.failed:
        entry["failed"] = True  # not an answer: asked again with retry_failed
    journal.append(entry)
    entries[position] = entry
    return len(outcome.questions)


# ------------------------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Options of `python -m cogito_lib.pipe annotate`; returns option -> profile key for those that override one."""
    parser.add_argument("--annotator", help='"metadata" or a checkpoint id / API model name (models.annotator)')
    parser.add_argument("--backend", help="hf, vllm or openai, for an LLM annotator (models.annotator_backend)")
    parser.add_argument("--num-seed-questions", type=int,
                        help="seeds sampled into the pool (annotate.num_seed_questions)")
    parser.add_argument("--min-questions", type=int, help="fewest questions per clip (annotate.min_questions_per_clip)")
    parser.add_argument("--max-questions", type=int, help="most questions per clip (annotate.max_questions_per_clip)")
    parser.add_argument("--seed-pool", help="seed question pool JSONL (annotate.seed_pool)")
    parser.add_argument("--tiers", default=",".join(DEFAULT_TIERS),
                        help="comma-separated question tiers to ask: composite, atomic (default composite)")
    parser.add_argument("--fallback", default="skip", choices=FALLBACKS,
                        help="a clip no requested skill fits: skip it (counted) or ask atomic questions (flagged)")
    parser.add_argument("--seed", type=int, help="annotator seed (default collect.seed)")
    parser.add_argument("--retry-failed", action="store_true",
                        help="ask again the clips whose model reply could not be read (journalled failures)")
    return {"annotator": "models.annotator", "backend": "models.annotator_backend",
            "num_seed_questions": "annotate.num_seed_questions", "min_questions": "annotate.min_questions_per_clip",
            "max_questions": "annotate.max_questions_per_clip", "seed_pool": "annotate.seed_pool"}


def parse_tiers(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in str(text).split(",") if t.strip())


def run_cli(profile: Profile, args: argparse.Namespace) -> dict:
    try:
        return annotate(profile, resolve_run_dir(profile, args.run_dir), tiers=parse_tiers(args.tiers),
                        fallback=args.fallback, seed=args.seed, progress=not args.no_progress,
                        retry_failed=args.retry_failed)
    except FileNotFoundError as err:
        raise ConfigError(str(err)) from None


# ------------------------------------------------------------------------------------------------- notebook views
def plot_questions_by_skill(questions: Sequence[dict], save_as: str | Path | None = None):
    """Horizontal bars: questions per skill, coloured by tier (LLM-written questions show as "(llm)")."""
    import seaborn as sns
    from matplotlib.figure import Figure

    from cogito_lib.plots import use_theme

    use_theme()
    counts = collections.Counter((q["skill"] or "(llm)", q["tier"]) for q in questions)
    rows = sorted(counts.items(), key=lambda kv: (kv[0][1], -kv[1], kv[0][0]))
    figure = Figure(figsize=(7, 0.35 * max(len(rows), 3) + 1.2), layout="constrained")
    ax = figure.add_subplot()
    if rows:
        sns.barplot(y=[k[0] for k, _ in rows], x=[v for _, v in rows], hue=[k[1] for k, _ in rows],
                    hue_order=[t for t in skills.TIERS if any(k[1] == t for k, _ in rows)],
                    palette="colorblind", dodge=False, orient="h", ax=ax)
        for container in ax.containers:
            ax.bar_label(container, fmt="%d", padding=2, fontsize="small")
    ax.set(xlabel="questions", ylabel="skill", title=f"Questions by skill (n={len(questions)})")
    return _save(figure, save_as)


def plot_category_by_modality(questions: Sequence[dict], save_as: str | Path | None = None):
    """Heatmap: questions per MMAR category (layer) x modality class, every layer and class shown."""
    import pandas as pd
    import seaborn as sns
    from matplotlib.figure import Figure

    from cogito_lib.plots import modality_order, use_theme

    use_theme()
    counts = collections.Counter((q["category"], q["modality"]) for q in questions)
    modalities = modality_order(q["modality"] for q in questions)
    table = pd.DataFrame([[counts.get((c, m), 0) for m in modalities] for c in CATEGORIES],
                         index=list(CATEGORIES), columns=modalities)
    figure = Figure(figsize=(8.5, 3.6), layout="constrained")
    ax = figure.add_subplot()
    sns.heatmap(table, annot=True, fmt="d", cmap="Blues", cbar=False, linewidths=0.5, ax=ax)
    ax.set(xlabel="modality", ylabel="MMAR category", title="Questions by MMAR category x modality")
    ax.tick_params(axis="x", labelrotation=30)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    return _save(figure, save_as)


def _save(figure, save_as):
    from cogito_lib.plots import _finish

    return _finish(figure, save_as, dpi=120)


def rejections_table(rejections: Sequence[dict]):
    """Rejections per reason, with what the reason means and one example detail (a pandas DataFrame)."""
    import pandas as pd

    counts = collections.Counter(r["reason"] for r in rejections)
    example = {}
    for r in rejections:
        example.setdefault(r["reason"], r.get("detail", ""))
    return pd.DataFrame([{"reason": reason, "count": n, "meaning": REASONS.get(reason, ""),
                          "example": example[reason]} for reason, n in counts.most_common()],
                        columns=["reason", "count", "meaning", "example"])
