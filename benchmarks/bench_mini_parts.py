"""Benchmark (not a test): where one `mini` run spends its time, and how close its two biggest parts come to this
machine's limit.

    # 1. the parts of a whole run, from a py-spy profile of `python -m cogito_lib.run --profile mini` (all processes)
    py-spy record --nonblocking --subprocesses -r 10 -f raw -o prof.txt -- \
        python -m cogito_lib.run --profile mini --run-dir D
    python benchmarks/bench_mini_parts.py parts prof.txt [--run-dir D]
    # 2. the limit of the two biggest parts, old code path against new, interleaved in one process
    python benchmarks/bench_mini_parts.py limits --run-dir D [--threads 1] [--repeats 3]

(`--nonblocking`: py-spy reads the processes without pausing them, so the run keeps its pace.) `parts` reads
py-spy's collapsed stacks (one line per distinct stack of the main Python thread of every process,
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
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>.*):(?P<line>\d+)\)$")
PARTS = ("front-end encoding", "I/O", "process start-up", "training steps", "evaluation", "generation",
         "world synthesis", "notebook display", "other")
# (notebook, regex over a stack's files): which notebook a process ran, by the kit code it ran (the older
# module names `base.py`, `evaluate.py` too, so a profile of an older commit reads the same)
NOTEBOOK_OF = [
    ("07", r"cogito_lib/evaluate/|cogito_lib/evaluate\.py|mmar_synth\.py|mmar/synth\.py"),
    ("06", r"cogito_lib/distill\.py|cogito_lib/train/__main__\.py"),
    ("05", r"cogito_lib/pipe/audit\.py"),
    ("04", r"cogito_lib/pipe/think\.py"),
    ("03", r"cogito_lib/pipe/annotate\.py"),
    ("01", r"cogito_lib/base_model\.py|cogito_lib/base\.py"),
    ("02", r"cogito_lib/pipe/collect\.py|cogito_lib/world/collect\.py"),
    ("00", r"cogito_lib/checks\.py|cogito_lib/env\.py"),
]


def _tower_spans() -> list[tuple[int, int]]:
    """Line spans of the audio tower's classes in transformers' Qwen2-Audio file (the decoder lives elsewhere)."""
    import inspect

    from transformers.models.qwen2_audio import modeling_qwen2_audio as m

    spans = []
    for cls in (m.Qwen2AudioEncoder, m.Qwen2AudioEncoderLayer, m.Qwen2AudioAttention):
        lines, start = inspect.getsourcelines(cls)
        spans.append((start, start + len(lines)))
    return spans


# a thread whose innermost frame is one of these is waiting, not working (py-spy samples idle threads too)
IDLE_LEAVES = re.compile(r"^(?:.*\.)?(?:select|poll|_poll|wait|_wait_for_tstate_lock|acquire|_recv|recv|"
                         r"recv_multipart|_recv_bytes|accept|readline|read|_watch_pipe_fd|run_forever|_run_once|"
                         r"launch_parallel|_handle_workers|_handle_results|_handle_tasks|main)$")


def parse_stacks(path: str | Path):
    """(process, [(function, file, line)], count) per line of a py-spy raw profile (`--subprocesses`): the process
    is the innermost `process N:...` frame; only main threads doing work are kept (a background thread's stack
    starts in `threading`; a stack ending in a wait is idle)."""
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        parts = stack.split(";")
        chain = [i for i, part in enumerate(parts) if part.startswith("process ")]
        last = chain[-1] if chain else -1
        # a notebook's kernel and everything it starts (world workers, training processes) count as one
        kernels = [parts[i] for i in chain if "ipykernel" in parts[i]]
        process = (kernels[0] if kernels else parts[last] if chain else "process ?").split(":", 1)[0]
        frames = []
        for part in parts[last + 1:]:
            match = FRAME.match(part)
            frames.append((match["func"], match["file"], int(match["line"])) if match else (part, "", 0))
        if not frames or any(f.endswith("_bootstrap") and file.endswith("threading.py") for f, file, _ in frames):
            continue
        if IDLE_LEAVES.match(frames[-1][0]) and "cogito_lib" not in frames[-1][1]:
            continue  # a kit function of one of these names is work, not a wait
        if frames[-1][0].endswith("launch_parallel"):
            continue  # notebook 06 waiting for its training processes
        yield process, frames, int(count)


def classify(frames, tower_spans) -> str:
    """The part one sample belongs to (the first that any of its frames matches, in the order of PARTS)."""
    def any_frame(test):
        return any(test(func, file, line) for func, file, line in frames)

    if any_frame(lambda f, p, n: p.endswith(("feature_extraction_whisper.py", "audio_utils.py"))
                 or (p.endswith("modeling_qwen2_audio.py") and any(a <= n < b for a, b in tower_spans))
                 or (f.endswith("_compute") and p.endswith("frontend.py"))):
        return "front-end encoding"
    if any_frame(lambda f, p, n: p.endswith(("cogito_lib/io.py", "soundfile.py", "torch/serialization.py",
                                             "npyio.py", "_npyio_impl.py", "numpy/lib/format.py",
                                             "_format_impl.py"))
                 or "safetensors" in p or f.endswith(("save_pretrained", "from_pretrained"))
                 or (p.endswith("frontend.py") and f.endswith(("_load", "_store")))):
        return "I/O"
    if any_frame(lambda f, p, n: "importlib._bootstrap" in p or f.endswith("start_new_kernel")):
        return "process start-up"
    if any_frame(lambda f, p, n: p.endswith(("cogito_lib/train/loop.py", "cogito_lib/train.py"))):
        return "training steps"
    if any_frame(lambda f, p, n: "cogito_lib/evaluate/" in p or p.endswith("cogito_lib/evaluate.py")):
        return "evaluation"
    if any_frame(lambda f, p, n: p.endswith(("models/generate.py", "models/decode.py", "models/backends.py",
                                             "generation/utils.py"))):
        return "generation"
    if any_frame(lambda f, p, n: "cogito_lib/world/" in p or "cogito_lib/sources/" in p):
        return "world synthesis"
    if any_frame(lambda f, p, n: "/matplotlib/" in p or "/seaborn/" in p or "/pandas/" in p
                 or p.endswith(("cogito_lib/plots.py", "cogito_lib/widgets.py"))):
        return "notebook display"
    return "other"


def parts_table(stacks: str | Path, run_dir: str | Path | None = None) -> dict:
    spans = _tower_spans()
    totals, per_process, process_votes = Counter(), defaultdict(Counter), defaultdict(Counter)
    for process, frames, count in parse_stacks(stacks):
        part = classify(frames, spans)
        totals[part] += count
        per_process[process][part] += count
        text = ";".join(f"{file}" for _, file, _ in frames)
        for notebook, pattern in NOTEBOOK_OF:
            if re.search(pattern, text):
                process_votes[process][notebook] += count
                break
    by_notebook = defaultdict(Counter)
    for process, parts in per_process.items():
        notebook = process_votes[process].most_common(1)[0][0] if process_votes[process] else "runner"
        by_notebook[notebook].update(parts)
    samples = sum(totals.values())
    out = {"samples": samples, "fraction": {p: round(totals[p] / samples, 4) for p in PARTS if totals[p]},
           "fraction_by_notebook": {nb: {p: round(parts[p] / samples, 4) for p in PARTS if parts[p]}
                                    for nb, parts in sorted(by_notebook.items())}}
    if run_dir:
        metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
        walls = {name[:2]: entry.get("wall_s") for name, entry in metrics.get("notebooks", {}).items()}
        out["notebook_wall_s"] = walls
        out["total_wall_s"] = round(sum(v for v in walls.values() if v), 1)
    return out


def print_parts(table: dict) -> None:
    notebooks = sorted(table["fraction_by_notebook"])
    print(f"{table['samples']} samples; share of all samples of the run, by part and by notebook\n")
    print("| part | run | " + " | ".join(notebooks) + " |")
    print("|---|---|" + "---|" * len(notebooks))
    for part, share in table["fraction"].items():
        cells = [f"{100 * table['fraction_by_notebook'][nb].get(part, 0):.1f}" for nb in notebooks]
        print(f"| {part} | {100 * share:.1f}% | " + " | ".join(cells) + " |")
    totals = [f"{100 * sum(table['fraction_by_notebook'][nb].values()):.1f}" for nb in notebooks]
    print("| all | 100% | " + " | ".join(totals) + " |")
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


def limits(run_dir: Path, threads: int, repeats: int, steps: int, questions: int, base: str | None = None,
           variant: str = "no_audit") -> dict:
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
    base = base or base_model_path(profile, run_dir)
    model, processor = load_model(base)
    config = model.config
    dec = decoder_flops(config)
    tower = tower_flops(config)
    t = profile.train
    audio = AudioCache(run_dir)
    report: dict = {"threads": threads, "tower_gflop_per_clip": round(tower / 1e9, 3),
                    "decoder_mflop_per_token": round(dec["linear_per_token"] / 1e6, 3)}

    # --- training: a set of notebook 06 (no_audit: every thinker sample, the longest), LoRA as 06 trains it
    examples = build_training_sets(profile, run_dir, [variant])[variant].examples
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
    q.add_argument("--base", default=None, help="the base model folder (default: the run dir's, notebook 01)")
    q.add_argument("--variant", default="no_audit", help="whose training set to time")
    q.add_argument("--out", default=None, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    if args.mode == "parts":
        table = parts_table(args.stacks, args.run_dir)
        print_parts(table)
    else:
        table = limits(Path(args.run_dir).resolve(), args.threads, args.repeats, args.steps, args.questions,
                       args.base, args.variant)
        print(json.dumps(table, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(table, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
