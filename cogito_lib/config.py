"""Typed, validated profiles: `tiny` (tests), `mini` (laptop default) and `paper` (GPU, the paper's values),
and the run configuration file that sets any of their keys.

A profile is a frozen tree of dataclasses. Every value a stage uses comes from here, so the miniature and the
paper run the same functions with different numbers. Overrides are dotted keys (`collect.num_clips`); an unknown
profile, an unknown key or a value of the wrong type raises `ConfigError` before any work starts, naming the
field and what is allowed.

A run configuration is a TOML file: an optional top-level `profile = "paper"` (and `run_dir`), then one table per
profile section whose keys are that section's fields (`[models]` `base = "/models/..."`). Every command line
(`run`, `pipe`, `train`, `mmar rubrics`) takes `--config FILE` and `--set KEY=VALUE`; `resolve_config` merges the
profile, the file and the `--set` overrides (in that order) and checks every key and type before anything runs.
The runner writes the resolved configuration to `RUN_DIR/config.toml` and hands its path to each notebook
through the one parameter `CONFIG`.
"""
from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from .layout import VARIANTS
from .mmar.rule import THINKING_LIMIT

PROFILES = ("tiny", "mini", "paper")
REPO_ROOT = Path(__file__).resolve().parents[1]

# Environment variables that hold the paper's dataset roots (read when the `paper` profile loads).
DATASET_ENV = {
    "audioset": "COGITO_AUDIOSET_ROOT",
    "clotho": "COGITO_CLOTHO_ROOT",
    "audiocaps": "COGITO_AUDIOCAPS_ROOT",
    "complexaudio": "COGITO_COMPLEXAUDIO_ROOT",
    "meld": "COGITO_MELD_ROOT",
    "covost2": "COGITO_COVOST2_ROOT",
    "dailytalk": "COGITO_DAILYTALK_ROOT",
    "musicbench": "COGITO_MUSICBENCH_ROOT",
    "fma": "COGITO_FMA_ROOT",
    "medley_solos_db": "COGITO_MEDLEY_SOLOS_DB_ROOT",
    "mmar": "COGITO_MMAR_ROOT",
}


class ConfigError(ValueError):
    """A profile name, key or value is not valid; the message says which and what is allowed."""


@dataclass(frozen=True)
class WorldConfig:
    """Difficulty knobs of the procedural audio world (class gaps make facts learnable by a tiny model)."""

    sample_rate: int = 16000  # Hz, mono; every clip and every model input uses it
    min_duration_s: float = 2.0  # shortest clip
    max_duration_s: float = 4.0  # longest clip
    min_events: int = 2  # fewest foreground sound events in a sound scene
    max_events: int = 4  # most foreground sound events in a sound scene
    min_gap_s: float = 0.3  # silence between consecutive foreground events
    loudness_step_db: float = 12.0  # gap between the quiet / medium / loud classes
    pitch_low_hz: float = 300.0  # the "low" pitch class
    pitch_mid_hz: float = 800.0  # the "mid" pitch class
    pitch_high_hz: float = 2100.0  # the "high" pitch class
    background_db: float = -14.0  # level of a background bed relative to the foreground
    tempo_slow_bpm: float = 72.0  # the "slow" tempo class
    tempo_fast_bpm: float = 152.0  # the "fast" tempo class
    noise_floor_db: float = -60.0  # white noise added to every clip (keeps silence non-digital)
    tts_engine: str = "espeak-ng"  # real text-to-speech for every spoken word
    tts_rate_wpm: int = 150  # speaking rate passed to the TTS engine


@dataclass(frozen=True)
class CollectConfig:
    """Stage 1 (data collection): how many clips, from which source, with how many workers."""

    source: str = "world"  # "world" (procedural, offline) or "datasets" (the paper's ten corpora)
    num_clips: int = 700  # clips in the curation pool
    seed: int = 2026  # world seed of the curation split (pretraining and evaluation use other seeds)
    workers: int = 0  # parallel processes; 0 = all cores
    max_clip_s: float = 30.0  # clips from datasets are cut to this length
    mix: str = ""  # datasets only: "" = the paper's mix, else weights like "audioset=0.3,clotho=0.1" (a dict works too)
    enrichers: tuple[str, ...] = ()  # offline metadata for thin clips (sources.enrich): vad, pitch, transcript


