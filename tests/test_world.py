"""The procedural world: every modality, metadata that agrees with the audio, determinism, real TTS."""
from __future__ import annotations

import numpy as np
import pytest

from cogito_lib.config import load_profile
from cogito_lib.world import FACT_KINDS, LAYERS, MODALITIES, generate_clip, synth, tts
from cogito_lib.world.scenes import LOUDNESS_CLASSES

WORLD = load_profile("tiny").world
SEED = 3
NUM_CLIPS = 56  # 8 of each modality
MANIFEST_KEYS = {"clip_id", "index", "split", "world_seed", "audio_path", "sample_rate", "duration_s", "num_samples",
                 "modality", "scene", "events", "facts", "layers", "caption"}
EVENT_KEYS = {"source", "label", "kind", "onset_s", "offset_s", "level_db", "loudness", "pitch", "role"}
needs_espeak = pytest.mark.skipif(not tts.espeak_available(), reason="espeak-ng not installed (apt-get install espeak-ng)")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    cache = tmp_path_factory.mktemp("tts-cache")
    return [generate_clip(WORLD, SEED, i, "curation", tts_cache=cache) for i in range(NUM_CLIPS)]


def _window(audio, event, sample_rate=WORLD.sample_rate):
    return audio[int(round(event["onset_s"] * sample_rate)):int(round(event["offset_s"] * sample_rate))]


def test_fact_kinds_have_layers():
    assert len(FACT_KINDS) >= 12
    assert {kind.layer for kind in FACT_KINDS.values()} == set(LAYERS)
    assert all(name == kind.name for name, kind in FACT_KINDS.items())


def test_every_modality_generates_valid_metadata(clips):
    for audio, meta in clips:
        assert MANIFEST_KEYS <= meta.keys()
        assert meta["modality"] == MODALITIES[meta["index"] % 7]
        assert audio.dtype == np.float32 and audio.ndim == 1 and len(audio) == meta["num_samples"]
        assert WORLD.min_duration_s - 1e-3 <= meta["duration_s"] <= WORLD.max_duration_s + 1e-3
        assert np.max(np.abs(audio)) < 1.0, "clip would overflow int16"
        onsets = [e["onset_s"] for e in meta["events"]]
        assert onsets == sorted(onsets) and meta["events"]
        for event in meta["events"]:
            assert EVENT_KEYS <= event.keys()
            assert 0 <= event["onset_s"] < event["offset_s"] <= meta["duration_s"] + 1e-3
            assert event["loudness"] in LOUDNESS_CLASSES and event["kind"] in ("sound", "music", "speech")
        assert meta["facts"] and set(meta["facts"]) <= set(FACT_KINDS)
        assert meta["layers"] == sorted({FACT_KINDS[k].layer for k in meta["facts"]})
        assert meta["caption"].endswith(".")


def test_coverage_of_kinds_layers_and_modalities(clips):
    metas = [meta for _, meta in clips]
    assert {m["modality"] for m in metas} == set(MODALITIES)
    assert {layer for m in metas for layer in m["layers"]} == set(LAYERS)
    assert len({kind for m in metas for kind in m["facts"]}) >= 12
    for modality in MODALITIES:  # every modality class has facts from more than one layer
        assert len({layer for m in metas if m["modality"] == modality for layer in m["layers"]}) >= 2


def test_facts_agree_with_events(clips):
    for _, meta in clips:
        facts, events = meta["facts"], meta["events"]
        foreground = [e for e in events if e["role"] == "foreground"]
        if "event_count" in facts:
            assert facts["event_count"] == len(foreground)
        if "temporal_order" in facts:
            assert facts["temporal_order"] == [e["label"] for e in sorted(foreground, key=lambda e: e["onset_s"])]
        if "foreground_background" in facts:
            assert facts["foreground_background"]["background"] == [e["label"] for e in events if e["role"] == "background"]
        if "spoken_content" in facts:
            assert facts["spoken_content"] == [e["text"] for e in events if e["kind"] == "speech"]
            assert facts["num_speakers"] == len({e["speaker"] for e in events if e["kind"] == "speech"})
        if "pitch_sequence" in facts:
            assert facts["pitch_sequence"] == [e["pitch"] for e in foreground]
        if "cause_effect" in facts:
            cause, effect = (next(e for e in events if e["label"] == facts["cause_effect"]["cause"]),
                             next(e for e in events if e.get("text") == facts["cause_effect"]["effect"]))
            assert cause["offset_s"] + WORLD.min_gap_s - 1e-3 <= effect["onset_s"]
        if len(foreground) >= 2 and meta["scene"] in ("beep_sequence", "sound_scene", "sounds_over_music"):
            for a, b in zip(foreground, foreground[1:]):
                assert b["onset_s"] - a["offset_s"] >= WORLD.min_gap_s - 1e-3


