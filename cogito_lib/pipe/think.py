"""Cogito-pipe stage 3: CoT generation. The *thinker* - the base model itself - answers every question of stage 2
with K sampled `<think>...</think>` traces, **without seeing the answer** (its prompt is the MMAR question and
choices only; the label and the judge's reference never reach it).

Reads `RUN_DIR/03-qa-construction/qa.jsonl` and the base model (notebook 01, or `models.base` at paper scale);
writes `RUN_DIR/04-cot-generation/cot.jsonl` (one line per sample), `skipped.jsonl` (questions that could not be
asked, with a reason) and `stats.json`. Questions are processed in fixed chunks whose sampling seed depends only
on the chunk, so a run killed with `kill -9` resumes and ends with the same files as an uninterrupted run; the
journal (`cot.partial.jsonl`) starts with the key of its inputs, so a journal of other questions, clips, thinker or
settings is discarded, never published. A question whose clip is missing, cut short or changed since stage 1 wrote
it (the content hash in the manifest) is skipped with that reason.
In a later round, a fine-tuned model can be the thinker (`thinker=` a model folder).

**Plan-guided samples** (`think.plan_samples` > 0; an extension beyond the paper, on in `mini`): for each of the
first `plan_samples` samples of a question, the thinker's own opening (its think tag and its `I hear:` listing) is
kept, and the annotator's *plan* - the names of the question's reasoning steps in order, never their values nor
the answer - is written in one step name at a time; the thinker writes each step's value and then its
conclusion and answer. This is STaR's rationalisation with a plan instead of the answer as the hint: it lets a
small base that never chains two of its skills on its own try the chain the question needs. The samples go
through the same audit; their prompt in training is the plain question, as for every other sample. They need a
listing line and the annotator's steps (the miniature's); a question without steps gets none.
"""
from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

from ..config import Profile, resolve_run_dir
from ..layout import COT, MissingInput, base_model_path, frontend_cache, require, writes_stage
from ..io import (AudioIntegrityError, JsonlJournal, clip_problem, read_json, read_jsonl, stable_id, write_json,
                  write_jsonl)
from ..mmar import is_correct
from ..world.skills import CONCLUSION_PREFIX, LISTING_PREFIX

STAGE = COT
CHUNK_QUESTIONS = 128  # questions per journalled chunk (the unit of resumption)
PLAN_STEP_TOKENS = 48  # most new tokens for one planned step's value (a step ends at its newline)


def thinker_prompt_fields(question: dict) -> tuple[str, list[str]]:
    """What the thinker is shown: the question and its choices, nothing else."""
    return question["question"], list(question["choices"])


def question_plan(question: dict) -> list[str]:
    """The annotator's plan for a question: the names of its reasoning steps, in order (never their values)."""
    return [str(step[0]) for step in question.get("steps") or ()]


def listing_head(text: str) -> str | None:
    """A sample's opening up to and including its listing line (`I hear: ...`), or None when it has none."""
    lines = text.split("\n")
    for i, line in enumerate(lines[:3]):
        if line.startswith(LISTING_PREFIX.strip()):
            return "\n".join(lines[:i + 1]) + "\n"
    return None


def plan_scripts(question: dict, text: str, *, max_new_tokens: int) -> tuple | None:
    """The script of one plan-guided sample grown from a plain sample `text` of `question` (None when the sample
    has no listing or the question no plan): the sample's opening, then each step's name for the thinker to fill
    in (one line, at most PLAN_STEP_TOKENS tokens), then the conclusion's prefix and the rest of the answer."""
    from ..models.decode import Segment

    plan = question_plan(question)
    head = listing_head(text) if plan else None
    if head is None:
        return None
    return ((Segment(head),) + tuple(Segment(f"{step}:", PLAN_STEP_TOKENS, stop="\n", close=True) for step in plan)
            + (Segment(CONCLUSION_PREFIX.rstrip(), max_new_tokens),))


def plan_guided(backend, questions: list[dict], results: list, waveforms: list, *, prompts: list[str],
                num: int, temperature: float, top_p: float, max_new_tokens: int, seed: int) -> list[list[dict]]:
    """Plan-guided samples for each question (see the module's doc): per question, a list of
    `{"source": i, "text": ..., "plan": [...]}` grown from its first `num` samples' listings. Each is one
    scripted request (`GenerationRequest.segments`)."""
    from ..models.backends import GenerationRequest, generate_scripts

    jobs, requests = [], []
    for n, (question, result) in enumerate(zip(questions, results)):
        for source, text in enumerate(result.texts[:num]):
            script = plan_scripts(question, text, max_new_tokens=max_new_tokens)
            if script is None:
                continue
            jobs.append({"question": n, "source": source, "plan": question_plan(question)})
            requests.append(GenerationRequest(
                request_id=f"{question['id']}/plan{source}", prompt=prompts[n], waveform=waveforms[n],
                temperature=temperature, top_p=top_p, num_samples=1, max_new_tokens=max_new_tokens, seed=seed,
                segments=script))
    guided: list[list[dict]] = [[] for _ in questions]
    for job, result in zip(jobs, generate_scripts(backend, requests) if requests else []):
        guided[job["question"]].append({"source": job["source"], "text": result.texts[0], "plan": job["plan"]})
    return guided


