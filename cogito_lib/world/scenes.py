"""Scene generators: each draws one clip's content from the clip's RNG, mixes it and states its facts.

A scene function takes a `SceneContext` and returns a `Mixer` (audio + the complete event list) and a facts dict.
Answers are categorical with the class gaps of `WorldConfig` (loudness classes `loudness_step_db` apart, pitch
classes low/mid/high, events >= `min_gap_s` apart, tempo slow/fast); nuisance variables (clip duration, exact
level within a class, onsets) are drawn independently of the answers.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from cogito_lib.config import WorldConfig
from cogito_lib.io import stable_id
from cogito_lib.world import synth, tts
from cogito_lib.world.facts import layers_of
from cogito_lib.mmar.rule import MODALITIES  # MMAR's seven modality classes

LOUDNESS_CLASSES = ("quiet", "medium", "loud")
LOUD_REFERENCE_DB = -20.0  # dBFS RMS of the "loud" class; the others sit loudness_step_db below each other
MARGIN_S = 0.1  # silence kept at each end of a clip


class DoesNotFit(Exception):
    """The drawn content does not fit the drawn clip duration; the scene is drawn again."""


# --- catalogues ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SoundSource:
    label: str  # human words
    min_s: float  # shortest rendering
    max_s: float  # longest rendering
    meaning: str  # what it conventionally signals (Cultural layer)
    render: Callable  # (duration_s, sample_rate, rng) -> waveform


SOUND_SOURCES: dict[str, SoundSource] = {
    "siren": SoundSource("a siren", 0.4, 1.0, "an emergency vehicle is coming",
                         lambda d, sr, rng: synth.siren(d, sr, rng)),
    "phone_ring": SoundSource("a phone ringing", 0.4, 0.9, "someone is calling",
                              lambda d, sr, rng: synth.phone_ring(d, sr)),
    "alarm_clock": SoundSource("an alarm clock", 0.3, 0.8, "it is time to wake up",
                               lambda d, sr, rng: synth.alarm_clock(d, sr)),
    "knock": SoundSource("a knock on the door", 0.25, 0.5, "someone is at the door",
                         lambda d, sr, rng: synth.knock(d, sr, rng)),
    "doorbell": SoundSource("a doorbell", 0.5, 0.8, "a visitor is at the door",
                            lambda d, sr, rng: synth.doorbell(d, sr)),
    "car_horn": SoundSource("a car horn", 0.25, 0.6, "a driver is warning someone",
                            lambda d, sr, rng: synth.car_horn(d, sr)),
    "whistle": SoundSource("a whistle", 0.25, 0.5, "the referee has stopped the game",
                           lambda d, sr, rng: synth.whistle(d, sr, rng)),
    "clapping": SoundSource("clapping", 0.3, 0.7, "people are applauding",
                            lambda d, sr, rng: synth.clapping(d, sr, rng)),
}
BEDS = {"rain": ("rain", synth.rain), "engine": ("an engine humming", synth.engine_hum), "wind": ("wind", synth.wind)}

# A sound and the spoken reaction it causes (cause_effect facts).
CAUSES = {
    "phone_ring": ("Hello?", "the phone rang, so someone answered it"),
    "alarm_clock": ("Wake up!", "the alarm went off, so someone is woken up"),
    "knock": ("Come in!", "someone knocked, so they are invited in"),
    "doorbell": ("I will get the door.", "the doorbell rang, so someone goes to open the door"),
    "car_horn": ("Watch out!", "a horn sounded, so someone warns of danger"),
    "whistle": ("Time out!", "the whistle blew, so the game stops"),
}
MONOLOGUE_LINES = ("The train leaves at noon.", "Please close the window.", "I like green apples.",
                   "It is cold today.", "Where is my bag?", "Let us go home.", "The shop is open.",
                   "Turn left here.")
DIALOGUE_PAIRS = (("Are you ready?", "Yes, let us go."), ("Is it raining?", "No, it is sunny."),
                  ("Good morning.", "Morning!"), ("Coffee or tea?", "Tea, please."), ("Who is there?", "It is me."),
                  ("How are you?", "Fine, thanks."))
GREETINGS = {"english": ("Good morning.", "Hello, friends."), "spanish": ("Hola, buenos días.", "Buenas noches."),
             "french": ("Bonjour, ça va?", "Bonsoir, madame."), "german": ("Guten Morgen.", "Guten Tag, alle."),
             "italian": ("Buongiorno, amici.", "Ciao, come stai?")}
CONTOURS = {"higher": (4, 7), "lower": (-3, -7), "same": (0,)}  # last melody degree relative to the first (tonic)
DANCE_BEATS = {"waltz": 3, "march": 2}


# --- context and mixer ---------------------------------------------------------------------------------------


class SceneContext:
    """What a scene draws from: the world's knobs, the clip's RNG and the TTS cache."""

    def __init__(self, world: WorldConfig, rng: np.random.Generator, tts_cache: str | Path | None = None):
        self.world = world
        self.rng = rng
        self.sample_rate = world.sample_rate
        self.tts_cache = tts_cache

    def pick(self, options):
        """One element of a sequence (keeps Python types, unlike rng.choice)."""
        options = list(options)
        return options[int(self.rng.integers(len(options)))]

    def sample(self, options, k: int) -> list:
        options = list(options)
        return [options[i] for i in self.rng.permutation(len(options))[:k]]

    def duration(self, needed_s: float = 0.0) -> float:
        """A clip duration in [min_duration_s, max_duration_s] that holds `needed_s` (else DoesNotFit)."""
        low = max(self.world.min_duration_s, needed_s)
        if low > self.world.max_duration_s:
            raise DoesNotFit(f"needs {needed_s:.2f} s")
        return float(self.rng.uniform(low, self.world.max_duration_s))

    def num_events(self) -> int:
        return int(self.rng.integers(self.world.min_events, self.world.max_events + 1))

    def level(self, loudness: str | None = None, allowed=LOUDNESS_CLASSES) -> float:
        """A level in dBFS for a loudness class (drawn from `allowed` if None), jittered well inside the class."""
        loudness = loudness or self.pick(allowed)
        step = self.world.loudness_step_db
        centre = LOUD_REFERENCE_DB - step * (2 - LOUDNESS_CLASSES.index(loudness))
        jitter = min(1.5, step / 8)
        return centre + float(self.rng.uniform(-jitter, jitter))

    def gap(self) -> float:
        return self.world.min_gap_s + float(self.rng.uniform(0.0, 0.25))

    def speech(self, text: str, language: str, gender: str, variant: int | None = None) -> tuple[np.ndarray, str]:
        """(waveform, espeak-ng voice) of `text`; the voice variant is drawn unless given."""
        variant = int(self.rng.integers(2)) if variant is None else variant
        voice = tts.voice_name(language, gender, variant)
        return tts.synthesize(text, voice, self.world.tts_rate_wpm, self.sample_rate, self.tts_cache), voice


def loudness_class(world: WorldConfig, level_db: float) -> str:
    """The loudness class nearest to `level_db`."""
    centres = [LOUD_REFERENCE_DB - world.loudness_step_db * (2 - i) for i in range(3)]
    return LOUDNESS_CLASSES[int(np.argmin([abs(level_db - c) for c in centres]))]


class Mixer:
    """A clip buffer that records every event it mixes in (the complete, audible event list)."""

    def __init__(self, ctx: SceneContext, duration_s: float):
        self.ctx = ctx
        self.sample_rate = ctx.sample_rate
        self.num_samples = synth.seconds(duration_s, self.sample_rate)
        self.buffer = np.zeros(self.num_samples, dtype=np.float64)
        self.events: list[dict] = []

    @property
    def duration_s(self) -> float:
        return self.num_samples / self.sample_rate

    def add(self, waveform: np.ndarray, onset_s: float, level_db: float, *, source: str, label: str, kind: str,
            role: str = "foreground", pitch: str | None = None, **extra) -> dict:
        """Mix `waveform` at `onset_s` with RMS `level_db` dBFS and record its event."""
        start = int(round(onset_s * self.sample_rate))
        end = start + len(waveform)
        if start < 0 or end > self.num_samples:
            raise DoesNotFit(f"{source} at {onset_s:.2f} s overruns the clip")
        self.buffer[start:end] += synth.set_level(waveform, level_db)
        event = {"source": source, "label": label, "kind": kind, "onset_s": round(start / self.sample_rate, 3),
                 "offset_s": round(end / self.sample_rate, 3), "level_db": round(level_db, 1),
                 "loudness": loudness_class(self.ctx.world, level_db), "pitch": pitch, "role": role, **extra}
        self.events.append(event)
        return event

    def add_bed(self, name: str, level_db: float) -> dict:
        """A background bed (rain, engine, wind) under the whole clip."""
        label, render = BEDS[name]
        wave = render(self.duration_s, self.sample_rate, self.ctx.rng)[: self.num_samples]
        return self.add(wave, 0.0, level_db, source=name, label=label, kind="sound", role="background")

    def finish(self) -> tuple[np.ndarray, list[dict]]:
        """Add the noise floor, keep the peak below full scale (shifting recorded levels if it had to) and return
        (float32 audio, events sorted by onset)."""
        noise = self.ctx.rng.standard_normal(self.num_samples) * synth.db_to_gain(self.ctx.world.noise_floor_db)
        audio = self.buffer + noise
        peak = float(np.max(np.abs(audio)))
        if peak > 0.97:  # rare (loud speech over a bed): scale the whole clip, so relative levels stay exact
            gain = 0.97 / peak
            audio *= gain
            for event in self.events:
                event["level_db"] = round(event["level_db"] + 20 * np.log10(gain), 1)
        events = sorted(self.events, key=lambda e: (e["onset_s"], e["offset_s"], e["source"], e["label"]))
        return audio.astype(np.float32), events


# --- layout helpers ------------------------------------------------------------------------------------------


def fit_durations(ctx: SceneContext, durations: list[float], minimums: list[float], available_s: float) -> list[float]:
    """Shrink event durations toward their minimums so they fit `available_s` with min_gap_s between them.

    This keeps the clip duration independent of the number of events (a count must not be readable off length).
    """
    room = available_s - ctx.world.min_gap_s * (len(durations) - 1)
    total, floor = sum(durations), sum(minimums)
    if floor > room:
        raise DoesNotFit(f"{len(durations)} events need {floor:.2f} s")
    if total <= room:
        return durations
    alpha = (room - floor) / (total - floor)
    return [m + (d - m) * alpha for d, m in zip(durations, minimums)]


def layout(ctx: SceneContext, durations: list[float], duration_s: float) -> list[float]:
    """Random onsets for back-to-back events: gaps >= min_gap_s, the spare time spread at random."""
    spare = duration_s - 2 * MARGIN_S - sum(durations) - ctx.world.min_gap_s * (len(durations) - 1)
    if spare < 0:
        raise DoesNotFit("events do not fit")
    shares = ctx.rng.dirichlet(np.ones(len(durations) + 1)) * spare * 0.98
    onsets, t = [], MARGIN_S + shares[0]
    for i, d in enumerate(durations):
        onsets.append(t)
        t += d + ctx.world.min_gap_s + shares[i + 1]
    return onsets


def place_sounds(ctx: SceneContext, mixer: Mixer, sources: list[str], loudness: list[str] | None = None) -> list[dict]:
    """Render and place everyday sound events one after another over the whole clip."""
    specs = [SOUND_SOURCES[s] for s in sources]
    wanted = [float(ctx.rng.uniform(s.min_s, s.max_s)) for s in specs]
    durations = fit_durations(ctx, wanted, [s.min_s for s in specs], mixer.duration_s - 2 * MARGIN_S)
    onsets = layout(ctx, durations, mixer.duration_s)
    loudness = loudness or [ctx.pick(LOUDNESS_CLASSES) for _ in sources]
    return [mixer.add(spec.render(d, ctx.sample_rate, ctx.rng), t, ctx.level(loud), source=name, label=spec.label,
                      kind="sound")
            for name, spec, d, t, loud in zip(sources, specs, durations, onsets, loudness)]


def speech_event(mixer: Mixer, spoken: tuple[np.ndarray, str], onset_s: float, level_db: float, *, text: str,
                 language: str, gender: str, speaker: str = "A") -> dict:
    """Mix a `ctx.speech` result and record it as a speech event."""
    waveform, tts_voice = spoken
    who = "a man" if gender == "male" else "a woman"
    return mixer.add(waveform, onset_s, level_db, source="speech", label=f'{who} says "{text}"', kind="speech",
                     text=text, voice=gender, speaker=speaker, language=language, tts_voice=tts_voice)


def render_melody(ctx: SceneContext, instrument: str, mode: str, tonic_hz: float, contour: str, num_notes: int,
                  note_s: float) -> np.ndarray:
    """A tune that starts on the tonic, states the mode's third, wanders, and ends per `contour`."""
    degrees = [0, 2]
    while len(degrees) < num_notes - 1:
        degrees.append(int(np.clip(degrees[-1] + ctx.rng.integers(-2, 3), -3, 7)))
    degrees = (degrees + [ctx.pick(CONTOURS[contour])])[:num_notes]
    notes = [synth.instrument_note(instrument, synth.scale_degree_hz(tonic_hz, mode, d), note_s, ctx.sample_rate,
                                   ctx.rng) for d in degrees]
    return np.concatenate(notes)


