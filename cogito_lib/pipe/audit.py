"""Cogito-pipe stage 4: quality verification. The *auditor* keeps a thinker sample only if
(1) its answer matches the label by MMAR's official matching rule (QA consistency), (2) its reasoning is within
length limits, (3) a judge finds no hallucination or broken logic, and (4) it is not a repeat of a kept trace.

Judges (`cogito_lib.judges`): the miniature's `MetadataTraceJudge` (checks the listing, every gold step, extra steps and
the conclusion against the clip's ground truth) when `models.judge` is "metadata"; otherwise the paper's LLM judge
(`cogito_lib.judges.LLMTraceJudge`: Qwen3-Omni-Instruct or any OpenAI-compatible model, rubric prompt,
validated JSON verdict).

Reads `RUN_DIR/02-data-collection/manifest.jsonl`, `03-qa-construction/qa.jsonl`, `04-cot-generation/cot.jsonl`.
Writes `RUN_DIR/05-quality-verification/`:
    train.jsonl       survivors (id, question_id, clip_id, audio_path, question, choices, answer, modality, category,
                      sub-category, tier, skill, thinking, answer_prediction, sample_index), in cot.jsonl order
    rejected.jsonl    every other sample with `reason` (one of REASONS), `detail` and the judge's reasons
    verdicts.jsonl    the judge's verdict on every sample it saw (a cache: a rerun asks the judge nothing twice)
    stats.json        funnel, rejections by reason, kept rate by layer/modality/tier/skill, coverage, throughput
    figures/          funnel.png, kept_rate.png, rejections.png
    exports/          ms-swift/audio_cogito.jsonl; llamafactory/audio_cogito.json + dataset_info.json

Resumable: judge verdicts are journalled per sample (`verdicts.partial.jsonl`, flushed per batch) with a hash of
what the judge saw, so a run killed with `kill -9` asks only for the missing ones and ends with the same files.
A judge failure (no valid verdict) is stored as a failure, never as a verdict: `retry_failed=True`
(`--retry-failed`) asks the judge about those samples again. Bad input never stops the stage: unreadable lines,
unknown questions, missing or corrupt audio (cut short, or changed since stage 1 wrote it: its content hash),
questions without metadata and malformed thinker output are rejected with their reason and counted.
"""
from __future__ import annotations

import argparse
import html
import json
import re
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..config import ConfigError, Profile, resolve_run_dir
from ..io import JsonlJournal, clip_problem, read_jsonl, stable_id, write_json, write_jsonl
from ..mmar import is_correct
from ..judges import JudgeOutputError, make_judge as _make_judge
from ..layout import AUDIT, FILES, MissingInput, StageFailed, require, writes_stage

STAGE = AUDIT
MANIFEST = FILES["manifest"].relative
QA = FILES["qa"].relative
JOURNAL = "verdicts.partial.jsonl"
VERDICTS = "verdicts.jsonl"

# Fixed vocabulary of rejection reasons, in the order the checks run.
REASONS = ("unknown_question", "missing_audio", "parse_failed", "answer_mismatch", "too_short", "too_long",
           "judge_rejected", "judge_output_invalid", "duplicate")
REASON_TEXT = {
    "unknown_question": "the sample's question is not in qa.jsonl, or has no text, answer or choices",
    "missing_audio": "the question's clip is missing, empty or cannot be decoded",
    "parse_failed": "the thinker's output has no closed <think> block or no answer (or the line is not JSON)",
    "answer_mismatch": "QA consistency: the answer does not match the label by MMAR's official rule",
    "too_short": "the reasoning is shorter than min_thinking_chars",
    "too_long": "the reasoning is longer than max_thinking_chars",
    "judge_rejected": "the judge found a hallucinated claim or broken logic",
    "judge_output_invalid": "the judge gave no valid verdict (malformed reply, or nothing to check against)",
    "duplicate": "the same reasoning (case and spacing aside) was already kept for this question",
}
FUNNEL = ("samples", "parsed", "answer-consistent", "length ok", "judge-approved", "kept")
# which reasons remove a sample before each funnel step
FUNNEL_REMOVES = {"parsed": ("unknown_question", "missing_audio", "parse_failed"),
                  "answer-consistent": ("answer_mismatch",), "length ok": ("too_short", "too_long"),
                  "judge-approved": ("judge_rejected", "judge_output_invalid"), "kept": ("duplicate",)}