QUESTION_KEYS = ("id", "clip_id", "audio_path", "question", "choices", "answer")
AUDIO_REASONS = {"audio_missing": "missing_audio"}  # the stage's skip reason for an AUDIO_PROBLEMS kind, when renamed


def _load_questions(run_dir: Path) -> list[dict]:
    """The questions of stage 2; a line that is not a question (torn, not JSON, a field missing) is an error naming
    the file and line, and so is a file without questions."""
    path = require(run_dir, "qa")
    try:
        questions = read_jsonl(path, tolerate_torn_tail=False)
    except ValueError as err:
        raise ValueError(f"{err}, or run notebook 03 (`python -m cogito_lib.pipe annotate`) again") from None
    for number, question in enumerate(questions, start=1):
        missing = [k for k in QUESTION_KEYS if not isinstance(question, dict) or question.get(k) in (None, "")]
        if missing:
            raise ValueError(f"{path}: question {number} lacks {', '.join(missing)}: fix or delete it, or run "
                             "notebook 03 (`python -m cogito_lib.pipe annotate`) again")
    if not questions:
        raise MissingInput(f"{path} holds no questions: run notebook 03 (`python -m cogito_lib.pipe annotate`) "
                           "again (its stats.json says why it wrote none)")
    return questions


def thinker_signature(model_path: str) -> list:
    """What identifies the thinker's weights: each weight file's name, size and modification time (a folder: not its
    path, so a moved or copied run dir keeps its samples), or the id itself (a hub checkpoint)."""
    folder = Path(model_path)
    if not folder.is_dir():
        return [str(model_path)]
    return ["folder"] + [[f.name, f.stat().st_size, f.stat().st_mtime_ns]
                                      for f in sorted(folder.iterdir())
                                      if f.suffix in (".safetensors", ".bin", ".pt", ".json")]


def inputs_key(run_dir: Path, model_path: str, profile: Profile, limit: int | None,
               skipped: list[dict] | None = None) -> str:
    """The stage's inputs in one id: the questions file, the thinker's weights, everything that shapes the
    samples (every think.* setting, the seed, the chunking, which sets each chunk's seed) and the questions whose
    clip cannot be used (a clip that breaks or is repaired changes what is sampled)."""
    import dataclasses
    import hashlib

    questions = hashlib.sha1(require(run_dir, "qa").read_bytes()).hexdigest()
    unusable = sorted((s["question_id"], s["reason"]) for s in skipped or ())
    return stable_id(questions, thinker_signature(model_path), dataclasses.asdict(profile.think),
                     profile.collect.seed, profile.models.backend, CHUNK_QUESTIONS, limit,
                     *([unusable] if unusable else []), length=16)


def _skip(question: dict, kind: str, detail: str) -> dict:
    """A skipped.jsonl record: a question whose clip cannot be used (reason: `missing_audio` or an AUDIO_PROBLEMS
    kind such as `audio_changed`)."""
    return {"question_id": question.get("id"), "clip_id": question.get("clip_id"),
            "reason": AUDIO_REASONS.get(kind, kind), "detail": detail[:300]}


def _file_hash(path: Path) -> str | None:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


