"""The benchmark of notebook 07: MMAR-synth (built in the run dir) or MMAR (from `COGITO_MMAR_ROOT`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..config import DATASET_ENV, Profile
from ..io import portable, stable_id
from ..mmar import first_items, load_meta
from ..world.mmar_synth import META_NAME, build_mmar_synth
from ..world.skills import TIERS

MMAR_DOWNLOAD = "https://huggingface.co/datasets/BoJack/MMAR (code and meta: https://github.com/ddlBoJack/MMAR)"


class BenchmarkMissing(FileNotFoundError):
    """The benchmark to evaluate on is not on this machine; the message says what to download and where."""


@dataclass
class Benchmark:
    """The evaluation items (MMAR-meta rows with `audio_file`), where they came from, and their fingerprint."""

    name: str
    meta_path: Path
    items: list[dict]
    fingerprint: str
    info: dict = field(default_factory=dict)

    @property
    def has_tiers(self) -> bool:
        return all(it.get("tier") in TIERS for it in self.items)

    @property
    def has_rubrics(self) -> bool:
        return all(isinstance(it.get("rubric"), list) for it in self.items)


def mmar_missing_message(profile: Profile) -> str:
    var = DATASET_ENV["mmar"]
    where = profile.datasets.mmar
    what = f"{var} is not set" if not where else f"{where}/{META_NAME} not found ({var}={where})"
    return (f"MMAR is not available: {what}. The '{profile.name}' profile evaluates on MMAR (eval.benchmark="
            f"'mmar'). Download MMAR-meta.jsonl and the audio from {MMAR_DOWNLOAD}, put them in one folder as "
            f"MMAR-meta.jsonl beside audio/ (audio/<id>.wav), and set {var} to that folder before starting "
            f"Jupyter or the runner (e.g. `export {var}=/data/MMAR`). To evaluate on the miniature instead, "
            f"use the tiny or mini profile (MMAR-synth).")


def mmar_audio_advice(profile: Profile) -> str:
    """What to do about missing MMAR audio (the files are MMAR's own download, placed as audio/<id>.wav)."""
    root = profile.datasets.mmar or "/data/MMAR"
    return (f"download MMAR's audio ({MMAR_DOWNLOAD}; `hf download BoJack/MMAR --repo-type dataset --local-dir "
            f"{root}`) so that every item's audio_path (./audio/<id>.wav) exists under {root}, or evaluate fewer "
            f"items (eval.num_items: the first N items need only their own audio)")


def check_benchmark(profile: Profile) -> None:
    """Fail early, with one message, when the benchmark cannot be found (paper profile without MMAR)."""
    if profile.eval.benchmark == "mmar":
        root = profile.datasets.mmar
        if not root or not (Path(root) / META_NAME).is_file():
            raise BenchmarkMissing(mmar_missing_message(profile))


def load_benchmark(profile: Profile, run_dir: str | Path, *, progress: bool = True) -> Benchmark:
    """MMAR-synth (built or reused under the run dir) or MMAR from `COGITO_MMAR_ROOT`, validated by `load_meta`."""
    check_benchmark(profile)
    if profile.eval.benchmark == "mmar-synth":
        info = build_mmar_synth(profile, run_dir, progress=progress)
        meta_path = Path(info["meta"])
    else:
        meta_path = Path(profile.datasets.mmar) / META_NAME
        info = {"root": str(profile.datasets.mmar)}
    meta = load_meta(meta_path, check_audio=False)
    if meta.problems:
        raise BenchmarkMissing(f"{meta_path}: {len(meta.problems)} problem(s), e.g. {meta.problems[0]}; "
                               f"fix the meta file")
    items = meta.items
    if profile.eval.benchmark == "mmar":   # a partial run evaluates (and needs the audio of) the first N only
        items = first_items(items, profile.eval.num_items)
    info = {**info, "meta_items": len(meta.items)}
    missing = [it for it in items if not Path(it["audio_file"]).is_file()]
    if missing:
        raise BenchmarkMissing(f"{len(missing)} of the {len(items)} items to evaluate have no audio, e.g. "
                               f"{missing[0]['audio_file']}: {mmar_audio_advice(profile)}")
    fingerprint = stable_id([(it["id"], portable(it["audio_path"], run_dir), it["question"], it["choices"],
                              it["answer"]) for it in items], info.get("fingerprint"), length=12)
    return Benchmark(profile.eval.benchmark, meta_path, items, fingerprint, info)
