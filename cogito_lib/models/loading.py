"""Load a model and its processor by family, checkpoint id or local folder (tiny builds and real checkpoints alike).

The hub is not reachable from the machines this kit is developed on, so loading follows HF_HUB_OFFLINE
semantics: a local folder first, then the Hugging Face cache; a checkpoint found in neither gives one
`ModelNotFoundError` that says what to download and where to put it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

from ..progress import quiet_library_bars
from .families import FAMILIES, ModelFamily, family_for_checkpoint, family_for_model_type, get_family


class ModelNotFoundError(FileNotFoundError):
    """A checkpoint is neither a local folder nor in the Hugging Face cache (the message says what to do)."""


def _missing_message(name: str, family: ModelFamily | None, reason: str = "") -> str:
    hub_id = name if "/" in name and not Path(name).is_absolute() else None
    if family is not None and hub_id is None:
        hub_id = family.checkpoints[0]
    lines = [f"model checkpoint {name!r} not found{': ' + reason if reason else ''}."]
    if hub_id:
        cache = os.environ.get("HF_HUB_CACHE") or os.path.join(
            os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface")), "hub")
        lines.append(
            f"Download it on a machine with network access: "
            f"`hf download {hub_id} --local-dir /models/{hub_id.split('/')[-1]}` "
            f"(or `hf download {hub_id}` to fill the cache {cache}); then set models.base to that folder "
            f"or copy the cache here.")
    else:
        lines.append("Pass a folder that holds config.json and the weights, a hub id you have downloaded, or "
                     "build a tiny model first (notebook 01 / cogito_lib.models.build_tiny_model).")
    return " ".join(lines)


def resolve_checkpoint(name_or_path: str | os.PathLike, family: ModelFamily | None = None) -> Path:
    """The local folder of a checkpoint: the path itself, or the cached snapshot of a hub id (no network)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelNotFoundError(_missing_message(str(name_or_path), family, f"{path} has no config.json"))
        return path
    name = str(name_or_path)
    if path.is_absolute() or name.startswith((".", "~")) or name.count("/") != 1:
        raise ModelNotFoundError(_missing_message(name, family, "no such folder"))
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=True))
    except Exception:  # noqa: BLE001 - any miss (not cached, offline, bad id) means the same thing here
        raise ModelNotFoundError(_missing_message(name, family or family_for_checkpoint(name),
                                                  "not a local folder and not in the Hugging Face cache")) from None


def read_config(folder: Path) -> dict:
    return json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))


def detect_family(folder: str | os.PathLike) -> ModelFamily:
    """The family of a checkpoint folder, from its config.json model_type."""
    model_type = read_config(Path(folder)).get("model_type", "")
    family = family_for_model_type(model_type)
    if family is None:
        raise ValueError(f"{folder}: model_type {model_type!r} is not one of the supported families "
                         f"{sorted(FAMILIES)}; pass family= explicitly if it is a compatible checkpoint")
    return family


def resolve_dtype(dtype: Any, device: str):
    """A torch dtype: float32 on CPU and bfloat16 on GPU unless named (str or torch.dtype)."""
    import torch

    if dtype is None or dtype == "auto":
        return torch.bfloat16 if str(device).startswith(("cuda", "auto")) else torch.float32
    if isinstance(dtype, str):
        try:
            return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
                    "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}[dtype]
        except KeyError:
            raise ValueError(f"unknown dtype {dtype!r}; use float32, bfloat16 or float16") from None
    return dtype


def load_processor(name_or_path: str | os.PathLike, family: str | ModelFamily | None = None):
    """The family's processor from a checkpoint folder or cached hub id."""
    quiet_library_bars()
    fam = get_family(family) if isinstance(family, str) else family
    folder = resolve_checkpoint(name_or_path, fam)
    fam = fam or detect_family(folder)
    return fam.load_class("processor").from_pretrained(folder)


def load_model(name_or_path: str | os.PathLike, family: str | ModelFamily | None = None, dtype: Any = None,
               device: str = "cpu", trust_remote_code: bool = False, attn_implementation: str | None = None,
               **kwargs: Any):
    """Load `(model, processor)` from a local folder or a cached hub id, in eval mode.

    `family` is detected from config.json when omitted. For the omni families a full checkpoint (thinker +
    talker) is loaded without its talker and its `.thinker` returned. `device` is "cpu", "cuda[:n]" or "auto"
    (accelerate's device_map). Raises ModelNotFoundError when the checkpoint is not on this machine.
    """
    fam = get_family(family) if isinstance(family, str) else family
    folder = resolve_checkpoint(name_or_path, fam)
    detected = detect_family(folder) if fam is None else fam
    model_type = read_config(folder).get("model_type")
    if fam is not None and model_type not in (fam.model_type, fam.full_model_type):
        raise ValueError(f"{folder} holds a {model_type!r} checkpoint, not the {fam.key!r} family "
                         f"({fam.model_type}); drop family= or pass the right one")
    fam = detected
    torch_dtype = resolve_dtype(dtype, device)
    load_kwargs: dict[str, Any] = dict(dtype=torch_dtype, trust_remote_code=trust_remote_code, **kwargs)
    if attn_implementation:
        load_kwargs["attn_implementation"] = attn_implementation
    if device == "auto":
        load_kwargs["device_map"] = "auto"
    try:
        if fam.full_model_type and model_type == fam.full_model_type:
            full = fam.load_class("full_model").from_pretrained(folder, enable_audio_output=False, **load_kwargs)
            model = full.thinker
        else:
            model = fam.load_class("model").from_pretrained(folder, **load_kwargs)
        processor = fam.load_class("processor").from_pretrained(folder)
    except (OSError, FileNotFoundError) as err:
        detail = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
        raise ModelNotFoundError(_missing_message(str(name_or_path), fam,
                                                  f"incomplete checkpoint folder {folder} ({detail})")) from None
    if device != "auto":
        model = model.to(device)
    model.eval()
    return model, processor