TRAIN_FIELDS = ("id", "question_id", "clip_id", "audio_path", "question", "choices", "answer", "modality",
                "category", "sub-category", "tier", "skill", "thinking", "answer_prediction", "sample_index",
                "guided")  # guided: a plan-guided sample (04's think.plan_samples), not a plain one
QUESTION_FIELDS = ("question", "choices", "answer", "modality", "category", "sub-category", "tier", "skill")
GROUPS = {"category": "by_layer", "modality": "by_modality", "tier": "by_tier", "skill": "by_skill"}
DEFAULT_MAX_THINKING_CHARS = 4000
DEFAULT_MIN_THINKING_CHARS = 10
DEFAULT_JUDGE_BATCH = 64


def check_inputs(run_dir: str | Path) -> dict[str, Path]:
    """The three inputs of the stage; MissingInput naming the first one absent and what makes it."""
    return {name: require(run_dir, name) for name in ("manifest", "qa", "cot")}


def read_lines(path: Path) -> tuple[list[tuple[int, Any]], list[tuple[int, str]]]:
    """(line number, parsed JSON) for each line, and (line number, error) for lines that are not JSON objects;
    never raises on content (a torn or corrupt line is reported, not fatal)."""
    good, bad = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            bad.append((number, f"not JSON ({err.msg})"))
            continue
        if not isinstance(value, dict):
            bad.append((number, f"not a JSON object ({type(value).__name__})"))
            continue
        good.append((number, value))
    return good, bad


def normalise_thinking(thinking: str) -> str:
    """What counts as the same reasoning: case-folded, whitespace collapsed."""
    return re.sub(r"\s+", " ", thinking).strip().casefold()


# --- the judge ----------------------------------------------------------------------------------------------------

def judge_name(judge: Any) -> str:
    return str(getattr(judge, "name", type(judge).__name__))


def make_judge(profile: Profile, run_dir: str | Path, **kwargs: Any) -> Any:
    """The profile's trace judge (`cogito_lib.judges.make_judge(profile, "trace")`), its LLM replies cached in
    this stage's folder."""
    return _make_judge(profile, "trace", run_dir=run_dir, cache_dir=Path(run_dir) / STAGE / "judge-cache", **kwargs)


def _verify_one(judge: Any, item: Mapping) -> Any:
    from ..models.backends import BackendError

    question = item["question"]
    missing = [field for field in getattr(judge, "requires", ()) if question.get(field) is None]
    if missing:
        return JudgeOutputError(f"the question has no {'/'.join(missing)}: the {judge_name(judge)} judge has "
                                "nothing to check the reasoning against")
    try:
        return judge.verify(question, item["thinking"], item["answer_prediction"], clip=item.get("clip"))
    except JudgeOutputError as err:
        return err
    except BackendError:
        raise  # transport failure: stop (the stage resumes), never reject samples for it
    except Exception as err:  # noqa: BLE001 - odd metadata must not crash the stage; the sample is not passed
        return JudgeOutputError(f"the judge failed on this sample ({type(err).__name__}: {err})")


def judge_batch(judge: Any, items: Sequence[Mapping]) -> list[Any]:
    """One Verdict or JudgeOutputError per item; a judge with `verify_batch` gets the whole batch at once."""
    if hasattr(judge, "verify_batch"):
        results = list(judge.verify_batch(items))
        if len(results) != len(items):
            problem = f"the judge returned {len(results)} verdicts for {len(items)} traces"
            return [JudgeOutputError(problem) for _ in items]
        return results
    return [_verify_one(judge, item) for item in items]


# --- audio --------------------------------------------------------------------------------------------------------

