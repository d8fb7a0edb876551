"""Load a model and its processor by family, checkpoint id or local folder (tiny builds and real checkpoints alike).

The hub is not reachable from the machines this kit is developed on, so loading follows HF_HUB_OFFLINE
semantics: a local folder first, then the Hugging Face cache; a checkpoint found in neither gives one
`ModelNotFoundError` that says what to download and where to put it.
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
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
    (accelerate's device_map), or None to leave the weights where loading put them (under DeepSpeed ZeRO-3 each
    rank's shard). Raises ModelNotFoundError when the checkpoint is not on this machine.
    """
    fam = get_family(family) if isinstance(family, str) else family
    folder = resolve_checkpoint(name_or_path, fam)
    detected = detect_family(folder) if fam is None else fam
    model_type = read_config(folder).get("model_type")
    if fam is not None and model_type not in (fam.model_type, fam.full_model_type):
        raise ValueError(f"{folder} holds a {model_type!r} checkpoint, not the {fam.key!r} family "
                         f"({fam.model_type}); drop family= or pass the right one")
    fam = detected
    torch_dtype = resolve_dtype(dtype, device or "cpu")
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
    if device not in ("auto", None):
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
# MLP projection names as a dense model (and transformers 4.x MoE experts) call them -> the fused expert parameter
# that holds them in transformers 5.x MoE models (Qwen3-Omni-MoE: `mlp.experts.gate_up_proj` [E, 2I, H] and
# `mlp.experts.down_proj` [E, H, I]); peft adapts such a parameter with `target_parameters` (lora.ParamWrapper).
FUSED_EXPERT_PARAMETERS = {"gate_proj": "gate_up_proj", "up_proj": "gate_up_proj", "down_proj": "down_proj"}


def language_model_lora_targets(modules: Iterable[str] = LORA_DEFAULT_MODULES) -> str:
    """A peft `target_modules` regex that matches `modules` inside the language model only.

    A plain list (["q_proj", "v_proj"]) would also hit the audio encoder's attention in these classes.
    """
    names = "|".join(sorted(set(modules)))
    return rf"^(?:.*\.)?language_model\.(?:.*\.)?(?:{names})$"


def _in_language_model(name: str) -> bool:
    return ".language_model." in f".{name}." and "audio_tower" not in name and "visual" not in name


def language_model_lora_modules(model, modules: Iterable[str] = LORA_DEFAULT_MODULES) -> list[str]:
    """Full names of the `nn.Linear` modules called `modules` inside the language model (never the audio tower)."""
    import torch

    leaves = set(modules)
    return sorted(name for name, module in model.named_modules()
                  if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] in leaves
                  and _in_language_model(name))


def language_model_expert_parameters(model) -> dict[str, list[str]]:
    """{fused name: full parameter names} of the language model's fused MoE expert weights (3-D parameters of an
    `experts` module, e.g. `...layers.0.mlp.experts.gate_up_proj`); empty for a dense model."""
    fused = set(FUSED_EXPERT_PARAMETERS.values())
    found: dict[str, list[str]] = {}
    for name, param in model.named_parameters():
        container, _, leaf = name.rpartition(".")
        shape = getattr(param, "ds_shape", param.shape)  # a ZeRO-3 partitioned weight keeps its shape there
        if leaf in fused and container.rsplit(".", 1)[-1] == "experts" and len(shape) == 3 \
                and _in_language_model(name):
            found.setdefault(leaf, []).append(name)
    return {leaf: sorted(names) for leaf, names in sorted(found.items())}


@dataclass(frozen=True)
class LoraPlan:
    """What a list of projection names adapts in one model: `modules` (full names of nn.Linear layers, peft's
    `target_modules`), `parameters` (full names of fused expert weights, peft's `target_parameters`), and per
    configured name what it matched."""

    modules: tuple[str, ...]
    parameters: tuple[str, ...]
    matched: dict  # {configured name: {"modules": n, "expert_parameter": fused name or None, "parameters": n}}

    @property
    def fused(self) -> tuple[str, ...]:
        """The fused expert weights adapted (gate_up_proj, down_proj), by leaf name."""
        return tuple(sorted({p.rsplit(".", 1)[-1] for p in self.parameters}))


def lora_plan(model, targets: Iterable[str]) -> LoraPlan:
    """Resolve projection names (`train.lora_targets`: q_proj, ..., gate_proj, up_proj, down_proj) against the
    language model of `model`. A name matches the nn.Linear layers of that name and, in a transformers 5.x MoE, the
    fused expert weight that holds it (`FUSED_EXPERT_PARAMETERS`). Raises ValueError before any training when a
    name matches nothing, or when only one of gate_proj/up_proj is named where the two are one fused weight."""
    names = list(dict.fromkeys(t.strip() for t in targets if t and t.strip()))
    if not names:
        raise ValueError("no LoRA targets given (train.lora_targets is empty)")
    experts = language_model_expert_parameters(model)
    modules: list[str] = []
    parameters: list[str] = []
    matched: dict[str, dict] = {}
    for name in names:
        found = language_model_lora_modules(model, [name])
        fused = FUSED_EXPERT_PARAMETERS.get(name)
        params = experts.get(fused, []) if fused else []
        matched[name] = {"modules": len(found), "expert_parameter": fused if params else None,
                         "parameters": len(params)}
        modules += found
        parameters += [p for p in params if p not in parameters]
    unmatched = [name for name, m in matched.items() if not m["modules"] and not m["parameters"]]
    if unmatched:
        import torch

        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                         if isinstance(m, torch.nn.Linear) and _in_language_model(n)})
        fused_note = f"; fused expert weights: {', '.join(experts)}" if experts else ""
        raise ValueError(
            f"LoRA target(s) {', '.join(unmatched)} match nothing in {type(model).__name__}'s language model "
            f"(its linear layers: {', '.join(linear) or 'none'}{fused_note}); set train.lora_targets to names it has "
            f"(attention only: q_proj,k_proj,v_proj,o_proj)")
    if "gate_up_proj" in experts and ("gate_proj" in names) != ("up_proj" in names):
        raise ValueError("gate_proj and up_proj are one fused weight (mlp.experts.gate_up_proj) in "
                         f"{type(model).__name__}: name both in train.lora_targets or neither")
    return LoraPlan(tuple(sorted(modules)), tuple(sorted(parameters)), matched)