def music_bed(ctx: SceneContext, mixer: Mixer, level_db: float) -> tuple[dict, dict]:
    """A quiet melody under the whole clip; returns its event and its facts (instrument, mode, mood)."""
    instrument, mode = ctx.pick(synth.INSTRUMENTS), ctx.pick(synth.SCALES)
    note_s = float(ctx.rng.uniform(0.22, 0.4))
    span = mixer.duration_s - 2 * MARGIN_S
    wave = render_melody(ctx, instrument, mode, synth.pitch_hz(ctx.world, ctx.pick(("low", "mid"))),
                         ctx.pick(CONTOURS), max(3, int(span / note_s)), note_s)[: synth.seconds(span, ctx.sample_rate)]
    event = mixer.add(wave, MARGIN_S, level_db, source=instrument, label=f"{instrument} music", kind="music",
                      role="background", instrument=instrument)
    return event, {"instrument": instrument, "scale_mode": mode, "mood": synth.MOOD_OF_MODE[mode]}


def sequence_facts(events: list[dict]) -> dict:
    """Counting/order/loudness facts over the foreground events, in onset order."""
    fg = sorted((e for e in events if e["role"] == "foreground"), key=lambda e: e["onset_s"])
    facts = {"event_count": len(fg), "temporal_order": [e["label"] for e in fg]}
    if len(fg) >= 2:
        first, last = (LOUDNESS_CLASSES.index(e["loudness"]) for e in (fg[0], fg[-1]))
        facts["loudness_change"] = "louder" if last > first else "softer" if last < first else "same"
        ranks = [LOUDNESS_CLASSES.index(e["loudness"]) for e in fg]
        if ranks.count(max(ranks)) == 1:
            facts["loudest_event"] = fg[ranks.index(max(ranks))]["label"]
    return facts


