"""Trainer recipes written beside every stage-4 export: the exact `swift sft` command (ms-swift, the paper's
trainer) and a LLaMA-Factory config, with the run's own settings, so the exported traces train as shipped.

    exports/ms-swift/train.sh              cd to the run dir, ROOT_IMAGE_DIR, NPROC_PER_NODE, `swift sft ...`
    exports/ms-swift/sft_args.json         the same arguments as data (what tests/test_recipes.py parses)
    exports/llamafactory/cogito_sft.yaml   `llamafactory-cli train`: template and enable_thinking that keep <think>
    exports/llamafactory/ds_z3_config.json DeepSpeed ZeRO-3 (LLaMA-Factory's wheel ships none)
    exports/llamafactory/train.sh          cd to the run dir, `llamafactory-cli train exports/.../cogito_sft.yaml`

Each trainer runs in its own pinned environment (envs/ms-swift, envs/llamafactory: ms-swift 4.6.0 and
LLaMA-Factory 0.9.5 with transformers 4.57.6, where Qwen3-Omni's experts are nn.Linear layers that the LoRA
target names reach). Every path in a recipe is relative to the run dir the export was made from (the export's audio
paths are too), and each train.sh changes into that run dir first, so a copied run dir trains as it is. `MODEL`,
`OUTPUT_DIR` and `NPROC_PER_NODE` can be overridden from the environment.

Facts the recipes rely on, read in the pinned trainers' sources:
- ms-swift 4.6.0: the LoRA switch is `--tuner_type lora` (no `--train_type`: an unknown flag raises
  `ValueError: remaining_argv`, swift/pipelines/base.py); `--learning_rate` unset means 1e-4 for LoRA and
  `--num_train_epochs` defaults to 3 (swift/arguments/sft_args.py), so both are always written; `--target_regex`
  replaces `--target_modules` (swift/arguments/tuner_args.py); the `qwen3_omni` template tokenizes the assistant
  message verbatim as the response, so `<think>...</think>` is in the loss (swift/template/base.py); relative media
  paths are tried against the working directory, then `ROOT_IMAGE_DIR` (swift/template/vision_utils.py).
- LLaMA-Factory 0.9.5: `qwen3_omni` is a ReasoningTemplate, which with `enable_thinking: false` removes every
  `<think>...</think>` from the training targets (llamafactory/data/template.py, ReasoningTemplate.encode_oneturn):
  `check_keeps_reasoning` refuses such a config; `media_dir` joins relative media paths
  (llamafactory/data/converter.py); `lora_target` names are matched inside the language model only when the vision
  and audio towers are frozen (llamafactory/model/model_utils/visual.py, patch_target_modules).
"""
from __future__ import annotations

import json
import math
import os
import shlex
from pathlib import Path
from typing import Any, Mapping, Sequence

from .io import atomic_write_text, write_json

MS_SWIFT_VERSION = "4.6.0"  # envs/ms-swift/requirements.txt
LLAMAFACTORY_VERSION = "0.9.5"  # envs/llamafactory/requirements.txt
MAX_LENGTH = 8192  # tokens per sample (audio + question + reasoning + answer); longer samples are dropped, not cut

# Per model family: ms-swift's model_type and template, LLaMA-Factory's template, and the prefix of the decoder
# layers' module names in the trainers' (transformers 4.57) model, for the LoRA target regex.
FAMILY_TRAINERS: dict[str, dict[str, str]] = {
    "qwen3_omni": {"swift_model_type": "qwen3_omni_moe", "swift_template": "qwen3_omni",
                   "llamafactory_template": "qwen3_omni", "layers": r"thinker\.model\.layers"},
    "qwen2_5_omni": {"swift_model_type": "qwen2_5_omni", "swift_template": "qwen2_5_omni",
                     "llamafactory_template": "qwen2_omni", "layers": r"thinker\.model\.layers"},
    "qwen2_audio": {"swift_model_type": "qwen2_audio", "swift_template": "qwen2_audio",
                    "llamafactory_template": "qwen2_audio", "layers": r"language_model\.model\.layers"},
}
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")
# LLaMA-Factory templates that are ReasoningTemplates (their assistant format is reasoning-aware): with
# enable_thinking false they delete the reasoning from the labels
LLAMAFACTORY_REASONING_TEMPLATES = ("qwen3_omni",)


