"""Prerequisite checks for a profile: kernel, TTS engine, GPUs, model weights, inference servers, API keys,
the seed pool, MMAR's audio and the dataset roots.

`python -m cogito_lib.run --profile paper --plan` (or `make plan CONFIG=...`) prints these without running
anything, and notebook 00 shows them as a table. Each failed check says what is missing and what to do about it,
with commands that work with the pinned tools. A check marked optional (`required=False`) names something the
run can do without (MMAR-Rubrics without its judge's key); `--plan` fails only on required ones.
"""
from __future__ import annotations

import os
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

from .config import DATASET_ENV, Profile, resolve_data_path

KERNEL_NAME = "cogito"


VLLM_BIN = "envs/.vllm/bin/vllm"  # where envs/README.md builds the pinned vLLM environment


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    message: str
    required: bool = True  # False: the run goes on without it (and says what it leaves out)

    def line(self) -> str:
        status = "ok" if self.ok else ("MISSING" if self.required else "missing, optional")
        return f"[{status}] {self.name}: {self.message}"


def check_kernel(name: str = KERNEL_NAME) -> Check:
    try:
        from jupyter_client.kernelspec import KernelSpecManager

        specs = KernelSpecManager().find_kernel_specs()
    except ImportError:
        specs = {}
    if name in specs:
        return Check("jupyter kernel", True, f"'{name}' at {specs[name]}")
    return Check("jupyter kernel", False,
                 f"kernel '{name}' is not registered: run `make venv` (it runs "
                 f"`.venv/bin/python -m ipykernel install --sys-prefix --name {name}`)")


def check_tts(engine: str) -> Check:
    if shutil.which(engine):
        return Check("TTS engine", True, f"{engine} at {shutil.which(engine)}")
    return Check("TTS engine", False,
                 f"{engine} not found on PATH: install it (Debian/Ubuntu: `sudo apt-get install -y {engine}`); "
                 "`make venv` does this when run as root")


def check_gpu(profile: Profile) -> Check:
    """The GPUs this machine shows against the config: at least `models.gpus` (one when models.device is cuda),
    each with `models.gpu_memory_gb`."""
    need = max(profile.models.gpus, 1 if profile.models.device == "cuda" else 0)
    if need == 0:
        return Check("GPU", True, "not needed: in-process models run on the CPU (models.device = cpu) and "
                                  "models.gpus = 0")
    try:
        import torch
    except ImportError:
        return Check("GPU", False, "torch is not installed: run `make venv`")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count < need:
        return Check("GPU", False, f"{count} CUDA device(s) visible, the config needs {need} (models.gpus = "
                                   f"{profile.models.gpus}, models.device = {profile.models.device}): run on a node "
                                   "with them (check `nvidia-smi` and CUDA_VISIBLE_DEVICES), or lower models.gpus "
                                   "(0 when the inference servers run elsewhere)")
    memories = [torch.cuda.get_device_properties(i).total_memory / 2**30 for i in range(count)]
    names = ", ".join(f"{torch.cuda.get_device_name(i)} ({memories[i]:.0f} GiB)" for i in range(count))
    small = [i for i, gib in enumerate(memories) if gib < profile.models.gpu_memory_gb]
    if small:
        return Check("GPU", False, f"device(s) {small} have less than models.gpu_memory_gb = "
                                   f"{profile.models.gpu_memory_gb:g} GiB ({names}): serve with more tensor "
                                   "parallelism (vllm serve --tensor-parallel-size) and lower models.gpu_memory_gb")
    return Check("GPU", True, f"{count} CUDA device(s): {names}")


def _local_weights(model_id: str) -> str | None:
    """Where `model_id`'s weights are on this machine (a folder, or the HF cache), or None."""
    path = Path(model_id).expanduser()
    if path.is_dir():
        return str(path) if (path / "config.json").exists() else None
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(model_id, "config.json")
        return found if isinstance(found, str) else None
    except Exception:
        return None