@contextmanager
def _pattern_warnings_off():
    """peft checks rank/alpha patterns against target *modules* only and calls a pattern that sets the rank of a
    targeted *parameter* (the fused gate_up_proj) unmatched although it applies; `add_lora` checks the ranks."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"The following (rank|alpha)_pattern keys did not match")
        yield


def add_lora(model, rank: int = 16, alpha: int = 32, dropout: float = 0.0,
             target_modules: Iterable[str] | str = LORA_DEFAULT_MODULES, audio_tower: bool = False):
    """Wrap `model` in a peft LoRA model on the language model's projections (the audio tower too if asked).

    The targets are passed to peft as explicit full module names: a plain list (["q_proj", "v_proj"]) would also
    hit the audio encoder, and peft 0.21 rewrites a regex into bare leaf names for MoE models (Qwen3-Omni),
    which hits it too. In an MoE whose experts are fused parameters (transformers 5.x), gate_proj/up_proj/down_proj
    adapt every expert through peft's `target_parameters` (`lora_plan`); the fused gate_up_proj gets rank 2r and
    alpha 2*alpha, as peft itself converts a transformers-4 gate_proj + up_proj adapter, so that alpha/r and the
    capacity per projection stay those of the configured rank. peft cannot put dropout on such a weight, so
    `dropout` must be 0 when experts are adapted (ValueError otherwise, before any training).
    """
    from peft import LoraConfig, get_peft_model

    exclude = None
    extra: dict[str, Any] = {}
    if isinstance(target_modules, str):
        targets: Any = target_modules
    elif audio_tower:
        targets = list(target_modules)
    else:
        plan = lora_plan(model, target_modules)
        targets = list(plan.modules)
        exclude = r".*\b(audio_tower|visual)\b.*"
        if plan.parameters:
            if dropout:
                raise ValueError(f"LoRA dropout {dropout} cannot apply to the fused MoE expert weights of "
                                 f"{type(model).__name__} (peft's ParamWrapper has no dropout): set "
                                 "train.lora_dropout=0, or leave the experts out (train.lora_targets="
                                 "q_proj,k_proj,v_proj,o_proj)")
            extra["target_parameters"] = list(plan.parameters)
            if "gate_up_proj" in plan.fused:
                extra["rank_pattern"] = {r".*\.gate_up_proj": 2 * rank}
                extra["alpha_pattern"] = {r".*\.gate_up_proj": 2 * alpha}
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets,
                        exclude_modules=exclude, bias="none", **extra)
    if not extra:
        return get_peft_model(model, config)
    with _pattern_warnings_off():
        peft_model = get_peft_model(model, config)
    from peft.tuners.lora.layer import ParamWrapper

    for name, layer in peft_model.named_modules():
        if isinstance(layer, ParamWrapper):
            want = 2 * rank if layer.parameter_name == "gate_up_proj" else rank
            if layer.r.get("default") != want:
                raise RuntimeError(f"peft gave {name}.{layer.parameter_name} LoRA rank {layer.r.get('default')}, "
                                   f"expected {want}")
    return peft_model


def lora_report(model) -> dict:
    """What a peft LoRA model actually adapts: {"modules": {leaf: count}, "expert_parameters": {fused: count},
    "trainable": {leaf or fused name: LoRA parameters}, "lora_parameters", "trainable_parameters", "parameters"}
    (read from the wrapped layers, not from the configuration)."""
    from peft.tuners.lora import LoraLayer
    from peft.tuners.lora.layer import ParamWrapper

    modules: dict[str, int] = {}
    expert_parameters: dict[str, int] = {}
    trainable: dict[str, int] = {}
    for name, layer in model.named_modules():
        if not isinstance(layer, LoraLayer):
            continue
        own = sum(getattr(p, "ds_numel", None) or p.numel()
                  for key in ("lora_A", "lora_B") for p in getattr(layer, key).parameters())
        if isinstance(layer, ParamWrapper):
            key = layer.parameter_name
            expert_parameters[key] = expert_parameters.get(key, 0) + 1
        else:
            key = name.rsplit(".", 1)[-1]
            modules[key] = modules.get(key, 0) + 1
        trainable[key] = trainable.get(key, 0) + own
    params = list(model.parameters())

    def numel(p):  # a ZeRO-3 partitioned weight keeps its full size in ds_numel
        return getattr(p, "ds_numel", None) or p.numel()

    return {"modules": dict(sorted(modules.items())), "expert_parameters": dict(sorted(expert_parameters.items())),
            "trainable": dict(sorted(trainable.items())), "lora_parameters": sum(trainable.values()),
            "trainable_parameters": sum(numel(p) for p in params if p.requires_grad),
            "parameters": sum(numel(p) for p in params)}


def load_adapter(model, adapter_dir: str | os.PathLike, trainable: bool = False):
    """Attach a saved LoRA adapter to a loaded base model."""
    from peft import PeftModel

    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").exists():
        raise ModelNotFoundError(f"{adapter_dir}/adapter_config.json not found: train an adapter first (notebook 06)")
    with _pattern_warnings_off():
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