@dataclass(frozen=True)
class ModelConfig:
    """Which models play the paper's roles."""

    family: str = "qwen2_audio"  # model family of the base: qwen2_audio (miniature: Whisper front-end), qwen2_5_omni, qwen3_omni
    base: str = "tiny"  # "tiny" = trained here from scratch (01); otherwise a checkpoint id or folder
    annotator: str = "metadata"  # "metadata" (grounded, offline) or a checkpoint id / API model name
    judge: str = "metadata"  # "metadata" (grounded, offline) or a checkpoint id / API model name
    backend: str = "hf"  # the thinker's backend (stage 3, notebook 07): hf in-process, vllm or openai servers (serve.*)
    annotator_backend: str = ""  # the annotator's backend (hf, vllm, openai); "" = models.backend
    judge_backend: str = ""  # the stage-4 trace judge's backend (hf, vllm, openai); "" = models.backend
    rubric_judge: str = "gpt-4o-2024-11-20"  # MMAR-Rubrics judge (benchmark mmar only; MMAR-synth is judged by metadata)
    rubric_backend: str = "openai"  # openai (an API, key in serve.api_key_env) or vllm (a server in serve.rubric_urls)
    dtype: str = "float32"  # float32 on CPU, bfloat16 on GPU
    device: str = "cpu"  # cpu or cuda (in-process models: the hf backend and training)
    gpus: int = 0  # GPUs this machine must show (checked by --plan; 0 = no check)
    gpu_memory_gb: float = 0.0  # memory each of those GPUs must have, in GiB (checked by --plan; 0 = no check)


@dataclass(frozen=True)
class BaseConfig:
    """Notebook 01: the miniature's base model, pretrained here on the world's atomic skills."""

    size: str = "mini-whisper"  # tiny-model preset (cogito_lib.models.tiny.SIZES)
    freeze_audio: bool = True  # keep a pretrained audio front-end frozen (a from-scratch tower always trains)
    world_seed: int = 1001  # world seed of the pretraining split (disjoint from curation and evaluation)
    num_clips: int = 2100  # pretraining clips
    questions_per_clip: int = 2  # atomic questions per pretraining clip
    # gold reasoning chains of composite questions in pretraining, so that the base reasons imperfectly on composite
    # questions as the paper's thinking base does: their share of all pretraining questions (0 = atomic only) and
    # which composite skills they ask (empty = every composite skill). The held-out tier is never pretrained.
    chain_share: float = 0.0
    chain_skills: tuple[str, ...] = ()
    steps: int = 400  # optimisation steps
    batch_size: int = 16  # sequences per step
    learning_rate: float = 3e-3  # AdamW peak learning rate (cosine decay after warm-up)
    audio_lr_scale: float = 1.0  # the audio encoder's learning rate relative to the rest
    warmup_steps: int = 20  # linear warm-up
    check_seed: int = 1002  # world seed of the held-out check set
    check_clips: int = 140  # clips in the check set
    check_samples: int = 4  # K samples per check question for judge-pass@K
    max_new_tokens: int = 96  # generation budget of the base's reasoning
    threads: int = 0  # torch CPU threads; 0 = all cores


@dataclass(frozen=True)
class AnnotateConfig:
    """Stage 2 (QA construction)."""

    min_questions_per_clip: int = 1  # the annotator writes 1-3 questions per clip
    max_questions_per_clip: int = 3  # see min_questions_per_clip
    num_seed_questions: int = 60  # seed questions sampled into the annotator's pool
    seed_pool: str = "data/seed_questions.jsonl"  # seed question pool (relative to the repo or absolute)
    max_new_tokens: int = 1024  # an LLM annotator's reply budget (tokens)


@dataclass(frozen=True)
class ThinkConfig:
    """Stage 3 (CoT generation by the thinker)."""

    num_samples: int = 8  # K reasoning samples per question
    temperature: float = 0.7  # sampling temperature (at T=1 the tiny base's judge-pass@K falls below greedy)
    top_p: float = 0.95  # nucleus sampling
    max_new_tokens: int = 160  # reasoning + answer budget
    # plan-guided samples per question (pipe/think.py; beyond the paper): the thinker's own listing, then the
    # annotator's step names one by one for it to fill in. 0 = the paper's stage 3 (question and choices only)
    plan_samples: int = 0
    # samples decoded together (the K samples of several questions; the miniature's samples do not depend on it)
    batch_size: int = 256


@dataclass(frozen=True)
class AuditConfig:
    """Stage 4 (quality verification): the cheap checks' limits and the LLM judge's budget."""

    max_thinking_chars: int = 4000  # reject reasoning longer than this (the challenge needs < 10,000 characters)
    min_thinking_chars: int = 10  # reject reasoning shorter than this
    judge_max_new_tokens: int = 512  # an LLM trace judge's reply budget (tokens)
    judge_with_audio: bool = True  # send the clip to an LLM judge (Qwen3-Omni hears it); false for a text-only API model