def layering_facts(events: list[dict]) -> dict:
    return {"foreground_background": {
        "foreground": [e["label"] for e in events if e["role"] == "foreground"],
        "background": [e["label"] for e in events if e["role"] == "background"]}}


def salient_sound_facts(source: str) -> dict:
    return {"sound_source": source, "sound_meaning": SOUND_SOURCES[source].meaning}


def speech_facts(events: list[dict]) -> dict:
    said = [e for e in events if e["kind"] == "speech"]
    return {"num_speakers": len({e["speaker"] for e in said}), "speaker_voice": [e["voice"] for e in said],
            "spoken_content": [e["text"] for e in said]}


# --- sound scenes --------------------------------------------------------------------------------------------


def beep_sequence(ctx: SceneContext):
    """2-4 pure tones with pitch and loudness classes: counting, order, pitch and loudness change."""
    n = ctx.num_events()
    mixer = Mixer(ctx, ctx.duration())
    durations = fit_durations(ctx, [float(ctx.rng.uniform(0.12, 0.3)) for _ in range(n)], [0.08] * n,
                              mixer.duration_s - 2 * MARGIN_S)
    pitches = [ctx.pick(synth.PITCH_CLASSES) for _ in range(n)]
    for d, t, p in zip(durations, layout(ctx, durations, mixer.duration_s), pitches):
        mixer.add(synth.beep(synth.pitch_hz(ctx.world, p), d, ctx.sample_rate), t, ctx.level(), source="beep",
                  label=f"a {p} beep", kind="sound", pitch=p)
    first, last = synth.PITCH_CLASSES.index(pitches[0]), synth.PITCH_CLASSES.index(pitches[-1])
    facts = {"pitch_sequence": pitches,
             "pitch_relation": "higher" if last > first else "lower" if last < first else "same"}
    return mixer, {**sequence_facts(mixer.events), **facts}