class AudioCheck:
    """Is a clip usable? Checked once per path: present, not cut short (a WAV's header against its length), still
    the clip stage 1 wrote (the content hash in its manifest), decodable with samples. `kinds` counts the problems
    found by kind (`cogito_lib.io.AUDIO_PROBLEMS`)."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self._seen: dict[str, str | None] = {}
        self.kinds: Counter = Counter()

    def __call__(self, audio_path: str | None) -> str | None:
        """None when the clip is usable, else what is wrong with it."""
        if not audio_path:
            return "the question has no audio_path"
        if audio_path not in self._seen:
            import soundfile as sf

            path = Path(audio_path)
            path = path if path.is_absolute() else self.run_dir / path
            damaged = clip_problem(path)
            if damaged is not None:
                self.kinds[damaged[0]] += 1
                problem = f"{damaged[0]}: {damaged[1]}"
            else:
                try:
                    info = sf.info(str(path))
                    problem = None if info.frames > 0 else f"audio file is empty: {audio_path}"
                except Exception as err:  # noqa: BLE001 - any decoder error means the clip is unusable
                    problem = f"audio file unreadable: {audio_path} ({type(err).__name__}: {str(err)[:120]})"
                if problem is not None:
                    self.kinds["audio_unreadable"] += 1
            self._seen[audio_path] = problem
        return self._seen[audio_path]


# --- the stage ----------------------------------------------------------------------------------------------------

def _sample_view(raw: Mapping, number: int) -> dict:
    """The fields the auditor needs from one cot.jsonl line, tolerant of missing or odd values."""
    from ..models.generate import split_thinking

    thinking, answer_prediction = raw.get("thinking"), raw.get("answer_prediction")
    parse_failed = raw.get("parse_failed")
    parse_status = raw.get("parse_status")
    if (thinking is None or answer_prediction is None) and isinstance(raw.get("text"), str):
        split = split_thinking(raw["text"])  # an older or partial record: split the raw output here
        thinking, answer_prediction = split.thinking, split.answer_prediction
        parse_failed, parse_status = split.parse_failed, split.parse_status
    question_id = raw.get("question_id")
    sample_index = raw.get("sample_index")
    sample_id = raw.get("id") or (f"{question_id}-s{sample_index}" if question_id is not None else f"cot-line-{number}")
    return {"id": str(sample_id), "question_id": question_id, "clip_id": raw.get("clip_id"),
            "sample_index": sample_index, "thinking": thinking, "answer_prediction": answer_prediction,
            "parse_failed": parse_failed, "parse_status": parse_status, "line": number,
            "guided": bool(raw.get("guided"))}


def _cheap_checks(sample: dict, question: dict | None, audio_problem: str | None, *, min_chars: int,
                  max_chars: int) -> tuple[str, str] | None:
    """(reason, detail) of the first check the sample fails before the judge, or None."""
    if question is None:
        return "unknown_question", f"question_id {sample['question_id']!r} is not in {QA.as_posix()}"
    if not question.get("answer") or not isinstance(question.get("choices"), list) or not question.get("question"):
        return "unknown_question", "the question has no text, answer or choices"
    if audio_problem:
        return "missing_audio", audio_problem
    thinking, prediction = sample["thinking"], sample["answer_prediction"]
    if sample["parse_failed"] is True:
        return "parse_failed", f"thinker output did not parse ({sample.get('parse_status') or 'parse_failed'})"
    if not isinstance(thinking, str) or not isinstance(prediction, str):
        return "parse_failed", "the sample has no thinking/answer_prediction text"
    if not prediction.strip():
        return "parse_failed", "empty answer_prediction"
    if not is_correct(prediction, question["answer"], question["choices"]):
        return "answer_mismatch", f"answered {prediction.strip()[:80]!r}, the label is {question['answer']!r}"
    length = len(thinking.strip())
    if length < min_chars:
        return "too_short", f"thinking has {length} characters (< {min_chars})"
    if length > max_chars:
        return "too_long", f"thinking has {length} characters (> {max_chars})"
    return None


def _verdict_key(sample: dict, question: dict, clip: dict | None) -> str:
    """A hash of everything the judge sees, so a stored verdict is reused only for the same input."""
    return stable_id(question.get("id"), question.get("question"), question.get("choices"), question.get("answer"),
                     question.get("listing"), question.get("steps"), question.get("audio_path"),
                     sample["thinking"], sample["answer_prediction"],
                     stable_id(clip, length=16) if clip is not None else None, length=16)


def _previous_verdicts(stage_dir: Path, fingerprint: str, *, retry_failed: bool = False) -> dict[tuple[str, str], dict]:
    """Stored verdicts of this judge by (sample id, input key); with `retry_failed`, none of the judge's failures
    (no valid verdict), so that those are asked again."""
    done: dict[tuple[str, str], dict] = {}
    for path in (stage_dir / VERDICTS, stage_dir / JOURNAL):
        for entry in read_jsonl(path):
            if entry.get("judge") == fingerprint:
                for verdict in entry.get("verdicts", [entry]):
                    if "id" in verdict and "key" in verdict and not (retry_failed and verdict.get("invalid")):
                        done[(verdict["id"], verdict["key"])] = verdict
    return done


def _group_stats(rows: list[dict]) -> dict:
    """samples, kept, keep_rate and rejections by reason for each value of each grouping field."""
    out: dict[str, Any] = {}
    for field, name in GROUPS.items():
        table: dict[str, dict] = {}
        for row in rows:
            value = row.get(field)
            if value is None:
                continue
            entry = table.setdefault(str(value), {"samples": 0, "kept": 0, "rejected_by_reason": Counter()})
            entry["samples"] += 1
            if row["reason"] is None:
                entry["kept"] += 1
            else:
                entry["rejected_by_reason"][row["reason"]] += 1
        out[name] = {k: {"samples": v["samples"], "kept": v["kept"],
                         "keep_rate": round(v["kept"] / v["samples"], 4) if v["samples"] else None,
                         "rejected_by_reason": dict(sorted(v["rejected_by_reason"].items()))}
                     for k, v in sorted(table.items())}
    grid: dict[str, dict[str, dict]] = defaultdict(dict)
    for row in rows:
        if row.get("category") is None or row.get("modality") is None:
            continue
        cell = grid[str(row["category"])].setdefault(str(row["modality"]), {"samples": 0, "kept": 0})
        cell["samples"] += 1
        cell["kept"] += row["reason"] is None
    out["by_layer_modality"] = {layer: {m: {**c, "keep_rate": round(c["kept"] / c["samples"], 4)}
                                        for m, c in sorted(cells.items())} for layer, cells in sorted(grid.items())}
    return out


@writes_stage(STAGE)
def audit(profile: Profile, run_dir: str | Path, *, progress: bool = True,
          max_thinking_chars: int = DEFAULT_MAX_THINKING_CHARS, min_thinking_chars: int = DEFAULT_MIN_THINKING_CHARS,
          judge: Any = None, judge_batch_size: int = DEFAULT_JUDGE_BATCH, export: bool = True,
          figures: bool = True, retry_failed: bool = False) -> dict:
    """Stage 4: keep the samples of 04 that are answer-consistent, within length limits, judge-approved and not
    repeated; write train.jsonl, rejected.jsonl, verdicts.jsonl, stats.json, figures and exports. Returns stats.

    `judge` overrides the profile's judge (any object with `verify(question, thinking, answer_prediction, clip)`
    returning a `Verdict`, optionally `verify_batch`). Raises MissingInput when an input file is absent or
    cot.jsonl holds no sample. A judge failure (no valid verdict) is stored as a failure and asked again only with
    `retry_failed`; when the judge gives no valid verdict on any sample, StageFailed says so and nothing is
    published."""
    if min_thinking_chars < 0 or max_thinking_chars < min_thinking_chars:
        raise ConfigError(f"thinking length limits must satisfy 0 <= min ({min_thinking_chars}) <= max "
                          f"({max_thinking_chars})")
    started = time.perf_counter()
    run_dir = Path(run_dir)
    inputs = check_inputs(run_dir)
    stage_dir = run_dir / STAGE
    stage_dir.mkdir(parents=True, exist_ok=True)
    for stale in stage_dir.rglob(".*.tmp"):  # temp files of a writer killed mid-rename
        stale.unlink(missing_ok=True)
    from tqdm.auto import tqdm

    manifest_lines, manifest_bad = read_lines(inputs["manifest"])
    clips = {c["clip_id"]: c for _, c in manifest_lines if "clip_id" in c}
    qa_lines, qa_bad = read_lines(inputs["qa"])
    questions = {q["id"]: q for _, q in qa_lines if "id" in q}
    cot_lines, cot_bad = read_lines(inputs["cot"])
    if not cot_lines and not cot_bad:
        raise MissingInput(f"{inputs['cot']} holds no samples: run notebook 04 (or `python -m cogito_lib.pipe "
                           "think --force`) again")

    judge = judge if judge is not None else make_judge(profile, run_dir)
    fingerprint = judge_name(judge)

    # 1. cheap checks, in cot.jsonl order; unreadable lines are rejected as malformed thinker output
    rows: list[dict] = []
    seen_ids: set[str] = set()
    audio_check = AudioCheck(run_dir)
    entries = sorted([(n, raw) for n, raw in cot_lines] + [(n, None) for n, _ in cot_bad], key=lambda e: e[0])
    bad_detail = dict(cot_bad)
    for number, raw in tqdm(entries, desc="audit: checks", unit="sample", disable=not progress, file=sys.stderr):
        if raw is None:
            rows.append({"id": f"cot-line-{number}", "question_id": None, "clip_id": None, "sample_index": None,
                         "thinking": None, "answer_prediction": None, "line": number, "question": None, "guided": False,
                         "reason": "parse_failed", "detail": f"cot.jsonl line {number}: {bad_detail[number]}"})
            continue
        sample = _sample_view(raw, number)
        question = questions.get(sample["question_id"]) if isinstance(sample["question_id"], str) else None
        row = {**sample, "question": question, "reason": None, "detail": ""}
        if sample["id"] in seen_ids:
            row.update(reason="duplicate", detail=f"sample id {sample['id']} appears twice in cot.jsonl")
            rows.append(row)
            continue
        seen_ids.add(sample["id"])
        audio_problem = None
        if question is not None:
            audio_path = question.get("audio_path")
            if not audio_path and question.get("clip_id") in clips:
                audio_path = (MANIFEST.parent / clips[question["clip_id"]]["audio_path"]).as_posix()
            audio_problem = audio_check(audio_path)
        failed = _cheap_checks(sample, question, audio_problem, min_chars=min_thinking_chars,
                               max_chars=max_thinking_chars)
        if failed:
            row["reason"], row["detail"] = failed
        rows.append(row)

    # 2. the judge, on what survived; verdicts reused from a previous (possibly killed) run
    candidates = [r for r in rows if r["reason"] is None]
    for row in candidates:
        row["clip"] = clips.get(row["question"].get("clip_id") or row["clip_id"])
        row["key"] = _verdict_key(row, row["question"], row["clip"])
    previous = _previous_verdicts(stage_dir, fingerprint, retry_failed=retry_failed)
    verdicts: dict[str, dict] = {}
    by_key: dict[str, dict] = {}
    todo = []
    for row in candidates:
        stored = previous.get((row["id"], row["key"]))
        if stored is not None:
            verdicts[row["id"]] = stored
            by_key.setdefault(row["key"], stored)
        else:
            todo.append(row)
    resumed = len(verdicts)
    judged_now = 0
    judge_started = time.perf_counter()
    with JsonlJournal(stage_dir / JOURNAL) as journal, \
            tqdm(total=len(candidates), initial=resumed, desc="audit: judge", unit="trace", disable=not progress,
                 file=sys.stderr) as bar:
        for start in range(0, len(todo), max(1, judge_batch_size)):
            batch = todo[start:start + max(1, judge_batch_size)]
            fresh_unique, asked = [], set()
            for r in batch:  # identical judge input (e.g. a repeated trace): one judgement
                if r["key"] not in by_key and r["key"] not in asked:
                    asked.add(r["key"])
                    fresh_unique.append(r)
            items = [{"id": r["id"], "question": r["question"], "thinking": r["thinking"],
                      "answer_prediction": r["answer_prediction"], "clip": r["clip"]} for r in fresh_unique]
            for r, result in zip(fresh_unique, judge_batch(judge, items)):
                if isinstance(result, JudgeOutputError):
                    by_key[r["key"]] = {"ok": False, "invalid": str(result)[:500], "reasons": []}
                else:
                    by_key[r["key"]] = {"ok": bool(result.ok), "invalid": None, "reasons": list(result.reasons)}
            judged_now += len(fresh_unique)
            entry = []
            for r in batch:
                verdict = {"id": r["id"], "key": r["key"], **{k: by_key[r["key"]][k]
                                                               for k in ("ok", "invalid", "reasons")}}
                verdicts[r["id"]] = verdict
                entry.append(verdict)
            journal.append({"judge": fingerprint, "verdicts": entry})
            bar.update(len(batch))
    judge_s = time.perf_counter() - judge_started
    failed = [r for r in candidates if verdicts[r["id"]].get("invalid")]
    if candidates and len(failed) == len(candidates):
        raise StageFailed(f"stage 4 failed: the judge ({fingerprint}) gave no valid verdict on any of the "
                          f"{len(candidates)} samples it was asked about "
                          f"(e.g. {verdicts[failed[0]['id']]['invalid'][:160]}); nothing was published: fix the judge "
                          f"and rerun with retry_failed=True (--retry-failed, RETRY_FAILED=True)")

    # 3. judge outcome, then deduplication among the approved (first in cot order kept)
    first_of: dict[tuple[str, str], str] = {}
    for row in candidates:
        verdict = verdicts[row["id"]]
        row["judge_reasons"] = list(verdict.get("reasons") or [])
        if verdict.get("invalid"):
            row["reason"], row["detail"] = "judge_output_invalid", verdict["invalid"]
        elif not verdict.get("ok"):
            row["reason"], row["detail"] = "judge_rejected", "; ".join(row["judge_reasons"]) or "rejected"
        else:
            key = (row["question_id"], normalise_thinking(row["thinking"]))
            if key in first_of:
                row["reason"], row["detail"] = "duplicate", f"same reasoning as {first_of[key]}"
            else:
                first_of[key] = row["id"]

    # 4. outputs, in cot.jsonl order, written atomically
    kept, rejected = [], []
    for row in rows:
        question = row.get("question") or {}
        for field in QUESTION_FIELDS:
            row[field] = question.get(field)
        row["audio_path"] = question.get("audio_path")
        row["clip_id"] = row.get("clip_id") or question.get("clip_id")
        if row["reason"] is None:
            kept.append({field: row[field] for field in TRAIN_FIELDS})
        else:
            rejected.append({**{field: row.get(field) for field in TRAIN_FIELDS}, "reason": row["reason"],
                             "detail": row["detail"], "judge_reasons": row.get("judge_reasons", [])})
    write_jsonl(stage_dir / "train.jsonl", kept)
    write_jsonl(stage_dir / "rejected.jsonl", rejected)
    write_jsonl(stage_dir / VERDICTS, [{"judge": fingerprint, **verdicts[r["id"]]} for r in candidates])
    (stage_dir / JOURNAL).unlink(missing_ok=True)
    exports = {}
    if export:
        from ..exports import export_all

        exports = export_all(kept, run_dir, stage_dir / "exports")

    reasons = Counter(r["reason"] for r in rows if r["reason"] is not None)
    funnel, remaining = {}, len(rows)
    for step in FUNNEL:
        remaining -= sum(reasons[reason] for reason in FUNNEL_REMOVES.get(step, ()))
        funnel[step] = remaining
    sampled = {r["question_id"] for r in rows if r.get("question") is not None}
    covered = {r["question_id"] for r in kept}
    covered_by_tier = Counter(questions[q].get("tier") for q in covered)
    sampled_by_tier = Counter(questions[q].get("tier") for q in sampled)
    wall_s = time.perf_counter() - started
    stats = {
        "judge": fingerprint,
        "limits": {"min_thinking_chars": min_thinking_chars, "max_thinking_chars": max_thinking_chars},
        "samples": len(rows), "kept": len(kept), "rejected": len(rejected),
        "guided_samples": sum(r["guided"] for r in rows), "kept_guided": sum(r["guided"] for r in kept),
        "keep_rate": round(len(kept) / len(rows), 4) if rows else None,
        "rejected_by_reason": {reason: reasons.get(reason, 0) for reason in REASONS},
        "funnel": funnel,
        **_group_stats(rows),
        "questions": len(questions), "questions_sampled": len(sampled), "questions_covered": len(covered),
        "question_coverage": round(len(covered) / len(sampled), 4) if sampled else None,
        "questions_covered_by_tier": {t: {"sampled": n, "covered": covered_by_tier.get(t, 0)}
                                      for t, n in sorted(sampled_by_tier.items(), key=lambda kv: str(kv[0]))},
        "unreadable_lines": {"manifest": len(manifest_bad), "qa": len(qa_bad), "cot": len(cot_bad)},
        "audio_problems": dict(sorted(audio_check.kinds.items())), "judge_failures": len(failed),
        "judged": len(candidates), "judged_this_run": judged_now, "resumed_verdicts": resumed,
        "wall_s": round(wall_s, 3), "samples_per_s": round(len(rows) / wall_s, 2) if wall_s > 0 else None,
        "judge_traces_per_s": round(judged_now / judge_s, 2) if judged_now and judge_s > 0 else None,
        "exports": {k: Path(v).relative_to(stage_dir).as_posix() for k, v in exports.items()},
    }
    write_json(stage_dir / "stats.json", stats)
    if figures and rows:
        plot_funnel(stats, save_as=stage_dir / "figures" / "funnel.png")
        plot_kept_rate(stats, save_as=stage_dir / "figures" / "kept_rate.png")
        plot_rejections(stats, save_as=stage_dir / "figures" / "rejections.png")
    return stats


# --- looking at the result ----------------------------------------------------------------------------------------

def example_pairs(run_dir: str | Path, n: int = 3) -> list[dict]:
    """Up to n (kept, rejected) trace pairs, preferring two samples of the same question and judge rejections;
    either side may be None when the stage kept or rejected nothing."""
    stage_dir = Path(run_dir) / STAGE
    kept = read_jsonl(stage_dir / "train.jsonl")
    rejected = [r for r in read_jsonl(stage_dir / "rejected.jsonl") if r.get("question")]
    priority = {"judge_rejected": 0, "answer_mismatch": 1, "judge_output_invalid": 2}
    rejected.sort(key=lambda r: priority.get(r["reason"], 3))
    pairs, used = [], set()
    for k in kept:
        match = next((r for r in rejected if r["question_id"] == k["question_id"] and r["id"] not in used), None)
        if match is not None:
            used.add(match["id"])
            pairs.append((k, match))
    pairs.sort(key=lambda p: priority.get(p[1]["reason"], 3))
    paired = {k["id"] for k, _ in pairs}
    rest_kept = [k for k in kept if k["id"] not in paired]
    rest_rejected = [r for r in rejected if r["id"] not in used]
    while len(pairs) < n and (rest_kept or rest_rejected):
        pairs.append((rest_kept.pop(0) if rest_kept else None, rest_rejected.pop(0) if rest_rejected else None))
    return [{"kept": k, "rejected": r} for k, r in pairs[:n]]


def examples_html(pairs: Iterable[Mapping]) -> str:
    """The pairs as an HTML table: question, then the kept and the rejected trace side by side, with the reasons."""
    esc = html.escape

    def cell(record: Mapping | None, kept: bool) -> str:
        if record is None:
            return "<td><i>none</i></td>"
        verdict = ("<b style='color:#1b7f3b'>kept</b>" if kept else
                   f"<b style='color:#b00020'>{esc(record['reason'])}</b>: {esc(record['detail'])}")
        head = (f"<b>{esc(str(record['question']))}</b><br>choices: "
                f"{esc(' | '.join(record.get('choices') or []))} · label: <b>{esc(str(record['answer']))}</b>")
        body = esc(f"<think>\n{record.get('thinking') or ''}\n</think>\n{record.get('answer_prediction') or ''}")
        return (f"<td style='vertical-align:top;text-align:left'>{head}"
                f"<pre style='white-space:pre-wrap'>{body}</pre>{verdict}</td>")
    rows = "".join(f"<tr>{cell(p['kept'], True)}{cell(p['rejected'], False)}</tr>" for p in pairs)
    return (f"<table><tr><th style='text-align:left'>kept</th><th style='text-align:left'>rejected</th></tr>"
            f"{rows or '<tr><td colspan=2><i>no samples</i></td></tr>'}</table>")


# --- plots (seaborn; each returns a Figure and saves a PNG when save_as is given) ---------------------------------

def _figure(figsize: tuple[float, float], ncols: int = 1):
    from matplotlib.figure import Figure

    from ..plots import use_theme

    use_theme()
    figure = Figure(figsize=figsize, layout="constrained")
    axes = figure.subplots(1, ncols)
    return figure, axes


def _save(figure, save_as):
    from ..plots import _finish

    return _finish(figure, save_as)


def plot_funnel(stats: Mapping, save_as: str | Path | None = None):
    """The auditor's funnel: samples -> parsed -> answer-consistent -> length ok -> judge-approved -> kept."""
    import seaborn as sns

    funnel = stats["funnel"]  # stats.json stores keys sorted: the order is FUNNEL's
    steps = [s for s in FUNNEL if s in funnel] + [s for s in funnel if s not in FUNNEL]
    counts = [funnel[s] for s in steps]
    total = counts[0] or 1
    figure, ax = _figure((7.5, 3.6))
    sns.barplot(x=counts, y=steps, order=steps, hue=steps, palette="crest", legend=False, ax=ax)
    for container, count in zip(ax.containers, counts):
        ax.bar_label(container, labels=[f"{count}  ({100 * count / total:.0f}%)"], padding=3, fontsize="small")
    ax.set(xlabel="samples", ylabel="", title=f"Auditor funnel (judge: {stats.get('judge', '?')})")
    ax.set_xlim(0, max(counts + [1]) * 1.25)
    return _save(figure, save_as)


