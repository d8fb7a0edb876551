"""Cogito-pipe stage 3: CoT generation. The *thinker* - the base model itself - answers every question of stage 2
with K sampled `<think>...</think>` traces, **without seeing the answer** (its prompt is the MMAR question and
choices only; the label and the judge's reference never reach it).

Reads `RUN_DIR/03-qa-construction/qa.jsonl` and the base model (notebook 01, or `models.base` at paper scale);
writes `RUN_DIR/04-cot-generation/cot.jsonl` (one line per sample), `skipped.jsonl` (questions that could not be
asked, with a reason) and `stats.json`. Questions are processed in fixed chunks whose sampling seed depends only
on the chunk, so a run killed with `kill -9` resumes and ends with the same files as an uninterrupted run.
In a later round, a fine-tuned model can be the thinker (`thinker=` a model folder).
"""
from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

from ..config import Profile, resolve_run_dir
from ..io import JsonlJournal, read_jsonl, write_json, write_jsonl
from ..mmar import is_correct

STAGE = "04-cot-generation"
QA = Path("03-qa-construction") / "qa.jsonl"
CHUNK_QUESTIONS = 64  # questions per journalled chunk (the unit of resumption)


def thinker_prompt_fields(question: dict) -> tuple[str, list[str]]:
    """What the thinker is shown: the question and its choices, nothing else."""
    return question["question"], list(question["choices"])


def _load_questions(run_dir: Path) -> list[dict]:
    path = run_dir / QA
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run notebook 03 (or `python -m cogito_lib.pipe annotate`) first")
    return read_jsonl(path)


def think(profile: Profile, run_dir: str | Path, *, thinker: str | None = None, progress: bool = True,
          limit: int | None = None) -> dict:
    """Sample K reasoning traces per question with the thinker; return the stage's stats."""
    from ..base import base_model_path
    from ..models.backends import GenerationRequest
    from ..models.generate import build_messages, format_mmar_question
    from ..train import AudioCache, set_threads

    run_dir = Path(run_dir)
    stage_dir = run_dir / STAGE
    stage_dir.mkdir(parents=True, exist_ok=True)
    questions = _load_questions(run_dir)[:limit]
    model_path = thinker or base_model_path(profile, run_dir)
    cfg = profile.think
    generation = {"temperature": cfg.temperature, "top_p": cfg.top_p, "max_new_tokens": cfg.max_new_tokens,
                  "num_samples": cfg.num_samples, "seed": profile.collect.seed}
    set_threads(profile.base.threads)
    started = time.perf_counter()

    audio = AudioCache(run_dir)
    usable, skipped = [], []
    for q in questions:
        try:
            audio(q["audio_path"])
            usable.append(q)
        except Exception as err:  # missing or undecodable audio: skip the question, say why
            skipped.append({"question_id": q.get("id"), "clip_id": q.get("clip_id"), "reason": "missing_audio",
                            "detail": f"{type(err).__name__}: {err}"[:300]})

    journal_path = stage_dir / "cot.partial.jsonl"
    journal = JsonlJournal(journal_path)
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
                backend = thinker_backend(profile, model_path)
            chunk = chunks[index]
            requests = [GenerationRequest(
                request_id=q["id"], messages=build_messages(format_mmar_question(*thinker_prompt_fields(q))),
                waveform=audio(q["audio_path"]), max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                top_p=cfg.top_p, num_samples=cfg.num_samples, seed=profile.collect.seed * 1000 + index)
                for q in chunk]
            for q, result in zip(chunk, backend.generate(requests)):
                for sample_index, (text, out) in enumerate(zip(result.texts, result.splits)):
                    journal.append({
                        "kind": "sample", "chunk": index,
                        "id": f"{q['id']}-s{sample_index}", "question_id": q["id"], "clip_id": q["clip_id"],
                        "sample_index": sample_index, "text": text, "thinking": out.thinking,
                        "answer_prediction": out.answer_prediction, "parse_status": out.parse_status,
                        "parse_failed": out.parse_failed, "thinker": str(model_path), "generation": generation,
                    })
            journal.append({"kind": "chunk_done", "chunk": index})
    finally:
        journal.close()

    records = read_jsonl(journal_path)
    complete = {r["chunk"] for r in records if r.get("kind") == "chunk_done"}
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
        "wall_s": round(wall, 2), "resumed_chunks": len(done_chunks),
        "samples_per_s": round(len(cot) / wall, 2) if wall and not done_chunks else None,
        "generation": generation,
    }
    write_json(stage_dir / "stats.json", stats)
    return stats


def thinker_backend(profile: Profile, model_path: str):
    """The thinker's generation backend: in-process transformers (`hf`, the miniature) or vLLM (`paper`)."""
    from ..models.backends import make_backend

    batch = max(1, profile.think.batch_size // profile.think.num_samples)
    if profile.models.backend == "hf":
        return make_backend("hf", model_path, batch_size=batch, device=profile.models.device)
    if profile.models.backend == "vllm":
        return make_backend("vllm", model_path)
    raise ValueError(f"models.backend {profile.models.backend!r} cannot run the thinker: the thinker is the base "
                     "model itself, served in-process (hf) or with vLLM (vllm)")


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
    parser.add_argument("--thinker", help="a model folder to think with instead of the base (later rounds)")
    return {"num_samples": "think.num_samples", "temperature": "think.temperature"}


def run_cli(profile: Profile, args: argparse.Namespace) -> dict:
    return think(profile, resolve_run_dir(profile, args.run_dir), thinker=args.thinker,
                 progress=not args.no_progress)