@writes_stage(STAGE)
def think(profile: Profile, run_dir: str | Path, *, thinker: str | None = None, progress: bool = True,
          limit: int | None = None, force: bool = False) -> dict:
    """Sample K reasoning traces per question with the thinker; return the stage's stats.

    A finished stage with the same inputs (questions, usable clips, thinker weights, sampling settings) whose
    cot.jsonl is the one it wrote is reused, not sampled again: its `stats.json` is returned with `reused` set.
    `force=True` samples again. A question whose clip is missing, cut short, unreadable or changed since stage 1
    wrote it is skipped with that reason (skipped.jsonl)."""
    from ..models.backends import GenerationRequest
    from ..models.generate import build_messages, format_mmar_question, split_thinking
    from ..models.audio import AudioCache
    from ..env import set_threads

    run_dir = Path(run_dir)
    stage_dir = run_dir / STAGE
    stage_dir.mkdir(parents=True, exist_ok=True)
    questions = _load_questions(run_dir)[:limit]
    model_path = thinker or base_model_path(profile, run_dir)
    cfg = profile.think
    generation = {"temperature": cfg.temperature, "top_p": cfg.top_p, "max_new_tokens": cfg.max_new_tokens,
                  "num_samples": cfg.num_samples, "plan_samples": cfg.plan_samples, "seed": profile.collect.seed}
    usable, skipped = [], []
    for q in questions:  # each clip against the content hash stage 1 recorded (read once per process)
        problem = clip_problem(run_dir / q["audio_path"])
        if problem is None:
            usable.append(q)
        else:
            skipped.append(_skip(q, problem[0], problem[1]))

    key = inputs_key(run_dir, str(model_path), profile, limit, skipped)
    previous = read_json(stage_dir / "stats.json") or {}
    if (not force and previous.get("inputs_key") == key and (stage_dir / "cot.jsonl").exists()
            and previous.get("cot_sha256") in (None, _file_hash(stage_dir / "cot.jsonl"))
            and not (stage_dir / "cot.partial.jsonl").exists()):
        print(f"stage 3 already ran with these questions, thinker and settings: reusing {stage_dir / 'cot.jsonl'} "
              "(force=True, or --force, samples again)")
        return {**previous, "reused": True}
    set_threads(profile.base.threads)
    started = time.perf_counter()

    audio = AudioCache(run_dir)
    decodable = []
    for q in usable:
        try:
            audio(q["audio_path"])
            decodable.append(q)
        except Exception as err:  # noqa: BLE001 - an undecodable clip: skip the question, say why
            kind = err.kind if isinstance(err, AudioIntegrityError) else "audio_unreadable"
            skipped.append(_skip(q, kind, f"{type(err).__name__}: {err}"))
    usable = decodable

    journal_path = stage_dir / "cot.partial.jsonl"
    journal = JsonlJournal(journal_path)
    if journal.records()[:1] != [{"kind": "inputs", "key": key}]:
        journal.close()  # a journal of other inputs (questions, clips, thinker, settings): start afresh
        journal_path.unlink()
        journal = JsonlJournal(journal_path)
        journal.append({"kind": "inputs", "key": key})
    done_chunks = {r["chunk"] for r in journal.records() if r.get("kind") == "chunk_done"}
    chunks = [usable[i:i + CHUNK_QUESTIONS] for i in range(0, len(usable), CHUNK_QUESTIONS)]
    todo = [i for i in range(len(chunks)) if i not in done_chunks]
    backend = None
    iterator = todo
    if progress and todo:
        from tqdm.auto import tqdm

        iterator = tqdm(todo, desc="think", unit="chunk")
    try:
        for index in iterator:
            if backend is None:
                backend = thinker_backend(profile, model_path, run_dir)
            chunk = chunks[index]
            requests = [GenerationRequest(
                request_id=q["id"], messages=build_messages(format_mmar_question(*thinker_prompt_fields(q))),
                waveform=audio(q["audio_path"]), max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                top_p=cfg.top_p, num_samples=cfg.num_samples, seed=profile.collect.seed * 1000 + index)
                for q in chunk]
            results = backend.generate(requests)
            guided = [[] for _ in chunk]
            if cfg.plan_samples:
                guided = plan_guided(
                    backend, chunk, results, [r.waveform for r in requests],
                    prompts=[backend.render(r.messages) for r in requests], num=cfg.plan_samples,
                    temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens,
                    seed=profile.collect.seed * 1000 + index + 500_000)
            for q, result, extra in zip(chunk, results, guided):
                samples = [(text, None, split) for text, split in zip(result.texts, result.splits)]
                samples += [(g["text"], g, split_thinking(g["text"])) for g in extra]
                for sample_index, (text, plan, out) in enumerate(samples):
                    journal.append({
                        "kind": "sample", "chunk": index,
                        "id": f"{q['id']}-s{sample_index}", "question_id": q["id"], "clip_id": q["clip_id"],
                        "sample_index": sample_index, "text": text, "thinking": out.thinking,
                        "answer_prediction": out.answer_prediction, "parse_status": out.parse_status,
                        "parse_failed": out.parse_failed, "thinker": str(model_path), "generation": generation,
                        "guided": plan is not None,
                        **({"plan": plan["plan"], "plan_source": plan["source"]} if plan else {}),
                    })
            journal.append({"kind": "chunk_done", "chunk": index})
    finally:
        journal.close()

    records = read_jsonl(journal_path)
    complete = {r["chunk"] for r in records if r.get("kind") == "chunk_done"}
    if complete != set(range(len(chunks))):  # never publish from a journal this run did not finish
        raise RuntimeError(f"{journal_path}: {len(chunks) - len(complete)} of {len(chunks)} chunks are not done; "
                           "rerun think to finish them")
    samples = {}
    for r in records:  # a chunk cut short by a kill is redone in full; keep only completed chunks' samples
        if r.get("kind") == "sample" and r["chunk"] in complete:
            samples[r["id"]] = {k: v for k, v in r.items() if k not in ("kind", "chunk")}
    order = {q["id"]: i for i, q in enumerate(usable)}
    cot = sorted(samples.values(), key=lambda r: (order[r["question_id"]], r["sample_index"]))
    write_jsonl(stage_dir / "cot.jsonl", cot)
    write_jsonl(stage_dir / "skipped.jsonl", skipped)
    journal_path.unlink()

    by_id = {q["id"]: q for q in usable}
    correct = [is_correct(r["answer_prediction"], by_id[r["question_id"]]["answer"], by_id[r["question_id"]]["choices"])
               for r in cot]
    wall = time.perf_counter() - started
    stats = {
        "thinker": str(model_path), "questions": len(questions), "questions_sampled": len(usable),
        "skipped": len(skipped), "samples": len(cot), "num_samples": cfg.num_samples,
        "parse_failed": sum(r["parse_failed"] for r in cot),
        "parse_status": dict(Counter(r["parse_status"] for r in cot)),
        "answer_correct_rate": round(sum(correct) / len(cot), 4) if cot else None,
        "answer_correct_by_tier": _rate_by(cot, correct, by_id, "tier"),
        "answer_correct_by_skill": _rate_by(cot, correct, by_id, "skill"),
        "plan_samples": cfg.plan_samples, "guided_samples": sum(bool(r.get("guided")) for r in cot),
        "answer_correct_rate_guided": _rate(correct, [bool(r.get("guided")) for r in cot]),
        "answer_correct_rate_unguided": _rate(correct, [not r.get("guided") for r in cot]),
        "wall_s": round(wall, 2), "resumed_chunks": len(done_chunks),
        "samples_per_s": round(len(cot) / wall, 2) if wall and not done_chunks else None,
        "generation": generation, "inputs_key": key, "reused": False,
        "skipped_by_reason": dict(sorted(Counter(s["reason"] for s in skipped).items())),
        "cot_sha256": _file_hash(stage_dir / "cot.jsonl"),
    }
    write_json(stage_dir / "stats.json", stats)
    return stats