def sound_scene(ctx: SceneContext):
    """2-4 different everyday sounds one after another: counting, order, loudness."""
    mixer = Mixer(ctx, ctx.duration())
    place_sounds(ctx, mixer, ctx.sample(SOUND_SOURCES, ctx.num_events()))
    return mixer, sequence_facts(mixer.events)


def sound_over_bed(ctx: SceneContext):
    """One salient sound over a background bed: what made it, what it means, what is in front."""
    mixer = Mixer(ctx, ctx.duration())
    source = ctx.pick(SOUND_SOURCES)
    (event,) = place_sounds(ctx, mixer, [source], [ctx.pick(("medium", "loud"))])
    mixer.add_bed(ctx.pick(BEDS), event["level_db"] + ctx.world.background_db)
    return mixer, {**salient_sound_facts(source), **layering_facts(mixer.events)}


# --- music scenes --------------------------------------------------------------------------------------------


def melody(ctx: SceneContext):
    """A solo melody: instrument, major/minor (mood) and whether it ends higher or lower than it starts."""
    instrument, mode, contour = ctx.pick(synth.INSTRUMENTS), ctx.pick(synth.SCALES), ctx.pick(CONTOURS)
    register = ctx.pick(("low", "mid"))
    mixer = Mixer(ctx, ctx.duration())
    note_s = float(ctx.rng.uniform(0.22, 0.4))
    num_notes = int((mixer.duration_s - 2 * MARGIN_S - 0.2) / note_s)
    if num_notes < 4:
        raise DoesNotFit("melody too short")
    wave = render_melody(ctx, instrument, mode, synth.pitch_hz(ctx.world, register), contour, num_notes, note_s)
    onset = MARGIN_S + float(ctx.rng.uniform(0, mixer.duration_s - 2 * MARGIN_S - len(wave) / ctx.sample_rate))
    mixer.add(wave, onset, ctx.level(), source=instrument, label=f"a {instrument} melody", kind="music",
              pitch=register, instrument=instrument)
    return mixer, {"instrument": instrument, "scale_mode": mode, "mood": synth.MOOD_OF_MODE[mode],
                   "pitch_relation": contour}


