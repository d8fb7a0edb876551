"""The run dir's layout: every stage folder, every file one stage hands to the next, and the model names, once.

A run dir holds one folder per notebook (`01-base-model/`, `02-data-collection/`, ...) beside the executed
notebooks and `metrics.json`. Stages talk only through the files named here; `require(run_dir, "qa")` returns
a stage's input or raises `MissingInput` saying which notebook (or `python -m cogito_lib.pipe` command) makes it.

Model names in notebook 06's folders and notebook 07's tables are defined here too: the fine-tuned variants, the
controls the headline model stands beside, and the folder of each later self-distillation round.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterable

from .io import exclusive, read_json, stable_id

# ------------------------------------------------------------------------------------------------ stage folders
SETUP = "00-setup-and-tour"
BASE = "01-base-model"
COLLECT = "02-data-collection"
QA = "03-qa-construction"
COT = "04-cot-generation"
AUDIT = "05-quality-verification"
TRAIN = "06-self-distillation-training"
EVAL = "07-mmar-evaluation"
STAGES: tuple[str, ...] = (SETUP, BASE, COLLECT, QA, COT, AUDIT, TRAIN, EVAL)

# What makes each stage's files: (notebook, `python -m cogito_lib.pipe` command or None).
MAKERS = {
    BASE: ("01", None), COLLECT: ("02", "collect"), QA: ("03", "annotate"), COT: ("04", "think"),
    AUDIT: ("05", "audit"), TRAIN: ("06", None), EVAL: ("07", None),
}


@dataclasses.dataclass(frozen=True)
class StageFile:
    """A file one stage writes and later stages read."""

    stage: str
    name: str

    @property
    def relative(self) -> Path:
        """The path inside a run dir (`03-qa-construction/qa.jsonl`)."""
        return Path(self.stage) / self.name

    def path(self, run_dir: str | Path) -> Path:
        return Path(run_dir) / self.relative


FILES: dict[str, StageFile] = {
    "pretrain": StageFile(BASE, "pretrain-questions.jsonl"),  # the base's atomic pretraining items (gold reasoning)
    "manifest": StageFile(COLLECT, "manifest.jsonl"),  # stage 1: one record per clip
    "qa": StageFile(QA, "qa.jsonl"),  # stage 2: the annotator's questions (labels only)
    "cot": StageFile(COT, "cot.jsonl"),  # stage 3: the thinker's K samples per question
    "survivors": StageFile(AUDIT, "train.jsonl"),  # stage 4: the audited traces self-distillation trains on
    "rejected": StageFile(AUDIT, "rejected.jsonl"),  # stage 4: every rejected sample with its reason
    "train_stats": StageFile(TRAIN, "stats.json"),  # notebook 06: what every variant trained on, and how
}
STATS = "stats.json"  # every stage's summary, written last: its presence means the stage finished
CACHE = "cache"  # caches any stage may fill and reuse; deleting the folder only costs recomputation
FRONTEND_CACHE = f"{CACHE}/frontend"  # audio front-end features per clip (`models.frontend`)

# What each stage reads from earlier ones: keys of FILES, and "base" (the model notebook 01 trains in the
# miniature). `python -m cogito_lib.run --plan --only NN` checks them; the stage itself fails without them.
READS: dict[str, tuple[str, ...]] = {
    QA: ("manifest",),
    COT: ("qa", "base"),
    AUDIT: ("manifest", "qa", "cot"),
    TRAIN: ("base", "pretrain", "qa", "cot", "survivors"),
    EVAL: ("base",),
}
EXERCISES = "exercises"  # RUN_DIR/exercises/<name>/: the scratch run dirs of the notebooks' exercise solutions


class MissingInput(FileNotFoundError):
    """A stage's input is not in the run dir; the message names it and what makes it."""


class StageFailed(RuntimeError):
    """A stage produced nothing it could publish (e.g. every model request failed); the message summarises why and
    says what to do. What it finished is kept for the rerun."""


