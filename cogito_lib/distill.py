"""Notebook 06: self-distillation fine-tuning, and the equal-compute controls that make it interpretable.

The base is LoRA-fine-tuned on its own audited reasoning traces (the paper: ms-swift, 1 epoch, lr 1e-5; the
objective is the likelihood of `<think>reasoning</think>answer` given audio + question). docs/miniature.md explains
why a gain over the base means little on its own, so every variant below is trained from the same base for the
**same number of optimisation steps**, with the same fixed replay of atomic pretraining items mixed in, and
saved as its own adapter in `RUN_DIR/06-self-distillation-training/<variant>/adapter/`:

- `self_distill`: the auditor's survivors (05/train.jsonl): the thinker's own reasoning and answer;
- `answer_only`: every annotated question's label (03/qa.jsonl), answer without reasoning - the bar that
  matters in miniature (the labels alone carried most of the value there);
- `no_audit`: every thinker sample (04/cot.jsonl), rejected ones included: what the audit is worth;
- `base_cont`: the base's own atomic pretraining data (01): what more of the same training gives;
- `gold_cot`: ground-truth reasoning (`skills.reasoning_text` of the question's listing and steps) for the
  survivors' questions: reasoning that is always right;
- `answer_only_matched`: the survivors' questions with their labels, answer without reasoning: the same questions,
  weighted alike, as `self_distill` and `gold_cot`, so that reasoning and label meet on equal terms (`answer_only`
  has every annotated question, several times as many).

The matched variants (`gold_cot`, `answer_only_matched`) are built from the survivors of every round the final
self-distilled model trained on (`matched_survivors`): with `train.rounds` R > 1 they train after round R.

`train.skill_target` > 0 (an option beyond the paper, off in every profile) balances the survivors by skill before
`self_distill` and `gold_cot` are built (`balance_survivors`), so that a skill the base already solves does not fill
the fine-tune with near-copies of one chain. docs/results.md records how it did.

`rounds` > 1 adds later self-distillation rounds (`next_round`): the previous round's merged model becomes the
thinker, Cogito-pipe's stages 3 and 4 run into a round folder, and the model trains on the new survivors for the
same steps again. The controls then train `rounds` times as many steps, so that they stand beside the final
round with equal compute.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .config import Profile, profile_overrides
from .io import from_portable, portable, read_json, read_jsonl, stable_id, write_json, write_jsonl
from .layout import BASE as BASE_STAGE
from .layout import (CACHE, COLLECT, FILES, HEADLINE_MODEL, MATCHED, QA, TRAIN, VARIANTS, base_model_path,
                     frontend_cache, in_run, link_stages, path, require, round_name, stage_lock, writes_stage)
from .mmar import item_prompt
from .models.audio import AudioCache
from .env import set_threads
from .progress import LOG_ENV as PROGRESS_LOG_ENV
from .train import LoopConfig, SFTExample, prepare_lora, save_adapter, summarise_log, train_sft
from .train.loop import (DS_CHECKPOINT, accumulation_steps, gathered_trainable_state, launched,
                         make_accelerator)
from .world.skills import reasoning_text

STAGE = TRAIN
VARIANT_TEXT = {
    "self_distill": "the auditor's survivors: the thinker's own reasoning and answer",
    "answer_only": "every annotated question's label, answer without reasoning",
    "no_audit": "every thinker sample, rejected ones included",
    "base_cont": "the base's own atomic pretraining data (more of the same training)",
    "gold_cot": "ground-truth reasoning for the survivors' questions",
    "answer_only_matched": "the survivors' questions' labels, answer without reasoning (the same questions as "
                           "self_distill and gold_cot)",
}
SURVIVORS = FILES["survivors"].relative
PRETRAIN = FILES["pretrain"].relative
BALANCED = (HEADLINE_MODEL, *MATCHED)  # built from the survivors, skill-balanced alike


@dataclass
class TrainingSet:
    """One variant's examples (own data first, then the shared replay) and where they came from."""

    variant: str
    examples: list[SFTExample]
    own: int  # examples from the variant's own source
    replay: int  # atomic replay examples appended
    sources: dict = field(default_factory=dict)  # counts that explain `own` (e.g. samples by audit outcome)
    note: str = ""

    def summary(self) -> dict:
        with_reasoning = sum(e.reasoning is not None for e in self.examples[: self.own])
        return {"variant": self.variant, "own": self.own, "replay": self.replay, "examples": len(self.examples),
                "with_reasoning": with_reasoning, "sources": self.sources, "note": self.note}