def _beats(ctx: SceneContext, mixer: Mixer, bpm: float) -> list[float]:
    beat_s = 60.0 / bpm
    first = MARGIN_S + float(ctx.rng.uniform(0, 0.2))
    count = int((mixer.duration_s - MARGIN_S - 0.25 - first) / beat_s) + 1
    return [first + i * beat_s for i in range(count)]


def rhythm(ctx: SceneContext):
    """A click-and-kick beat: tempo class always; metre (3 or 4) when at least two downbeats are heard."""
    tempo, metre = ctx.pick(("slow", "fast")), ctx.pick((3, 4))
    bpm = (ctx.world.tempo_slow_bpm if tempo == "slow" else ctx.world.tempo_fast_bpm) * float(ctx.rng.uniform(0.97, 1.03))
    mixer = Mixer(ctx, ctx.duration())
    beats = _beats(ctx, mixer, bpm)
    if len(beats) < 2:
        raise DoesNotFit("fewer than two beats")
    sr, wave = ctx.sample_rate, np.zeros(mixer.num_samples)
    for t, accent in zip(beats, synth.accent_pattern(metre, len(beats))):
        hit = synth.kick(sr) + synth.click(sr, ctx.rng, 1500, 0.18) if accent else \
            0.35 * synth.click(sr, ctx.rng, 900, 0.18)
        start = int(round((t - beats[0]) * sr))
        wave[start:start + len(hit)] += hit
    wave = wave[: int(round((beats[-1] - beats[0]) * sr)) + synth.seconds(0.18, sr)]
    # Drum hits are peaky: keep them below "loud" so the clip never needs limiting (their level is no fact).
    mixer.add(wave, beats[0], ctx.level(allowed=("quiet", "medium")), source="drums", label="a drum beat", kind="music", instrument="drums")
    facts = {"tempo": tempo}
    if len(beats) >= metre + 1:
        facts["metre"] = metre
    return mixer, facts


def dance(ctx: SceneContext):
    """Oom-pah accompaniment: a 3-beat waltz or a 2-beat march (with a snare), at the fast tempo class."""
    form, instrument, mode = ctx.pick(DANCE_BEATS), ctx.pick(("piano", "guitar", "organ")), ctx.pick(synth.SCALES)
    beats_per_bar = DANCE_BEATS[form]
    mixer = Mixer(ctx, ctx.duration())
    beats = _beats(ctx, mixer, ctx.world.tempo_fast_bpm * float(ctx.rng.uniform(0.97, 1.03)))
    if len(beats) < beats_per_bar + 2:
        raise DoesNotFit("fewer than one bar and two beats")
    sr, tonic = ctx.sample_rate, ctx.world.pitch_low_hz
    chord_s = min(0.3, 60.0 / ctx.world.tempo_fast_bpm * 0.8)
    span = int(round((beats[-1] - beats[0]) * sr)) + synth.seconds(chord_s, sr)
    accomp, drums = np.zeros(span), np.zeros(span)
    for t, downbeat in zip(beats, synth.accent_pattern(beats_per_bar, len(beats))):
        start = int(round((t - beats[0]) * sr))
        degrees = (-7,) if downbeat else (2, 4, 7)  # bass on the downbeat, chord on the others
        note = sum(synth.instrument_note(instrument, synth.scale_degree_hz(tonic, mode, d), chord_s, sr, ctx.rng)
                   for d in degrees)
        accomp[start:start + len(note)] += note * (1.0 if downbeat else 0.6)
        if form == "march":
            hit = synth.kick(sr) if downbeat else synth.snare(sr, ctx.rng)
            drums[start:start + len(hit)] += hit[: span - start]
    level = ctx.level(ctx.pick(("medium", "loud")))
    mixer.add(accomp, beats[0], level, source=instrument, label=f"a {form} on the {instrument}", kind="music",
              instrument=instrument)
    if form == "march":
        mixer.add(drums, beats[0], level - 6.0, source="drums", label="marching drums", kind="music",
                  instrument="drums")
    return mixer, {"dance_form": form, "metre": beats_per_bar, "instrument": instrument, "scale_mode": mode,
                   "mood": synth.MOOD_OF_MODE[mode]}


