"""Notebook 01: the miniature's base model, a tiny model of a real family pretrained here on atomic skills.

It stands in for Qwen3-Omni-30B-A3B-Thinking: it hears and reasons, imperfectly. It is pretrained from scratch
on a world split of its own (seeds disjoint from curation and evaluation) with gold, templated reasoning for the
**atomic** skills (`cogito_lib.world.skills`) and, as a share `base.chain_share` of its questions, gold chains of
some **composite** skills (`base.chain_skills`), so that it chains its steps sometimes but not reliably, as the
paper's thinking base does; Cogito-pipe's survivors then sharpen what it half knows. The **held-out** tier is never
pretrained (nor annotated): MMAR-synth asks it to see whether chaining transfers. The result is cached under a hash
of everything that shapes it, so reruns skip training.

On a held-out check set it reports, per skill: pass@1 (greedy answer correct by MMAR's rule), judge-pass@1
(greedy answer correct AND reasoning accepted by the metadata judge) and judge-pass@K (at least one of K samples
correct and accepted) - the headroom self-distillation exploits. Plain pass@K is not reported: on two-choice
questions random guessing nearly always passes.
"""
from __future__ import annotations

import dataclasses
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from .config import ConfigError, Profile
from .io import read_json, read_jsonl, write_json, write_jsonl
from .judges import MetadataTraceJudge
from .layout import BASE as STAGE
from .layout import base_dir, base_fingerprint, frontend_cache, path, writes_stage
from .mmar import is_correct, item_prompt
from .models.audio import AudioCache
from .world.skills import SKILLS, questions_for_clip, skills_of
from .env import set_threads
from .train import LoopConfig, SFTExample, summarise_log, train_sft

def _world(profile: Profile, run_dir: Path, *, seed: int, num_clips: int, split: str, progress: bool):
    from .world import collect

    out_subdir = f"{STAGE}/{split}-world"
    stats = collect(profile, run_dir, num_clips=num_clips, seed=seed, split=split, out_subdir=out_subdir,
                    progress=progress)
    folder = run_dir / out_subdir
    return folder, read_jsonl(folder / "manifest.jsonl"), stats


def make_questions(clips: list[dict], skills: list[str], seed: int, per_clip: int, world_dir: Path) -> list[dict]:
    """Questions for each clip (distinct skills), with `audio_path` made absolute for training and evaluation."""
    rng = np.random.default_rng(seed)
    out = []
    for clip in clips:
        for q in questions_for_clip(clip, skills, rng, max_questions=per_clip):
            q["audio_file"] = str(world_dir / q["audio_path"])
            out.append(q)
    return out


def tokenizer_corpus(questions: list[dict], *, reasoning: bool = True) -> list[str]:
    """Text the tiny tokenizer is trained on: prompts and answers, and the reasoning unless `reasoning` is False."""
    corpus = []
    for q in questions:
        corpus += [item_prompt(q), q["answer"]] + ([q["thinking"]] if reasoning else [])
    return corpus


def chain_skills(profile: Profile) -> list[str]:
    """The composite skills whose gold chains the base is pretrained on (`base.chain_skills`; empty = all)."""
    composite = skills_of("composite")
    names = list(profile.base.chain_skills) or composite
    wrong = [name for name in names if name not in composite]
    if wrong:
        raise ConfigError(f"base.chain_skills: {', '.join(map(repr, wrong))} are not composite skills; allowed: "
                          f"{', '.join(composite)} (the held-out tier is never pretrained)")
    return names


def pretraining_questions(profile: Profile, clips: list[dict], world_dir: Path) -> list[dict]:
    """The base's pretraining questions: `questions_per_clip` atomic questions per clip, then composite chains
    making up `chain_share` of the whole, drawn round-robin over `chain_skills` so that rare skills are not
    crowded out (each with its gold reasoning)."""
    b = profile.base
    atomic = make_questions(clips, skills_of("atomic"), b.world_seed, b.questions_per_clip, world_dir)
    if b.chain_share <= 0:
        return atomic
    target = round(b.chain_share / (1.0 - b.chain_share) * len(atomic))
    pool = make_questions(clips, chain_skills(profile), b.world_seed + 2, 2, world_dir)
    rng = np.random.default_rng([b.world_seed, 3])
    by_skill: dict[str, list[dict]] = defaultdict(list)
    for i in rng.permutation(len(pool)):
        by_skill[pool[i]["skill"]].append(pool[i])
    queues = [by_skill[name] for name in sorted(by_skill)]
    chains = [queue[depth] for depth in range(max(map(len, queues), default=0)) for queue in queues
              if depth < len(queue)][:target]
    return atomic + chains


