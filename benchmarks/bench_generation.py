"""Batched vs one-by-one generation on a tiny model: items/s and the speed-up (goal >= 5x on CPU).

    .venv/bin/python benchmarks/bench_generation.py --family qwen2_5_omni --size mini --num-prompts 32

Builds a tiny model in a temp folder (or uses --model), generates greedily for the same prompts and clips once
one at a time and once in left-padded batches, checks that both give the same texts, and prints (and with
--out writes) the figures.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cogito_lib.models import (  # noqa: E402
    SamplingConfig, build_prompt, build_tiny_model, count_parameters, generate_texts, load_model,
)

CORPUS = [
    "I hear three beeps at 440 Hz, then a low tone. The answer is (B) three.",
    "The first tone is higher than the second one, so the answer is yes.",
    "A dog barks twice while music plays; a voice says hello near the end.",
    "How many beeps do you hear? Select one option from the provided choices:",
] * 20


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="qwen2_5_omni", help="model family of the tiny build")
    parser.add_argument("--size", default="mini", help="tiny size preset (tiny, mini, small)")
    parser.add_argument("--model", default=None, help="a model folder instead of a fresh tiny build")
    parser.add_argument("--num-prompts", type=int, default=32, help="prompts (each with a clip)")
    parser.add_argument("--batch-size", type=int, default=32, help="prompts per batch in the batched run")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="tokens per output")
    parser.add_argument("--clip-seconds", type=float, default=2.0, help="longest clip length")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = leave as is)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--out", default=None, help="write the figures to this JSON file")
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.model or build_tiny_model(args.family, Path(tmp) / "model", CORPUS, size=args.size, seed=0)
        model, processor = load_model(folder, device=args.device)
        # wider random weights, so that a from-scratch model does not stop at once and outputs differ per prompt
        torch.manual_seed(0)
        if args.model is None:
            with torch.no_grad():
                for name, param in model.named_parameters():
                    if param.dim() >= 2 and "audio_tower" not in name:
                        param.normal_(0.0, 0.1)
        rng = np.random.default_rng(0)
        questions = ["How many beeps do you hear?", "Is the first tone higher than the second?",
                     "Which sound comes last?", "Is the music fast or slow?"]
        prompts = [build_prompt(processor, questions[i % len(questions)]) for i in range(args.num_prompts)]
        clips = [(0.1 * rng.standard_normal(int(16000 * rng.uniform(0.5, 1.0) * args.clip_seconds))).astype(
            np.float32) for _ in prompts]
        sampling = SamplingConfig(max_new_tokens=args.max_new_tokens)
        generate_texts(model, processor, prompts[:2], clips[:2], sampling, batch_size=2)  # warm-up

        started = time.perf_counter()
        single = [generate_texts(model, processor, [p], [c], sampling)[0] for p, c in zip(prompts, clips)]
        single_s = time.perf_counter() - started
        started = time.perf_counter()
        batched = generate_texts(model, processor, prompts, clips, sampling, batch_size=args.batch_size)
        batched_s = time.perf_counter() - started
        tokens = sum(len(processor.tokenizer(t[0], add_special_tokens=False)["input_ids"]) for t in batched)
        figures = {
            "family": args.family if args.model is None else str(args.model),
            "size": args.size if args.model is None else None,
            "parameters": count_parameters(model)["total"],
            "device": args.device,
            "torch_threads": torch.get_num_threads(),
            "num_prompts": args.num_prompts,
            "batch_size": args.batch_size,
            "max_new_tokens": args.max_new_tokens,
            "generated_tokens": tokens,
            "one_by_one_s": round(single_s, 3),
            "batched_s": round(batched_s, 3),
            "one_by_one_items_per_s": round(args.num_prompts / single_s, 2),
            "batched_items_per_s": round(args.num_prompts / batched_s, 2),
            "speedup": round(single_s / batched_s, 2),
            "outputs_identical": single == batched,
        }
    print(json.dumps(figures, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return figures


if __name__ == "__main__":
    main()
