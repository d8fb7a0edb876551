"""Real speech for the world: espeak-ng text-to-speech, resampled to the world's rate, trimmed, cached on disk.

espeak-ng is deterministic, so a cache keyed by (text, voice, rate, sample rate) returns the same samples a fresh
call would; the cache only saves time. Voices: `en+m3` (male), `en+f3` (female), etc.; other languages for the
Cultural layer use their espeak-ng language code with the same variants (`es+f3`).
"""
from __future__ import annotations

import functools
import io as _io
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf

from cogito_lib.io import atomic_write_bytes, stable_id
from cogito_lib.world.synth import resample

ESPEAK = "espeak-ng"
CACHE_VERSION = 1  # bump when the post-processing below changes
# espeak-ng voice variants per perceived gender; two of each so a voice fact is not one fixed timbre.
VOICE_VARIANTS = {"male": ("m3", "m1"), "female": ("f3", "f2")}
LANGUAGE_CODES = {"english": "en", "spanish": "es", "french": "fr", "german": "de", "italian": "it"}


class TTSError(RuntimeError):
    """Speech could not be synthesised; the message says why and what to do."""


def espeak_available() -> bool:
    return shutil.which(ESPEAK) is not None


def voice_name(language: str, gender: str, variant: int = 0) -> str:
    """The espeak-ng voice for a language and perceived gender, e.g. ('english', 'female') -> 'en+f3'."""
    variants = VOICE_VARIANTS[gender]
    return f"{LANGUAGE_CODES[language]}+{variants[variant % len(variants)]}"


def _run_espeak(text: str, voice: str, rate_wpm: int) -> tuple[np.ndarray, int]:
    exe = shutil.which(ESPEAK)
    if exe is None:
        raise TTSError(f"{ESPEAK} not found on PATH: apt-get install espeak-ng")
    proc = subprocess.run([exe, "-v", voice, "-s", str(rate_wpm), "--stdout", text], capture_output=True,
                          timeout=60, env={**os.environ, "LC_ALL": "C.UTF-8"})
    if proc.returncode != 0 or not proc.stdout:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise TTSError(f"{ESPEAK} failed for voice {voice!r}: {err[-1] if err else 'no audio produced'}")
    waveform, sr = sf.read(_io.BytesIO(proc.stdout), dtype="float32")
    return (waveform if waveform.ndim == 1 else waveform.mean(axis=1)), sr


def trim_silence(waveform: np.ndarray, sample_rate: int, threshold_db: float = -40.0,
                 pad_s: float = 0.02) -> np.ndarray:
    """Cut leading and trailing silence so an utterance's onset/offset are where the speech is."""
    frame = max(1, sample_rate // 100)
    num_frames = len(waveform) // frame
    if num_frames == 0:
        return waveform
    energy = np.sqrt(np.mean(waveform[: num_frames * frame].reshape(num_frames, frame) ** 2, axis=1))
    loud = np.nonzero(energy > energy.max() * 10 ** (threshold_db / 20))[0]
    pad = int(pad_s * sample_rate)
    start = max(0, loud[0] * frame - pad)
    end = min(len(waveform), (loud[-1] + 1) * frame + pad)
    return waveform[start:end]


@functools.lru_cache(maxsize=256)
def _synthesize_cached(text: str, voice: str, rate_wpm: int, sample_rate: int, cache_dir: str | None) -> np.ndarray:
    path = None
    if cache_dir:
        path = Path(cache_dir) / f"{stable_id(text, voice, rate_wpm, sample_rate, CACHE_VERSION)}.npy"
        if path.exists():
            try:
                return np.load(path, allow_pickle=False)
            except (ValueError, OSError):  # a damaged cache file is recomputed
                pass
    raw, sr = _run_espeak(text, voice, rate_wpm)
    waveform = trim_silence(resample(raw, sr, sample_rate), sample_rate).astype(np.float32)
    if path is not None:
        buf = _io.BytesIO()
        np.save(buf, waveform, allow_pickle=False)
        atomic_write_bytes(path, buf.getvalue())
    return waveform


def synthesize(text: str, voice: str, rate_wpm: int, sample_rate: int,
               cache_dir: str | os.PathLike | None = None) -> np.ndarray:
    """Speak `text` with espeak-ng `voice` at `rate_wpm`; float32 mono at `sample_rate`, silence trimmed.

    Raises TTSError (with the fix) when espeak-ng is missing or fails.
    """
    waveform = _synthesize_cached(text, voice, int(rate_wpm), int(sample_rate), str(cache_dir) if cache_dir else None)
    return waveform.copy()