def variant_list(text: str | Sequence[str] | None, profile: Profile) -> list[str]:
    """Variants named in `text` (comma-separated or a list; None = `train.variants`), checked, in order."""
    if text is None:
        text = profile.train.variants
    names = [v.strip() for v in (text.split(",") if isinstance(text, str) else text) if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
    return list(dict.fromkeys(names))


# --------------------------------------------------------------------------------------------- training sets
def load_inputs(run_dir: str | Path, *, survivors_path: Path | None = None, rounds: int = 1) -> dict[str, Any]:
    """The files the variants are built from. qa.jsonl is required; the others may be absent or empty (a
    variant without data is skipped and says why). "matched" holds the survivors of rounds 1..`rounds` that
    exist (`matched_survivors`), what the matched variants are built from."""
    run_dir = Path(run_dir)
    qa = read_jsonl(require(run_dir, "qa"))
    pretrain = [dict(q, audio_file=in_run(q["audio_file"], run_dir)) if q.get("audio_file") else q
                for q in read_jsonl(path(run_dir, "pretrain"))]
    survivors = read_jsonl(survivors_path or path(run_dir, "survivors"))
    return {"qa": qa, "cot": read_jsonl(path(run_dir, "cot")), "survivors": survivors, "pretrain": pretrain,
            "matched": survivors if survivors_path else matched_survivors(run_dir, rounds)}


def round_survivors_path(run_dir: str | Path, round_index: int) -> Path:
    """Where round `round_index`'s audited survivors are (round 1: the run dir's own stage 4)."""
    if round_index <= 1:
        return path(run_dir, "survivors")
    return Path(run_dir) / STAGE / f"round{round_index}" / "run" / SURVIVORS


def matched_survivors(run_dir: str | Path, rounds: int) -> list[dict]:
    """The survivors of rounds 1..`rounds` (those written so far), in round order: every trace the final
    self-distilled model was trained on, before skill balance. The matched variants use their questions."""
    out = []
    for round_index in range(1, max(1, rounds) + 1):
        out.extend(read_jsonl(round_survivors_path(run_dir, round_index)))
    return out


def _audio(run_dir: Path, record: dict) -> str:
    path = record.get("audio_file") or record["audio_path"]
    return path if Path(path).is_absolute() else str(run_dir / path)


def replay_examples(inputs: dict, count: int, seed: int) -> list[SFTExample]:
    """A fixed, seeded draw of `count` atomic pretraining items (gold reasoning), the same for every variant
    (composite chains in the pretraining data are never replayed: the variants differ only in their own data)."""
    pool = [q for q in inputs["pretrain"] if q.get("tier", "atomic") == "atomic"]
    if count <= 0 or not pool:
        return []
    rng = np.random.default_rng(seed + 7919)
    chosen = sorted(rng.choice(len(pool), size=min(count, len(pool)), replace=False).tolist())
    return [SFTExample(pool[i]["audio_file"], item_prompt(pool[i]), pool[i]["thinking"], pool[i]["answer"])
            for i in chosen]


def skill_of(record: Mapping) -> str:
    """The question type a survivor belongs to: the miniature's `skill`, else MMAR's `sub-category`."""
    return str(record.get("skill") or record.get("sub-category") or "unknown")


def balance_survivors(survivors: Sequence[dict], target: int, max_repeat: int, seed: int) -> tuple[list[dict], dict]:
    """Skill-balanced survivors: each skill contributes `target` traces (0 = off: every survivor once).

    A skill with more survivors is subsampled round-robin over its questions (every question keeps one trace
    before any keeps two), so a skill the base already solves cannot fill the fine-tune with near-copies; a skill
    with fewer is repeated in whole passes, each trace at most `max_repeat` times, so the few traces of a skill the
    base is only starting to chain get a voice without one trace being learnt by heart. Returns the rows and
    {skill: {"survivors", "used", "distinct"}}."""
    groups: dict[str, list[dict]] = {}
    for row in survivors:
        groups.setdefault(skill_of(row), []).append(row)
    if target <= 0:
        return list(survivors), {k: {"survivors": len(v), "used": len(v), "distinct": len(v)}
                                 for k, v in sorted(groups.items())}
    chosen: list[dict] = []
    report = {}
    for skill in sorted(groups):
        rows = groups[skill]
        rng = np.random.default_rng([seed, int(stable_id(skill, length=8), 16)])
        by_question: dict[str, list[dict]] = {}
        for row in rows:
            by_question.setdefault(str(row.get("question_id") or row.get("id")), []).append(row)
        queues = [[qrows[i] for i in rng.permutation(len(qrows))] for qrows in by_question.values()]
        queues = [queues[i] for i in rng.permutation(len(queues))]
        ordered = []  # round-robin: the first trace of every question, then the second, ...
        for depth in range(max(len(q) for q in queues)):
            ordered.extend(q[depth] for q in queues if depth < len(q))
        if len(ordered) >= target:
            picked = ordered[:target]
        else:
            picked = (ordered * max_repeat)[:target]
        chosen.extend(picked)
        report[skill] = {"survivors": len(rows), "used": len(picked), "distinct": len({id(r) for r in picked})}
    return chosen, report


def balanced_inputs(inputs: dict, profile: Profile) -> dict:
    """`inputs` with its survivors skill-balanced by `train.skill_target` (see `balance_survivors`); the report
    is kept under "balance"."""
    t = profile.train
    rows, report = balance_survivors(inputs["survivors"], t.skill_target, t.skill_max_repeat, t.seed)
    matched, _ = balance_survivors(inputs.get("matched", inputs["survivors"]), t.skill_target, t.skill_max_repeat,
                                   t.seed)
    return {**inputs, "survivors": rows, "matched": matched,
            "balance": {"skill_target": t.skill_target, "skill_max_repeat": t.skill_max_repeat, "skills": report}}


def build_training_set(variant: str, inputs: dict, run_dir: str | Path, replay: Sequence[SFTExample] = ()) -> TrainingSet:
    """The examples of one variant (see the module docstring), followed by the shared replay."""
    run_dir = Path(run_dir)
    qa_by_id = {q["id"]: q for q in inputs["qa"]}
    sources: dict[str, Any] = {}
    note = ""
    if variant == "self_distill":
        # the thinker's own words: its reasoning and its answer (which the audit found consistent with the label)
        own = [SFTExample(_audio(run_dir, r), item_prompt(r), r["thinking"],
                          r.get("answer_prediction") or r["answer"]) for r in inputs["survivors"]]
        sources = {"survivors": len(own), "questions": len({r["question_id"] for r in inputs["survivors"]})}
        if inputs.get("balance"):
            sources["balance"] = inputs["balance"]
        note = "" if own else "no trace survived the audit"
    elif variant == "answer_only":
        own = [SFTExample(_audio(run_dir, q), item_prompt(q), None, q["answer"]) for q in inputs["qa"]]
        sources = {"questions": len(own), "by_tier": dict(Counter(q.get("tier") for q in inputs["qa"]))}
    elif variant == "no_audit":
        survivor_ids = {r["id"] for r in inputs["survivors"]}
        own, missing = [], 0
        for r in inputs["cot"]:
            q = qa_by_id.get(r["question_id"])
            if q is None:
                missing += 1
                continue
            own.append(SFTExample(_audio(run_dir, q), item_prompt(q), r.get("thinking") or "",
                                  r.get("answer_prediction") or ""))
        kept = sum(r["id"] in survivor_ids for r in inputs["cot"])
        sources = {"samples": len(own), "kept_by_audit": kept, "rejected_by_audit": len(own) - kept,
                   "parse_failed": sum(bool(r.get("parse_failed")) for r in inputs["cot"]),
                   "unknown_question": missing}
        note = "" if own else "the thinker produced no samples"
    elif variant == "base_cont":
        pool = inputs["pretrain"]
        own = [SFTExample(q["audio_file"], item_prompt(q), q["thinking"], q["answer"]) for q in pool]
        sources = {"pretraining_items": len(own)}
        note = "" if own else f"{PRETRAIN} not found (only the miniature's base has pretraining data here)"
    elif variant == "answer_only_matched":
        matched = inputs.get("matched", inputs["survivors"])
        # one per survivor: the same questions, weighted as in self_distill and gold_cot; the label, no reasoning
        own = [SFTExample(_audio(run_dir, q), item_prompt(q), None, q["answer"])
               for q in (qa_by_id.get(r["question_id"], r) for r in matched)]
        sources = {"survivors": len(matched), "questions": len({r["question_id"] for r in matched})}
        note = "" if own else "no trace survived the audit"
    elif variant == "gold_cot":
        own, no_gold = [], 0
        matched = inputs.get("matched", inputs["survivors"])
        for r in matched:  # one per survivor: the same questions, weighted as in self_distill
            q = qa_by_id.get(r["question_id"], r)
            if not q.get("listing") or not q.get("steps"):
                no_gold += 1
                continue
            own.append(SFTExample(_audio(run_dir, q), item_prompt(q),
                                  reasoning_text(q["listing"], [tuple(s) for s in q["steps"]], q["answer"]),
                                  q["answer"]))
        sources = {"survivors": len(matched), "questions": len({r["question_id"] for r in matched}),
                   "without_gold_reasoning": no_gold}
        note = "" if own else "no survivors with gold reasoning (listing and steps)"
    else:
        raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    if not own:
        return TrainingSet(variant, [], 0, 0, sources, note)
    return TrainingSet(variant, own + list(replay), len(own), len(replay), sources, note)


def build_training_sets(profile: Profile, run_dir: str | Path, variants: Sequence[str] | None = None,
                        *, inputs: dict | None = None) -> dict[str, TrainingSet]:
    """Every requested variant's training set, with the same fixed atomic replay in each."""
    inputs = inputs if inputs is not None else load_inputs(run_dir)
    replay = replay_examples(inputs, profile.train.replay_atomic, profile.train.seed)
    balanced = balanced_inputs(inputs, profile)
    return {v: build_training_set(v, balanced if v in BALANCED else inputs, run_dir, replay)
            for v in variant_list(variants, profile)}


def planned_steps(profile: Profile, sets: dict[str, TrainingSet], inputs: dict | None = None) -> int:
    """The one step count every variant trains for: `train.max_steps`, or `epochs` over the self-distillation
    set (survivors + replay; the answer-only set when nothing survived)."""
    t = profile.train
    if t.max_steps > 0:
        return t.max_steps
    reference = sets.get("self_distill")
    size = reference.own + reference.replay if reference and reference.own else 0
    if not size and inputs is not None:
        size = len(inputs["survivors"]) + t.replay_atomic
    if not size:
        size = max((s.own + s.replay for s in sets.values()), default=0)
    return max(1, math.ceil(t.epochs * size / t.batch_size))


# --------------------------------------------------------------------------------------------- training
def _is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _fingerprint(profile: Profile, base: str, steps: int, tset: TrainingSet, run_dir: str | Path) -> str:
    """What a variant's training depends on; paths inside `run_dir` count relative to it (a moved run dir keeps its
    trained variants)."""
    train = dataclasses.asdict(profile.train)
    # settings that do not change a variant's training, or change it only through its data (hashed below)
    for key in ("variants", "rounds", "threads", "parallel", "checkpoint_every", "merge", "skill_target",
                "skill_max_repeat", "gradient_checkpointing"):
        train.pop(key)
    # how the steps are split over processes and micro-batches changes the numbers only slightly, but it does: it
    # counts, except at its defaults (one process, no accumulation), so run dirs trained before these existed stay
    defaults = {"engine": "inprocess", "processes": 1, "micro_batch_size": 0, "accelerate_config": ""}
    for key, default in defaults.items():
        if train[key] == default:
            train.pop(key)
    data = stable_id([portable(dataclasses.astuple(e), run_dir) for e in tset.examples], length=16)
    return stable_id(train, portable(str(base), run_dir), steps, data, profile.models.dtype, length=12)


def recorded_base(summary: Mapping, run_dir: str | Path) -> str | None:
    """The base a variant was trained from (its summary), found in `run_dir` even after the run dir moved."""
    return from_portable(summary.get("base_in_run"), run_dir) or summary.get("base")


def train_variant(profile: Profile, out_dir: str | Path, tset: TrainingSet, steps: int, *, base: str,
                  progress: bool = True, run_dir: str | Path | None = None) -> dict:
    """Train one variant's LoRA adapter from `base` for `steps` steps into `out_dir` (adapter/, merged/,
    train_log.jsonl, data.jsonl, summary.json). A finished variant with the same inputs is not retrained; an
    interrupted one resumes from its last checkpoint. `run_dir` (default: two folders above `out_dir`, the usual
    `RUN_DIR/06-.../<variant>`) is what the inputs' paths are counted relative to.

    `train.engine` says who trains: "inprocess" here; "accelerate" `train.processes` ranks under `accelerate
    launch` (`cogito_lib.train.launch`), each reading the training set from data.jsonl, after which this process
    merges the adapter into the base. Both write the same adapter/, train_log.jsonl and summary.json."""
    out_dir = Path(out_dir)
    run_dir = Path(run_dir) if run_dir is not None else out_dir.parent.parent
    key = _fingerprint(profile, base, steps, tset, run_dir)
    summary_path = out_dir / "summary.json"
    previous = read_json(summary_path)
    if previous and previous.get("fingerprint") == key and previous.get("status") == "trained":
        # the recorded paths are where it was trained: report where it is now
        return {**previous, "base": str(base), "adapter": str(out_dir / "adapter"),
                "merged": str(out_dir / "merged") if previous.get("merged") else None, "cached": True}
    started_file = out_dir / "fingerprint.json"
    if read_json(started_file, {}).get("fingerprint") != key and out_dir.exists() and _is_main():
        shutil.rmtree(out_dir)  # a checkpoint from other settings or data must not be resumed
    if _is_main():
        write_json(started_file, {"fingerprint": key})
        write_jsonl(out_dir / "data.jsonl", [dict(dataclasses.asdict(e), source="own" if i < tset.own else "replay")
                                             for i, e in enumerate(tset.examples)])
    if profile.train.engine == "accelerate" and not launched():
        return _train_launched(profile, out_dir, tset, steps, base=base, key=key, run_dir=run_dir,
                               progress=progress)
    return _train_here(profile, out_dir, tset, steps, base=base, key=key, run_dir=run_dir, progress=progress)


def _train_here(profile: Profile, out_dir: Path, tset: TrainingSet, steps: int, *, base: str, key: str,
                run_dir: Path, progress: bool, job: bool = False) -> dict:
    """The training itself, in this process: the whole of it in-process, or this rank's part under `accelerate
    launch` (the Accelerator first, so that the model loads onto this rank's device, or sharded under ZeRO-3).
    `job`: started by `_train_launched`, so an Accelerator is made even for a single process."""
    from .models import load_model, lora_report, save_model
    from .models.frontend import make_frontend

    t = profile.train
    world = int(os.environ.get("WORLD_SIZE", "1"))
    accelerator = make_accelerator(accumulation_steps(t.batch_size, world, t.micro_batch_size), force=job)
    zero3 = accelerator is not None and getattr(accelerator.state, "deepspeed_plugin", None) is not None \
        and accelerator.state.deepspeed_plugin.zero_stage == 3
    # in-process: the profile's device; a rank: its own device (LOCAL_RANK); ZeRO-3: where DeepSpeed puts each shard
    device = profile.models.device if accelerator is None else (None if zero3 else str(accelerator.device))
    import torch

    model, processor = load_model(base, dtype=profile.models.dtype, device=device)
    torch.manual_seed(t.seed)  # LoRA's initial weights: the same in every variant, run and rank
    model = prepare_lora(model, t.lora_rank, t.lora_alpha, t.lora_dropout, t.lora_targets, t.freeze_audio,
                         gradient_checkpointing=t.gradient_checkpointing)
    lora = lora_report(model)
    cfg = LoopConfig(steps=steps, batch_size=t.batch_size, learning_rate=t.learning_rate,
                     warmup_steps=min(t.warmup_steps, max(0, steps - 1)), seed=t.seed,
                     micro_batch_size=t.micro_batch_size)
    resumed = (out_dir / "checkpoint.pt").exists() or (out_dir / DS_CHECKPOINT / "latest.json").exists()
    started = time.perf_counter()
    # the clip-feature cache runs the tower outside the wrapped forward: not where DeepSpeed owns the weights
    deepspeed = accelerator is not None and getattr(accelerator.state, "deepspeed_plugin", None) is not None
    frontend = None if deepspeed else make_frontend(model, processor, frontend_cache(run_dir), training=True)
    logs = train_sft(model, processor, tset.examples, cfg, audio=AudioCache(), log_path=out_dir / "train_log.jsonl",
                     progress=progress, checkpoint_dir=out_dir, checkpoint_every=t.checkpoint_every,
                     accelerator=accelerator, frontend=frontend, desc=f"train {Path(out_dir).name}")
    base_in_run = portable(str(base), run_dir)
    # under ZeRO-3 the weights are partitioned: the adapter is gathered (every rank takes part) and the merge is
    # left to the process that launched the ranks
    merge_here = t.merge and not zero3
    summary = {"variant": tset.variant, "status": "trained", "fingerprint": key, "base": str(base),
               "base_in_run": base_in_run if base_in_run.startswith("<run>") else None, "steps": steps,
               "examples": len(tset.examples), "own": tset.own, "replay": tset.replay,
               "trainable_parameters": lora["trainable_parameters"], "parameters": lora["parameters"],
               "resumed": resumed, "wall_s": round(time.perf_counter() - started, 2), **summarise_log(logs),
               "adapter": str(out_dir / "adapter"), "merged": str(out_dir / "merged") if merge_here else None}
    if accelerator is not None:
        summary.update(engine="accelerate", processes=accelerator.num_processes,
                       distributed=str(accelerator.distributed_type), zero_stage=3 if zero3 else None)
    summary["lora"] = {k: lora[k] for k in ("modules", "expert_parameters", "trainable")}
    state = gathered_trainable_state(model) if zero3 else None
    if _is_main():
        save_adapter(model, out_dir / "adapter", state=state)
        processor.save_pretrained(out_dir / "adapter")
        if merge_here:
            save_model(model, processor, out_dir / "merged", merge=True)
        write_json(out_dir / "summary.json", summary)
    if accelerator is not None:
        accelerator.wait_for_everyone()
        accelerator.free_memory()
    summary["cached"] = False
    return summary


def _train_launched(profile: Profile, out_dir: Path, tset: TrainingSet, steps: int, *, base: str, key: str,
                    run_dir: Path, progress: bool = True) -> dict:
    """Train under `accelerate launch` (train.processes ranks, train.accelerate_config) and wait; the ranks read
    the job from `out_dir/launch/job.json` and the examples from data.jsonl. Then merge the adapter into the base
    here when train.merge (the ranks cannot under ZeRO-3). The command, its config and its log stay in launch/.
    The ranks write the stage folder under this process's lock (shared with them, as `launch_parallel` does)."""
    from .train.launch import run_job

    job = {"profile": profile.name, "overrides": profile_overrides(profile), "out_dir": str(out_dir),
           "run_dir": str(run_dir), "variant": tset.variant, "base": str(base), "steps": steps,
           "own": tset.own, "replay": tset.replay, "fingerprint": key}
    with _variant_lock(out_dir, share=True):
        run_job(job, out_dir / "launch", processes=profile.train.processes,
                config_file=profile.train.accelerate_config, progress=progress,
                step_log=out_dir / "train_log.jsonl", total_steps=steps)
        summary = read_json(out_dir / "summary.json") or {}
        if summary.get("fingerprint") != key or summary.get("status") != "trained":
            raise RuntimeError(f"the launched training of {tset.variant} finished without writing its summary "
                               f"({out_dir / 'summary.json'}); see {out_dir / 'launch' / 'train.log'}")
        if profile.train.merge and not summary.get("merged"):
            merge_adapter(profile, base, out_dir / "adapter", out_dir / "merged")
            summary["merged"] = str(out_dir / "merged")
            write_json(out_dir / "summary.json", summary)
    summary["cached"] = False
    return summary


def _variant_lock(out_dir: Path, *, share: bool = False):
    """The lock of the stage folder holding variant folder `out_dir` (`RUN_DIR/06-.../<variant>`)."""
    return stage_lock(out_dir.parent.parent, out_dir.parent.name, share=share)


def train_job(job_file: str | Path, *, progress: bool = True) -> dict:
    """A rank's side of `_train_launched`: the job's profile, training set (data.jsonl) and step count, trained here."""
    from .config import load_profile

    job = read_json(job_file)
    if not job:
        raise FileNotFoundError(f"{job_file}: no training job there (it is written by notebook 06 / run_variants)")
    profile = load_profile(job["profile"], job["overrides"])
    out_dir = Path(job["out_dir"])
    rows = read_jsonl(out_dir / "data.jsonl")
    fields = [f.name for f in dataclasses.fields(SFTExample)]
    examples = [SFTExample(**{k: r[k] for k in fields}) for r in rows]
    tset = TrainingSet(job["variant"], examples, job["own"], job["replay"])
    # rank 0 writes under the launcher's lock (or takes it, started by hand); the other ranks write nothing
    with _variant_lock(out_dir):
        return _train_here(profile, out_dir, tset, job["steps"], base=job["base"], key=job["fingerprint"],
                           run_dir=Path(job["run_dir"]), progress=progress, job=True)


def merge_adapter(profile: Profile, base: str | Path, adapter: str | Path, out_dir: str | Path) -> Path:
    """The base with `adapter` merged in, saved to `out_dir` with the processor (what notebook 07 loads)."""
    from .models import load_adapter, load_model, save_model

    model, processor = load_model(base, dtype=profile.models.dtype, device=profile.models.device)
    return save_model(load_adapter(model, adapter), processor, out_dir, merge=True)


@writes_stage(STAGE)
def run_variants(profile: Profile, run_dir: str | Path, variants: Sequence[str] | str | None = None, *,
                 later_rounds: bool = True, progress: bool = True) -> dict:
    """Build and train every requested variant (in turn, in this process) with equal compute; variants without
    data are skipped with the reason. Writes and returns `RUN_DIR/06-.../stats.json`.

    Equal compute: `self_distill` (round 1) trains `planned_steps`; with `train.rounds` R > 1, rounds 2..R each
    train as many steps again from the previous round's model (unless `later_rounds` is False), so every control
    trains R x `planned_steps`: the final round and the controls have had the same fine-tuning."""
    run_dir = Path(run_dir)
    stage_dir = run_dir / STAGE
    names = variant_list(variants, profile)
    rounds = max(1, profile.train.rounds)
    inputs = load_inputs(run_dir, rounds=rounds)
    sets = build_training_sets(profile, run_dir, names, inputs=inputs)
    steps = planned_steps(profile, sets, inputs)
    control_steps = steps * rounds
    base = base_model_path(profile, run_dir)
    threads = set_threads(profile.train.threads)
    results: dict[str, dict] = {}
    # with R > 1 rounds the matched variants wait for the last round: its survivors are part of their data
    wait = [name for name in names if name in MATCHED and rounds > 1 and "self_distill" in profile.train.variants]
    for name in names:
        tset = sets[name]
        if name in wait:
            continue
        if not tset.examples:
            results[name] = {"variant": name, "status": "skipped", "reason": tset.note, "steps": 0, "examples": 0}
            continue
        # with R rounds the final self-distilled model has had R x steps of fine-tuning: so have the controls
        variant_steps = steps if name == "self_distill" else control_steps
        results[name] = train_variant(profile, stage_dir / name, tset, variant_steps, base=base, progress=progress)
    if later_rounds and rounds > 1 and "self_distill" in names \
            and results["self_distill"].get("status") == "trained":
        previous = results["self_distill"]
        for round_index in range(2, profile.train.rounds + 1):
            folder = stage_dir / round_name(round_index - 1)
            merged = folder / "merged"  # without train.merge: its adapter, merged in next_round
            thinker = merged if (merged / "config.json").exists() else folder / "adapter"
            previous = next_round(profile, run_dir, round_index, thinker, steps=steps, progress=progress)
            results[round_name(round_index)] = previous
            if previous.get("status") != "trained":
                break
    rounds_done = "self_distill" in names or all(round_survivors_path(run_dir, r).exists()
                                                 for r in range(2, rounds + 1))
    if wait and later_rounds and rounds_done:
        inputs = load_inputs(run_dir, rounds=rounds)  # now with every round's survivors
        later = build_training_sets(profile, run_dir, wait, inputs=inputs)
        sets.update(later)
        for name, tset in later.items():
            if not tset.examples:
                results[name] = {"variant": name, "status": "skipped", "reason": tset.note, "steps": 0,
                                 "examples": 0}
                continue
            results[name] = train_variant(profile, stage_dir / name, tset, control_steps, base=base,
                                          progress=progress)
    for name in wait:
        results.setdefault(name, {"variant": name, "status": "waiting", "steps": 0, "examples": 0,
                                  "reason": f"built from the survivors of all {rounds} rounds: trains after the "
                                            "last round"})
    stats = {"steps": steps, "control_steps": control_steps, "base": str(base), "threads": threads, "variants": results,
             "training_sets": {name: s.summary() for name, s in sets.items()},
             "replay_atomic": profile.train.replay_atomic}
    if _is_main():
        write_json(stage_dir / "stats.json", stats)
    return stats


def load_logs(run_dir: str | Path, variants: Sequence[str] | None = None) -> dict[str, list[dict]]:
    """Each trained variant's log rows (step, loss, lr, tokens, tokens_per_s, seconds)."""
    stage_dir = Path(run_dir) / STAGE
    names = variants or sorted(p.name for p in stage_dir.iterdir() if (p / "train_log.jsonl").exists())
    return {name: read_jsonl(stage_dir / name / "train_log.jsonl") for name in names
            if (stage_dir / name / "train_log.jsonl").exists()}


def launch_parallel(profile: Profile | str, run_dir: str | Path, variants: Sequence[str], *, processes: int = 2,
                    overrides: dict[str, Any] | None = None, log_dir: str | Path | None = None) -> dict[str, int]:
    """Train independent variants as separate processes with one torch thread each, `processes` at a time
    (~1.3x the throughput of one process on 2 cores). `self_distill` runs its later rounds (`train.rounds`) in its
    own process, so the rounds' sampling and training overlap the controls' training; it starts first. With later
    rounds, the matched controls (`layout.MATCHED`, built from every round's survivors) start once that process
    has finished. Each process gets `profile` (every value that differs from its named profile, seeds included)
    and `overrides`. Returns each variant's exit code; logs are in `log_dir` (default `RUN_DIR/06-.../logs/`).
    The worker processes write 06 under this process's lock (no other writer meanwhile)."""
    with stage_lock(run_dir, STAGE, share=True):
        return _launch_parallel(profile, run_dir, variants, processes=processes, overrides=overrides,
                                log_dir=log_dir)


def _launch_parallel(profile: Profile | str, run_dir: str | Path, variants: Sequence[str], *, processes: int,
                     overrides: dict[str, Any] | None, log_dir: str | Path | None) -> dict[str, int]:
    import json

    from .config import load_profile, profile_changes

    run_dir = Path(run_dir)
    log_dir = Path(log_dir or run_dir / STAGE / "logs")
    log_dir.mkdir(parents=True, exist_ok=True)
    name_of = profile if isinstance(profile, str) else profile.name
    values = {} if isinstance(profile, str) else profile_changes(profile)
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    sets = [f"{k}={json.dumps(list(v) if isinstance(v, tuple) else v)}" for k, v in values.items() if v is not None]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    pending = sorted(dict.fromkeys(variants), key=lambda v: v != "self_distill")
    rounds = values.get("train.rounds", (load_profile(profile) if isinstance(profile, str) else profile).train.rounds)
    after_rounds = set(MATCHED) if rounds > 1 and "self_distill" in pending else set()
    running, codes = {}, {}
    while pending or running:
        while len(running) < max(1, processes):
            rounds_done = "self_distill" in codes
            ready = [v for v in pending if v not in after_rounds or rounds_done]
            if not ready:
                break
            name = ready[0]
            pending.remove(name)
            cmd = [sys.executable, "-m", "cogito_lib.train", "--profile", name_of, "--run-dir", str(run_dir),
                   "--variant", name, "--threads", "1"]
            if not os.environ.get(PROGRESS_LOG_ENV):  # bars only when the runner's progress log takes their lines
                cmd.append("--no-progress")
            for item in sets:
                cmd += ["--set", item]
            cmd += ["--set", "base.threads=1"]  # the rounds' sampling too: one thread per process
            if name != "self_distill" and name not in after_rounds:
                cmd.append("--first-round-only")
            out = open(log_dir / f"{name}.log", "w")
            running[name] = (subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env), out)
        for name, (proc, out) in list(running.items()):
            if proc.poll() is not None:
                out.close()
                codes[name] = proc.returncode
                del running[name]
        time.sleep(0.2)
    return codes


