"""Benchmark (not a test): where one `mini` run spends its time, and how close its two biggest parts come to this
machine's limit.

    # 1. the parts of a whole run, from a py-spy profile of `python -m cogito_lib.run --profile mini` (all processes)
    py-spy record --subprocesses -r 25 -f raw -o prof.txt -- python -m cogito_lib.run --profile mini --run-dir D
    python benchmarks/bench_mini_parts.py parts prof.txt [--run-dir D]
    # 2. the limit of the two biggest parts, old code path against new, interleaved in one process
    python benchmarks/bench_mini_parts.py limits --run-dir D [--threads 1] [--repeats 3]

`parts` reads py-spy's collapsed stacks (one line per distinct stack of the main Python thread of every process,
with its sample count) and gives every sample to the first part whose frames it holds: front-end encoding (the
Whisper feature extractor and the audio tower), I/O (JSON/JSONL, audio files, checkpoints, model files),
training steps, evaluation (notebook 07's generation and scoring), generation (the thinker and the base's
check), world synthesis (clips and TTS), process start-up (imports, kernels) and the rest. Fractions of samples
do not depend on how loaded the machine was, wall seconds do; `--run-dir` adds the run's per-notebook wall times
from `metrics.json`.

`limits` measures, on the run dir's real data, a LoRA training step of notebook 06 and the thinker's K samples of
notebook 04, each the old way (the audio tower rerun in every step, transformers' `generate` with K expanded
prompts) and the new way (cached front-end features, `models.decode`), interleaved `--repeats` times so drift in
the machine's load hits both. For each it counts FLOPs per item (per training sequence, per generated sample)
from the model's shapes and the data's token counts, measures the matmul rate of the part's main GEMM shape
right before in the same process and thread count, and reports the ratio achieved. Times are process CPU
seconds (robust to other processes on a shared machine) and wall seconds.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# ------------------------------------------------------------------------------------------------ parts
# (part, regex over one frame "function (file:line)"); a sample goes to the first part any of its frames matches
PARTS = [
    ("front-end encoding", r"feature_extraction_whisper|_audio_features|FrontEnd\._compute|_compute \(.*frontend\.py"
                           r"|\(.*qwen2_audio/modeling_qwen2_audio\.py:\d+\).*|Qwen2AudioEncoder"),
    ("I/O", r"read_jsonl|write_jsonl|scan_jsonl|iter_jsonl|write_json |read_json |atomic_write|JsonlJournal"
            r"|save_pretrained|from_pretrained|soundfile|torch/serialization|safetensors|save_checkpoint"
            r"|load_checkpoint|np\.load|npyio|_load \(.*frontend|_store \(.*frontend|encode_wav"),
    ("training steps", r"train_sft|train/loop\.py"),
    ("evaluation", r"evaluate/"),
    ("generation", r"generate\.py|decode\.py|generation/utils\.py|backends\.py"),
    ("world synthesis", r"world/|sources/"),
    ("process start-up", r"_find_and_load|<frozen importlib|ipykernel_launcher|kernelapp|papermill|"
                         r"jupyter_client|traitlets"),
]
# the audio tower only counts as front-end inside its own forward (not the decoder's forward in the same file)
TOWER = re.compile(r"\((?:.*/)?modeling_qwen2_audio\.py:(\d+)\)")
NOTEBOOK_OF = [  # (notebook, regex of a kit function on the stack)
    ("07", r"evaluate/|load_benchmark|build_mmar_synth"),
    ("06", r"run_variants|next_round|train_variant|launch_parallel|cogito_lib/train/__main__"),
    ("05", r"pipe/audit\.py"),
    ("04", r"pipe/think\.py"),
    ("03", r"pipe/annotate\.py"),
    ("02", r"pipe/collect\.py|collect_world|world/collect\.py.*collect \("),
    ("01", r"base_model\.py"),
]


def parse_stacks(path: str | Path):
    """(frames, count) per line of a py-spy raw (collapsed) profile."""
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            yield stack.split(";"), int(count)


def classify(frames: list[str]) -> str:
    text = ";".join(frames)
    for part, pattern in PARTS:
        if part == "front-end encoding":
            if re.search(r"feature_extraction_whisper|_audio_features|frontend\.py.*_compute|_compute.*frontend",
                         text) or _in_tower(frames):
                return part
            continue
        if re.search(pattern, text):
            return part
    return "other"


def _in_tower(frames: list[str]) -> bool:
    # Qwen2AudioEncoder.forward / its layers: functions of modeling_qwen2_audio.py called from the audio tower
    return any("Qwen2AudioEncoder" in f or (TOWER.search(f) and f.split(" ", 1)[0] in ("forward",) and
                                              "audio_tower" in ";".join(frames)) for f in frames)


def notebook_of(frames: list[str]) -> str:
    text = ";".join(frames)
    for notebook, pattern in NOTEBOOK_OF:
        if re.search(pattern, text):
            return notebook
    return "-"


def parts_table(stacks: str | Path, run_dir: str | Path | None = None) -> dict:
    totals, by_notebook = Counter(), defaultdict(Counter)
    for frames, count in parse_stacks(stacks):
        part = classify(frames)
        totals[part] += count
        by_notebook[notebook_of(frames)][part] += count
    samples = sum(totals.values())
    out = {"samples": samples, "fraction": {p: round(c / samples, 4) for p, c in totals.most_common()},
           "fraction_by_notebook": {nb: {p: round(c / samples, 4) for p, c in parts.most_common()}
                                    for nb, parts in sorted(by_notebook.items())}}
    if run_dir:
        metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
        walls = {name[:2]: entry.get("wall_s") for name, entry in metrics.get("notebooks", {}).items()}
        out["notebook_wall_s"] = walls
        out["total_wall_s"] = round(sum(v for v in walls.values() if v), 1)
    return out


def print_parts(table: dict) -> None:
    print(f"{table['samples']} samples")
    print("| part | share of the run |")
    print("|---|---|")
    for part, share in table["fraction"].items():
        print(f"| {part} | {100 * share:.1f}% |")
    if "notebook_wall_s" in table:
        print("\n| notebook | wall s |\n|---|---|")
        for nb, wall in sorted(table["notebook_wall_s"].items()):
            print(f"| {nb} | {wall} |")
        print(f"| total | {table['total_wall_s']} |")


# ------------------------------------------------------------------------------------------------ limits
def matmul_rate(m: int, k: int, n: int, seconds: float = 1.0) -> float:
    """GFLOP/s of an [m, k] x [k, n] float32 matmul on this process's threads (CPU time based)."""
    import torch

    a, b = torch.randn(m, k), torch.randn(k, n)
    for _ in range(3):
        a @ b
    reps, started, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - started < seconds:
        a @ b
        reps += 1
    cpu = (time.process_time() - cpu) / max(1, torch.get_num_threads())
    return 2 * m * k * n * reps / cpu / 1e9