@dataclass(frozen=True)
class TrainConfig:
    """Self-distillation fine-tuning with LoRA."""

    epochs: float = 1.0  # passes over the audited traces (used when max_steps is 0)
    learning_rate: float = 5e-4  # LoRA learning rate (high, so that a few hundred steps show the effect)
    lora_rank: int = 16  # LoRA r
    lora_alpha: int = 32  # LoRA alpha
    batch_size: int = 16  # sequences per optimisation step
    max_steps: int = 100  # optimisation steps of every variant; 0 = derived from epochs over the self_distill set
    variants: tuple[str, ...] = VARIANTS  # what notebook 06 trains (cogito_lib.layout.VARIANTS)
    replay_atomic: int = 400  # fixed atomic pretraining items mixed into every variant (0 = none)
    rounds: int = 1  # self-distillation rounds; round r samples with the round r-1 model as thinker
    seed: int = 0  # batch order, replay draw and initialisation seed (same for every variant)
    # skill-balanced survivors (distill.balance_survivors; beyond the paper, 0 = off): each skill (question type)
    # contributes this many traces to self_distill and gold_cot: larger skills are subsampled across their
    # questions, smaller ones repeated, at most skill_max_repeat times each
    skill_target: int = 0
    skill_max_repeat: int = 4
    warmup_steps: int = 5  # linear learning-rate warm-up
    lora_dropout: float = 0.0  # LoRA dropout
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                     "down_proj")  # the language model's attention and MLP projections
    freeze_audio: bool = True  # keep the audio encoder frozen (False trains it in full beside the LoRA)
    checkpoint_every: int = 25  # steps between resumable checkpoints (0 = only at the end)
    merge: bool = True  # also save the base with the adapter merged in (what notebook 07 loads)
    threads: int = 0  # torch CPU threads per training process; 0 = all cores
    # variants trained at once as separate one-thread processes (1 = in-process, in turn); self_distill's later
    # rounds run in its own process, beside the controls (distill.launch_parallel)
    parallel: int = 1
    # who runs each variant's training: "inprocess" (the kit's loop in this process: the miniature) or
    # "accelerate" (the same loop under `accelerate launch -m cogito_lib.train`, train.processes ranks)
    engine: str = "inprocess"
    processes: int = 1  # accelerate: ranks on this node (one per GPU; on a CPU: gloo processes)
    accelerate_config: str = ""  # accelerate: config file (configs/accelerate/*.yaml, relative to the repo); "" = DDP
    micro_batch_size: int = 0  # sequences per rank per forward; 0 = batch_size/processes (no gradient accumulation)
    gradient_checkpointing: bool = False  # recompute activations in the backward pass (long reasoning sequences)


@dataclass(frozen=True)
class EvalConfig:
    """MMAR evaluation."""

    benchmark: str = "mmar-synth"  # mmar-synth (miniature) or mmar (paper)
    num_items: int = 600  # MMAR-synth size
    seed: int = 7007  # world seed of the held-out benchmark split
    rubric_runs: int = 5  # rater runs; highest and lowest dropped
    batch_size: int = 64  # items answered together (greedy, batched by prompt length)


@dataclass(frozen=True)
class LLMRequestConfig:
    """Requests to an OpenAI-compatible endpoint (`models.backend = "openai"`: the annotator, the trace judge)."""

    timeout_s: float = 30.0  # seconds to wait for one reply before the try counts as failed
    retries: int = 2  # further tries of a failed request (timeout, 429, 5xx), with exponential backoff
    backoff_max_s: float = 8.0  # longest wait between two tries (a server's Retry-After is honoured up to this)


@dataclass(frozen=True)
class ServeConfig:
    """Inference servers with vLLM's OpenAI-compatible API, for every role whose backend is vllm or openai.

    Several URLs for one role spread its requests over them (data parallelism across servers); a model that no
    URL serves (a fine-tuned model in notebook 07, a later round's thinker) is served for the time it is needed
    by `launch`, when set."""

    base_urls: tuple[str, ...] = ()  # servers of models.base (stage 3's thinker, 07's base), e.g. http://127.0.0.1:8000/v1
    annotator_urls: tuple[str, ...] = ()  # servers of models.annotator
    judge_urls: tuple[str, ...] = ()  # servers of models.judge
    rubric_urls: tuple[str, ...] = ()  # server of models.rubric_judge; empty = $OPENAI_BASE_URL or the OpenAI API
    launch: str = ""  # command serving a model folder on 127.0.0.1 (fills {model}, {name}, {port}); "" = never launch
    launch_timeout_s: float = 1800.0  # seconds a launched server may take to load before it answers /v1/models
    concurrency: int = 16  # requests in flight per server
    timeout_s: float = 1800.0  # seconds one request may take (K samples of a 4,096-token reply)
    api_key_env: str = "OPENAI_API_KEY"  # env var with the key of openai-backend roles (vllm ones send $VLLM_API_KEY if set)