def check_weights(role: str, model_id: str, why: str = "") -> Check:
    if model_id in ("tiny", "metadata"):
        return Check(f"{role} weights", True, f"'{model_id}': built or computed here, nothing to download")
    where = _local_weights(model_id)
    if where:
        return Check(f"{role} weights", True, f"{model_id} found at {where}" + (f" ({why})" if why else ""))
    folder = f"/models/{model_id.rstrip('/').split('/')[-1]}"
    return Check(f"{role} weights", False,
                 f"{model_id} not found locally{' (' + why + ')' if why else ''}: on a machine with hub access run "
                 f"`hf download {model_id} --local-dir {folder}`, copy the folder here and set models.{role} = "
                 f"\"{folder}\"")


ROLE_PORTS = {"base": 8000, "annotator": 8001, "judge": 8001, "rubric": 8002}  # the ports the docs' recipes use


def serve_command(role: str, model: str) -> str:
    """A `vllm serve` line that serves `model` for `role` on one GPU node (docs/paper-scale.md: parallelism)."""
    name = Path(model.rstrip("/")).name.lower()
    return (f"{VLLM_BIN} serve {model} --served-model-name {name} --port {ROLE_PORTS[role]} "
            "--max-model-len 32768 --limit-mm-per-prompt.audio 1 --tensor-parallel-size 2")


def check_launch(profile: Profile, what: str) -> Check:
    """serve.launch: set, and its program found (the first word that is not a VAR=value assignment)."""
    launch = profile.serve.launch
    if not launch:
        return Check("serve.launch", False, f"empty, but {what}: set serve.launch = \"{VLLM_BIN} serve {{model}} "
                                            "--served-model-name {name} --host 127.0.0.1 --port {port} ...\" "
                                            "(docs/paper-scale.md)")
    try:
        words = [w for w in shlex.split(launch) if "=" not in w.split("/")[0]]
    except ValueError as err:
        return Check("serve.launch", False, f"cannot be split into words ({err}): {launch}")
    program = words[0] if words else ""
    path = resolve_data_path(program) if "/" in program else None  # relative to the repo, where it runs
    found = shutil.which(program) or (path is not None and path.is_file() and os.access(path, os.X_OK))
    if not found:
        return Check("serve.launch", False, f"{program!r} not found (serve.launch = {launch!r}): build the vLLM "
                                            "environment (envs/README.md: `python3.11 -m venv envs/.vllm && "
                                            "envs/.vllm/bin/pip install -r envs/vllm/requirements.txt`)")
    return Check("serve.launch", True, f"{program} found; {what}")


def check_role_servers(profile: Profile, role: str) -> list[Check]:
    """A served role: each configured server answers /v1/models and serves the role's model; an API role has
    its key; a vllm role without servers needs serve.launch."""
    from .models.backends import BackendError
    from .models.serving import role_kind, role_model, role_urls, served_name

    kind, model, urls = role_kind(profile, role), role_model(profile, role), role_urls(profile, role)
    label = f"{role} server"
    if kind == "hf":
        return []
    if kind == "openai":
        env = profile.serve.api_key_env
        where = ", ".join(urls) or os.environ.get("OPENAI_BASE_URL") or "the OpenAI API"
        if os.environ.get(env):
            return [Check(label, True, f"{model} at {where}; ${env} is set")]
        return [Check(label, False, f"{model} at {where} needs an API key: export {env}=... (serve.api_key_env)",
                      required=role != "rubric")]
    if not urls:
        if profile.serve.launch and role != "rubric":  # the rubric judge is asked only on configured servers
            return [check_launch(profile, f"it serves {model} for the {role} role while its stage runs "
                                          f"(serve.{role}_urls is empty)")]
        return [Check(label, False, f"no server for {model}: start one (`{serve_command(role, model)}`) and set "
                                    f"serve.{role}_urls = [\"http://127.0.0.1:{ROLE_PORTS[role]}/v1\"], or set "
                                    "serve.launch so that the kit starts one per stage (docs/paper-scale.md)",
                      required=role != "rubric")]
    checks = []
    for url in urls:
        try:
            name = served_name(url, model, role=role)
            checks.append(Check(label, True, f"{url} serves {model} as {name!r}"))
        except BackendError as err:
            checks.append(Check(label, False, f"{err}; to serve it: `{serve_command(role, model)}`",
                                required=role != "rubric"))
    return checks


