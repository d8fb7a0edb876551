"""Numpy sound synthesis for the procedural world: timbres, sound events, background beds, rhythm and scales.

Every function is pure: it takes a `numpy.random.Generator` when it needs randomness and returns a float32
waveform at `sample_rate`. Levels are set later by the scene mixer (`set_level`), so waveforms here have an
arbitrary scale.
"""
from __future__ import annotations

import math

import numpy as np

# --- levels and small DSP helpers ----------------------------------------------------------------------------


def db_to_gain(db: float) -> float:
    return float(10.0 ** (db / 20.0))


def rms_db(waveform: np.ndarray) -> float:
    """RMS level in dB relative to full scale (a full-scale sine is -3 dBFS)."""
    rms = float(np.sqrt(np.mean(np.square(waveform, dtype=np.float64)))) if len(waveform) else 0.0
    return 20.0 * math.log10(max(rms, 1e-12))


def set_level(waveform: np.ndarray, level_db: float) -> np.ndarray:
    """Scale `waveform` so that its RMS is `level_db` dBFS."""
    return (waveform * db_to_gain(level_db - rms_db(waveform))).astype(np.float32)


def seconds(duration_s: float, sample_rate: int) -> int:
    return max(1, int(round(duration_s * sample_rate)))


def envelope(num_samples: int, sample_rate: int, attack_s: float = 0.01, release_s: float = 0.03,
             decay_per_s: float = 0.0) -> np.ndarray:
    """Linear attack, optional exponential decay, linear release (no clicks at either end)."""
    t = np.arange(num_samples) / sample_rate
    env = np.exp(-decay_per_s * t)
    attack = max(1, min(num_samples // 2, int(attack_s * sample_rate)))
    release = max(1, min(num_samples // 2, int(release_s * sample_rate)))
    env[:attack] *= np.linspace(0.0, 1.0, attack, endpoint=False)
    env[-release:] *= np.linspace(1.0, 0.0, release)
    return env


def band_noise(num_samples: int, sample_rate: int, rng: np.random.Generator, low_hz: float = 0.0,
               high_hz: float | None = None, tilt: float = 0.0) -> np.ndarray:
    """White noise band-limited to [low_hz, high_hz] in the frequency domain; `tilt` > 0 darkens it (1/f^tilt)."""
    spectrum = np.fft.rfft(rng.standard_normal(num_samples))
    freqs = np.fft.rfftfreq(num_samples, 1.0 / sample_rate)
    mask = (freqs >= low_hz) & (freqs <= (high_hz or sample_rate / 2))
    shape = mask / np.maximum(freqs, 20.0) ** (tilt / 2) if tilt else mask.astype(float)
    return np.fft.irfft(spectrum * shape, num_samples)


def resample(waveform: np.ndarray, sr_in: int, sr_out: int, half_width: int = 16, beta: float = 8.6) -> np.ndarray:
    """Band-limited resampling with a Kaiser-windowed sinc (exact rational positions, deterministic, numpy only)."""
    if sr_in == sr_out:
        return waveform.astype(np.float32)
    g = math.gcd(sr_in, sr_out)
    up, down = sr_out // g, sr_in // g
    num_out = int(math.ceil(len(waveform) * up / down))
    cutoff = min(1.0, up / down) * 0.95  # relative to the input Nyquist; a small guard band
    pos = np.arange(num_out, dtype=np.int64) * down
    base = pos // up
    frac = (pos % up) / up
    taps = np.arange(-half_width + 1, half_width + 1)
    dt = frac[:, None] - taps[None, :]
    window = np.i0(beta * np.sqrt(np.clip(1.0 - (dt / half_width) ** 2, 0.0, 1.0))) / np.i0(beta)
    weights = cutoff * np.sinc(cutoff * dt) * window
    padded = np.concatenate([np.zeros(half_width), waveform, np.zeros(half_width + 1)])
    idx = base[:, None] + taps[None, :] + half_width
    return np.sum(padded[idx] * weights, axis=1).astype(np.float32)


# --- pitch, scales, metres ---------------------------------------------------------------------------------

PITCH_CLASSES = ("low", "mid", "high")
SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}  # semitones (natural minor)
MOOD_OF_MODE = {"major": "happy", "minor": "sad"}


def pitch_hz(world, pitch: str) -> float:
    """Frequency of a pitch class from the world's knobs."""
    return {"low": world.pitch_low_hz, "mid": world.pitch_mid_hz, "high": world.pitch_high_hz}[pitch]


def scale_degree_hz(tonic_hz: float, mode: str, degree: int) -> float:
    """Frequency of scale `degree` (0 = tonic, may be negative or above 6) in `mode`."""
    octave, step = divmod(degree, 7)
    return tonic_hz * 2.0 ** (octave + SCALES[mode][step] / 12.0)


def accent_pattern(beats_per_bar: int, num_beats: int) -> list[bool]:
    """True on each bar's first beat: the accent that makes a metre audible."""
    return [i % beats_per_bar == 0 for i in range(num_beats)]


# --- timbres -----------------------------------------------------------------------------------------------


def additive(freq: float, duration_s: float, sample_rate: int, partials=((1, 1.0),), decay_per_s: float = 0.0,
             vibrato_hz: float = 0.0, vibrato_depth: float = 0.0, attack_s: float = 0.01) -> np.ndarray:
    """Sum of harmonic partials (ratio, amplitude); higher partials decay faster when decay_per_s > 0."""
    n = seconds(duration_s, sample_rate)
    t = np.arange(n) / sample_rate
    phase = 2 * np.pi * freq * t
    if vibrato_hz:
        phase = phase + vibrato_depth * freq / vibrato_hz * np.sin(2 * np.pi * vibrato_hz * t)
    out = np.zeros(n)
    for ratio, amp in partials:
        if freq * ratio < sample_rate / 2:
            out += amp * np.sin(ratio * phase) * np.exp(-decay_per_s * ratio * t)
    return out * envelope(n, sample_rate, attack_s=attack_s)


def fm(freq: float, duration_s: float, sample_rate: int, ratio: float = 1.4, index: float = 4.0,
       decay_per_s: float = 3.0) -> np.ndarray:
    """Two-operator FM (bell-like when the ratio is inharmonic); the index decays with the amplitude."""
    n = seconds(duration_s, sample_rate)
    t = np.arange(n) / sample_rate
    decay = np.exp(-decay_per_s * t)
    mod = index * decay * np.sin(2 * np.pi * freq * ratio * t)
    return np.sin(2 * np.pi * freq * t + mod) * envelope(n, sample_rate, attack_s=0.002, decay_per_s=decay_per_s)


def karplus_strong(freq: float, duration_s: float, sample_rate: int, rng: np.random.Generator,
                   damping: float = 0.996, oversample: int = 4) -> np.ndarray:
    """Plucked string: a noise burst recirculated through an averaging delay line (run oversampled for pitch
    accuracy, then resampled). Vectorised one period at a time."""
    sr = sample_rate * oversample
    period = max(2, int(round(sr / freq)))
    n = seconds(duration_s, sr)
    y = np.zeros(n + period + 1)
    y[: period + 1] = rng.uniform(-1, 1, period + 1)
    pos = period + 1
    while pos < len(y):
        end = min(pos + period, len(y))
        y[pos:end] = damping * 0.5 * (y[pos - period:end - period] + y[pos - period - 1:end - period - 1])
        pos = end
    out = resample(y[period + 1:period + 1 + n], sr, sample_rate)
    return out * envelope(len(out), sample_rate, attack_s=0.002)


INSTRUMENTS = ("piano", "guitar", "flute", "organ")


def instrument_note(instrument: str, freq: float, duration_s: float, sample_rate: int,
                    rng: np.random.Generator) -> np.ndarray:
    """One note of `instrument`; each has a distinct timbre a small encoder can tell apart."""
    if instrument == "piano":
        partials = [(k, 1.0 / k) for k in range(1, 7)]
        return additive(freq, duration_s, sample_rate, partials, decay_per_s=2.5, attack_s=0.003)
    if instrument == "guitar":
        return karplus_strong(freq, duration_s, sample_rate, rng)
    if instrument == "flute":
        tone = additive(freq, duration_s, sample_rate, [(1, 1.0), (2, 0.15)], vibrato_hz=5.0, vibrato_depth=0.01,
                        attack_s=0.05)
        breath = band_noise(len(tone), sample_rate, rng, freq, freq * 3) * envelope(len(tone), sample_rate, 0.05)
        return tone + 0.05 * breath / (np.std(breath) + 1e-9) * np.std(tone)
    if instrument == "organ":
        return additive(freq, duration_s, sample_rate, [(1, 1.0), (2, 0.7), (3, 0.5), (4, 0.35), (6, 0.2)],
                        attack_s=0.02)
    raise ValueError(f"unknown instrument {instrument!r}; known: {', '.join(INSTRUMENTS)}")


# --- percussion ----------------------------------------------------------------------------------------------


def kick(sample_rate: int, duration_s: float = 0.18) -> np.ndarray:
    n = seconds(duration_s, sample_rate)
    t = np.arange(n) / sample_rate
    freq = 50 + 90 * np.exp(-t * 30)
    return np.sin(2 * np.pi * np.cumsum(freq) / sample_rate) * envelope(n, sample_rate, 0.002, 0.02, 18.0)


def snare(sample_rate: int, rng: np.random.Generator, duration_s: float = 0.15) -> np.ndarray:
    n = seconds(duration_s, sample_rate)
    noise = band_noise(n, sample_rate, rng, 1500, 7000)
    body = additive(190, duration_s, sample_rate, decay_per_s=25, attack_s=0.002)
    return (noise / (np.std(noise) + 1e-9) * 0.5 + body) * envelope(n, sample_rate, 0.002, 0.02, 20.0)


def click(sample_rate: int, rng: np.random.Generator, freq: float, duration_s: float = 0.06) -> np.ndarray:
    """A woodblock-like click; the accented click of a metre uses a higher `freq`."""
    n = seconds(duration_s, sample_rate)
    return additive(freq, duration_s, sample_rate, [(1, 1.0), (2.7, 0.4)], decay_per_s=40, attack_s=0.001) + \
        0.1 * band_noise(n, sample_rate, rng, 2000) * envelope(n, sample_rate, 0.001, 0.01, 60)


# --- everyday sound events -----------------------------------------------------------------------------------


def beep(freq: float, duration_s: float, sample_rate: int) -> np.ndarray:
    """A pure tone: its FFT peak is its pitch class."""
    return additive(freq, duration_s, sample_rate, attack_s=0.01)


def siren(duration_s: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Wailing siren: a tone sweeping between ~650 and ~1300 Hz."""
    n = seconds(duration_s, sample_rate)
    t = np.arange(n) / sample_rate
    rate = rng.uniform(1.5, 2.5)
    freq = 975 + 325 * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi))
    phase = 2 * np.pi * np.cumsum(freq) / sample_rate
    return (np.sin(phase) + 0.3 * np.sin(3 * phase)) * envelope(n, sample_rate, 0.05, 0.05)


def phone_ring(duration_s: float, sample_rate: int) -> np.ndarray:
    """Telephone ring: 440+480 Hz dual tone, warbled at 20 Hz."""
    n = seconds(duration_s, sample_rate)
    t = np.arange(n) / sample_rate
    tone = np.sin(2 * np.pi * 440 * t) + np.sin(2 * np.pi * 480 * t)
    warble = 0.5 + 0.5 * np.sign(np.sin(2 * np.pi * 20 * t))
    return tone * (0.3 + 0.7 * warble) * envelope(n, sample_rate, 0.01, 0.03)


def alarm_clock(duration_s: float, sample_rate: int) -> np.ndarray:
    """Alarm clock: fast bursts of a bright 2.4 kHz square-ish tone."""
    n = seconds(duration_s, sample_rate)
    t = np.arange(n) / sample_rate
    tone = np.sin(2 * np.pi * 2400 * t) + 0.3 * np.sin(2 * np.pi * 7200 * t)
    gate = (np.sin(2 * np.pi * 8 * t) > 0).astype(float)
    return tone * gate * envelope(n, sample_rate, 0.005, 0.02)


def _hits(duration_s: float, sample_rate: int, spacing_s: float, hit_s: float, make_hit) -> np.ndarray:
    """Repeated short hits filling `duration_s`, about `spacing_s` apart (knocks, claps)."""
    n = seconds(duration_s, sample_rate)
    hit_n = min(n, seconds(hit_s, sample_rate))
    num_hits = max(2, int(round((duration_s - hit_s) / spacing_s)) + 1)
    out = np.zeros(n)
    for start in np.linspace(0, n - hit_n, num_hits).astype(int):
        out[start:start + hit_n] += make_hit(hit_n) * envelope(hit_n, sample_rate, 0.001, 0.01, 50)
    return out


def knock(duration_s: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Knocking on a door: dull thumps ~0.15 s apart."""
    def hit(n):
        thump = band_noise(n, sample_rate, rng, 80, 900, tilt=1.0)
        return thump / (np.std(thump) + 1e-9) + additive(140, n / sample_rate, sample_rate, decay_per_s=10)
    return _hits(duration_s, sample_rate, 0.15, 0.06, hit)


def clapping(duration_s: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Hand claps: sharp band-passed noise bursts ~0.18 s apart."""
    return _hits(duration_s, sample_rate, 0.18, 0.05, lambda n: band_noise(n, sample_rate, rng, 900, 5000))


def doorbell(duration_s: float, sample_rate: int) -> np.ndarray:
    """Ding-dong: two FM bell tones a major third apart."""
    half = duration_s / 2
    ding = fm(659.3, half, sample_rate, ratio=3.5, index=1.5, decay_per_s=4)
    dong = fm(523.3, duration_s - half, sample_rate, ratio=3.5, index=1.5, decay_per_s=4)
    return np.concatenate([ding, dong])


def car_horn(duration_s: float, sample_rate: int) -> np.ndarray:
    """Car horn: two bright buzzy tones sounding together."""
    partials = [(k, 1.0 / k) for k in range(1, 9)]
    return additive(400, duration_s, sample_rate, partials) + additive(500, duration_s, sample_rate, partials)


def whistle(duration_s: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Referee whistle: a trilled ~3 kHz tone with breath noise."""
    tone = additive(3000, duration_s, sample_rate, vibrato_hz=30, vibrato_depth=0.03)
    breath = band_noise(len(tone), sample_rate, rng, 2500, 4000)
    return tone + 0.2 * breath / (np.std(breath) + 1e-9) * envelope(len(tone), sample_rate)


# --- background beds -----------------------------------------------------------------------------------------


def rain(duration_s: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Rain: dark broadband noise with sparse droplet clicks."""
    n = seconds(duration_s, sample_rate)
    bed = band_noise(n, sample_rate, rng, 200, 8000, tilt=0.5)
    bed /= np.std(bed) + 1e-9
    drops = np.zeros(n)
    where = rng.integers(0, n, size=max(1, int(40 * duration_s)))
    drops[where] = rng.uniform(2, 5, len(where))
    return bed + np.convolve(drops, np.hanning(16), "same")


def engine_hum(duration_s: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Idling engine: a low 45-60 Hz harmonic drone with rumble."""
    f0 = rng.uniform(45, 60)
    partials = [(k, 1.0 / k) for k in range(1, 12)]
    drone = additive(f0, duration_s, sample_rate, partials, vibrato_hz=0.7, vibrato_depth=0.02, attack_s=0.1)
    rumble = band_noise(len(drone), sample_rate, rng, 30, 400, tilt=1.0)
    return drone / (np.std(drone) + 1e-9) + 0.5 * rumble / (np.std(rumble) + 1e-9)


def wind(duration_s: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Wind: low-passed noise whose loudness swells slowly."""
    n = seconds(duration_s, sample_rate)
    t = np.arange(n) / sample_rate
    gust = 0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.2, 0.5) * t + rng.uniform(0, 2 * np.pi))
    return band_noise(n, sample_rate, rng, 60, 1200, tilt=1.0) * gust * envelope(n, sample_rate, 0.2, 0.2)