def stage_dir(run_dir: str | Path, stage: str) -> Path:
    """`RUN_DIR/<stage>` for a known stage folder name."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage folder {stage!r}; the stages are: {', '.join(STAGES)}")
    return Path(run_dir) / stage


def path(run_dir: str | Path, name: str) -> Path:
    """Where file `name` (a key of FILES) lives in `run_dir`."""
    try:
        return FILES[name].path(run_dir)
    except KeyError:
        raise ValueError(f"unknown run-dir file {name!r}; known: {', '.join(FILES)}") from None


def frontend_cache(run_dir: str | Path) -> Path:
    """`RUN_DIR/cache/frontend`: the audio front-end's features of every clip the run has encoded, one folder per
    front-end (`models.frontend.FrontEnd`)."""
    return Path(run_dir) / FRONTEND_CACHE


def maker(stage: str) -> str:
    """'notebook 03 (or `python -m cogito_lib.pipe annotate`)': what writes `stage`'s files."""
    notebook, command = MAKERS[stage]
    return f"notebook {notebook}" + (f" (or `python -m cogito_lib.pipe {command}`)" if command else "")


def link_stages(run_dir: str | Path, shadow: str | Path, stages: Iterable[str]) -> Path:
    """Make `shadow` a run dir that reads `stages` from `run_dir` through relative symlinks (a run dir moved or
    copied with its links keeps pointing at itself) and holds everything else itself. Links that point elsewhere
    are replaced; stages `run_dir` does not have are left out."""
    run_dir, shadow = Path(run_dir).resolve(), Path(shadow)
    shadow.mkdir(parents=True, exist_ok=True)
    for name in stages:
        link = shadow / name
        target = Path(os.path.relpath(run_dir / name, shadow.resolve()))
        if link.is_symlink() and Path(os.readlink(link)) != target:
            link.unlink()  # an absolute or dangling link from an older layout
        if not os.path.lexists(link) and (run_dir / name).exists():
            link.symlink_to(target, target_is_directory=True)
    return shadow


def require(run_dir: str | Path, name: str) -> Path:
    """The path of input `name`, or MissingInput naming it and the notebook that writes it."""
    found = path(run_dir, name)
    if not found.is_file():
        raise MissingInput(f"{found} not found: run {maker(FILES[name].stage)} first")
    return found


# ------------------------------------------------------------------------------------------------ one writer
LOCKS = ".locks"  # RUN_DIR/.locks/<stage>.lock: who writes a stage folder now (pid, host, since, command)


def lock_path(run_dir: str | Path, stage: str) -> Path:
    """The lock file of stage folder `stage` (or of a folder inside it: its first part counts) in `run_dir`."""
    return Path(run_dir) / LOCKS / f"{Path(stage).parts[0]}.lock"


def stage_lock(run_dir: str | Path, stage: str, *, wait: bool | None = None, share: bool = False):
    """A context manager: this process is the one writer of `RUN_DIR/<stage>` (`cogito_lib.io.exclusive`); another
    writer gets LockHeld naming the holder (or waits: `wait=True`, `--wait`, COGITO_LOCK_WAIT=1)."""
    stage = Path(stage).parts[0]
    return exclusive(lock_path(run_dir, stage), f"{Path(run_dir) / stage}", wait=wait, share=share)