# --- speech scenes -------------------------------------------------------------------------------------------


def _utterances(ctx: SceneContext, lines: list[tuple[str, str, str, str]]):
    """Speak (text, language, gender, speaker) lines one after another in a clip that holds them.

    Two speakers of the same perceived gender get different espeak-ng variants, so they are two voices."""
    genders = [gender for _, _, gender, _ in lines]
    same = len(lines) == 2 and genders[0] == genders[1]
    first_variant = int(ctx.rng.integers(2))
    waves = [ctx.speech(text, language, gender, (first_variant + i) % 2 if same else None)
             for i, (text, language, gender, _) in enumerate(lines)]
    lengths = [len(w[0]) / ctx.sample_rate for w in waves]
    gaps = [ctx.gap() for _ in lines[1:]]
    mixer = Mixer(ctx, ctx.duration(sum(lengths) + sum(gaps) + 2 * MARGIN_S + 0.05))
    spare = mixer.duration_s - 2 * MARGIN_S - sum(lengths) - sum(gaps)
    t = MARGIN_S + float(ctx.rng.uniform(0, max(0.0, spare - 0.01)))
    for (text, language, gender, speaker), wave, length, gap in zip(lines, waves, lengths, gaps + [0.0]):
        speech_event(mixer, wave, t, ctx.level(allowed=("medium", "loud")), text=text, language=language,
                     gender=gender, speaker=speaker)
        t += length + gap
    return mixer


def monologue(ctx: SceneContext):
    """One speaker says one English sentence: voice and content."""
    mixer = _utterances(ctx, [(ctx.pick(MONOLOGUE_LINES), "english", ctx.pick(("male", "female")), "A")])
    return mixer, {**speech_facts(mixer.events), "language": "english"}


def dialogue(ctx: SceneContext):
    """Two speakers take turns: number of speakers, voices, who spoke first, words."""
    question, answer = ctx.pick(DIALOGUE_PAIRS)
    genders = [ctx.pick(("male", "female")) for _ in range(2)]
    mixer = _utterances(ctx, [(question, "english", genders[0], "A"), (answer, "english", genders[1], "B")])
    facts = speech_facts(mixer.events)
    return mixer, {**facts, "language": "english", "temporal_order": [e["label"] for e in mixer.events]}


def greeting(ctx: SceneContext):
    """A greeting in one of five languages (Cultural: which language)."""
    language = ctx.pick(GREETINGS)
    mixer = _utterances(ctx, [(ctx.pick(GREETINGS[language]), language, ctx.pick(("male", "female")), "A")])
    return mixer, {**speech_facts(mixer.events), "language": language}


# --- mixed scenes --------------------------------------------------------------------------------------------