# --------------------------------------------------------------------------------------------- later rounds
ROUND_LINKED = (BASE_STAGE, COLLECT, QA, CACHE)  # CACHE: the round's samples reuse the run's clip features
ROUND_OWN = (FILES["cot"].stage, FILES["survivors"].stage)  # the stages a round redoes (04, 05)


def round_run_dir(run_dir: str | Path, round_index: int) -> Path:
    """A run dir for round `round_index`'s stages 3-4: it links the real 01-03 folders and holds its own 04/05.
    The links are relative, so a run dir that is moved or copied (with its symlinks) keeps pointing at itself."""
    run_dir = Path(run_dir).resolve()
    (run_dir / CACHE).mkdir(exist_ok=True)  # linked even before the run's first encoding fills it
    return link_stages(run_dir, run_dir / STAGE / f"round{round_index}" / "run", ROUND_LINKED)


def _round1_steps(profile: Profile, run_dir: Path) -> int:
    """The step count round 1 trained for (its summary), else what `run_variants` would plan now."""
    summary = read_json(run_dir / STAGE / "self_distill" / "summary.json") or {}
    if summary.get("status") == "trained" and summary.get("steps"):
        return int(summary["steps"])
    inputs = load_inputs(run_dir)
    return planned_steps(profile, build_training_sets(profile, run_dir, inputs=inputs), inputs)


