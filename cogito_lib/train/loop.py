"""The supervised training loop shared by the base's pretraining (01) and self-distillation (06).

Training examples are (audio, question prompt, reasoning, answer); the target text is
`<think>reasoning</think>answer` built explicitly (`cogito_lib.models.generate.build_training_text`) and the
loss covers the assistant tokens only. Batches are drawn in a seeded order, so a run is reproducible.

Self-distillation (06) adds: LoRA on the language model (`prepare_lora`), atomic checkpoints (trainable weights,
optimizer, step) every N steps so that a run killed with `kill -9` resumes without repeating or skipping a batch,
and data-parallel training when started by `accelerate launch` / `torchrun` (each rank takes its share of every
step's batch; gradients are averaged, so all ranks hold the same weights).
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..io import JsonlJournal, read_jsonl, write_jsonl
from ..models.audio import AudioCache


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


CHECKPOINT = "checkpoint.pt"  # inside a run's checkpoint folder: trainable weights, optimizer, step, RNG


def trainable_state(model) -> dict:
    """The trainable parameters by name (LoRA weights, or every weight in full training), detached copies."""
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(path: str | Path, model, optimizer, step: int) -> Path:
    """Atomically write the trainable weights, the optimizer state and the number of finished steps."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    state = {"step": step, "weights": trainable_state(model), "optimizer": optimizer.state_dict(),
             "torch_rng": torch.get_rng_state()}
    with open(tmp, "wb") as fh:
        torch.save(state, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)  # a kill before this line leaves the previous checkpoint intact
    return path


def load_checkpoint(path: str | Path, model, optimizer) -> int:
    """Restore a checkpoint written by `save_checkpoint` into `model` and `optimizer`; return its step."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=False)
    params = dict(model.named_parameters())
    missing = [name for name in state["weights"] if name not in params]
    if missing:
        raise ValueError(f"{path} does not fit this model ({len(missing)} unknown weights, e.g. {missing[0]}); "
                         "delete it to train from scratch")
    with torch.no_grad():
        for name, value in state["weights"].items():
            params[name].copy_(value)
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"])


def _embeds_train(model) -> bool:
    """Whether the token embedding or the audio projector has trainable weights."""
    from ..models.frontend import core_model

    core = core_model(model)
    parts = [core.get_input_embeddings()]
    projector = getattr(getattr(core, "model", None), "multi_modal_projector", None)
    if projector is not None:
        parts.append(projector)
    return any(p.requires_grad for part in parts for p in part.parameters())


def _distributed():
    """An `accelerate.Accelerator` when this process is one of several (accelerate launch / torchrun), else None."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch
    from accelerate import Accelerator

    return Accelerator(cpu=not torch.cuda.is_available())  # on CPU: gloo (torchrun or accelerate launch --cpu)