def plot_rejections(stats: Mapping, save_as: str | Path | None = None):
    """Rejected samples by reason (every reason of the fixed vocabulary, zeros included)."""
    import seaborn as sns

    from ..plots import BAR_COLOR

    reasons = [r for r in REASONS if r in stats["rejected_by_reason"]]
    counts = [stats["rejected_by_reason"][r] for r in reasons]
    figure, ax = _figure((7.5, 3.6))
    sns.barplot(x=counts, y=reasons, order=reasons, color=BAR_COLOR, ax=ax)
    for container in ax.containers:
        ax.bar_label(container, fmt="%d", padding=3, fontsize="small")
    ax.set(xlabel="samples", ylabel="", title=f"Rejections by reason (n={stats['rejected']})")
    ax.set_xlim(0, max(counts + [1]) * 1.15)
    return _save(figure, save_as)


def plot_kept_rate(stats: Mapping, save_as: str | Path | None = None):
    """Kept rate by skill (coloured by tier) beside a layer x modality heatmap of kept rates."""
    import numpy as np
    import pandas as pd
    import seaborn as sns

    from ..plots import modality_order
    from ..world.skills import SKILLS

    figure, (left, right) = _figure((13, 4.8), ncols=2)
    by_skill = stats.get("by_skill") or {}
    table = pd.DataFrame([{"skill": s, "keep_rate": v["keep_rate"] or 0.0, "samples": v["samples"],
                           "tier": SKILLS[s].tier if s in SKILLS else "other"} for s, v in by_skill.items()],
                         columns=["skill", "keep_rate", "samples", "tier"])
    if len(table):
        table = table.sort_values(["tier", "keep_rate", "skill"], ascending=[True, False, True])
        sns.barplot(data=table, x="keep_rate", y="skill", hue="tier", dodge=False, palette="colorblind", ax=left)
        left.set_yticks(range(len(table)), [f"{s} (n={n})" for s, n in zip(table["skill"], table["samples"])])
    left.set(xlabel="kept / samples", ylabel="", title="Kept rate by skill", xlim=(0, 1))
    grid = stats.get("by_layer_modality") or {}
    from ..mmar import CATEGORIES

    layers = [c for c in CATEGORIES if c in grid] + sorted(c for c in grid if c not in CATEGORIES)
    modalities = modality_order({m for cells in grid.values() for m in cells})
    modalities = [m for m in modalities if any(m in grid[layer] for layer in layers)]
    if layers and modalities:
        rates = pd.DataFrame([[grid[layer].get(m, {}).get("keep_rate", np.nan) for m in modalities]
                              for layer in layers], index=[layer.replace(" Layer", "") for layer in layers],
                             columns=modalities)
        labels = pd.DataFrame([[(f"{grid[layer][m]['keep_rate']:.2f}\nn={grid[layer][m]['samples']}"
                                 if m in grid[layer] else "") for m in modalities] for layer in layers])
        sns.heatmap(rates, annot=labels.values, fmt="", vmin=0, vmax=1, cmap="crest", ax=right,
                    cbar_kws={"label": "kept rate"}, annot_kws={"fontsize": "x-small"})
        right.grid(False)
        right.tick_params(axis="y", labelrotation=0)
        right.tick_params(axis="x", labelrotation=30)
        for label in right.get_xticklabels():
            label.set_horizontalalignment("right")
    right.set(xlabel="modality", ylabel="layer", title="Kept rate by layer x modality")
    return _save(figure, save_as)