def merged_thinker(profile: Profile, thinker: str | Path, out_dir: str | Path,
                   run_dir: str | Path | None = None) -> tuple[Path, str]:
    """A full model folder for `thinker` and a key that changes when it does. `thinker` is a merged model folder
    (used as is) or a variant's folder / adapter folder without a merged model, whose adapter is then merged into
    the base it was trained from (its summary's `base`, looked up in `run_dir` when it was inside the run dir) and
    saved to `out_dir` (reused while the adapter is unchanged, also after the run dir moved)."""
    thinker = Path(thinker)
    adapter = thinker / "adapter" if (thinker / "adapter" / "adapter_config.json").exists() else thinker
    summary = read_json(adapter.parent / "summary.json") or read_json(thinker.parent / "summary.json") or {}
    if (thinker / "config.json").exists() and not (thinker / "adapter_config.json").exists():
        return thinker, str(summary.get("fingerprint") or thinker.resolve())
    if not (adapter / "adapter_config.json").exists():
        raise FileNotFoundError(f"{thinker} is neither a model folder (config.json) nor a LoRA adapter "
                                f"(adapter_config.json): pass the previous round's merged/ or adapter/ folder")
    base = (recorded_base(summary, run_dir) if run_dir is not None else summary.get("base")) \
        or read_json(adapter / "adapter_config.json", {}).get("base_model_name_or_path")
    if not base:
        raise ValueError(f"cannot tell which base {adapter} was trained from (no summary.json with `base`)")
    weights = adapter / "adapter_model.safetensors"
    # the adapter's training fingerprint and its weights' time say which adapter it is; no absolute paths
    key = stable_id(summary.get("base_in_run") or str(base), summary.get("fingerprint") or str(adapter.resolve()),
                    weights.stat().st_mtime_ns if weights.exists() else 0, length=12)
    out_dir = Path(out_dir)
    marker = out_dir / "thinker.json"
    if (read_json(marker) or {}).get("key") == key and (out_dir / "config.json").exists():
        return out_dir, key
    if out_dir.exists():
        shutil.rmtree(out_dir)
    merge_adapter(profile, base, adapter, out_dir)
    write_json(marker, {"key": key, "base": str(base), "adapter": str(adapter)})
    return out_dir, key