def decoder_flops(config) -> dict:
    """FLOPs of the text decoder per token (linear layers and LM head, forward), and of attention per token per
    context position."""
    text = config.text_config
    h, inter, layers = text.hidden_size, text.intermediate_size, text.num_hidden_layers
    head = h // text.num_attention_heads
    kv = text.num_key_value_heads * head
    linear = layers * (h * h + 2 * h * kv + h * h + 3 * h * inter) + h * text.vocab_size
    return {"linear_per_token": 2 * linear, "attention_per_token_per_ctx": 2 * 2 * layers * h,
            "layers": layers, "hidden": h, "inter": inter, "kv": kv}


def lora_flops(config, rank: int) -> int:
    """Extra forward FLOPs per token of LoRA on every attention and MLP projection of the decoder."""
    text = config.text_config
    h, inter, layers = text.hidden_size, text.intermediate_size, text.num_hidden_layers
    kv = text.num_key_value_heads * (h // text.num_attention_heads)
    dims = [(h, h), (h, kv), (h, kv), (h, h), (h, inter), (h, inter), (inter, h)]
    return 2 * rank * layers * sum(i + o for i, o in dims)


def tower_flops(config) -> float:
    """FLOPs of the audio tower for one (padded) clip."""
    a = config.audio_config
    frames = 2 * a.max_source_positions
    d, ffn, layers = a.d_model, a.encoder_ffn_dim, a.encoder_layers
    conv = 2 * frames * a.num_mel_bins * d * 3 + 2 * (frames // 2) * d * d * 3
    seq = frames // 2
    per_layer = 2 * seq * (4 * d * d + 2 * d * ffn) + 2 * 2 * seq * seq * d
    return conv + layers * per_layer


def _time(fn):
    started, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - started, time.process_time() - cpu


def limits(run_dir: Path, threads: int, repeats: int, steps: int, questions: int) -> dict:
    import copy

    import numpy as np
    import torch

    from cogito_lib.config import load_profile
    from cogito_lib.distill import build_training_sets
    from cogito_lib.layout import base_model_path, frontend_cache
    from cogito_lib.models import load_model
    from cogito_lib.models.audio import AudioCache
    from cogito_lib.models.frontend import FrontEnd, make_frontend
    from cogito_lib.models.generate import (SamplingConfig, build_mmar_prompt, build_training_text,
                                            encode_training_batch, generate_texts)
    from cogito_lib.io import read_jsonl
    from cogito_lib.train import LoopConfig, prepare_lora, train_sft

    torch.set_num_threads(threads)
    profile = load_profile("mini")
    base = base_model_path(profile, run_dir)
    model, processor = load_model(base)
    config = model.config
    dec = decoder_flops(config)
    tower = tower_flops(config)
    t = profile.train
    audio = AudioCache(run_dir)
    report: dict = {"threads": threads, "tower_gflop_per_clip": round(tower / 1e9, 3),
                    "decoder_mflop_per_token": round(dec["linear_per_token"] / 1e6, 3)}

    # --- training: notebook 06's no_audit set (the longest sequences), LoRA as 06 trains it
    examples = build_training_sets(profile, run_dir, ["no_audit"])["no_audit"].examples
    texts = [build_training_text(processor, e.prompt_text, e.reasoning, e.answer) for e in examples[:256]]
    waves = [audio(e.audio_path) for e in examples[:256]]
    fe = FrontEnd(model, processor)
    feats = fe.features(waves)
    lengths, supervised = [], []
    for i in range(0, len(texts), t.batch_size):
        b = encode_training_batch(processor, texts[i:i + t.batch_size], features=feats[i:i + t.batch_size])
        lengths.append(int(b["attention_mask"].sum()))
        supervised.append(int(b["attention_mask"].shape[0] * b["attention_mask"].shape[1]))
    tokens_per_seq = sum(lengths) / len(texts)
    padded_per_seq = sum(supervised) / len(texts)
    ctx = padded_per_seq / 2  # mean causal context per token of a padded sequence
    lora = lora_flops(config, t.lora_rank)
    per_token = 2 * (dec["linear_per_token"] + dec["attention_per_token_per_ctx"] * ctx) + 3 * lora
    seq_flops = per_token * padded_per_seq
    report["training"] = {"tokens_per_sequence": round(tokens_per_seq, 1),
                          "padded_tokens_per_sequence": round(padded_per_seq, 1),
                          "gflop_per_sequence_decoder": round(seq_flops / 1e9, 3),
                          "gflop_per_sequence_tower_old": round(tower / 1e9, 3), "runs": []}
    cfg = LoopConfig(steps=steps, batch_size=t.batch_size, learning_rate=t.learning_rate, seed=0)
    subset = examples[:256]
    by_path = {e.audio_path: audio(e.audio_path) for e in subset}
    for _ in range(repeats):
        rate = matmul_rate(t.batch_size * int(padded_per_seq), dec["hidden"], dec["inter"])
        row = {"matmul_gflops": round(rate, 1)}
        for way in ("old", "new"):
            lora_model = prepare_lora(copy.deepcopy(model), t.lora_rank, t.lora_alpha, t.lora_dropout,
                                      t.lora_targets)
            frontend = make_frontend(lora_model, processor, training=True) if way == "new" else None
            if frontend is not None:
                frontend.features(list(by_path.values()))  # encoded once, before training (as 01 and 06 do)
            _, wall, cpu = _time(lambda: train_sft(lora_model, processor, subset, cfg, audio=by_path.__getitem__,
                                                   progress=False, frontend=frontend))
            cpu /= threads
            achieved = seq_flops * t.batch_size * steps / cpu / 1e9
            row[way] = {"s_per_step_cpu": round(cpu / steps, 4), "s_per_step_wall": round(wall / steps, 4),
                        "decoder_gflops": round(achieved, 1), "ratio_to_matmul": round(achieved / rate, 3)}
        report["training"]["runs"].append(row)

    # --- generation: notebook 04's thinker, K samples of real questions
    qa = read_jsonl(run_dir / "03-qa-construction" / "qa.jsonl")[:questions]
    prompts = [build_mmar_prompt(processor, q["question"], q["choices"]) for q in qa]
    clips = [audio(q["audio_path"]) for q in qa]
    th = profile.think
    sampling = SamplingConfig(max_new_tokens=th.max_new_tokens, temperature=th.temperature, top_p=th.top_p,
                              num_samples=th.num_samples, seed=0)
    report["generation"] = {"questions": len(qa), "samples_per_question": th.num_samples, "runs": []}
    for _ in range(repeats):
        rate = matmul_rate(th.batch_size, dec["hidden"], dec["inter"])
        row = {"matmul_gflops": round(rate, 1)}
        for way in ("old", "new"):
            if way == "old":
                out, wall, cpu = _time(lambda: generate_texts(
                    model, processor, prompts, clips, sampling, max(1, 32 // th.num_samples), frontend=False))
            else:
                frontend = FrontEnd(model, processor)
                out, wall, cpu = _time(lambda: generate_texts(model, processor, prompts, clips, sampling,
                                                              max(1, th.batch_size // th.num_samples),
                                                              frontend=frontend))
            cpu /= threads
            new_tokens = sum(len(processor.tokenizer(s, add_special_tokens=False)["input_ids"]) + 1
                             for samples in out for s in samples)
            prompt_tokens = sum(len(processor.tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts)
            samples = len(qa) * th.num_samples
            # the work a sample needs: its share of one prefill, its own tokens against a mean context, and the
            # tower once per clip; the old path spends K prefills and K towers per question
            mean_ctx = prompt_tokens / len(qa) + new_tokens / samples / 2
            needed = (prompt_tokens * dec["linear_per_token"] + len(qa) * tower
                      + new_tokens * (dec["linear_per_token"] + dec["attention_per_token_per_ctx"] * mean_ctx))
            achieved = needed / cpu / 1e9
            row[way] = {"samples_per_s_cpu": round(samples / cpu, 1), "samples_per_s_wall": round(samples / wall, 1),
                        "useful_gflops": round(achieved, 2), "ratio_to_matmul": round(achieved / rate, 3),
                        "new_tokens_per_sample": round(new_tokens / samples, 1)}
        report["generation"]["runs"].append(row)
        report["generation"]["gflop_per_sample_needed"] = round(needed / samples / 1e9, 4)
    return report


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("parts", help="break a py-spy profile of a whole run into parts")
    p.add_argument("stacks", help="py-spy raw profile (record -f raw --subprocesses)")
    p.add_argument("--run-dir", default=None, help="the run's folder, for per-notebook wall times")
    p.add_argument("--out", default=None, help="also write the table as JSON")
    q = sub.add_parser("limits", help="the two biggest parts against this machine's matmul rate, old vs new")
    q.add_argument("--run-dir", required=True, help="a mini run dir where notebooks 01-05 have run")
    q.add_argument("--threads", type=int, default=1, help="torch threads (1: robust on a shared machine)")
    q.add_argument("--repeats", type=int, default=2, help="interleaved old/new measurements")
    q.add_argument("--steps", type=int, default=6, help="training steps per measurement")
    q.add_argument("--questions", type=int, default=16, help="thinker questions per measurement")
    q.add_argument("--out", default=None, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    if args.mode == "parts":
        table = parts_table(args.stacks, args.run_dir)
        print_parts(table)
    else:
        table = limits(Path(args.run_dir), args.threads, args.repeats, args.steps, args.questions)
        print(json.dumps(table, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(table, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