class RecipeError(ValueError):
    """A recipe would not train what the kit means (the message says what and how to fix it)."""


def batch_split(batch_size: int, processes: int, micro_batch_size: int) -> tuple[int, int, int]:
    """(processes, per-device batch, gradient accumulation) whose product is `batch_size` (the run's sequences per
    step), from train.processes and train.micro_batch_size (0: one forward per rank)."""
    per_rank = max(1, math.ceil(batch_size / max(1, processes)))
    micro = micro_batch_size or per_rank
    return processes, micro, max(1, math.ceil(per_rank / micro))


def swift_target_regex(family: str, targets: Sequence[str]) -> str:
    """A regex over the trainers' module names that adapts exactly `targets` (train.lora_targets) in the language
    model's decoder layers: attention projections, and MLP projections of a dense MLP or of every expert."""
    layers = FAMILY_TRAINERS[family]["layers"]
    attention = [t for t in targets if t in ATTENTION]
    mlp = [t for t in targets if t in MLP]
    unknown = [t for t in targets if t not in ATTENTION + MLP]
    if unknown:
        raise RecipeError(f"train.lora_targets {unknown}: the recipes know {', '.join(ATTENTION + MLP)}")
    parts = []
    if attention:
        parts.append(rf"self_attn\.(?:{'|'.join(attention)})")
    if mlp:
        parts.append(rf"mlp\.(?:experts\.\d+\.)?(?:{'|'.join(mlp)})")
    return rf"^{layers}\.\d+\.(?:{'|'.join(parts)})$"


def _relative(path: str, start: Path) -> str:
    """`path` relative to `start` when it is a folder under the same tree, else unchanged (a hub id, /models/...)."""
    p = Path(path)
    if not p.is_absolute() or not p.exists():
        return path
    try:
        return os.path.relpath(p.resolve(), start.resolve())
    except ValueError:  # another drive
        return path


def recipe_settings(profile: Any) -> dict[str, Any]:
    """The run's training settings both recipes use (the profile's train.* values: the paper profile gives the
    paper's lr 1e-5, 1 epoch, LoRA r 8 / alpha 32, 32 sequences per step)."""
    t = profile.train
    family = profile.models.family
    if family not in FAMILY_TRAINERS:
        raise RecipeError(f"no trainer recipe for model family {family!r}; known: {', '.join(FAMILY_TRAINERS)}")
    processes, micro, accumulation = batch_split(t.batch_size, t.processes, t.micro_batch_size)
    bf16 = profile.models.dtype == "bfloat16"
    return {"family": family, **FAMILY_TRAINERS[family], "learning_rate": t.learning_rate, "epochs": t.epochs,
            "max_steps": t.max_steps, "warmup_steps": t.warmup_steps, "lora_rank": t.lora_rank,
            "lora_alpha": t.lora_alpha, "lora_dropout": t.lora_dropout, "lora_targets": list(t.lora_targets),
            "freeze_audio": t.freeze_audio, "processes": processes, "per_device_batch": micro,
            "gradient_accumulation": accumulation, "batch_size": processes * micro * accumulation,
            "gradient_checkpointing": t.gradient_checkpointing or processes > 1, "seed": t.seed,
            "checkpoint_every": t.checkpoint_every, "dtype": "bfloat16" if bf16 else "float32",
            "deepspeed": processes > 1}