# --- command line -------------------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> dict[str, str]:
    parser.add_argument("--max-thinking-chars", type=int, default=DEFAULT_MAX_THINKING_CHARS,
                        help=f"reject longer reasoning (default {DEFAULT_MAX_THINKING_CHARS})")
    parser.add_argument("--min-thinking-chars", type=int, default=DEFAULT_MIN_THINKING_CHARS,
                        help=f"reject shorter reasoning (default {DEFAULT_MIN_THINKING_CHARS})")
    parser.add_argument("--judge-batch-size", type=int, default=DEFAULT_JUDGE_BATCH,
                        help=f"traces per judge call / journal flush (default {DEFAULT_JUDGE_BATCH})")
    parser.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    parser.add_argument("--retry-failed", action="store_true",
                        help="ask the judge again about the samples it gave no valid verdict on")
    return {}  # the judge is a profile value: --set models.judge=... --set models.backend=...


def run_cli(profile: Profile, args: argparse.Namespace) -> dict:
    from ..models.backends import BackendError

    try:
        return audit(profile, resolve_run_dir(profile, args.run_dir), progress=not args.no_progress,
                     max_thinking_chars=args.max_thinking_chars, min_thinking_chars=args.min_thinking_chars,
                     judge_batch_size=args.judge_batch_size, figures=not args.no_figures,
                     retry_failed=args.retry_failed)
    except MissingInput as err:
        raise ConfigError(str(err)) from None
    except BackendError as err:  # the judge's backend: missing, unreachable; journalled verdicts are kept
        raise ConfigError(f"judge backend failed: {err} (verdicts so far are journalled; rerun to resume)") from None
