"""Fast tests for cogito_lib.plots, cogito_lib.widgets and docs/pipeline.svg, on a synthetic stage folder."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import ipywidgets as widgets  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import soundfile  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from cogito_lib.io import read_jsonl, write_jsonl  # noqa: E402
from cogito_lib import plots  # noqa: E402
from cogito_lib.widgets import ALL, ClipBrowser, listen  # noqa: E402

SAMPLE_RATE = 16_000
REPO_ROOT = Path(__file__).resolve().parents[1]
FACT_LAYERS = {"loudness": "Signal", "event_count": "Perception", "speaker_emotion": "Semantic", "genre": "Cultural"}

# (clip_id, modality, facts, layers)
CLIPS = [
    ("snd1", "sound", {"loudness": -20.0, "event_count": 2}, ["Signal", "Perception"]),
    ("snd2", "sound", {"event_count": 1}, ["Perception"]),
    ("spc1", "speech", {"speaker_emotion": "happy"}, ["Semantic"]),
    ("spc2", "speech", {"speaker_emotion": "sad", "loudness": -30.0}, ["Semantic", "Signal"]),
    ("mus1", "music", {"genre": "jazz"}, ["Cultural"]),
    ("mix1", "mix-sound-speech", {"event_count": 3, "speaker_emotion": "calm"}, ["Perception", "Semantic"]),
]


def make_record(clip_id: str, modality: str, facts: dict, layers: list[str]) -> dict:
    return {
        "clip_id": clip_id, "audio_path": f"audio/{clip_id}.wav", "modality": modality, "duration_s": 1.0,
        "sample_rate": SAMPLE_RATE, "facts": facts, "layers": layers, "caption": f"a {modality} clip ({clip_id})",
        "events": [{"label": f"{modality}-event", "onset_s": 0.1, "offset_s": 0.6, "source": "synth", "kind": modality},
                   {"label": "tone", "onset_s": 0.5, "offset_s": 0.9, "source": "synth", "kind": "sound"}],
    }


@pytest.fixture(autouse=True)
def live_session(monkeypatch):
    """Views as in a live Jupyter session (the nbval tier makes the test session headless)."""
    monkeypatch.delenv("COGITO_HEADLESS", raising=False)


@pytest.fixture()
def stage_dir(tmp_path: Path) -> Path:
    """A stage folder like 02-data-collection: manifest.jsonl plus one 1-second wav per clip."""
    stage_dir = tmp_path / "02-data-collection"
    rng = np.random.default_rng(0)
    records = [make_record(*clip) for clip in CLIPS]
    for record in records:
        wav_path = stage_dir / record["audio_path"]
        wav_path.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(wav_path, (0.1 * rng.standard_normal(SAMPLE_RATE)).astype(np.float32), SAMPLE_RATE)
    write_jsonl(stage_dir / "manifest.jsonl", records)
    return stage_dir


@pytest.fixture()
def manifest(stage_dir: Path) -> list[dict]:
    return read_jsonl(stage_dir / "manifest.jsonl")


def bar_count(ax) -> int:
    """Bars seaborn drew (legend proxies are patches too, so count bar containers instead)."""
    return sum(len(container) for container in ax.containers)


# --- plots ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("as_frame", [False, True])
def test_clips_by_modality_has_seven_bars_in_fixed_order(manifest, tmp_path, as_frame):
    data = pd.DataFrame(manifest) if as_frame else manifest
    figure = plots.plot_clips_by_modality(data, save_as=tmp_path / "plots" / "modality.png")
    ax = figure.axes[0]
    assert isinstance(figure, Figure)
    assert [t.get_text() for t in ax.get_xticklabels()] == list(plots.MODALITIES)
    assert [p.get_height() for p in ax.patches] == [2, 1, 2, 0, 1, 0, 0]
    assert (tmp_path / "plots" / "modality.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_clips_by_fact_kind_counts_and_colours_by_layer(manifest, tmp_path):
    figure = plots.plot_clips_by_fact_kind(manifest, FACT_LAYERS, save_as=tmp_path / "facts.png")
    ax = figure.axes[0]
    assert bar_count(ax) == 4
    assert [t.get_text() for t in ax.get_yticklabels()] == ["loudness", "event_count", "speaker_emotion", "genre"]
    counts = plots.fact_kind_counts(manifest, FACT_LAYERS).set_index("fact_kind")["clips"].to_dict()
    assert counts == {"loudness": 2, "event_count": 3, "speaker_emotion": 3, "genre": 1}
    bar_colors = {tuple(np.round(bar.get_facecolor()[:3], 3)) for container in ax.containers for bar in container}
    assert len(bar_colors) == 4  # one colour per MMAR layer
    assert [t.get_text() for t in ax.get_legend().get_texts()] == list(plots.LAYERS)
    assert (tmp_path / "facts.png").exists()


def test_fact_layers_may_hold_objects_with_a_layer(manifest):
    fact_kinds = {kind: SimpleNamespace(layer=layer) for kind, layer in FACT_LAYERS.items()}  # like world's FACT_KINDS
    assert plots.fact_kind_counts(manifest, fact_kinds)["layer"].tolist() == list(plots.LAYERS)


def test_clips_by_fact_kind_without_layers_and_when_empty(manifest):
    assert bar_count(plots.plot_clips_by_fact_kind(manifest).axes[0]) == 4
    assert bar_count(plots.plot_clips_by_fact_kind([]).axes[0]) == 0


def test_durations_and_stage_overview(manifest, tmp_path):
    ax = plots.plot_durations(manifest).axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["sound", "music", "speech", "mix-sound-speech"]
    figure = plots.plot_stage_overview(manifest, FACT_LAYERS, save_as=tmp_path / "overview.png")
    assert len(figure.axes) == 3
    assert (tmp_path / "overview.png").exists()


def test_spectrogram_figure_draws_one_span_per_event(manifest, stage_dir, tmp_path):
    record = manifest[0]
    waveform, sample_rate = soundfile.read(stage_dir / record["audio_path"], dtype="float32")
    figure = plots.spectrogram_figure(waveform, sample_rate, record["events"], title="snd1",
                                      save_as=tmp_path / "spec.png")
    ax = figure.axes[0]
    assert ax.images[0].get_array().shape[0] == 64  # mel bins
    assert len(ax.patches) == len(record["events"])
    assert {t.get_text().strip() for t in ax.texts} == {e["label"] for e in record["events"]}
    assert ax.get_xlim() == (0.0, 1.0)
    assert (tmp_path / "spec.png").exists()
    assert len(plots.spectrogram_figure(np.stack([waveform, waveform]), sample_rate).axes[0].patches) == 0


def test_skill_scores_keep_a_notebook_width_and_readable_labels_for_every_skill():
    from cogito_lib.world.skills import SKILLS

    by_skill = {name: {"pass@1": 40.0, "judge_pass@1": 30.0, "judge_pass@K": 50.0, "chance": 25.0} for name in SKILLS}
    figure = plots.plot_skill_scores(by_skill)
    width, height = figure.get_size_inches()
    assert width <= 8.5 and height >= 0.4 * len(SKILLS)  # grows down the page, not across it
    ax = figure.axes[0]
    labels = [t for t in ax.get_yticklabels() if t.get_text()]
    assert [t.get_text() for t in labels] == list(SKILLS)
    assert min(t.get_fontsize() for t in labels) >= 9  # legible when the notebook shows it at its own width
    assert sum(len(c.get_segments()) for c in ax.collections) == len(SKILLS)  # a chance mark for each skill


# --- widgets -------------------------------------------------------------------------------------------------------

def find_widgets(widget, kind) -> list:
    found = [widget] if isinstance(widget, kind) else []
    for child in getattr(widget, "children", ()):
        found += find_widgets(child, kind)
    return found


def test_browser_filters_by_modality_and_layer(stage_dir):
    browser = ClipBrowser(stage_dir)
    assert isinstance(browser.widget, widgets.Box)
    assert len(browser.filtered()) == len(CLIPS)
    browser.modality_filter.value = "speech"
    assert [r["clip_id"] for r in browser.filtered()] == ["spc1", "spc2"]
    assert [value for _, value in browser.clip_selector.options] == ["spc1", "spc2"]
    assert browser.current_clip_id == "spc1"
    browser.layer_filter.value = "Signal"
    assert [r["clip_id"] for r in browser.filtered()] == ["spc2"]
    assert browser.current_clip_id == "spc2"
    browser.modality_filter.value = ALL
    assert [r["clip_id"] for r in browser.filtered()] == ["snd1", "spc2"]


def test_browser_builds_player_spectrogram_and_metadata(stage_dir):
    browser = ClipBrowser(stage_dir).show("mix1")
    assert browser.current_clip_id == "mix1" and browser.clip_selector.value == "mix1"
    audio = find_widgets(browser.clip_panel, widgets.Audio)
    assert len(audio) == 1 and audio[0].autoplay is False and audio[0].value[:4] == b"RIFF"
    image = find_widgets(browser.clip_panel, widgets.Image)
    assert len(image) == 1 and image[0].value[:4] == b"\x89PNG"
    text = browser.panel_text()
    assert "a mix-sound-speech clip (mix1)" in text and "speaker_emotion" in text and "tone" in text
    assert "text/plain" in browser._repr_mimebundle_()


def test_show_clears_filters_that_hide_the_clip(stage_dir):
    browser = ClipBrowser(stage_dir)
    browser.modality_filter.value = "music"
    browser.show("spc1")
    assert browser.modality_filter.value == ALL and browser.current_clip_id == "spc1"
    with pytest.raises(KeyError, match="nope"):
        browser.show("nope")


def test_browser_reports_empty_filter(stage_dir):
    browser = ClipBrowser(stage_dir)
    browser.modality_filter.value = "mix-sound-music-speech"
    assert browser.filtered() == [] and browser.current_clip_id is None
    assert "No clips match modality=mix-sound-music-speech" in browser.panel_text()
    assert not find_widgets(browser.clip_panel, widgets.Audio)
    browser.modality_filter.value = ALL
    assert browser.current_clip_id == "snd1"


def test_browser_reports_missing_wav(stage_dir):
    missing = stage_dir / "audio" / "spc1.wav"
    missing.unlink()
    browser = ClipBrowser(stage_dir).show("spc1")
    assert f"audio file missing: {missing}" in browser.panel_text()
    assert not find_widgets(browser.clip_panel, widgets.Audio)
    assert not find_widgets(browser.clip_panel, widgets.Image)


def test_browser_accepts_a_manifest_and_names_a_missing_one(manifest, tmp_path):
    assert len(ClipBrowser(tmp_path, manifest=manifest[:2]).filtered()) == 2
    with pytest.raises(FileNotFoundError, match="manifest.jsonl not found"):
        ClipBrowser(tmp_path / "nowhere")


def test_listen_returns_n_players(stage_dir):
    strip = listen(stage_dir, n=3)
    assert isinstance(strip.widget, widgets.VBox)
    assert len(find_widgets(strip.widget, widgets.Audio)) == 3
    text = " ".join(w.value for w in find_widgets(strip.widget, widgets.HTML))
    assert "sound" in text and "music" in text and "speech" in text  # spread over modalities
    assert len(find_widgets(listen(stage_dir, clip_ids=["mus1"]).widget, widgets.Audio)) == 1


# --- static twins: what a saved notebook and its HTML export keep ---------------------------------------------------

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def _embedded_wavs(text: str) -> list[bytes]:
    import base64
    import re

    return [base64.b64decode(m) for m in re.findall(r'<audio controls[^>]* src="data:audio/wav;base64,([^"]+)"', text)]


def test_live_views_carry_the_widget_and_a_static_twin_with_embedded_audio(stage_dir, monkeypatch):
    monkeypatch.delenv("COGITO_HEADLESS", raising=False)
    bundle = listen(stage_dir, n=2)._repr_mimebundle_()
    assert WIDGET_VIEW in bundle and bundle["text/plain"].startswith("2 clips")
    wavs = _embedded_wavs(bundle["text/html"])
    assert len(wavs) == 2 and all(w == (stage_dir / "audio" / f"{c}.wav").read_bytes() for w, c in
                                  zip(wavs, ["snd1", "mus1"]))
    assert "VBox" not in bundle["text/plain"]


def test_headless_views_build_no_widget_and_show_the_twin(stage_dir, monkeypatch):
    import ipywidgets

    monkeypatch.setenv("COGITO_HEADLESS", "1")
    opened = []
    monkeypatch.setattr(ipywidgets.Widget, "open", lambda self: opened.append(type(self).__name__))
    browser = ClipBrowser(stage_dir, static_clips=4)
    bundle = browser._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "text/html"} and opened == []  # no comm: no widget state is saved
    twin = bundle["text/html"]
    assert len(_embedded_wavs(twin)) == 4 and twin.count('<img src="data:image/png;base64,') == 4
    for clip_id in ("snd1", "mus1", "spc1", "mix1"):  # one clip per modality class first
        assert f"<b>{clip_id}</b>" in twin
    assert "6 clips in 02-data-collection" in bundle["text/plain"]
    assert browser.show("spc2").current_clip_id == "spc2"  # the widgets are still there when asked for


def test_twins_name_a_missing_wav_instead_of_failing(stage_dir):
    from cogito_lib.widgets import audio_html, reasoning_examples

    (stage_dir / "audio" / "snd1.wav").unlink()
    assert "audio file missing" in audio_html(stage_dir / "audio" / "snd1.wav")
    row = {"audio_file": str(stage_dir / "audio" / "snd1.wav"), "question": "How many?", "choices": ["1", "2"],
           "answer": "1", "thinking": "I hear: x\nCount: 1", "answer_prediction": "1", "pass@1": 1}
    twin = reasoning_examples([row]).static_html()
    assert "audio file missing" in twin and "Count: 1" in twin and "correct" in twin


# --- diagram -------------------------------------------------------------------------------------------------------

def test_pipeline_svg_parses_and_names_every_stage():
    root = ET.parse(REPO_ROOT / "docs" / "pipeline.svg").getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    text = " ".join(t for element in root.iter() for t in [element.text or ""])
    for phrase in ["Data collection", "QA construction", "CoT generation", "Quality verification", "Annotator",
                   "Thinker", "Auditor", "LoRA", "MMAR", "CRS", "01", "02", "03", "04", "05", "06", "07"]:
        assert phrase in text, phrase


def test_pipeline_browser_shows_questions_samples_and_verdicts(tmp_path):
    import json

    from cogito_lib.widgets import PipelineBrowser, questions_html

    run_dir = tmp_path / "run"
    stage = run_dir / "02-data-collection"
    (stage / "audio").mkdir(parents=True)
    soundfile.write(stage / "audio" / "c1.wav", np.zeros(16000, dtype=np.float32), 16000)
    clip = {"clip_id": "c1", "audio_path": "audio/c1.wav", "modality": "sound", "duration_s": 1.0,
            "sample_rate": 16000, "events": [], "facts": {}, "layers": [], "caption": "silence"}
    (stage / "manifest.jsonl").write_text(json.dumps(clip) + "\n")
    q = {"id": "q1", "clip_id": "c1", "question": "How many?", "choices": ["1", "2"], "answer": "1",
         "tier": "composite", "skill": "count_loud", "category": "Signal Layer"}
    (run_dir / "03-qa-construction").mkdir()
    (run_dir / "03-qa-construction" / "qa.jsonl").write_text(json.dumps(q) + "\n")
    samples = [{"id": f"q1-s{k}", "question_id": "q1", "clip_id": "c1", "sample_index": k,
                "thinking": f"I hear: x\nCount: {k + 1}", "answer_prediction": str(k + 1)} for k in range(2)]
    (run_dir / "04-cot-generation").mkdir()
    (run_dir / "04-cot-generation" / "cot.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    (run_dir / "05-quality-verification").mkdir()
    (run_dir / "05-quality-verification" / "train.jsonl").write_text(json.dumps({"id": "q1-s0"}) + "\n")
    (run_dir / "05-quality-verification" / "rejected.jsonl").write_text(
        json.dumps({"id": "q1-s1", "reason": "answer_mismatch"}) + "\n")
    browser = PipelineBrowser(run_dir)
    text = browser.panel_html("c1")
    assert "How many?" in text and "kept" in text and "rejected: answer_mismatch" in text
    assert "Count: 2" in text
    twin = browser.static_html()
    assert "1 clips with questions" in twin and "rejected: answer_mismatch" in twin and "data:audio/wav" in twin
    assert browser.show("c1").clip_selector.value == "c1"
    assert "not audited yet" in questions_html([q], {"q1": samples}, {})


def test_the_win_browser_twin_embeds_the_headline_models_wins_with_their_audio(stage_dir, monkeypatch):
    """07's examples read offline: the static twin counts every model's wins and shows the headline model's, each
    with its clip embedded and both traces (a tiny run has no wins, so the nbval tier cannot show this)."""
    from cogito_lib.widgets import win_browser

    def row(clip, model):
        return {"id": f"q-{clip}", "audio_file": str(stage_dir / "audio" / f"{clip}.wav"), "question": f"what in {clip}?",
                "choices": ["a", "b"], "answer": "a", "modality": "sound", "category": "Perception Layer",
                "model": model, "model_thinking": "I hear: a", "model_answer": "a", "reference": "base",
                "reference_thinking": "I hear: b", "reference_answer": "b"}

    class Evaluation:
        scores = {"base": {}, "answer_only": {}, "self_distill": {}}

        def wins(self, name, reference="base"):
            return {"self_distill": [row("snd1", name), row("mus1", name)], "answer_only": [row("spc1", name)]}[name]

    monkeypatch.setenv("COGITO_HEADLESS", "1")
    bundle = win_browser(Evaluation())._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "text/html"}
    twin = bundle["text/html"]
    wavs = _embedded_wavs(twin)
    assert wavs == [(stage_dir / "audio" / f"{c}.wav").read_bytes() for c in ("snd1", "mus1")]
    assert "<b>self_distill</b>'s wins" in twin and twin.count("self_distill (right)") == 2
    assert bundle["text/plain"] == "wins over base: answer_only 1, self_distill 2"
