"""The supervised training loop shared by the base's pretraining (01) and self-distillation (06).

Training examples are (audio, question prompt, reasoning, answer); the target text is
`<think>reasoning</think>answer` built explicitly (`cogito_lib.models.generate.build_training_text`) and the
loss covers the assistant tokens only. Batches are drawn in a seeded order, so a run is reproducible.

Self-distillation (06) adds: LoRA on the language model (`prepare_lora`), atomic checkpoints (trainable weights,
optimizer, step) every N steps so that a run killed with `kill -9` resumes without repeating or skipping a batch,
and data-parallel training when started by `accelerate launch` / `torchrun` (each rank takes its share of every
step's batch; gradients are averaged, so all ranks hold the same weights). A rank's share can be split into
micro-batches whose gradients accumulate (`LoopConfig.micro_batch_size`), each weighted by its supervised tokens,
so that a step is the paper's 32 sequences however few fit in one forward. Under DeepSpeed ZeRO-3 (`accelerate
launch --config_file configs/accelerate/deepspeed_zero3.yaml`) the weights are partitioned across the ranks: MoE
blocks are ZeRO-3 leaf modules, checkpoints are DeepSpeed's own (every rank writes its shard) and the adapter is
gathered before it is saved.
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
    batch_size: int  # sequences per optimisation step, over all ranks
    learning_rate: float
    warmup_steps: int = 0
    weight_decay: float = 0.0
    audio_lr_scale: float = 1.0
    max_grad_norm: float = 1.0
    seed: int = 0
    micro_batch_size: int = 0  # sequences per rank per forward; 0 = the rank's whole share (no accumulation)


def accumulation_steps(batch_size: int, world: int, micro_batch_size: int) -> int:
    """Micro-batches per rank per step: the rank's share of `batch_size` in forwards of `micro_batch_size`."""
    share = math.ceil(batch_size / max(1, world))
    return max(1, math.ceil(share / micro_batch_size)) if micro_batch_size > 0 else 1


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


def _zero3_partitioned(params) -> bool:
    return any(hasattr(p, "ds_id") for p in params)


def gathered_trainable_state(model) -> dict:
    """`trainable_state` on CPU, gathered first when DeepSpeed ZeRO-3 has partitioned the weights (then every rank
    must call it: the gather is collective)."""
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if not _zero3_partitioned(p for _, p in named):
        return {name: p.detach().cpu().clone() for name, p in named}
    import deepspeed

    with deepspeed.zero.GatheredParameters([p for _, p in named], modifier_rank=None):
        return {name: p.detach().cpu().clone() for name, p in named}


def set_moe_leaf_modules(model) -> list[str]:
    """Mark every MoE block (a module with `experts` and a router `gate`) as a ZeRO-3 leaf, so that DeepSpeed
    gathers all its experts at once (a token-dependent subset would hang the ranks) and a LoRA on the fused expert
    weights finds them gathered. Returns the classes marked."""
    from deepspeed.utils import set_z3_leaf_modules

    classes = sorted({type(m) for m in model.modules() if hasattr(m, "experts") and hasattr(m, "gate")},
                     key=lambda c: c.__name__)
    if classes:
        set_z3_leaf_modules(model, classes)
    return [c.__name__ for c in classes]


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