def _cause_then_reply(ctx: SceneContext, with_music: bool):
    source = ctx.pick(CAUSES)
    reply, relation = CAUSES[source]
    spec = SOUND_SOURCES[source]
    gender = ctx.pick(("male", "female"))
    spoken = ctx.speech(reply, "english", gender)
    speech_s = len(spoken[0]) / ctx.sample_rate
    sound_s = float(ctx.rng.uniform(spec.min_s, spec.max_s))
    gap = ctx.gap()
    mixer = Mixer(ctx, ctx.duration(sound_s + gap + speech_s + 2 * MARGIN_S + 0.05))
    spare = mixer.duration_s - 2 * MARGIN_S - sound_s - gap - speech_s
    onset = MARGIN_S + float(ctx.rng.uniform(0, max(0.0, spare - 0.01)))
    sound = mixer.add(spec.render(sound_s, ctx.sample_rate, ctx.rng), onset, ctx.level(allowed=("medium", "loud")),
                      source=source, label=spec.label, kind="sound")
    said = speech_event(mixer, spoken, sound["offset_s"] + gap, ctx.level(allowed=("medium", "loud")), text=reply,
                        language="english", gender=gender)
    facts = {**salient_sound_facts(source), **speech_facts(mixer.events),
             "cause_effect": {"cause": spec.label, "effect": reply, "relation": relation},
             "temporal_order": [sound["label"], said["label"]], "event_count": 2}
    if with_music:
        _, music_facts = music_bed(ctx, mixer, min(sound["level_db"], said["level_db"]) + ctx.world.background_db)
        facts.update(music_facts, **layering_facts(mixer.events))
    return mixer, facts


def cause_effect(ctx: SceneContext):
    """A sound, then the spoken reaction it causes (phone -> "Hello?", knock -> "Come in!")."""
    return _cause_then_reply(ctx, with_music=False)


def speech_over_noise(ctx: SceneContext):
    """A sentence spoken over rain, an engine or wind: what is in front, what was said."""
    mixer = _utterances(ctx, [(ctx.pick(MONOLOGUE_LINES), "english", ctx.pick(("male", "female")), "A")])
    mixer.add_bed(ctx.pick(BEDS), mixer.events[0]["level_db"] + ctx.world.background_db)
    return mixer, {**speech_facts(mixer.events), **layering_facts(mixer.events)}


def sounds_over_music(ctx: SceneContext):
    """Everyday sounds over quiet background music: count the sounds, name the instrument."""
    mixer = Mixer(ctx, ctx.duration())
    n = ctx.num_events()
    events = place_sounds(ctx, mixer, ctx.sample(SOUND_SOURCES, n), [ctx.pick(("medium", "loud")) for _ in range(n)])
    _, music_facts = music_bed(ctx, mixer, min(e["level_db"] for e in events) + ctx.world.background_db)
    return mixer, {**sequence_facts(mixer.events), **layering_facts(mixer.events), **music_facts}


def announcement(ctx: SceneContext):
    """A spoken sentence over background music: words, voice, instrument and mood of the music."""
    mixer = _utterances(ctx, [(ctx.pick(MONOLOGUE_LINES), "english", ctx.pick(("male", "female")), "A")])
    _, music_facts = music_bed(ctx, mixer, mixer.events[0]["level_db"] + ctx.world.background_db)
    return mixer, {**speech_facts(mixer.events), **layering_facts(mixer.events), **music_facts}


REMARKS = {"major": "How happy!", "minor": "So sad."}  # a listener's reaction to the mode


def _melody_then(ctx: SceneContext, follower: str):
    """A short melody, then either a spoken remark on its mood or an everyday sound that cuts in."""
    instrument, mode = ctx.pick(synth.INSTRUMENTS), ctx.pick(synth.SCALES)
    note_s = float(ctx.rng.uniform(0.2, 0.3))
    num_notes = int(ctx.rng.integers(3, 6))
    gap = ctx.gap()
    if follower == "speech":
        gender = ctx.pick(("male", "female"))
        spoken = ctx.speech(REMARKS[mode], "english", gender)
        second_s = len(spoken[0]) / ctx.sample_rate
    else:
        source = ctx.pick(SOUND_SOURCES)
        second_s = float(ctx.rng.uniform(SOUND_SOURCES[source].min_s, SOUND_SOURCES[source].max_s))
    mixer = Mixer(ctx, ctx.duration(num_notes * note_s + gap + second_s + 2 * MARGIN_S + 0.05))
    spare = mixer.duration_s - 2 * MARGIN_S - num_notes * note_s - gap - second_s
    wave = render_melody(ctx, instrument, mode, synth.pitch_hz(ctx.world, ctx.pick(("low", "mid"))),
                         ctx.pick(CONTOURS), num_notes, note_s)
    music = mixer.add(wave, MARGIN_S + float(ctx.rng.uniform(0, max(0.0, spare - 0.01))), ctx.level(),
                      source=instrument, label=f"a {instrument} melody", kind="music", instrument=instrument)
    if follower == "speech":
        second = speech_event(mixer, spoken, music["offset_s"] + gap, ctx.level(allowed=("medium", "loud")),
                              text=REMARKS[mode], language="english", gender=gender)
        extra = speech_facts(mixer.events)
    else:
        second = mixer.add(SOUND_SOURCES[source].render(second_s, ctx.sample_rate, ctx.rng), music["offset_s"] + gap,
                           ctx.level(), source=source, label=SOUND_SOURCES[source].label, kind="sound")
        extra = salient_sound_facts(source)
    return mixer, {**sequence_facts(mixer.events), **extra, "instrument": instrument, "scale_mode": mode,
                   "mood": synth.MOOD_OF_MODE[mode]}