def thinker_backend(profile: Profile, model_path: str, run_dir: str | Path | None = None):
    """The thinker's generation backend: in-process transformers (`hf`, the miniature; `think.batch_size` samples
    per batch, clip features cached under the run dir's `layout.frontend_cache`) or vLLM (`paper`)."""
    from ..models.backends import make_backend

    if profile.models.backend == "hf":
        return make_backend("hf", model_path, batch_size=profile.think.batch_size, device=profile.models.device,
                            feature_cache=frontend_cache(run_dir) if run_dir is not None else None)
    if profile.models.backend == "vllm":
        return make_backend("vllm", model_path)
    raise ValueError(f"models.backend {profile.models.backend!r} cannot run the thinker: the thinker is the base "
                     "model itself, served in-process (hf) or with vLLM (vllm)")


def _rate(correct: list[bool], selected: list[bool]) -> float | None:
    chosen = [ok for ok, keep in zip(correct, selected) if keep]
    return round(sum(chosen) / len(chosen), 4) if chosen else None


def _rate_by(cot: list[dict], correct: list[bool], by_id: dict, key: str) -> dict:
    totals, hits = Counter(), Counter()
    for record, ok in zip(cot, correct):
        group = by_id[record["question_id"]].get(key)
        totals[group] += 1
        hits[group] += ok
    return {group: round(hits[group] / totals[group], 4) for group in sorted(totals, key=str)}


def add_arguments(parser: argparse.ArgumentParser) -> dict[str, str]:
    parser.add_argument("--num-samples", type=int, help="K samples per question (think.num_samples)")
    parser.add_argument("--temperature", type=float, help="sampling temperature (think.temperature)")
    parser.add_argument("--plan-samples", type=int,
                        help="plan-guided samples per question, grown from the first plain samples' listings "
                             "(think.plan_samples; 0 = off)")
    parser.add_argument("--thinker", help="a model folder to think with instead of the base (later rounds)")
    parser.add_argument("--force", action="store_true",
                        help="sample again even when a finished run had the same questions, thinker and settings")
    return {"num_samples": "think.num_samples", "temperature": "think.temperature",
            "plan_samples": "think.plan_samples"}


def run_cli(profile: Profile, args: argparse.Namespace) -> dict:
    return think(profile, resolve_run_dir(profile, args.run_dir), thinker=args.thinker,
                 progress=not args.no_progress, force=args.force)