def check_mmar(profile: Profile) -> list[Check]:
    """MMAR for notebook 07: the meta file, and the audio of the items evaluated (the first eval.num_items)."""
    from .evaluate.benchmark import mmar_audio_advice
    from .mmar import first_items, load_meta

    check = check_dataset_root("mmar", profile.datasets.mmar)
    if not check.ok:
        where = profile.datasets.mmar or "/data/MMAR"
        return [Check(check.name, False, f"{check.message}; put MMAR-meta.jsonl (https://github.com/ddlBoJack/MMAR) "
                                         f"and the audio (`hf download BoJack/MMAR --repo-type dataset --local-dir "
                                         f"{where}`) in that folder")]
    meta_path = Path(profile.datasets.mmar) / "MMAR-meta.jsonl"
    if not meta_path.is_file():
        return [Check("dataset mmar", False, f"{meta_path} not found: download MMAR-meta.jsonl from "
                                             "https://github.com/ddlBoJack/MMAR into that folder")]
    meta = load_meta(meta_path, check_audio=False)
    if meta.problems:
        return [Check("dataset mmar", False, f"{meta_path}: {len(meta.problems)} bad row(s), e.g. {meta.problems[0]}")]
    items = first_items(meta.items, profile.eval.num_items)
    present = sum(Path(it["audio_file"]).is_file() for it in items)
    others = sum(Path(it["audio_file"]).is_file() for it in meta.items[len(items):])
    scope = (f"the first {len(items)} of {len(meta.items)} items (eval.num_items = {profile.eval.num_items})"
             if len(items) < len(meta.items) else f"all {len(items)} items")
    counts = f"{meta_path}: {present} of the {len(items)} wav files of {scope} present"
    if len(items) < len(meta.items):
        counts += f" ({others} of the other {len(meta.items) - len(items)} present, not needed)"
    if present < len(items):
        return [Check("MMAR audio", False, f"{counts}: {mmar_audio_advice(profile)}")]
    return [Check("MMAR audio", True, counts)]


def check_seed_pool(profile: Profile) -> Check:
    """The annotator's seed pool: it loads, and an LLM annotator finds annotate.num_seed_questions seeds in it."""
    from .pipe.annotate import SeedPoolError, load_seed_pool

    path = resolve_data_path(profile.annotate.seed_pool)
    try:
        seeds = load_seed_pool(path)
    except SeedPoolError as err:
        return Check("seed pool", False, str(err).splitlines()[0])
    want = profile.annotate.num_seed_questions
    if profile.models.annotator != "metadata" and len(seeds) < want:
        return Check("seed pool", False, f"{len(seeds)} seeds in {path}, but the LLM annotator samples "
                                         f"annotate.num_seed_questions = {want}: add seeds (format: "
                                         "data/seed_questions.jsonl) or lower annotate.num_seed_questions")
    return Check("seed pool", True, f"{len(seeds)} seeds, {min(want, len(seeds))} sampled per run, from {path}")


def check_deepspeed() -> Check:
    """DeepSpeed importable in the kit's environment (the trainer's ZeRO-3 under `accelerate launch`)."""
    try:
        import deepspeed  # noqa: F401
    except Exception as err:  # noqa: BLE001 - not installed, or a broken build: the same advice
        return Check("DeepSpeed", False, f"cannot import deepspeed ({type(err).__name__}): on the GPU node run "
                                         "`.venv/bin/pip install -e '.[deepspeed]'` (docs/paper-scale.md, Training)")
    return Check("DeepSpeed", True, f"deepspeed {getattr(deepspeed, '__version__', '?')}")


def training_engine_checks(profile: Profile) -> list[Check]:
    """The training engine of notebook 06 (`train.engine`): for `accelerate launch`, its config file and, when that
    config asks for DeepSpeed, DeepSpeed itself."""
    from .train.launch import uses_deepspeed_config

    t = profile.train
    if t.engine != "accelerate":
        return []
    if not t.accelerate_config:
        return [Check("training engine", True, f"accelerate launch, {t.processes} ranks, plain data parallelism")]
    config = resolve_data_path(t.accelerate_config)
    if not config.is_file():
        shipped = ", ".join(sorted(p.name for p in resolve_data_path("configs/accelerate").glob("*.yaml")))
        return [Check("training engine", False, f"train.accelerate_config: {config} not found: set it to one of "
                                                f"configs/accelerate/ ({shipped}) or to '' (plain data parallelism)")]
    found = [Check("training engine", True, f"accelerate launch, {t.processes} ranks, {config.name}")]
    return found + ([check_deepspeed()] if uses_deepspeed_config(config) else [])