def music_then_remark(ctx: SceneContext):
    """A tune, then a listener remarks on its mood ("What a happy tune!" after major, "... so sad." after minor)."""
    return _melody_then(ctx, "speech")


def music_then_sound(ctx: SceneContext):
    """A tune, then an everyday sound: order, instrument, what made the sound."""
    return _melody_then(ctx, "sound")


def party(ctx: SceneContext):
    """Music in the background, a sound and the spoken reaction it causes in front."""
    return _cause_then_reply(ctx, with_music=True)


SCENES_BY_MODALITY: dict[str, tuple[Callable, ...]] = {
    "sound": (beep_sequence, sound_scene, sound_over_bed),
    "music": (melody, rhythm, dance),
    "speech": (monologue, dialogue, greeting),
    "mix-sound-music": (sounds_over_music, music_then_sound),
    "mix-sound-speech": (cause_effect, speech_over_noise),
    "mix-music-speech": (announcement, music_then_remark),
    "mix-sound-music-speech": (party,),
}


# --- one clip --------------------------------------------------------------------------------------------------

MAX_ATTEMPTS = 50  # redraws when drawn content does not fit the drawn duration


def clip_id(split: str, world_seed: int, index: int) -> str:
    return f"{split}-{world_seed}-{index:05d}"


def clip_rng(world_seed: int, split: str, index: int) -> np.random.Generator:
    """The clip's own RNG, derived from (world_seed, split, index) only: no global state."""
    return np.random.default_rng(int(stable_id("clip", world_seed, split, index, length=16), 16))


def caption(events: list[dict], duration_s: float) -> str:
    """One plain-English sentence from the event list."""
    fg = [e["label"] for e in events if e["role"] == "foreground"]
    bg = [e["label"] for e in events if e["role"] == "background"]
    text = f"A {duration_s:.1f}-second clip: " + ", then ".join(fg)
    if bg:
        text += " over " + " and ".join(bg) + " in the background"
    return text + "."


def _draw_scene(ctx: SceneContext, modality: str):
    """Draw a scene of `modality`; redraw when the content does not fit, falling back to the modality's other
    scenes (in a fixed order, so this stays deterministic) when one cannot fit the world's clip durations."""
    scenes = SCENES_BY_MODALITY[modality]
    first = ctx.pick(scenes)
    for scene in [first] + [s for s in scenes if s is not first]:
        for _ in range(MAX_ATTEMPTS):
            try:
                return (scene, *scene(ctx))
            except DoesNotFit:
                continue
    raise RuntimeError(f"no {modality} scene fits in {ctx.world.max_duration_s} s clips: raise world.max_duration_s")


def generate_clip(world: WorldConfig, world_seed: int, index: int, split: str, modality: str | None = None, *,
                  tts_cache: str | Path | None = None) -> tuple[np.ndarray, dict]:
    """Synthesise clip `index` of a world split: (float32 mono audio at world.sample_rate, manifest metadata).

    The same (world, world_seed, split, index) always gives the same samples and metadata. The modality is
    MODALITIES[index % 7] unless given; `tts_cache` is a folder where spoken phrases are cached.
    """
    modality = modality or MODALITIES[index % len(MODALITIES)]
    if modality not in SCENES_BY_MODALITY:
        raise ValueError(f"unknown modality {modality!r}; choose one of: {', '.join(MODALITIES)}")
    ctx = SceneContext(world, clip_rng(world_seed, split, index), tts_cache)
    scene, mixer, facts = _draw_scene(ctx, modality)
    audio, events = mixer.finish()
    cid = clip_id(split, world_seed, index)
    metadata = {
        "clip_id": cid, "index": index, "split": split, "world_seed": world_seed, "audio_path": f"audio/{cid}.wav",
        "sample_rate": world.sample_rate, "duration_s": round(len(audio) / world.sample_rate, 3),
        "num_samples": len(audio), "modality": modality, "scene": scene.__name__, "events": events, "facts": facts,
        "layers": layers_of(facts), "caption": caption(events, len(audio) / world.sample_rate),
    }
    return audio, metadata