@dataclass(frozen=True)
class DatasetRoots:
    """Local roots of the paper's datasets (None = not configured); filled from COGITO_*_ROOT env vars."""

    audioset: str | None = None  # AudioSet (179k clips in the paper)
    clotho: str | None = None  # Clotho (6k)
    audiocaps: str | None = None  # AudioCaps (40k)
    complexaudio: str | None = None  # ComplexAudio (37k)
    meld: str | None = None  # MELD (24k)
    covost2: str | None = None  # CoVoST2 (56k)
    dailytalk: str | None = None  # DailyTalk (9k)
    musicbench: str | None = None  # MusicBench (88k)
    fma: str | None = None  # FMA (76k)
    medley_solos_db: str | None = None  # Medley-solos-DB (35k)
    mmar: str | None = None  # MMAR: folder with MMAR-meta.jsonl and audio/


@dataclass(frozen=True)
class Profile:
    """A whole profile; `name` is one of PROFILES."""

    name: str
    description: str
    requires_gpu: bool
    world: WorldConfig = field(default_factory=WorldConfig)
    collect: CollectConfig = field(default_factory=CollectConfig)
    models: ModelConfig = field(default_factory=ModelConfig)
    base: BaseConfig = field(default_factory=BaseConfig)
    annotate: AnnotateConfig = field(default_factory=AnnotateConfig)
    think: ThinkConfig = field(default_factory=ThinkConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    datasets: DatasetRoots = field(default_factory=DatasetRoots)
    llm: LLMRequestConfig = field(default_factory=LLMRequestConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def keys(self) -> list[str]:
        """Every overridable dotted key."""
        return sorted(_leaf_types(self))

    def get(self, key: str) -> Any:
        section, _, name = key.partition(".")
        return getattr(getattr(self, section), name)


def _tiny() -> Profile:
    return Profile(
        name="tiny",
        description="tests: every notebook in seconds on a CPU",
        requires_gpu=False,
        world=WorldConfig(min_duration_s=1.5, max_duration_s=2.5, max_events=3),
        collect=CollectConfig(num_clips=14, seed=11, workers=2),
        base=BaseConfig(size="tiny-whisper", num_clips=28, steps=6, batch_size=4, warmup_steps=1, check_clips=7,
                        check_samples=2, max_new_tokens=48, chain_share=0.25),
        annotate=AnnotateConfig(num_seed_questions=20),
        think=ThinkConfig(num_samples=2, max_new_tokens=48, batch_size=8),
        train=TrainConfig(batch_size=4, max_steps=4, replay_atomic=8, warmup_steps=1, checkpoint_every=2),
        eval=EvalConfig(num_items=28, seed=1107),
    )


def _mini() -> Profile:
    return Profile(
        name="mini",
        description="laptop default: the whole miniature loop on a CPU in minutes",
        requires_gpu=False,
        # a base that already chains steps, imperfectly (a fifth of its pretraining questions are composite chains),
        # sampled by the paper's stage 3 (no plan guidance); three self-distillation rounds, each sampling with the
        # previous round's model; every control trains as many steps as the three rounds together
        base=BaseConfig(chain_share=0.2),
        train=TrainConfig(rounds=3, parallel=2),
    )


def _paper() -> Profile:
    roots = {name: os.environ.get(var) or None for name, var in DATASET_ENV.items()}
    return Profile(
        name="paper",
        description="the paper's setting: Qwen3-Omni models, the ten datasets, GPUs",
        requires_gpu=True,
        world=WorldConfig(),
        collect=CollectConfig(source="datasets", num_clips=550_000, seed=2026, workers=0,
                              enrichers=("vad", "pitch", "transcript")),
        models=ModelConfig(
            family="qwen3_omni",
            base="Qwen/Qwen3-Omni-30B-A3B-Thinking",
            annotator="Qwen/Qwen3-Omni-30B-A3B-Instruct",
            judge="Qwen/Qwen3-Omni-30B-A3B-Instruct",
            backend="vllm",
            dtype="bfloat16",
            device="cuda",
            gpus=8,
            gpu_memory_gb=79.0,
        ),
        annotate=AnnotateConfig(
            min_questions_per_clip=1, max_questions_per_clip=3, num_seed_questions=500,
            seed_pool="data/seed_questions.jsonl",
        ),
        think=ThinkConfig(num_samples=1, temperature=0.7, top_p=0.95, max_new_tokens=4096, batch_size=256),
        # the challenge's thinking_prediction limit (< 10,000 characters) is the binding one: a 4,096-token
        # reasoning budget can write more, and a trace the challenge would reject is not one to train on
        audit=AuditConfig(max_thinking_chars=THINKING_LIMIT - 1, judge_max_new_tokens=1024),
        # 32 sequences per step = 8 GPUs x 1 sequence x 4 accumulated micro-batches, under DeepSpeed ZeRO-3
        train=TrainConfig(epochs=1.0, learning_rate=1e-5, lora_rank=8, lora_alpha=32, batch_size=32, max_steps=0,
                          variants=("self_distill",), replay_atomic=0, warmup_steps=100, checkpoint_every=500,
                          engine="accelerate", processes=8, accelerate_config="configs/accelerate/deepspeed_zero3.yaml",
                          micro_batch_size=1, gradient_checkpointing=True),
        eval=EvalConfig(benchmark="mmar", num_items=1000, seed=0),
        datasets=DatasetRoots(**roots),
    )


_BUILDERS = {"tiny": _tiny, "mini": _mini, "paper": _paper}
_SECTIONS = ("world", "collect", "models", "base", "annotate", "think", "audit", "train", "eval", "serve", "llm",
             "datasets")
# Values a field may take when it is a choice, checked on load and on override.
CHOICES: dict[str, tuple[str, ...]] = {
    "collect.source": ("world", "datasets"),
    "models.family": ("qwen2_audio", "qwen2_5_omni", "qwen3_omni"),
    "models.backend": ("hf", "vllm", "openai"),
    "models.annotator_backend": ("", "hf", "vllm", "openai"),
    "models.judge_backend": ("", "hf", "vllm", "openai"),
    "models.rubric_backend": ("openai", "vllm"),
    "models.dtype": ("float32", "bfloat16", "float16"),
    "models.device": ("cpu", "cuda"),
    "eval.benchmark": ("mmar-synth", "mmar"),
    "world.tts_engine": ("espeak-ng",),
    "base.size": ("tiny", "tiny-whisper", "mini", "mini-whisper", "small"),
    "train.engine": ("inprocess", "accelerate"),
}
ENRICHER_NAMES = ("vad", "pitch", "transcript")  # allowed items of collect.enrichers (cogito_lib.sources.enrich)


MIX_DATASETS = tuple(name for name in DATASET_ENV if name != "mmar")  # names collect.mix may weight


def parse_mix(text: str) -> dict[str, float]:
    """`collect.mix` as {dataset: weight}: "audioset=0.3, clotho=0.1" (weights are relative; unnamed datasets get
    0); "" means the paper's mix and gives {}. Raises ConfigError naming the field and what is wrong."""
    weights: dict[str, float] = {}
    for part in (text or "").replace(";", ",").split(","):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        if not sep:
            name, sep, value = part.partition(":")
        name = name.strip().lower().replace("-", "_")
        if not sep or not name:
            raise ConfigError(f"collect.mix: {part.strip()!r} is not NAME=WEIGHT; write e.g. "
                              "collect.mix='audioset=0.3,clotho=0.1'")
        if name not in MIX_DATASETS:
            raise ConfigError(f"collect.mix: unknown dataset {name!r}; allowed: {', '.join(MIX_DATASETS)}")
        if name in weights:
            raise ConfigError(f"collect.mix: {name!r} is given twice")
        try:
            weight = float(value)
        except ValueError:
            raise ConfigError(f"collect.mix: the weight of {name!r} must be a number, got {value.strip()!r}") from None
        if not weight >= 0 or weight == float("inf"):
            raise ConfigError(f"collect.mix: the weight of {name!r} must be a finite number >= 0, got {weight}")
        weights[name] = weight
    if weights and sum(weights.values()) <= 0:
        raise ConfigError("collect.mix: every weight is 0; give at least one dataset a weight > 0 (or leave "
                          "collect.mix empty for the paper's mix)")
    return weights


def _mix_text(value: Any) -> Any:
    """A dict override of collect.mix ({"audioset": 0.3, ...}) as its string form; anything else unchanged."""
    if isinstance(value, Mapping):
        return ",".join(f"{name}={weight}" for name, weight in value.items())
    return value


def _leaf_types(profile: Profile) -> dict[str, Any]:
    hints = {}
    for section in _SECTIONS:
        cls = type(getattr(profile, section))
        for name, tp in typing.get_type_hints(cls).items():
            hints[f"{section}.{name}"] = tp
    return hints


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _check_type(key: str, value: Any, tp: Any) -> Any:
    """Return `value` (an int is accepted where a float is expected) or raise ConfigError."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(tp):
            if option is type(None):
                if value is None:
                    return None
                continue
            try:
                return _check_type(key, value, option)
            except ConfigError as err:
                errors.append(err)
        raise ConfigError(f"{key} must be {_type_name(tp)}, got {type(value).__name__} {value!r}")
    if origin is tuple:  # tuple[str, ...]: a tuple, a list, or a comma-separated string ("vad,pitch")
        items = [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value
        item_tp = typing.get_args(tp)[0]
        if not isinstance(items, (tuple, list)) or not all(isinstance(item, item_tp) for item in items):
            raise ConfigError(f"{key} must be {_type_name(tp)} (a list or a comma-separated string), "
                              f"got {type(value).__name__} {value!r}")
        return tuple(items)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, bool) or not isinstance(value, tp):
        raise ConfigError(f"{key} must be {_type_name(tp)}, got {type(value).__name__} {value!r}")
    return value


def _validate(profile: Profile) -> None:
    hints = _leaf_types(profile)
    for key, tp in hints.items():
        value = profile.get(key)
        _check_type(key, value, tp)
        if key in CHOICES and value not in CHOICES[key]:
            raise ConfigError(f"{key} = {value!r} is not allowed; choose one of: {', '.join(CHOICES[key])}")
    w = profile.world
    if not 0 < w.min_duration_s <= w.max_duration_s:
        raise ConfigError("world.min_duration_s must be > 0 and <= world.max_duration_s")
    if not 1 <= w.min_events <= w.max_events:
        raise ConfigError("world.min_events must be >= 1 and <= world.max_events")
    if not w.pitch_low_hz < w.pitch_mid_hz < w.pitch_high_hz < w.sample_rate / 2:
        raise ConfigError("world pitch classes must satisfy low < mid < high < sample_rate/2")
    if profile.collect.num_clips < 1:
        raise ConfigError("collect.num_clips must be >= 1")
    if profile.collect.workers < 0:
        raise ConfigError("collect.workers must be >= 0 (0 = all cores)")
    if not profile.collect.max_clip_s > 0:
        raise ConfigError("collect.max_clip_s must be > 0 (seconds kept of each dataset clip)")
    parse_mix(profile.collect.mix)
    unknown = [name for name in profile.train.variants if name not in VARIANTS]
    if unknown:
        raise ConfigError(f"train.variants: unknown variant(s) {', '.join(map(repr, unknown))}; "
                          f"allowed: {', '.join(VARIANTS)}")
    unknown = [name for name in profile.collect.enrichers if name not in ENRICHER_NAMES]
    if unknown:
        raise ConfigError(f"collect.enrichers: unknown enricher(s) {', '.join(map(repr, unknown))}; "
                          f"allowed: {', '.join(ENRICHER_NAMES)} (or none: ())")
    a = profile.annotate
    if not 1 <= a.min_questions_per_clip <= a.max_questions_per_clip:
        raise ConfigError("annotate.min_questions_per_clip must be >= 1 and <= annotate.max_questions_per_clip")
    if not 0 <= profile.think.plan_samples <= profile.think.num_samples:
        raise ConfigError("think.plan_samples must be >= 0 and <= think.num_samples (each plan-guided sample grows "
                          "from one of the first plain samples' listing); 0 turns plan guidance off")
    b = profile.base
    if not 0.0 <= b.chain_share < 1.0:
        raise ConfigError(f"base.chain_share = {b.chain_share}: the share of composite chains among the pretraining "
                          "questions must be >= 0 and < 1 (0 = atomic skills only)")
    if not profile.llm.timeout_s > 0 or profile.llm.retries < 0 or profile.llm.backoff_max_s < 0:
        raise ConfigError("llm.timeout_s must be > 0 seconds, llm.retries >= 0 and llm.backoff_max_s >= 0 seconds")
    if profile.train.skill_target < 0:
        raise ConfigError("train.skill_target must be >= 0 (traces per skill in self_distill and gold_cot; 0 = off, "
                          "every survivor once)")
    t = profile.train
    if t.processes < 1 or t.micro_batch_size < 0:
        raise ConfigError("train.processes must be >= 1 and train.micro_batch_size >= 0 (0 = no gradient accumulation)")
    if t.engine == "accelerate" and t.parallel > 1:
        raise ConfigError("train.parallel > 1 starts one-thread processes of its own; with train.engine = "
                          "'accelerate' the ranks share each variant instead: set train.parallel = 1")
    if t.processes > 1 and t.engine != "accelerate":
        raise ConfigError(f"train.processes = {t.processes} needs train.engine = 'accelerate' (the in-process engine "
                          "is one process)")
    if t.micro_batch_size and t.batch_size % (t.processes * t.micro_batch_size):
        raise ConfigError(f"train.batch_size ({t.batch_size}) must be a multiple of train.processes x "
                          f"train.micro_batch_size ({t.processes} x {t.micro_batch_size}): every rank accumulates the "
                          "same number of micro-batches per step")
    if profile.train.skill_max_repeat < 1:
        raise ConfigError("train.skill_max_repeat must be >= 1 (how often one survivor may be repeated to bring a "
                          "small skill towards train.skill_target; 1 = never repeat)")
    if profile.think.plan_samples and profile.models.backend != "hf":
        raise ConfigError("think.plan_samples > 0 needs models.backend = 'hf': plan-guided samples continue a "
                          "rendered prompt in-process, which a chat-completions server cannot do; set "
                          "think.plan_samples = 0 (the paper's stage 3)")
    au = profile.audit
    if not 0 <= au.min_thinking_chars < au.max_thinking_chars < THINKING_LIMIT:
        raise ConfigError(f"audit.max_thinking_chars must be > audit.min_thinking_chars >= 0 and < {THINKING_LIMIT:,} "
                          f"(the challenge's limit on thinking_prediction), got {au.min_thinking_chars} and "
                          f"{au.max_thinking_chars}")
    for key in ("annotate.max_new_tokens", "think.max_new_tokens", "audit.judge_max_new_tokens",
                "serve.concurrency"):
        if profile.get(key) < 1:
            raise ConfigError(f"{key} must be >= 1, got {profile.get(key)}")
    for key in ("serve.timeout_s", "serve.launch_timeout_s"):
        if not profile.get(key) > 0:
            raise ConfigError(f"{key} must be > 0 seconds, got {profile.get(key)}")
    if profile.models.gpus < 0 or profile.models.gpu_memory_gb < 0:
        raise ConfigError("models.gpus and models.gpu_memory_gb must be >= 0 (0 = no check)")
    for key in ("serve.base_urls", "serve.annotator_urls", "serve.judge_urls", "serve.rubric_urls"):
        for url in profile.get(key):
            if not url.startswith(("http://", "https://")):
                raise ConfigError(f"{key}: {url!r} is not an http(s) URL; write e.g. http://127.0.0.1:8000/v1")
    launch = profile.serve.launch
    if launch and not ("{model}" in launch and "{port}" in launch):
        raise ConfigError("serve.launch must contain {model} and {port} (and may use {name}), e.g. "
                          "'vllm serve {model} --served-model-name {name} --host 127.0.0.1 --port {port}'")


def load_profile(name: str, overrides: Mapping[str, Any] | None = None) -> Profile:
    """Build profile `name` and apply dotted-key overrides (None values are ignored: the profile's value stays).

    Raises ConfigError for an unknown profile, key, type or choice, before anything runs.
    """
    if name not in _BUILDERS:
        raise ConfigError(f"unknown profile {name!r}: allowed profiles are {', '.join(PROFILES)}")
    profile = _BUILDERS[name]()
    hints = _leaf_types(profile)
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key not in hints:
            raise ConfigError(f"unknown parameter {key!r}; allowed parameters: {', '.join(sorted(hints))}")
        if key == "collect.mix":
            value = _mix_text(value)
        value = _check_type(key, value, hints[key])
        section, _, attr = key.partition(".")
        profile = replace(profile, **{section: replace(getattr(profile, section), **{attr: value})})
    _validate(profile)
    return profile


def profile_overrides(profile: Profile) -> dict[str, Any]:
    """The dotted keys where `profile` differs from the profile of its name as built, JSON-ready (tuples as lists):
    `load_profile(profile.name, profile_overrides(profile))` gives `profile` back (e.g. in another process)."""
    built = _BUILDERS[profile.name]()
    return {key: list(value) if isinstance(value, tuple) else value
            for key in profile.keys() if (value := profile.get(key)) != built.get(key)}


# ------------------------------------------------------------------------------------------------ config files
CONFIG_TOP_KEYS = ("profile", "run_dir")  # what a config file may set outside the profile's sections


@dataclass(frozen=True)
class RunConfig:
    """A resolved run configuration: the profile's name, every override in effect (dotted keys, in the order
    profile < config file < --set), the run dir a file asked for, and where the file was."""

    profile: str
    overrides: dict[str, Any] = field(default_factory=dict)
    run_dir: str | None = None
    source: str | None = None

    def load(self, extra: Mapping[str, Any] | None = None) -> Profile:
        """The profile with these overrides (and `extra` on top), validated."""
        return load_profile(self.profile, {**self.overrides, **(extra or {})})


def _toml():
    try:
        import tomllib
    except ImportError:  # pragma: no cover - Python 3.10
        raise ConfigError("config files need Python 3.11 or later (tomllib); the kit's environment has 3.11") from None
    return tomllib


def read_config_file(path: str | os.PathLike) -> RunConfig:
    """A TOML run configuration as a RunConfig (not yet validated against a profile: `resolve_config` does that).

    Raises ConfigError naming the file and the line of a syntax error, an unknown section or a nested table."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"config file {path} not found; see configs/paper/ for examples")
    tomllib = _toml()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err})") from None
    overrides: dict[str, Any] = {}
    for key, value in data.items():
        if key in CONFIG_TOP_KEYS:
            if not isinstance(value, str):
                raise ConfigError(f"{path}: {key} must be a string, got {type(value).__name__} {value!r}")
            continue
        if key not in _SECTIONS:
            raise ConfigError(f"{path}: unknown section or key {key!r}; allowed: {', '.join(CONFIG_TOP_KEYS)} and "
                              f"the tables [{'], ['.join(_SECTIONS)}]")
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: {key} must be a table ([{key}] with its keys below it)")
        for name, item in value.items():
            if isinstance(item, dict) and not (key == "collect" and name == "mix"):
                raise ConfigError(f"{path}: {key}.{name} is a table; profile keys are one level deep "
                                  f"({key}.{name} = value)")
            overrides[f"{key}.{name}"] = item
    return RunConfig(data.get("profile", ""), overrides, data.get("run_dir"), str(path))


