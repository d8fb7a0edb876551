"""Typed, validated profiles: `tiny` (tests), `mini` (laptop default) and `paper` (GPU, the paper's values).

A profile is a frozen tree of dataclasses. Every value a stage uses comes from here, so the miniature and the
paper run the same functions with different numbers. Overrides are dotted keys (`collect.num_clips`); an unknown
profile, an unknown key or a value of the wrong type raises `ConfigError` before any work starts, naming the
field and what is allowed.
"""
from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from .layout import VARIANTS

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
    backend: str = "hf"  # inference backend: hf, vllm, openai
    dtype: str = "float32"  # float32 on CPU, bfloat16 on GPU
    device: str = "cpu"  # cpu or cuda


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
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
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
        ),
        annotate=AnnotateConfig(
            min_questions_per_clip=1, max_questions_per_clip=3, num_seed_questions=500,
            seed_pool="data/seed_questions.jsonl",
        ),
        think=ThinkConfig(num_samples=1, temperature=0.7, top_p=0.95, max_new_tokens=4096, batch_size=256),
        train=TrainConfig(epochs=1.0, learning_rate=1e-5, lora_rank=8, lora_alpha=32, batch_size=32, max_steps=0,
                          variants=("self_distill",), replay_atomic=0, warmup_steps=100, checkpoint_every=500),
        eval=EvalConfig(benchmark="mmar", num_items=1000, seed=0),
        datasets=DatasetRoots(**roots),
    )


_BUILDERS = {"tiny": _tiny, "mini": _mini, "paper": _paper}
_SECTIONS = ("world", "collect", "models", "base", "annotate", "think", "train", "eval", "datasets", "llm")
# Values a field may take when it is a choice, checked on load and on override.
CHOICES: dict[str, tuple[str, ...]] = {
    "collect.source": ("world", "datasets"),
    "models.family": ("qwen2_audio", "qwen2_5_omni", "qwen3_omni"),
    "models.backend": ("hf", "vllm", "openai"),
    "models.dtype": ("float32", "bfloat16", "float16"),
    "models.device": ("cpu", "cuda"),
    "eval.benchmark": ("mmar-synth", "mmar"),
    "world.tts_engine": ("espeak-ng",),
    "base.size": ("tiny", "tiny-whisper", "mini", "mini-whisper", "small"),
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
    if profile.train.skill_max_repeat < 1:
        raise ConfigError("train.skill_max_repeat must be >= 1 (how often one survivor may be repeated to bring a "
                          "small skill towards train.skill_target; 1 = never repeat)")


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
    """The dotted keys whose values in `profile` differ from its named profile's (what `load_profile(name, ...)`
    needs to rebuild it, e.g. in another process)."""
    reference = _BUILDERS[profile.name]()
    return {key: profile.get(key) for key in profile.keys() if profile.get(key) != reference.get(key)}


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