# ------------------------------------------------------------------------------------------------ ms-swift
def ms_swift_arguments(settings: Mapping[str, Any], *, model: str, dataset: str, output_dir: str) -> list[str]:
    """The `swift sft` arguments (ms-swift 4.6.0) for the run's settings: LoRA on exactly train.lora_targets,
    the kit's schedule (linear warm-up, cosine to 10% of the peak), and every default that differs from the kit's
    written out."""
    s = settings
    args = {
        "model": model, "model_type": s["swift_model_type"], "template": s["swift_template"],
        "dataset": dataset, "split_dataset_ratio": 0,
        "tuner_type": "lora", "target_regex": swift_target_regex(s["family"], s["lora_targets"]),
        "lora_rank": s["lora_rank"], "lora_alpha": s["lora_alpha"], "lora_dropout": s["lora_dropout"],
        "freeze_vit": str(s["freeze_audio"]).lower(), "freeze_aligner": "true",
        "torch_dtype": s["dtype"], "attn_impl": "sdpa",
        "num_train_epochs": s["epochs"], "learning_rate": s["learning_rate"],
        "lr_scheduler_type": "cosine_with_min_lr", "lr_scheduler_kwargs": json.dumps({"min_lr_rate": 0.1}),
        "warmup_steps": s["warmup_steps"],
        "per_device_train_batch_size": s["per_device_batch"],
        "gradient_accumulation_steps": s["gradient_accumulation"],
        "max_length": MAX_LENGTH, "truncation_strategy": "delete",
        "gradient_checkpointing": str(s["gradient_checkpointing"]).lower(),
        "loss_scale": "default", "save_steps": s["checkpoint_every"] or 500, "save_only_model": "true",
        "logging_steps": 10, "output_dir": output_dir, "seed": s["seed"],
        "dataset_num_proc": 4, "dataloader_num_workers": 2,
    }
    if s["max_steps"] > 0:
        args["max_steps"] = s["max_steps"]
    if s["deepspeed"]:
        args["deepspeed"] = "zero3"
    argv = []
    for key, value in args.items():
        argv += [f"--{key}", str(value)]
    return argv


def _script(run_dir_from_here: str, lines: Sequence[str], what: str) -> str:
    return "\n".join([
        "#!/usr/bin/env bash",
        f"# {what}",
        "# Written by cogito_lib.recipes with the run's settings; every path is relative to the run dir.",
        "set -euo pipefail",
        f'cd "$(dirname "$0")/{run_dir_from_here}"   # the run dir: the export\'s audio paths are relative to it',
        *lines,
    ]) + "\n"


def write_ms_swift_recipe(export_dir: Path, run_dir: Path, settings: Mapping[str, Any], *, model: str,
                          name: str) -> dict[str, str]:
    folder = export_dir / "ms-swift"
    up = os.path.relpath(run_dir.resolve(), folder.resolve())
    dataset = os.path.relpath((folder / f"{name}.jsonl").resolve(), run_dir.resolve())
    output = os.path.relpath((folder / "output").resolve(), run_dir.resolve())
    argv = ms_swift_arguments(settings, model="${MODEL}", dataset=dataset, output_dir="${OUTPUT_DIR}")
    write_json(folder / "sft_args.json", {"ms_swift": MS_SWIFT_VERSION, "model": model, "output_dir": output,
                                          "nproc_per_node": settings["processes"], "argv": ms_swift_arguments(
                                              settings, model=model, dataset=dataset, output_dir=output)})
    command = " \\\n  ".join(["swift sft"] + [
        f"{a} {shlex.quote(b) if b not in ('${MODEL}', '${OUTPUT_DIR}') else chr(34) + b + chr(34)}"
        for a, b in zip(argv[::2], argv[1::2])])
    lines = [
        f"# ms-swift {MS_SWIFT_VERSION} in its own venv (envs/ms-swift/requirements.txt, envs/README.md):",
        "#   python3.11 -m venv envs/.ms-swift && envs/.ms-swift/bin/pip install -r envs/ms-swift/requirements.txt",
        "# then: PATH=envs/.ms-swift/bin:$PATH exports/.../ms-swift/train.sh   (MODEL=/models/... to override)",
        f"MODEL=${{MODEL:-{shlex.quote(model)}}}",
        f"OUTPUT_DIR=${{OUTPUT_DIR:-{shlex.quote(output)}}}",
        'export ROOT_IMAGE_DIR="$PWD"   # ms-swift resolves relative audio paths here (after the working dir)',
        f"export NPROC_PER_NODE=${{NPROC_PER_NODE:-{settings['processes']}}}",
        command,
        "# merge for vLLM / notebook 07:  swift export --adapters \"$OUTPUT_DIR\"/v*/checkpoint-* --merge_lora true",
    ]
    script = atomic_write_text(folder / "train.sh", _script(up, lines, "LoRA self-distillation with ms-swift"))
    os.chmod(script, 0o755)
    return {"ms_swift_recipe": str(script), "ms_swift_args": str(folder / "sft_args.json")}