def train_sft(model, processor, examples: Sequence[SFTExample], cfg: LoopConfig, *, audio: AudioCache,
              log_path: str | Path | None = None, progress: bool = True, checkpoint_dir: str | Path | None = None,
              checkpoint_every: int = 0, accelerator: Any = None, frontend: Any = None) -> list[dict]:
    """Train `model` in place on `examples`; return (and journal to `log_path`) one log row per step:
    step, loss, lr, tokens (supervised), tokens_per_s, seconds.

    With `checkpoint_dir`, the trainable weights and optimizer are saved there atomically every
    `checkpoint_every` steps (and at the end); a later call with the same arguments resumes from that
    checkpoint, and the log keeps each step exactly once. Under `accelerate launch` (or with `accelerator`) the
    batch of every step is split across the ranks and the gradients averaged.

    With `frontend` (`models.frontend.FrontEnd`, for a frozen audio tower) every clip is encoded once, before the
    first step, and each step feeds the model `inputs_embeds` built from the cached features: the same numbers as
    the model's own audio path, without rerunning the tower on every batch."""
    import torch

    from ..models.generate import build_training_text, encode_training_batch

    if not examples:
        raise ValueError("no training examples: the previous stage produced nothing to train on")
    accelerator = accelerator if accelerator is not None else _distributed()
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    is_main = rank == 0
    if frontend is not None and accelerator is not None and _embeds_train(model):
        frontend = None  # embeddings built outside the wrapped forward would not have their gradients averaged
    torch.manual_seed(cfg.seed)
    texts = [build_training_text(processor, e.prompt_text, e.reasoning, e.answer) for e in examples]
    features = None
    if frontend is not None:
        paths = list(dict.fromkeys(e.audio_path for e in examples))
        by_path = dict(zip(paths, frontend.features([audio(p) for p in paths], progress=progress and is_main)))
        features = [by_path[e.audio_path] for e in examples]
    groups = _param_groups(model, cfg)
    optimizer = torch.optim.AdamW(groups, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    batches = batch_order(len(examples), cfg.steps, cfg.batch_size, cfg.seed)
    checkpoint = Path(checkpoint_dir) / CHECKPOINT if checkpoint_dir else None
    first_step = 0
    if checkpoint is not None and checkpoint.exists():
        first_step = load_checkpoint(checkpoint, model, optimizer)
    kept: list[dict] = []
    if log_path and is_main:
        # the log keeps the steps the checkpoint holds; later rows (after the checkpoint, before a kill) are redone
        kept = [r for r in read_jsonl(log_path) if r.get("step", 0) <= first_step] if first_step else []
        write_jsonl(log_path, kept)
    journal = JsonlJournal(log_path) if log_path and is_main else None
    device = next(model.parameters()).device
    train_model = model
    if accelerator is not None:
        plugin = getattr(accelerator.state, "deepspeed_plugin", None)
        if plugin is not None:  # no dataloader is prepared, so DeepSpeed is told the per-rank batch here
            plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = max(1, math.ceil(cfg.batch_size / world))
        train_model, optimizer = accelerator.prepare(model, optimizer)
        device = accelerator.device
    steps = range(first_step, cfg.steps)
    if progress and is_main:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc="train", unit="step", initial=first_step, total=cfg.steps)
    model.train()
    logs = []
    try:
        for step in steps:
            started = time.perf_counter()
            idx = batches[step][rank::world] if world > 1 else batches[step]
            if features is not None:
                chosen = [features[i] for i in idx]
                batch = encode_training_batch(processor, [texts[i] for i in idx], features=chosen)
                batch = {k: (v.to(device) if hasattr(v, "to") else v) for k, v in batch.items()}
                batch["inputs_embeds"] = frontend.embed(model, batch.pop("input_ids"), chosen)
            else:
                batch = encode_training_batch(processor, [texts[i] for i in idx],
                                              [audio(examples[i].audio_path) for i in idx])
                batch = {k: (v.to(device) if hasattr(v, "to") else v) for k, v in batch.items()}
            lr = lr_at(step, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr * group["lr_scale"]
            out = train_model(**batch)
            optimizer.zero_grad(set_to_none=True)
            if accelerator is not None:
                accelerator.backward(out.loss)
                accelerator.clip_grad_norm_(train_model.parameters(), cfg.max_grad_norm)
            else:
                out.loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            loss = out.loss.detach()
            tokens = (batch["labels"] != -100).sum()
            if accelerator is not None:
                loss = accelerator.reduce(loss, reduction="mean")
                tokens = accelerator.reduce(tokens, reduction="sum")
            seconds = time.perf_counter() - started
            tokens = int(tokens)
            row = {"step": step + 1, "loss": round(loss.item(), 5), "lr": lr, "tokens": tokens,
                   "tokens_per_s": round(tokens / seconds, 1), "seconds": round(seconds, 4)}
            logs.append(row)
            done = step + 1
            if journal:
                journal.append(row)
            if checkpoint is not None and is_main and (
                    (checkpoint_every and done % checkpoint_every == 0) or done == cfg.steps):
                # after the journal line: a kill in between redoes the steps since the previous checkpoint, and
                # resumption drops their rows first, so each step is logged once
                save_checkpoint(checkpoint, accelerator.unwrap_model(train_model) if accelerator else model,
                                optimizer, done)
            if progress and hasattr(steps, "set_postfix"):
                steps.set_postfix(loss=f"{row['loss']:.3f}")
    finally:
        if journal:
            journal.close()
        model.eval()
    if accelerator is not None:
        accelerator.wait_for_everyone()
    return kept + logs


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


# ----------------------------------------------------------------------------------------------- LoRA
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")  # attention and MLP


def prepare_lora(model, rank: int, alpha: int, dropout: float = 0.0, targets: Sequence[str] = LORA_TARGETS,
                 freeze_audio: bool = True):
    """Freeze `model`, wrap it in LoRA on the language model's attention and MLP projections (never the audio
    tower, see `models.add_lora`) and, if `freeze_audio` is False, train the audio tower's weights in full too."""
    from ..models import add_lora

    if isinstance(targets, str):  # "q_proj,v_proj" as written on a command line
        targets = targets.split(",")
    for param in model.parameters():
        param.requires_grad_(False)
    peft_model = add_lora(model, rank=rank, alpha=alpha, dropout=dropout,
                          target_modules=[t.strip() for t in targets if t.strip()])
    if not freeze_audio:
        for name, param in peft_model.named_parameters():
            if "audio_tower" in name:
                param.requires_grad_(True)
    return peft_model


def save_adapter(model, out_dir: str | Path) -> Path:
    """Save the LoRA adapter (peft format, loadable by `models.load_adapter`) and, when the audio tower was
    trained, its weights beside it (`audio_tower.safetensors`)."""
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    audio = {name: p.detach().cpu().contiguous() for name, p in model.named_parameters()
             if p.requires_grad and "audio_tower" in name and "lora_" not in name}
    if audio:
        from safetensors.torch import save_file

        save_file(audio, str(out_dir / "audio_tower.safetensors"))
    return out_dir