def writes_stage(stage: str | Callable[[dict], str]) -> Callable:
    """Decorate a stage function whose arguments include `run_dir`: it runs holding `stage_lock(run_dir, stage)`.
    `stage` is a folder name, or a function of the call's bound arguments that returns one."""
    def decorate(function: Callable) -> Callable:
        signature = inspect.signature(function)

        @functools.wraps(function)
        def locked(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            name = stage(bound.arguments) if callable(stage) else stage
            with stage_lock(bound.arguments["run_dir"], name):
                return function(*args, **kwargs)
        return locked
    return decorate


# ------------------------------------------------------------------------------------------------ the base model
# Code that writes the miniature's pretraining data and benchmark: a change to any of these files makes a
# different base (a new `base-<fingerprint>` folder) and a different MMAR-synth.
DATA_CODE = ("world/skills.py", "world/scenes.py", "world/synth.py", "world/tts.py")


def data_code_hash() -> str:
    """Hash of the files in DATA_CODE."""
    root = Path(__file__).parent
    digest = hashlib.sha1()
    for name in DATA_CODE:
        digest.update((root / name).read_bytes())
    return digest.hexdigest()[:12]


def base_fingerprint(profile: Any) -> str:
    """Hash of everything that shapes the trained miniature base: its settings, the world's, the family, and the
    code that writes the pretraining data (not the check-set settings)."""
    base = dataclasses.asdict(profile.base)
    for key in ("check_seed", "check_clips", "check_samples", "max_new_tokens", "threads"):
        base.pop(key)
    return stable_id(base, dataclasses.asdict(profile.world), profile.models.family, data_code_hash(), length=10)


def base_dir(profile: Any, run_dir: str | Path) -> Path:
    """The folder of this profile's miniature base: `RUN_DIR/01-base-model/base-<fingerprint>/`."""
    return Path(run_dir) / BASE / f"base-{base_fingerprint(profile)}"


def base_model_path(profile: Any, run_dir: str | Path) -> str:
    """Where the base model is: the pretrained miniature base of this profile (notebook 01), or the checkpoint
    id / folder named by `models.base` at paper scale."""
    if profile.models.base != "tiny":
        return profile.models.base
    info_path = base_dir(profile, run_dir) / "base.json"
    if not info_path.exists():
        others = sorted(p.parent.name for p in (Path(run_dir) / BASE).glob("base-*/base.json"))
        hint = (f"; this run dir has {', '.join(others)}, trained with other base settings: run this notebook with "
                "the same SEED and base.* values as notebook 01") if others else ""
        raise MissingInput(f"{info_path} not found: run notebook 01 ({BASE}) for profile "
                           f"'{profile.name}' first{hint}")
    recorded = Path(read_json(info_path)["model_dir"])
    here = info_path.parent / recorded.name  # the model sits beside base.json, wherever the run dir now is
    if not here.is_dir():  # never the recorded absolute path: it may be another run dir's model
        raise MissingInput(f"{here} not found ({info_path} names it): this run dir's base model is missing; "
                           f"delete {info_path.parent} and run notebook 01 ({BASE}) again")
    return str(here)


def in_run(path: str, run_dir: str | Path) -> str:
    """An absolute path recorded inside a stage folder (`.../01-base-model/x.wav`), as the same file in `run_dir`
    (the run dir may have moved or been copied since it was written), whether or not it exists there: a file
    missing from this run dir is an error naming it, never another run dir's copy. Other paths as they are."""
    parts = Path(path).parts
    for i in reversed(range(len(parts))):  # the innermost stage folder (a round's run dir sits inside 06)
        if parts[i] in STAGES:
            return str(Path(run_dir).joinpath(*parts[i:]))
    return path


# ------------------------------------------------------------------------------------------------ model names
BASE_MODEL = "base"  # notebook 07's name for the model before any fine-tuning
HEADLINE_MODEL = "self_distill"  # the paper's method; its last round is the headline model
VARIANTS: tuple[str, ...] = ("self_distill", "answer_only", "answer_only_matched", "no_audit", "base_cont",
                             "gold_cot")
CONTROLS: tuple[str, ...] = (BASE_MODEL, "base_cont", "answer_only", "answer_only_matched", "gold_cot",
                             "no_audit")  # beside the headline
# built from the survivors' questions (those of every round the final model trained on): reasoning or label, same questions
MATCHED: tuple[str, ...] = ("gold_cot", "answer_only_matched")
_ROUND = re.compile(rf"^{HEADLINE_MODEL}_round(\d+)$")


def round_name(round_index: int) -> str:
    """The model (and folder) name of self-distillation round `round_index` (round 1 is `self_distill`)."""
    return HEADLINE_MODEL if round_index <= 1 else f"{HEADLINE_MODEL}_round{round_index}"


def round_of(model: str) -> int | None:
    """The round number of a self-distillation model name (1 for `self_distill`), else None."""
    if model == HEADLINE_MODEL:
        return 1
    match = _ROUND.match(model)
    return int(match.group(1)) if match else None


def headline_model(models: Iterable[str]) -> str:
    """The final self-distillation round among `models` (`self_distill` when there is one round)."""
    rounds = [(round_of(m), m) for m in models if round_of(m) is not None]
    return max(rounds)[1] if rounds else HEADLINE_MODEL