def _beep_clips(count=40):
    out = []
    for index in range(count):
        audio, meta = generate_clip(WORLD, 21, index, "test", modality="sound")
        if meta["scene"] == "beep_sequence":
            out.append((audio, meta))
    assert out
    return out


def test_loudness_classes_are_measurable():
    step = WORLD.loudness_step_db
    for audio, meta in _beep_clips():
        events = meta["events"]
        for a, b in zip(events, events[1:]):
            measured = synth.rms_db(_window(audio, b)) - synth.rms_db(_window(audio, a))
            classes = LOUDNESS_CLASSES.index(b["loudness"]) - LOUDNESS_CLASSES.index(a["loudness"])
            assert abs(measured - classes * step) <= 3.5, (meta["clip_id"], measured, classes)


def test_pitch_class_is_the_fft_peak():
    for audio, meta in _beep_clips():
        for event in meta["events"]:
            window = _window(audio, event)
            spectrum = np.abs(np.fft.rfft(window * np.hanning(len(window))))
            peak_hz = np.fft.rfftfreq(len(window), 1 / WORLD.sample_rate)[np.argmax(spectrum)]
            assert abs(peak_hz - synth.pitch_hz(WORLD, event["pitch"])) < 0.05 * synth.pitch_hz(WORLD, event["pitch"])


@needs_espeak
def test_speech_is_real_tts(clips, tmp_path):
    speech = [(audio, e) for audio, meta in clips for e in meta["events"] if e["kind"] == "speech"]
    assert speech and {e["voice"] for _, e in speech} == {"male", "female"}
    for audio, event in speech[:6]:
        spoken = tts.synthesize(event["text"], event["tts_voice"], WORLD.tts_rate_wpm, WORLD.sample_rate, tmp_path)
        start = int(round(event["onset_s"] * WORLD.sample_rate))
        # onsets are stored to the millisecond: search the few samples around it
        best = max(np.corrcoef(audio[start + lag:start + lag + len(spoken)], spoken)[0, 1] for lag in range(-20, 21))
        assert best > 0.95  # the clip holds that utterance (plus the noise floor and any bed)


def test_resample_keeps_frequency():
    sr_in, sr_out = 22050, 16000
    tone = np.sin(2 * np.pi * 1000 * np.arange(sr_in) / sr_in)
    out = synth.resample(tone, sr_in, sr_out)
    assert len(out) == sr_out
    spectrum = np.abs(np.fft.rfft(out * np.hanning(len(out))))
    assert abs(np.fft.rfftfreq(len(out), 1 / sr_out)[np.argmax(spectrum)] - 1000) <= 1
    assert abs(synth.rms_db(out[100:-100]) - synth.rms_db(tone)) < 0.2


def test_clips_are_deterministic():
    for index in range(7):
        a1, m1 = generate_clip(WORLD, SEED, index, "curation")
        a2, m2 = generate_clip(WORLD, SEED, index, "curation")
        a3, m3 = generate_clip(WORLD, SEED + 1, index, "curation")
        assert np.array_equal(a1, a2) and m1 == m2
        assert not np.array_equal(a1[: len(a3)], a3[: len(a1)])


def test_missing_espeak_raises_actionable_error(monkeypatch):
    monkeypatch.setattr(tts.shutil, "which", lambda name: None)
    tts._synthesize_cached.cache_clear()
    with pytest.raises(tts.TTSError, match="espeak-ng not found on PATH: apt-get install espeak-ng"):
        generate_clip(WORLD, 99, 2, "curation")  # index 2 is a speech clip
    tts._synthesize_cached.cache_clear()