# ------------------------------------------------------------------------------------------------ LLaMA-Factory
def llamafactory_config(settings: Mapping[str, Any], *, model: str, dataset_dir: str, dataset: str,
                        output_dir: str, deepspeed: str | None, enable_thinking: bool = True) -> dict[str, Any]:
    """The `llamafactory-cli train` config (LLaMA-Factory 0.9.5) for the run's settings; RecipeError if it would
    not train on the reasoning (`check_keeps_reasoning`)."""
    s = settings
    config: dict[str, Any] = {
        "model_name_or_path": model, "trust_remote_code": False,
        "stage": "sft", "do_train": True, "finetuning_type": "lora",
        "lora_rank": s["lora_rank"], "lora_alpha": s["lora_alpha"], "lora_dropout": s["lora_dropout"],
        "lora_target": ",".join(s["lora_targets"]),
        "freeze_vision_tower": bool(s["freeze_audio"]), "freeze_multi_modal_projector": True,
        "dataset_dir": dataset_dir, "dataset": dataset, "media_dir": ".",
        "template": s["llamafactory_template"], "enable_thinking": enable_thinking,
        "cutoff_len": MAX_LENGTH, "overwrite_cache": True, "preprocessing_num_workers": 4,
        "dataloader_num_workers": 2,
        "output_dir": output_dir, "logging_steps": 10, "save_steps": s["checkpoint_every"] or 500,
        "plot_loss": True, "overwrite_output_dir": True, "save_only_model": True, "report_to": "none",
        "per_device_train_batch_size": s["per_device_batch"],
        "gradient_accumulation_steps": s["gradient_accumulation"],
        "learning_rate": s["learning_rate"], "num_train_epochs": s["epochs"],
        "lr_scheduler_type": "cosine_with_min_lr", "lr_scheduler_kwargs": {"min_lr_rate": 0.1},
        "warmup_steps": s["warmup_steps"], "bf16": s["dtype"] == "bfloat16", "seed": s["seed"],
        "disable_gradient_checkpointing": not s["gradient_checkpointing"],
    }
    if s["max_steps"] > 0:
        config["max_steps"] = s["max_steps"]
    if deepspeed:
        config["deepspeed"] = deepspeed
    problems = check_keeps_reasoning(config)
    if problems:
        raise RecipeError("; ".join(problems))
    return config


def check_keeps_reasoning(config: Mapping[str, Any]) -> list[str]:
    """Why a LLaMA-Factory config would train without the reasoning (empty when it keeps it): a reasoning template
    with `enable_thinking` false deletes every `<think>...</think>` from the targets (ReasoningTemplate), and a
    template the kit has not checked might too. tests/test_recipes.py checks the same on real samples with
    LLaMA-Factory's own template code."""
    problems = []
    template = config.get("template")
    known = {spec["llamafactory_template"] for spec in FAMILY_TRAINERS.values()}
    if template not in known:
        problems.append(f"template {template!r} is not one the kit has checked keeps <think> in the labels "
                        f"({', '.join(sorted(known))})")
    if config.get("enable_thinking", True) is not True:
        problems.append(f"enable_thinking is {config.get('enable_thinking')!r}: LLaMA-Factory's reasoning templates "
                        f"({', '.join(LLAMAFACTORY_REASONING_TEMPLATES)}) then delete every <think>...</think> from "
                        "the training targets, i.e. all the reasoning; set enable_thinking: true")
    return problems


DEEPSPEED_ZERO3 = {  # LLaMA-Factory's examples/deepspeed/ds_z3_config.json (not in its wheel)
    "train_batch_size": "auto", "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto",
    "gradient_clipping": "auto", "zero_allow_untested_optimizer": True,
    "fp16": {"enabled": "auto", "loss_scale": 0, "loss_scale_window": 1000, "initial_scale_power": 16,
             "hysteresis": 2, "min_loss_scale": 1},
    "bf16": {"enabled": "auto"},
    "zero_optimization": {"stage": 3, "overlap_comm": False, "contiguous_gradients": True,
                          "sub_group_size": 1e9, "reduce_bucket_size": "auto",
                          "stage3_prefetch_bucket_size": "auto", "stage3_param_persistence_threshold": "auto",
                          "stage3_max_live_parameters": 1e9, "stage3_max_reuse_distance": 1e9,
                          "stage3_gather_16bit_weights_on_model_save": True},
}