def launched() -> bool:
    """Whether this process is one rank of several (started by `accelerate launch` or `torchrun`)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def uses_deepspeed() -> bool:
    """Whether `accelerate launch` was given a DeepSpeed config."""
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


def make_accelerator(gradient_accumulation_steps: int = 1, force: bool = False):
    """An `accelerate.Accelerator` when this process is one of several (accelerate launch / torchrun) or `force`,
    else None. Create it before the model is loaded: it binds this rank to its own device (`LOCAL_RANK`) and,
    under ZeRO-3 with `zero3_init_flag`, makes `from_pretrained` load each rank's shard only."""
    if not launched() and not force:
        return None
    import torch
    from accelerate import Accelerator
    from accelerate.utils import InitProcessGroupKwargs

    # accelerate takes the accumulation from this variable over the argument, and `accelerate launch` sets it from
    # the config's deepspeed gradient_accumulation_steps (1): the loop's own count must win, for DeepSpeed too
    os.environ["ACCELERATE_GRADIENT_ACCUMULATION_STEPS"] = str(gradient_accumulation_steps)
    cuda = torch.cuda.is_available()
    handlers = []
    if not cuda and uses_deepspeed():
        # DeepSpeed on its CPU accelerator (DS_ACCELERATOR=cpu): without a named backend accelerate would count
        # one process while DeepSpeed runs them all (unsharded data, doubled reductions)
        handlers.append(InitProcessGroupKwargs(backend="gloo"))
    # plain data parallelism on a CPU: gloo ranks
    return Accelerator(cpu=not cuda and not uses_deepspeed(), kwargs_handlers=handlers,
                       gradient_accumulation_steps=gradient_accumulation_steps)


def _distributed():
    """`make_accelerator()` without gradient accumulation (kept for callers that train one forward per step)."""
    return make_accelerator()


def _zero3(accelerator) -> bool:
    plugin = getattr(accelerator.state, "deepspeed_plugin", None) if accelerator is not None else None
    return plugin is not None and plugin.zero_stage == 3


def _supervised(labels) -> int:
    """Positions the causal-LM loss averages over (labels shifted by one, -100 ignored)."""
    return int((labels[..., 1:] != -100).sum())


DS_CHECKPOINT = "checkpoint-ds"  # DeepSpeed checkpoints (one shard per rank) and `latest.json` naming the newest