def full_omni_checkpoint(folder: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """`folder` in the layout vLLM serves: an omni *thinker* checkpoint (what the kit saves: tiny builds, merged
    fine-tunes) rewritten as the full model (config `model_type` of the full class with the thinker's config as
    `thinker_config` and audio output off; every weight renamed `thinker.<name>`), which is the architecture vLLM's
    registry knows (`Qwen3OmniMoeForConditionalGeneration`). Any other checkpoint is returned as it is.

    Written once to `out` (default: `<folder>-full` beside it), shard by shard, and reused while the source's
    weight files are unchanged; `load_model` reads it back as the same thinker."""
    import shutil

    folder = Path(folder)
    config = read_config(folder)
    family = family_for_model_type(config.get("model_type", ""))
    if family is None or not family.full_model_type or config.get("model_type") != family.model_type:
        return folder
    out = Path(out) if out is not None else folder.with_name(folder.name + "-full")
    weights = sorted(p for p in folder.iterdir() if p.suffix == ".safetensors")
    stamp = {"source": folder.name, "files": [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in weights]}
    marker = out / "cogito_full.json"
    if marker.is_file() and json.loads(marker.read_text(encoding="utf-8")) == stamp:
        return out
    from safetensors import safe_open
    from safetensors.torch import save_file

    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    full_config = family.load_class("full_model").config_class(thinker_config=config, enable_audio_output=False)
    full_config.architectures = [family.full_model_class]
    full_config.save_pretrained(partial)
    for path in weights:
        with safe_open(str(path), framework="pt") as source:
            tensors = {f"thinker.{key}": source.get_tensor(key) for key in source.keys()}
        save_file(tensors, str(partial / path.name), metadata={"format": "pt"})
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        data = json.loads(index.read_text(encoding="utf-8"))
        data["weight_map"] = {f"thinker.{k}": v for k, v in data.get("weight_map", {}).items()}
        (partial / index.name).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    for path in folder.iterdir():
        if path.is_file() and path.suffix != ".safetensors" and path.name not in ("config.json", index.name):
            shutil.copy2(path, partial / path.name)
    (partial / marker.name).write_text(json.dumps(stamp) + "\n", encoding="utf-8")
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    return out


def tiny_info(folder: str | os.PathLike) -> dict | None:
    """The record a tiny build wrote beside its weights (family, size, parameters), or None for real models."""
    from .tiny import TINY_MARKER

    marker = Path(folder) / TINY_MARKER
    return json.loads(marker.read_text(encoding="utf-8")) if marker.exists() else None


# ----------------------------------------------------------------------------------------------- LoRA
LORA_DEFAULT_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")


def language_model_lora_targets(modules: Iterable[str] = LORA_DEFAULT_MODULES) -> str:
    """A peft `target_modules` regex that matches `modules` inside the language model only.

    A plain list (["q_proj", "v_proj"]) would also hit the audio encoder's attention in these classes.
    """
    names = "|".join(sorted(set(modules)))
    return rf"^(?:.*\.)?language_model\.(?:.*\.)?(?:{names})$"


def language_model_lora_modules(model, modules: Iterable[str] = LORA_DEFAULT_MODULES) -> list[str]:
    """Full names of the `nn.Linear` modules called `modules` inside the language model (never the audio tower)."""
    import torch

    leaves = set(modules)
    return sorted(name for name, module in model.named_modules()
                  if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] in leaves
                  and ".language_model." in f".{name}." and "audio_tower" not in name and "visual" not in name)


def add_lora(model, rank: int = 16, alpha: int = 32, dropout: float = 0.0,
             target_modules: Iterable[str] | str = LORA_DEFAULT_MODULES, audio_tower: bool = False):
    """Wrap `model` in a peft LoRA model on the language model's projections (the audio tower too if asked).

    The targets are passed to peft as explicit full module names: a plain list (["q_proj", "v_proj"]) would also
    hit the audio encoder, and peft 0.21 rewrites a regex into bare leaf names for MoE models (Qwen3-Omni),
    which hits it too.
    """
    from peft import LoraConfig, get_peft_model

    exclude = None
    if isinstance(target_modules, str):
        targets: Any = target_modules
    elif audio_tower:
        targets = list(target_modules)
    else:
        targets = language_model_lora_modules(model, target_modules)
        if not targets:
            raise ValueError(f"no language-model modules named {sorted(set(target_modules))} in "
                             f"{type(model).__name__}")
        exclude = r".*\b(audio_tower|visual)\b.*"
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets,
                        exclude_modules=exclude, bias="none")
    return get_peft_model(model, config)


def load_adapter(model, adapter_dir: str | os.PathLike, trainable: bool = False):
    """Attach a saved LoRA adapter to a loaded base model."""
    from peft import PeftModel

    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").exists():
        raise ModelNotFoundError(f"{adapter_dir}/adapter_config.json not found: train an adapter first (notebook 06)")
    return PeftModel.from_pretrained(model, adapter_dir, is_trainable=trainable)


def save_model(model, processor, out_dir: str | os.PathLike, merge: bool = True) -> Path:
    """Save a model (merging a LoRA adapter into the weights when `merge`) with its processor, loadable by
    `load_model(out_dir)`."""
    out_dir = Path(out_dir)
    quiet_library_bars()
    if merge and hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir
