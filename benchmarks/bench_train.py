"""Benchmark (not a test): training throughput of `cogito_lib.train.train_sft` against a plain Hugging Face
`Trainer` on the same base, LoRA, data, batch size and step count. Goal: our loop >= 1.0x the Trainer's
supervised tokens per second.

    python benchmarks/bench_train.py --profile tiny --run-dir /tmp/t06 [--steps 20] [--variant no_audit]

Needs a run dir where notebooks 01-05 have run (the base and the variant's data). Both loops encode each batch
with the same `encode_training_batch` (labels on assistant tokens only) and use the same threads.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import time


def _lora_model(profile, base):
    import torch

    from cogito_lib.models import load_model
    from cogito_lib.train import prepare_lora

    model, processor = load_model(base)
    torch.manual_seed(0)
    t = profile.train
    return prepare_lora(model, t.lora_rank, t.lora_alpha, t.lora_dropout, t.lora_targets), processor


def ours(profile, base, examples, steps: int, batch_size: int) -> dict:
    from cogito_lib.models.audio import AudioCache
    from cogito_lib.train import LoopConfig, train_sft

    model, processor = _lora_model(profile, base)
    audio = AudioCache()
    for e in examples:
        audio(e.audio_path)  # both loops start with decoded audio
    cfg = LoopConfig(steps=steps, batch_size=batch_size, learning_rate=profile.train.learning_rate, seed=0)
    started = time.perf_counter()
    logs = train_sft(model, processor, examples, cfg, audio=audio, progress=False)
    wall = time.perf_counter() - started
    tokens = sum(r["tokens"] for r in logs)
    return {"tokens": tokens, "wall_s": round(wall, 3), "tokens_per_s": round(tokens / wall, 1)}


def hf_trainer(profile, base, examples, steps: int, batch_size: int) -> dict:
    import torch
    from transformers import Trainer, TrainingArguments

    from cogito_lib.models.generate import build_training_text, encode_training_batch
    from cogito_lib.models.audio import AudioCache

    model, processor = _lora_model(profile, base)
    audio = AudioCache()
    texts = [build_training_text(processor, e.prompt_text, e.reasoning, e.answer) for e in examples]
    waves = [audio(e.audio_path) for e in examples]
    counted = {"tokens": 0}

    class Indices(torch.utils.data.Dataset):
        def __len__(self):
            return len(examples)

        def __getitem__(self, i):
            return i

    def collate(indices):
        batch = encode_training_batch(processor, [texts[i] for i in indices], [waves[i] for i in indices])
        counted["tokens"] += int((batch["labels"] != -100).sum())
        return batch

    import tempfile

    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, per_device_train_batch_size=batch_size, max_steps=steps,
                                 learning_rate=profile.train.learning_rate, lr_scheduler_type="cosine",
                                 logging_steps=10_000, save_strategy="no", report_to=[], use_cpu=True,
                                 dataloader_num_workers=0, remove_unused_columns=False, seed=0,
                                 disable_tqdm=True, max_grad_norm=1.0)
        trainer = Trainer(model=model, args=args, train_dataset=Indices(), data_collator=collate)
        started = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # the Trainer prints its summary dict; keep stdout JSON
            trainer.train()
        wall = time.perf_counter() - started
    return {"tokens": counted["tokens"], "wall_s": round(wall, 3), "tokens_per_s": round(counted["tokens"] / wall, 1)}


def main() -> None:
    from cogito_lib.layout import base_model_path
    from cogito_lib.config import load_profile, resolve_run_dir
    from cogito_lib.distill import build_training_sets
    from cogito_lib.env import set_threads

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="tiny")
    parser.add_argument("--run-dir", default=None)
    parser.add_argument("--variant", default="no_audit", help="whose training set to use")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=0, help="0 = train.batch_size")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs of each loop; best kept")
    args = parser.parse_args()
    profile = load_profile(args.profile)
    run_dir = resolve_run_dir(profile, args.run_dir)
    set_threads(args.threads)
    examples = build_training_sets(profile, run_dir, args.variant)[args.variant].examples
    if not examples:
        raise SystemExit(f"variant {args.variant} has no training data in {run_dir}; pick another --variant")
    base = base_model_path(profile, run_dir)
    batch = args.batch_size or profile.train.batch_size
    results = {"ours": [], "hf_trainer": []}
    for _ in range(args.repeats):  # alternate, so drift in machine load hits both
        results["ours"].append(ours(profile, base, examples, args.steps, batch))
        results["hf_trainer"].append(hf_trainer(profile, base, examples, args.steps, batch))
    best = {name: max(runs, key=lambda r: r["tokens_per_s"]) for name, runs in results.items()}
    ratio = best["ours"]["tokens_per_s"] / best["hf_trainer"]["tokens_per_s"]
    print(json.dumps({"profile": args.profile, "variant": args.variant, "examples": len(examples),
                      "steps": args.steps, "batch_size": batch, "threads": args.threads, "runs": results,
                      "best": best, "ratio_ours_over_trainer": round(ratio, 3)}, indent=1))


if __name__ == "__main__":
    main()
