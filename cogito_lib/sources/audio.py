"""Decode a dataset's audio file into the kit's clip format: 16-bit PCM WAV, mono, 16 kHz, at most `max_s` long.

Decoding tries soundfile first (WAV, FLAC, OGG and, with libsndfile >= 1.1, MP3), then the `ffmpeg` command when it
is on PATH (MP4/M4A such as MELD's clips, or anything libsndfile cannot read). Every problem raises `AudioError`
with a short reason code (`audio_missing`, `audio_empty`, `audio_undecodable`, `audio_silent`, `ffmpeg_missing`)
and a detail that says what to do, so the collector can log it in failures.jsonl and go on.
"""
from __future__ import annotations

import functools
import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf

# containers soundfile cannot open; they go straight to ffmpeg
FFMPEG_ONLY = {".mp4", ".m4a", ".aac", ".webm", ".mkv", ".mov", ".opus", ".wma"}
FFMPEG_TIMEOUT_S = 120


class AudioError(Exception):
    """A source file that cannot become a clip; `reason` is a short code for counting, the message the detail."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _decode_soundfile(path: Path, max_s: float | None) -> tuple[np.ndarray, int]:
    with sf.SoundFile(str(path)) as fh:
        rate = fh.samplerate
        frames = -1 if not max_s or fh.frames <= 0 else min(fh.frames, int(np.ceil(max_s * rate)) + 1)
        data = fh.read(frames=frames, dtype="float32", always_2d=True)
    return data, rate


def _decode_ffmpeg(path: Path, max_s: float | None, target_rate: int) -> tuple[np.ndarray, int]:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise AudioError("ffmpeg_missing",
                         f"{path}: soundfile cannot decode {path.suffix or 'this file'} and the `ffmpeg` command is "
                         "not on PATH: install it (Debian/Ubuntu: `sudo apt-get install -y ffmpeg`; conda: "
                         "`conda install -c conda-forge ffmpeg`) or convert the files to .wav/.flac")
    cmd = [exe, "-nostdin", "-v", "error", "-i", str(path), "-vn", "-ac", "1", "-ar", str(target_rate)]
    if max_s:  # a little over the limit, so that a cut is still detected
        cmd += ["-t", f"{max_s + 0.5:.3f}"]
    cmd += ["-f", "wav", "-acodec", "pcm_s16le", "pipe:1"]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=FFMPEG_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as err:
        raise AudioError("audio_undecodable", f"{path}: ffmpeg took over {FFMPEG_TIMEOUT_S} s") from err
    if proc.returncode != 0 or not proc.stdout:
        message = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise AudioError("audio_undecodable", f"{path}: ffmpeg failed: {message[-1] if message else 'no output'}")
    data, rate = sf.read(io.BytesIO(proc.stdout), dtype="float32", always_2d=True)
    return data, rate


def decode(path: str | Path, *, max_s: float | None = None, target_rate: int = 16000) -> tuple[np.ndarray, int]:
    """(samples as float32 (frames, channels), sample rate) of the first `max_s` seconds of `path`."""
    path = Path(path)
    if not path.is_file():
        raise AudioError("audio_missing", f"{path} does not exist: check that the dataset is fully downloaded "
                                          "and unpacked under its root")
    if path.stat().st_size == 0:
        raise AudioError("audio_empty", f"{path} is an empty file (0 bytes): download it again")
    if path.suffix.lower() in FFMPEG_ONLY:
        return _decode_ffmpeg(path, max_s, target_rate)
    try:
        return _decode_soundfile(path, max_s)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as err:
        if shutil.which("ffmpeg"):
            try:
                return _decode_ffmpeg(path, max_s, target_rate)
            except AudioError:
                pass
        raise AudioError("audio_undecodable", f"{path}: cannot decode ({type(err).__name__}: {err}); the file "
                                              "is corrupt or not audio: download it again") from err


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Average the channels of (frames, channels) samples."""
    samples = np.asarray(samples, dtype=np.float32)
    return samples.mean(axis=1) if samples.ndim == 2 else samples


_TORCH_THREADS = 0  # >0: set torch's intra-op threads to this on first use (pool workers use 1 each)


def use_torch_threads(threads: int) -> None:
    """Called in each worker process of a pool, so that N workers do not each spawn a thread per core."""
    global _TORCH_THREADS
    _TORCH_THREADS = int(threads)


@functools.lru_cache(maxsize=16)
def _resampler(rate: int, target_rate: int):
    """torchaudio's Resample for one rate pair; its sinc kernel is built once (building it costs more than
    applying it, e.g. 150 ms against 7 ms for 12 s at 44.1 kHz)."""
    import torch
    import torchaudio

    if _TORCH_THREADS > 0:
        torch.set_num_threads(_TORCH_THREADS)
    return torchaudio.transforms.Resample(int(rate), int(target_rate))


def resample(samples: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """Band-limited resampling (torchaudio's windowed sinc, its default kernel) of a mono float32 signal."""
    if rate == target_rate or samples.size == 0:
        return samples.astype(np.float32, copy=False)
    import torch

    resampler = _resampler(int(rate), int(target_rate))
    with torch.no_grad():
        out = resampler(torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32)))
    return out.numpy()


def load_clip(path: str | Path, *, target_rate: int = 16000, max_s: float | None = None) -> tuple[np.ndarray, dict]:
    """The clip the kit stores for `path`: mono float32 at `target_rate`, cut to `max_s`; with facts about the cut.

    Returns (samples, info) with info = {source_rate, source_channels, truncated}. Raises AudioError."""
    data, rate = decode(path, max_s=max_s, target_rate=target_rate)
    if data.size == 0 or data.shape[0] == 0:
        raise AudioError("audio_empty", f"{path}: decodes to no samples: download it again")
    channels = data.shape[1]
    mono = to_mono(data)
    if not np.isfinite(mono).all():
        raise AudioError("audio_undecodable", f"{path}: decodes to non-finite samples (NaN/inf)")
    limit = int(round(max_s * rate)) if max_s else None
    truncated = limit is not None and mono.shape[0] > limit
    if truncated:
        mono = mono[:limit]
    mono = resample(mono, rate, target_rate)
    if max_s:
        mono = mono[: int(round(max_s * target_rate))]
    if mono.size == 0:
        raise AudioError("audio_empty", f"{path}: no samples left after resampling")
    if not np.any(np.abs(mono) > 1e-6):
        raise AudioError("audio_silent", f"{path}: digital silence (every sample is 0): nothing to ask about")
    return mono.astype(np.float32, copy=False), {"source_rate": int(rate), "source_channels": int(channels),
                                                  "truncated": bool(truncated)}