def _save_ds_checkpoint(accelerator, checkpoint_dir: Path, step: int) -> None:
    """Every rank writes its shard of step `step` into checkpoint-ds/step-N; then `latest.json` is replaced
    atomically and older steps are removed, so a kill at any point leaves a whole checkpoint to resume from."""
    import shutil

    from ..io import write_json

    root = Path(checkpoint_dir) / DS_CHECKPOINT
    # the frozen base stays out: it is the base checkpoint itself, tens of GB at paper scale
    accelerator.save_state(str(root / f"step-{step}"), exclude_frozen_parameters=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_json(root / "latest.json", {"step": step, "folder": f"step-{step}"})
        for old in root.glob("step-*"):
            if old.name != f"step-{step}":
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def _load_ds_checkpoint(accelerator, checkpoint_dir: Path) -> int:
    from ..io import read_json

    root = Path(checkpoint_dir) / DS_CHECKPOINT
    latest = read_json(root / "latest.json") or {}
    if not latest.get("step") or not (root / latest["folder"]).is_dir():
        return 0
    accelerator.load_state(str(root / latest["folder"]), load_module_strict=False)  # trainable weights only
    return int(latest["step"])


def train_sft(model, processor, examples: Sequence[SFTExample], cfg: LoopConfig, *, audio: AudioCache,
              log_path: str | Path | None = None, progress: bool = True, checkpoint_dir: str | Path | None = None,
              checkpoint_every: int = 0, accelerator: Any = None, frontend: Any = None,
              desc: str = "train") -> list[dict]:
    """Train `model` in place on `examples`; return (and journal to `log_path`) one log row per step:
    step, loss, lr, tokens (supervised), tokens_per_s, seconds.

    With `checkpoint_dir`, the trainable weights and optimizer are saved there atomically every
    `checkpoint_every` steps (and at the end); a later call with the same arguments resumes from that
    checkpoint, and the log keeps each step exactly once. Under `accelerate launch` (or with `accelerator`) the
    batch of every step is split across the ranks and the gradients averaged; with `cfg.micro_batch_size` each
    rank's share is split again into micro-batches whose gradients accumulate before the step (the accelerator
    must then have been made with `make_accelerator(accumulation_steps(...))`). `desc` names the progress bar.

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
    accumulate = accumulation_steps(cfg.batch_size, world, cfg.micro_batch_size)
    if accelerator is not None and accelerator.gradient_accumulation_steps != accumulate:
        raise ValueError(f"the accelerator accumulates {accelerator.gradient_accumulation_steps} micro-batches, this "
                         f"loop {accumulate}: make it with make_accelerator({accumulate})")
    zero3 = _zero3(accelerator)
    if frontend is not None and accelerator is not None and (
            _embeds_train(model) or getattr(accelerator.state, "deepspeed_plugin", None) is not None):
        # embeddings built outside the wrapped forward would not have their gradients averaged, and DeepSpeed
        # (ZeRO-3) holds only this rank's shard of the tower and embedding outside its own forward
        frontend = None
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
    if checkpoint is not None and checkpoint.exists() and not zero3:
        first_step = load_checkpoint(checkpoint, model, optimizer)
    device = next(model.parameters()).device
    train_model = model
    if accelerator is not None:
        plugin = getattr(accelerator.state, "deepspeed_plugin", None)
        if plugin is not None:  # no dataloader is prepared, so DeepSpeed is told the per-rank batch here
            plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = (
                cfg.micro_batch_size or max(1, math.ceil(cfg.batch_size / world)))
            plugin.deepspeed_config["gradient_accumulation_steps"] = accumulate
            plugin.deepspeed_config.pop("train_batch_size", None)
            if zero3:
                set_moe_leaf_modules(model)
        train_model, optimizer = accelerator.prepare(model, optimizer)
        device = accelerator.device
        if zero3 and checkpoint_dir:
            first_step = _load_ds_checkpoint(accelerator, Path(checkpoint_dir))
    kept: list[dict] = []
    if log_path and is_main:
        # the log keeps the steps the checkpoint holds; later rows (after the checkpoint, before a kill) are redone
        kept = [r for r in read_jsonl(log_path) if r.get("step", 0) <= first_step] if first_step else []
        write_jsonl(log_path, kept)
    journal = JsonlJournal(log_path) if log_path and is_main else None
    steps = range(first_step, cfg.steps)
    if progress and is_main:
        from ..progress import progress_bar

        steps = progress_bar(steps, desc=desc, unit="step", initial=first_step, total=cfg.steps)
    model.train()
    logs = []

    def encode(idx):
        if features is not None:
            chosen = [features[i] for i in idx]
            batch = encode_training_batch(processor, [texts[i] for i in idx], features=chosen)
            batch = {k: (v.to(device) if hasattr(v, "to") else v) for k, v in batch.items()}
            batch["inputs_embeds"] = frontend.embed(model, batch.pop("input_ids"), chosen)
            return batch
        batch = encode_training_batch(processor, [texts[i] for i in idx], [audio(examples[i].audio_path) for i in idx])
        return {k: (v.to(device) if hasattr(v, "to") else v) for k, v in batch.items()}

    try:
        for step in steps:
            started = time.perf_counter()
            idx = batches[step][rank::world] if world > 1 else batches[step]
            lr = lr_at(step, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr * group["lr_scale"]
            if accumulate == 1:
                batch = encode(idx)
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
            else:
                loss, tokens = _accumulated_step(train_model, model, optimizer, accelerator, encode, idx, cfg,
                                                 accumulate)
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
            due = (checkpoint_every and done % checkpoint_every == 0) or done == cfg.steps
            if checkpoint is not None and due and zero3:
                _save_ds_checkpoint(accelerator, Path(checkpoint_dir), done)
            elif checkpoint is not None and is_main and due:
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


def _accumulated_step(train_model, model, optimizer, accelerator, encode, idx, cfg: LoopConfig, accumulate: int):
    """One optimisation step over `accumulate` micro-batches of this rank's share `idx`. Each micro-batch's mean
    loss is weighted by its share of the rank's supervised tokens, so the accumulated gradient is that of the
    token mean over the whole share (as one forward of it would give); the accelerator (or DeepSpeed) divides by
    the number of micro-batches, which the factor `accumulate` undoes. Returns (token-mean loss, tokens)."""
    import contextlib

    import torch

    size = cfg.micro_batch_size
    micro = [encode(idx[i:i + size]) for i in range(0, len(idx), size)]
    if len(micro) != accumulate:
        raise ValueError(f"{len(idx)} sequences make {len(micro)} micro-batches of {size}, expected {accumulate}")
    counts = [_supervised(b["labels"]) for b in micro]
    total = max(1, sum(counts))
    optimizer.zero_grad(set_to_none=True)
    loss_sum = torch.zeros((), device=micro[0]["labels"].device)
    for batch, count in zip(micro, counts):
        context = accelerator.accumulate(train_model) if accelerator is not None else contextlib.nullcontext()
        with context:
            out = train_model(**batch)
            weighted = out.loss * (count / total)
            if accelerator is not None:
                accelerator.backward(weighted * accumulate)
            else:
                weighted.backward()
            loss_sum += weighted.detach()
    if accelerator is not None:
        if not accelerator.sync_gradients:
            raise RuntimeError("gradient accumulation out of step: the accelerator did not sync at the step's end")
        accelerator.clip_grad_norm_(train_model.parameters(), cfg.max_grad_norm)
    else:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
    optimizer.step()
    tokens = sum(int((b["labels"] != -100).sum()) for b in micro)
    return loss_sum, torch.tensor(tokens, device=loss_sum.device)


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
                 freeze_audio: bool = True, gradient_checkpointing: bool = False):
    """Freeze `model`, wrap it in LoRA on the language model's attention and MLP projections (never the audio
    tower, see `models.add_lora`; in an MoE with fused experts, every expert through peft's parameter targeting)
    and, if `freeze_audio` is False, train the audio tower's weights in full too. A target that matches nothing
    raises ValueError here, before any training. `gradient_checkpointing` recomputes each decoder layer's
    activations in the backward pass (non-reentrant, so the frozen inputs need no gradient)."""
    from ..models import add_lora

    if isinstance(targets, str):  # "q_proj,v_proj" as written on a command line
        targets = targets.split(",")
    for param in model.parameters():
        param.requires_grad_(False)
    if gradient_checkpointing:
        if not getattr(model, "supports_gradient_checkpointing", False):
            raise ValueError(f"{type(model).__name__} does not support gradient checkpointing; set "
                             "train.gradient_checkpointing=false")
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    peft_model = add_lora(model, rank=rank, alpha=alpha, dropout=dropout,
                          target_modules=[t.strip() for t in targets if t.strip()])
    if not freeze_audio:
        for name, param in peft_model.named_parameters():
            if "audio_tower" in name:
                param.requires_grad_(True)
    return peft_model


def save_adapter(model, out_dir: str | Path, state: dict | None = None) -> Path:
    """Save the LoRA adapter (peft format, loadable by `models.load_adapter`) and, when the audio tower was
    trained, its weights beside it (`audio_tower.safetensors`). `state` is the trainable weights by name when they
    were gathered elsewhere (`gathered_trainable_state` under ZeRO-3, where the model's own are partitioned)."""
    out_dir = Path(out_dir)
    if state is None:
        model.save_pretrained(out_dir)
        audio = {name: p.detach().cpu().contiguous() for name, p in model.named_parameters()
                 if p.requires_grad and "audio_tower" in name and "lora_" not in name}
    else:
        model.save_pretrained(out_dir, state_dict=state)
        audio = {name: t.contiguous() for name, t in state.items() if "audio_tower" in name and "lora_" not in name}
    if audio:
        from safetensors.torch import save_file

        save_file(audio, str(out_dir / "audio_tower.safetensors"))
    return out_dir