def check_dataset_root(name: str, root: str | None) -> Check:
    var = DATASET_ENV[name]
    if not root:
        return Check(f"dataset {name}", False, f"root not set: export {var}=/path/to/{name}")
    if not Path(root).is_dir():
        return Check(f"dataset {name}", False, f"{var}={root} is not a folder")
    return Check(f"dataset {name}", True, f"{var}={root}")


def check_dataset_sources(profile: Profile) -> list[Check]:
    """Per dataset of the collect mix: root set, a folder, and its adapter's metadata files found there."""
    from .sources.checks import dataset_checks

    return [Check(name, ok, message) for name, ok, message in dataset_checks(profile)]


def check_prerequisites(profile: Profile) -> list[Check]:
    """Every check that matters for `profile`, in the order a user should fix them."""
    from .models.serving import role_kind

    checks = [check_kernel(), check_gpu(profile)]
    if profile.collect.source == "world" or profile.eval.benchmark == "mmar-synth":
        checks.append(check_tts(profile.world.tts_engine))
    served_base = role_kind(profile, "base") != "hf"
    checks.append(check_weights("base", profile.models.base,
                                "06 fine-tunes it here" if served_base and profile.models.base != "tiny" else ""))
    for role in ("annotator", "judge"):
        model = getattr(profile.models, role)
        if model != "metadata" and role_kind(profile, role) == "hf":
            checks.append(check_weights(role, model))
    checks.append(check_seed_pool(profile))
    roles = ["base"] + [r for r in ("annotator", "judge") if getattr(profile.models, r) != "metadata"]
    for role in roles:
        checks.extend(check_role_servers(profile, role))
    if served_base and profile.serve.base_urls:  # the base has servers; a fine-tuned model needs one started
        checks.append(check_launch(profile, "07 serves each fine-tuned model (merged weights) with it"
                                   + (", and later rounds' thinkers" if profile.train.rounds > 1 else "")))
    checks.extend(training_engine_checks(profile))
    if profile.collect.source == "datasets":
        checks.extend(check_dataset_sources(profile))
    if profile.eval.benchmark == "mmar":
        checks.extend(check_mmar(profile))
        checks.extend(check_role_servers(profile, "rubric"))
    return checks


def check_stage_inputs(profile: Profile, run_dir: str | Path, stages: list[str]) -> list[Check]:
    """For the stages about to run (in order): each input an earlier stage writes (`layout.READS`) is either in
    the run dir or written by a stage that runs before it; otherwise MISSING, naming the notebook that makes it."""
    from . import layout

    checks, seen = [], set()
    for position, stage in enumerate(stages):
        before = set(stages[:position])
        for name in layout.READS.get(stage, ()):
            if name in seen:
                continue
            if name == "base":
                if profile.models.base != "tiny":
                    continue  # a checkpoint: the weights check above covers it
                if layout.BASE in before:
                    checks.append(Check("base model", True, f"written by notebook 01 before {stage}"))
                else:
                    try:
                        checks.append(Check("base model", True, layout.base_model_path(profile, run_dir)))
                    except layout.MissingInput as err:
                        checks.append(Check("base model", False, f"{stage} needs it: {err}"))
            elif name == "pretrain" and profile.models.base != "tiny":
                continue  # only the miniature's base has pretraining data (base_cont's)
            else:
                source = layout.FILES[name]
                label = source.relative.as_posix()
                if source.stage in before:
                    checks.append(Check(label, True, f"written by {layout.maker(source.stage)} before {stage}"))
                else:
                    try:
                        checks.append(Check(label, True, str(layout.require(run_dir, name))))
                    except layout.MissingInput as err:
                        checks.append(Check(label, False, f"{stage} needs it: {err}"))
            seen.add(name)
    return checks