def _yaml_value(value: Any) -> str:
    """A JSON scalar or flow mapping (valid YAML), floats always with a '.' in the mantissa: YAML 1.1 loaders read
    `1e-05` as a string, `1.0e-05` as a float."""
    if isinstance(value, float):
        text = repr(value)
        mantissa, e, exponent = text.partition("e")
        return (mantissa if "." in mantissa else mantissa + ".0") + (e + exponent if e else "")
    return json.dumps(value)


def _yaml(config: Mapping[str, Any]) -> str:
    """Flat YAML, one `key: value` a line."""
    return "".join(f"{key}: {_yaml_value(value)}\n" for key, value in config.items())


def write_llamafactory_recipe(export_dir: Path, run_dir: Path, settings: Mapping[str, Any], *, model: str,
                              name: str) -> dict[str, str]:
    folder = export_dir / "llamafactory"
    rel = lambda p: os.path.relpath(Path(p).resolve(), run_dir.resolve())  # noqa: E731
    deepspeed = None
    if settings["deepspeed"]:
        write_json(folder / "ds_z3_config.json", DEEPSPEED_ZERO3)
        deepspeed = rel(folder / "ds_z3_config.json")
    config = llamafactory_config(settings, model=model, dataset_dir=rel(folder), dataset=name,
                                 output_dir=rel(folder / "output"), deepspeed=deepspeed)
    header = (f"# LLaMA-Factory {LLAMAFACTORY_VERSION} (envs/llamafactory): LoRA self-distillation on the audited "
              "traces.\n# Paths are relative to the run dir: run it through train.sh beside this file.\n"
              "# template + enable_thinking: true keep <think>...</think> in the training targets.\n")
    yaml_path = atomic_write_text(folder / "cogito_sft.yaml", header + _yaml(config))
    lines = [
        f"# LLaMA-Factory {LLAMAFACTORY_VERSION} in its own venv (envs/llamafactory/requirements.txt, envs/README.md):",
        "#   python3.11 -m venv envs/.llamafactory && envs/.llamafactory/bin/pip install -r "
        "envs/llamafactory/requirements.txt",
        "# then: PATH=envs/.llamafactory/bin:$PATH exports/.../llamafactory/train.sh   (MODEL=/models/... to override)",
        f"MODEL=${{MODEL:-{shlex.quote(model)}}}",
        f"export FORCE_TORCHRUN=1 NPROC_PER_NODE=${{NPROC_PER_NODE:-{settings['processes']}}}",
        f'llamafactory-cli train {shlex.quote(rel(yaml_path))} model_name_or_path="$MODEL"',
    ]
    up = os.path.relpath(run_dir.resolve(), folder.resolve())
    script = atomic_write_text(folder / "train.sh", _script(up, lines, "LoRA self-distillation with LLaMA-Factory"))
    os.chmod(script, 0o755)
    return {"llamafactory_recipe": str(yaml_path), "llamafactory_train": str(script)}


def write_recipes(export_dir: str | os.PathLike, run_dir: str | os.PathLike, profile: Any, *,
                  model: str | None = None, name: str = "audio_cogito") -> dict[str, str]:
    """Both recipes beside the exports in `export_dir` (made from `run_dir`), for fine-tuning `model` (default:
    the profile's base; inside the run dir it is written relative to it). Returns the paths written."""
    from .layout import base_model_path

    export_dir, run_dir = Path(export_dir), Path(run_dir)
    if model is None:
        try:
            model = base_model_path(profile, run_dir)
        except FileNotFoundError:
            model = profile.models.base
    model = _relative(str(model), run_dir)
    settings = recipe_settings(profile)
    return {**write_ms_swift_recipe(export_dir, run_dir, settings, model=model, name=name),
            **write_llamafactory_recipe(export_dir, run_dir, settings, model=model, name=name)}