def parse_value(text: str) -> Any:
    """A `--set` value: a TOML or JSON literal (`8`, `1e-5`, `true`, `"x"`, `["a", "b"]`), else the plain string."""
    text = text.strip()
    try:
        return _toml().loads(f"v = {text}")["v"]
    except Exception:  # noqa: BLE001 - not a TOML literal: try JSON (null keeps the profile's value), then a string
        pass
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_override(text: str) -> tuple[str, Any]:
    """`KEY=VALUE` from `--set` (the key a dotted profile key, the value as `parse_value` reads it)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects KEY=VALUE with a dotted profile key, e.g. models.device=cpu; got {text!r}")
    return key.strip(), parse_value(value)


def resolve_config(profile: str | None = None, config: str | os.PathLike | None = None,
                   sets: Sequence[str] | Mapping[str, Any] = (), overrides: Mapping[str, Any] | None = None,
                   default: str = "mini") -> tuple[RunConfig, Profile]:
    """The run configuration and its validated profile from a profile name, a config file and `--set` items.

    The profile name comes from `profile` (a command-line flag), else the file's `profile`, else `default`.
    Overrides apply in this order: the file's keys, then `overrides` (a command's own options), then `sets`.
    Raises ConfigError before any work on an unknown profile, section, key, type or value."""
    from_file = read_config_file(config) if config else RunConfig("")
    name = profile or from_file.profile or default
    merged = dict(from_file.overrides)
    merged.update({k: v for k, v in (overrides or {}).items() if v is not None})
    items = sets.items() if isinstance(sets, Mapping) else (parse_override(s) for s in sets)
    merged.update(dict(items))
    run_config = RunConfig(name, merged, from_file.run_dir, from_file.source)
    try:
        loaded = run_config.load()
    except ConfigError as err:
        raise ConfigError(f"{from_file.source}: {err}" if from_file.source else str(err)) from None
    return run_config, loaded


def profile_changes(profile: Profile) -> dict[str, Any]:
    """Every key whose value differs from the bare profile of the same name (and every dataset root that is set)."""
    bare = _BUILDERS[profile.name]()
    changes = {}
    for key in profile.keys():
        value = profile.get(key)
        if value != bare.get(key) or (key.startswith("datasets.") and value is not None):
            changes[key] = value
    return changes


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def config_text(profile: Profile, changes: Mapping[str, Any] | None = None, header: str = "") -> str:
    """A TOML run configuration that reproduces `profile`: its name and `changes` (default: `profile_changes`)."""
    changes = profile_changes(profile) if changes is None else changes
    lines = [f"# {line}" for line in header.splitlines()] + [f"profile = {_toml_value(profile.name)}"]
    for section in _SECTIONS:
        keys = [k for k in changes if k.partition(".")[0] == section and changes[k] is not None]
        if keys:
            lines += ["", f"[{section}]"] + [f"{k.partition('.')[2]} = {_toml_value(changes[k])}" for k in sorted(keys)]
    return "\n".join(lines) + "\n"


def resolve_run_dir(profile: str | Profile, run_dir: str | os.PathLike | None = None) -> Path:
    """The run dir: `run_dir` if given (made absolute), else `<repo>/runs/<profile>`."""
    name = profile.name if isinstance(profile, Profile) else profile
    if run_dir:
        return Path(run_dir).expanduser().resolve()
    return REPO_ROOT / "runs" / name


def resolve_data_path(path: str) -> Path:
    """A path from a profile: absolute as given, relative to the repo root otherwise."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else REPO_ROOT / p


def num_workers(requested: int) -> int:
    """Worker processes: `requested`, or every usable core when it is 0."""
    if requested > 0:
        return requested
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)