def next_round(profile: Profile, run_dir: str | Path, round_index: int, thinker: str | Path, *,
               steps: int | None = None, progress: bool = True) -> dict:
    """Round `round_index` of self-distillation: the previous round's model (`thinker`: its merged folder, or its
    adapter, which is then merged into its base first) samples K traces per question (stage 3) and the auditor
    checks them (stage 4), both into `round_run_dir`; the merged thinker is then fine-tuned on its own new
    survivors for the same number of steps as round 1 (`steps`, default round 1's recorded count; so its
    equal-compute control is `base_cont` trained for `round_index` x steps). Writes
    `RUN_DIR/06-.../self_distill_round<r>/` (summary.json also when nothing survived, with the reason)."""
    from .pipe.audit import audit
    from .pipe.think import think

    if round_index < 2:
        raise ValueError(f"round_index must be >= 2 (round 1 is run_variants' self_distill), got {round_index}")
    run_dir = Path(run_dir)
    name = round_name(round_index)
    out_dir = run_dir / STAGE / name
    shadow = round_run_dir(run_dir, round_index)
    round_dir = shadow.parent
    thinker_dir, thinker_key = merged_thinker(profile, thinker, round_dir / "thinker", run_dir)
    # a new thinker (the previous round retrained) invalidates this round's samples, audit and training
    marker = round_dir / "round.json"
    if (read_json(marker) or {}).get("thinker_key") != thinker_key and _is_main():
        for stage in ROUND_OWN:
            shutil.rmtree(shadow / stage, ignore_errors=True)
        shutil.rmtree(out_dir, ignore_errors=True)
        write_json(marker, {"round": round_index, "thinker": str(thinker_dir), "thinker_key": thinker_key})
    # stats.json is each stage's last write: its presence means the stage finished
    if not (shadow / FILES["cot"].stage / "stats.json").exists():
        think(profile, shadow, thinker=str(thinker_dir), progress=progress)
    if not (shadow / FILES["survivors"].stage / "stats.json").exists():
        audit(profile, shadow, progress=progress, export=False, figures=False)
    exports = shadow / FILES["survivors"].stage / "exports"
    if _is_main() and not (exports / "ms-swift" / "train.sh").exists():
        # this round's traces for the external trainers too, with recipes that fine-tune this round's thinker
        from .exports import export_all

        export_all(read_jsonl(shadow / SURVIVORS), shadow, exports, profile=profile, model=str(thinker_dir))
    think_stats = read_json(shadow / FILES["cot"].stage / "stats.json") or {}
    audit_stats = read_json(shadow / FILES["survivors"].stage / "stats.json") or {}
    round_info = {"round": round_index, "thinker": str(thinker_dir), "run_dir": str(shadow),
                  "exports": str(exports),
                  "samples": think_stats.get("samples"), "parse_failed": think_stats.get("parse_failed"),
                  "answer_correct_rate": think_stats.get("answer_correct_rate"), "kept": audit_stats.get("kept"),
                  "rejected_by_reason": {k: v for k, v in (audit_stats.get("rejected_by_reason") or {}).items()
                                         if v}}
    inputs = balanced_inputs(load_inputs(run_dir, survivors_path=shadow / SURVIVORS), profile)
    replay = replay_examples(inputs, profile.train.replay_atomic, profile.train.seed)
    tset = build_training_set("self_distill", inputs, run_dir, replay)
    if not tset.examples:
        result = {"variant": name, "status": "skipped", "reason": tset.note, "steps": 0, "examples": 0,
                  "base": str(thinker_dir), "round": round_info}
        if _is_main():
            write_json(out_dir / "summary.json", result)
        return result
    steps = steps if steps is not None else _round1_steps(profile, run_dir)
    summary = train_variant(profile, out_dir, dataclasses.replace(tset, variant=name), steps,
                            base=str(thinker_dir), progress=progress)
    return {**summary, "round": round_info}
