"""The supervised training loop shared by the base's pretraining (01) and self-distillation (06).

Training examples are (audio, question prompt, reasoning, answer); the target text is
`<think>reasoning</think>answer` built explicitly (`cogito_lib.models.generate.build_training_text`) and the
loss covers the assistant tokens only. Batches are drawn in a seeded order, so a run is reproducible.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .io import JsonlJournal


@dataclass(frozen=True)
class SFTExample:
    """One training sequence: the audio, the MMAR-format prompt text, the reasoning (None: answer only)."""

    audio_path: str
    prompt_text: str
    reasoning: str | None
    answer: str


@dataclass(frozen=True)
class LoopConfig:
    steps: int
    batch_size: int
    learning_rate: float
    warmup_steps: int = 0
    weight_decay: float = 0.0
    audio_lr_scale: float = 1.0
    max_grad_norm: float = 1.0
    seed: int = 0


def lr_at(step: int, cfg: LoopConfig) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def batch_order(num_examples: int, steps: int, batch_size: int, seed: int) -> list[np.ndarray]:
    """Indices of each step's batch: seeded epochs of a permutation, so every example is seen before repeats."""
    rng = np.random.default_rng(seed)
    needed = steps * batch_size
    order = np.concatenate([rng.permutation(num_examples) for _ in range(needed // max(1, num_examples) + 1)])
    return [order[i * batch_size:(i + 1) * batch_size] for i in range(steps)]


def _param_groups(model, cfg: LoopConfig) -> list[dict]:
    audio, rest = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (audio if "audio_tower" in name else rest).append(param)
    groups = [{"params": rest, "lr_scale": 1.0}]
    if audio:
        groups.append({"params": audio, "lr_scale": cfg.audio_lr_scale})
    return groups


class AudioCache:
    """Waveforms by path, loaded once (the miniature's clips are small)."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root else None
        self._cache: dict[str, np.ndarray] = {}

    def __call__(self, path: str) -> np.ndarray:
        if path not in self._cache:
            from .models.generate import load_audio

            full = Path(path) if self.root is None or Path(path).is_absolute() else self.root / path
            self._cache[path] = load_audio(full)
        return self._cache[path]


def train_sft(model, processor, examples: Sequence[SFTExample], cfg: LoopConfig, *, audio: AudioCache,
              log_path: str | Path | None = None, progress: bool = True) -> list[dict]:
    """Train `model` in place on `examples`; return (and journal to `log_path`) one log row per step:
    step, loss, lr, tokens (supervised), tokens_per_s, seconds."""
    import torch

    from .models.generate import build_training_text, encode_training_batch

    if not examples:
        raise ValueError("no training examples: the previous stage produced nothing to train on")
    torch.manual_seed(cfg.seed)
    texts = [build_training_text(processor, e.prompt_text, e.reasoning, e.answer) for e in examples]
    groups = _param_groups(model, cfg)
    optimizer = torch.optim.AdamW(groups, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    batches = batch_order(len(examples), cfg.steps, cfg.batch_size, cfg.seed)
    journal = JsonlJournal(log_path) if log_path else None
    steps = range(cfg.steps)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc="train", unit="step")
    model.train()
    logs = []
    try:
        for step in steps:
            started = time.perf_counter()
            idx = batches[step]
            batch = encode_training_batch(processor, [texts[i] for i in idx],
                                          [audio(examples[i].audio_path) for i in idx])
            lr = lr_at(step, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr * group["lr_scale"]
            out = model(**batch)
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            seconds = time.perf_counter() - started
            tokens = int((batch["labels"] != -100).sum())
            row = {"step": step + 1, "loss": round(out.loss.item(), 5), "lr": lr, "tokens": tokens,
                   "tokens_per_s": round(tokens / seconds, 1), "seconds": round(seconds, 4)}
            logs.append(row)
            if journal:
                journal.append(row)
            if progress and hasattr(steps, "set_postfix"):
                steps.set_postfix(loss=f"{row['loss']:.3f}")
    finally:
        if journal:
            journal.close()
        model.eval()
    return logs


def set_threads(threads: int) -> int:
    """Use `threads` torch CPU threads (0 = every usable core); return the number in use."""
    import torch

    from .config import num_workers

    torch.set_num_threads(num_workers(threads))
    return torch.get_num_threads()


def summarise_log(logs: Sequence[dict[str, Any]], tail: int = 20) -> dict:
    """First and final loss (mean of the last `tail` steps), total time and tokens/s."""
    if not logs:
        return {}
    last = logs[-tail:]
    seconds = sum(r["seconds"] for r in logs)
    return {"steps": len(logs), "first_loss": logs[0]["loss"],
            "final_loss": round(float(np.mean([r["loss"] for r in last])), 4),
            "train_seconds": round(seconds, 1),
            "tokens_per_s": round(sum(r["tokens"] for r in logs) / seconds, 1) if seconds else None}