@writes_stage(STAGE)
def pretrain_base(profile: Profile, run_dir: str | Path, *, progress: bool = True) -> dict:
    """Pretrain (or reuse the cached) miniature base. Returns its info dict (model path, sizes, loss summary)."""
    from .models import build_tiny_model, count_parameters, load_model, save_model

    run_dir = Path(run_dir)
    if profile.models.base != "tiny":
        raise ValueError(f"models.base is {profile.models.base!r}: only the miniature ('tiny') is pretrained here")
    b = profile.base
    chain_skills(profile)  # a wrong skill name stops here, before any work
    key = base_fingerprint(profile)
    model_dir = base_dir(profile, run_dir)
    info_path = model_dir / "base.json"
    if info_path.exists():
        info = read_json(info_path)
        info["model_dir"] = str(model_dir / "model")  # not the recorded path: the run dir may have moved
        info["cached"] = True
        return info
    threads = set_threads(b.threads)
    world_dir, clips, world_stats = _world(profile, run_dir, seed=b.world_seed, num_clips=b.num_clips,
                                           split="pretrain", progress=progress)
    questions = pretraining_questions(profile, clips, world_dir)
    write_jsonl(path(run_dir, "pretrain"), questions)
    # every skill's wording reaches the tokenizer (later stages meet no unknown words); the reasoning of skills
    # the base is not pretrained on does not
    few = clips[: max(50, len(clips) // 10)]
    corpus = tokenizer_corpus(questions)
    corpus += tokenizer_corpus(make_questions(few, skills_of("composite"), b.world_seed + 1, 3, world_dir))
    corpus += tokenizer_corpus(make_questions(few, skills_of("heldout"), b.world_seed + 1, 3, world_dir),
                               reasoning=False)
    init_dir = model_dir / "init"
    if init_dir.exists():
        shutil.rmtree(init_dir)
    build_tiny_model(profile.models.family, init_dir, corpus, size=b.size, seed=b.world_seed)
    model, processor = load_model(init_dir, dtype="float32", device="cpu")
    from .models.tiny import resolve_size

    frozen = b.freeze_audio and bool(resolve_size(b.size).pretrained_audio)
    for name, param in model.named_parameters():
        if frozen and "audio_tower" in name:
            param.requires_grad_(False)
    examples = [SFTExample(q["audio_file"], item_prompt(q), q["thinking"], q["answer"]) for q in questions]
    log_path = model_dir / "train_log.jsonl"
    log_path.unlink(missing_ok=True)  # a killed run restarts its (short) training from scratch
    cfg = LoopConfig(steps=b.steps, batch_size=b.batch_size, learning_rate=b.learning_rate,
                     warmup_steps=b.warmup_steps, audio_lr_scale=b.audio_lr_scale, seed=b.world_seed)
    from .models.frontend import make_frontend

    frontend = make_frontend(model, processor, frontend_cache(run_dir), training=True)
    logs = train_sft(model, processor, examples, cfg, audio=AudioCache(), log_path=log_path, progress=progress,
                     frontend=frontend, desc="pretrain base")
    save_model(model, processor, model_dir / "model", merge=False)
    shutil.rmtree(init_dir)
    info = {
        "fingerprint": key, "model_dir": str(model_dir / "model"), "family": profile.models.family,
        "size": b.size, "parameters": count_parameters(model), "audio_frozen": frozen,
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad), "threads": threads,
        "pretrain_clips": len(clips), "pretrain_questions": len(questions),
        "pretrain_by_tier": dict(sorted(_count(q["tier"] for q in questions).items())),
        "pretrain_skills": dict(sorted(_count(q["skill"] for q in questions).items())),
        "world_clips_per_s": world_stats["clips_per_s"], **summarise_log(logs),
    }
    write_json(info_path, info)
    info["cached"] = False
    return info


def _count(values) -> dict:
    counts: dict[Any, int] = defaultdict(int)
    for v in values:
        counts[v] += 1
    return dict(counts)


def check_set(profile: Profile, run_dir: str | Path, *, progress: bool = True) -> list[dict]:
    """Held-out check questions (atomic and composite) from a world split of their own."""
    b = profile.base
    world_dir, clips, _ = _world(profile, Path(run_dir), seed=b.check_seed, num_clips=b.check_clips,
                                 split="check", progress=progress)
    by_id = {c["clip_id"]: c for c in clips}
    questions = make_questions(clips, list(SKILLS), b.check_seed, 3, world_dir)
    for q in questions:
        q["_clip"] = by_id[q["clip_id"]]
    return questions


def evaluate_skills(model, processor, questions: list[dict], *, num_samples: int, max_new_tokens: int,
                    temperature: float = 1.0, top_p: float = 1.0, batch_size: int = 32, seed: int = 0,
                    progress: bool = True, cache_dir: str | Path | None = None) -> tuple[list[dict], dict]:
    """Greedy and K-sample answers (at the thinker's temperature) for every question; per-item rows and a
    per-skill summary. Clip features are computed once for both (`models.frontend`; on disk under `cache_dir`)."""
    from .models.frontend import make_frontend
    from .models.generate import SamplingConfig, generate_reasoning

    judge = MetadataTraceJudge()
    audio = AudioCache()
    frontend = make_frontend(model, processor, cache_dir)
    options = {"frontend": frontend, "keys": [q["id"] for q in questions]} if frontend is not None else {}
    prompts_text = [item_prompt(q) for q in questions]
    from .models.generate import build_mmar_prompt

    prompts = [build_mmar_prompt(processor, q["question"], q["choices"]) for q in questions]
    audios = [audio(q["audio_file"]) for q in questions]
    greedy = generate_reasoning(model, processor, prompts, audios,
                                SamplingConfig(max_new_tokens=max_new_tokens, temperature=0.0),
                                batch_size=batch_size, progress=progress, **options)
    sampled = generate_reasoning(model, processor, prompts, audios,
                                 SamplingConfig(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                                                num_samples=num_samples, seed=seed),
                                 batch_size=batch_size if frontend is not None else max(1, batch_size // num_samples),
                                 progress=progress, **options)
    rows = []
    for q, prompt_text, g_row, s_row in zip(questions, prompts_text, greedy.outputs, sampled.outputs):
        def judged(out):
            correct = is_correct(out.answer_prediction, q["answer"], q["choices"])
            ok = correct and judge.verify(q, out.thinking, out.answer_prediction, q.get("_clip")).ok
            return correct, ok

        g_correct, g_ok = judged(g_row[0])
        s_results = [judged(o) for o in s_row]
        rows.append({
            "id": q["id"], "skill": q["skill"], "tier": q["tier"], "question": q["question"],
            "choices": q["choices"], "answer": q["answer"], "audio_file": q["audio_file"],
            "thinking": g_row[0].thinking, "answer_prediction": g_row[0].answer_prediction,
            "parse_failed": g_row[0].parse_failed, "pass@1": int(g_correct), "judge_pass@1": int(g_ok),
            "judge_pass@K": int(any(ok for _, ok in s_results)),
            "sample_correct": float(np.mean([c for c, _ in s_results])),
            "chance": 1.0 / len(q["choices"]),
        })
    summary = {
        "greedy": greedy.summary(), "sampled": sampled.summary(), "num_samples": num_samples,
        "temperature": temperature, "top_p": top_p,
        "by_skill": summarise_rows(rows, "skill"), "by_tier": summarise_rows(rows, "tier"),
    }
    return rows, summary


def summarise_rows(rows: list[dict], key: str) -> dict:
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        groups[row[key]].append(row)
    out = {}
    for name, group in sorted(groups.items()):
        out[name] = {"n": len(group), **{metric: round(100 * float(np.mean([r[metric] for r in group])), 1)
                                         for metric in ("pass@1", "judge_pass@1", "judge_pass@K", "chance")}}
    return out


def demo_item(profile: Profile, run_dir: str | Path) -> dict:
    """One MMAR-style item to show a model on: MMAR's first item when the MMAR root is configured, otherwise a
    freshly synthesised world clip with a question."""
    if profile.datasets.mmar:
        from .mmar import load_meta

        meta = load_meta(Path(profile.datasets.mmar) / "MMAR-meta.jsonl", Path(profile.datasets.mmar),
                         check_audio=False)  # one item is shown: only its audio must be here
        meta.raise_if_problems()
        item = dict(meta.items[0])
        if not Path(item["audio_file"]).is_file():
            raise FileNotFoundError(f"{item['audio_file']} not found: the MMAR audio is incomplete "
                                    "(`python -m cogito_lib.run --plan` counts what is missing)")
        return item
    _, clips, _ = _world(profile, Path(run_dir), seed=profile.base.check_seed, num_clips=7, split="demo",
                         progress=False)
    return make_questions(clips[-1:], list(SKILLS), profile.base.check_seed, 1, Path(run_dir) / STAGE / "demo-world")[0]


def answer_with_base(profile: Profile, run_dir: str | Path, model_path: str | None = None) -> dict:
    """Answer one item with the base: loaded here (the pretrained tiny one, or the checkpoint on the hf backend),
    or asked through its servers (a served backend, the paper's)."""
    from .models.generate import SamplingConfig, build_mmar_prompt, generate_reasoning, split_thinking
    from .models.serving import role_kind

    item = demo_item(profile, run_dir)
    max_new_tokens = profile.base.max_new_tokens if model_path else profile.think.max_new_tokens
    if model_path is None and role_kind(profile, "base") != "hf":
        from .models.backends import GenerationRequest
        from .models.generate import build_messages, format_mmar_question
        from .models.serving import served

        request = GenerationRequest("demo", messages=build_messages(format_mmar_question(item["question"],
                                                                                         item["choices"])),
                                    waveform=AudioCache()(item["audio_file"]), max_new_tokens=max_new_tokens)
        with served(profile, "base", log_dir=Path(run_dir) / STAGE) as backend:
            out = split_thinking(backend.generate([request])[0].texts[0], require_think=False)
    else:
        from .models import load_model

        model, processor = load_model(model_path or profile.models.base, dtype=None, device=profile.models.device)
        prompt = build_mmar_prompt(processor, item["question"], item["choices"])
        report = generate_reasoning(model, processor, [prompt], [AudioCache()(item["audio_file"])],
                                    SamplingConfig(max_new_tokens=max_new_tokens, temperature=0.0))
        out = report.outputs[0][0]
    return {"question": item["question"], "choices": item["choices"], "answer": item["answer"],
            "audio_file": item["audio_file"], "thinking": out.thinking, "answer_prediction": out.answer_prediction,
            "pass@1": int(is_correct(out.answer_prediction, item["answer"], item["choices"]))}
