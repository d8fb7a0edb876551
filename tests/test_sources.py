"""Paper-scale stage 1 (cogito_lib.sources): every adapter against a fixture in its dataset's published format,
broken rows and broken audio, resampling, the sampling plan, resume, --plan, the CLI, and stage 2's acceptance."""
from __future__ import annotations

import importlib
import json
import sys
import types
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from cogito_lib.config import DATASET_ENV, ConfigError, load_profile
from cogito_lib.io import read_jsonl
from cogito_lib.pipe.annotate import build_annotator_prompt, clip_problem
from cogito_lib.sources import ADAPTERS, PAPER_MIX, collect_datasets, paper_weights, quotas, sampling_plan
from cogito_lib.sources.audio import AudioError, load_clip
from cogito_lib.world import MODALITIES

sys.path.insert(0, str(Path(__file__).parent))
import source_fixtures as sfx  # noqa: E402

collect_module = importlib.import_module("cogito_lib.sources.collect")
STAGE = "02-data-collection"
AVAILABLE = [name for name, a in ADAPTERS.items() if a.available]


@pytest.fixture(autouse=True)
def _no_dataset_env(monkeypatch):
    """The paper profile reads COGITO_*_ROOT: tests see only the roots they set."""
    for var in DATASET_ENV.values():
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    return sfx.write_all(tmp_path_factory.mktemp("datasets"), n=3, broken=True)


def paper(fixtures=None, **overrides):
    """The paper profile on the fixtures: one in-process worker, short clips, no enrichers unless asked."""
    values = {"collect.workers": 1, "collect.max_clip_s": 0.5, "collect.enrichers": (), "collect.num_clips": 10}
    if fixtures:
        values.update(sfx.roots_overrides(fixtures))
    values.update(overrides)
    return load_profile("paper", values)


EQUAL_MIX = ",".join(f"{name}=1" for name in AVAILABLE)


@pytest.fixture(scope="module")
def full_run(fixtures, tmp_path_factory):
    """Every fixture item tried: equal weights and quotas (22 each) above every dataset's size."""
    run_dir = tmp_path_factory.mktemp("full")
    profile = paper(fixtures, **{"collect.mix": EQUAL_MIX, "collect.num_clips": 22 * len(AVAILABLE)})
    stats = collect_datasets(profile, run_dir, progress=False)
    return run_dir / STAGE, stats


# ---------------------------------------------------------------------------------------------------------------
# adapters

@pytest.mark.parametrize("name", AVAILABLE)
def test_adapter_reads_its_published_layout(fixtures, name):
    fx, adapter = fixtures[name], ADAPTERS[name]
    ok, message = adapter.probe(fx.root)
    assert ok, message
    result = adapter.scan(fx.root)
    assert len(result.items) == fx.offered
    assert result.not_downloaded == fx.not_downloaded
    found = sorted((Path(b.file).name, b.line) for b in result.bad_rows)
    assert found == sorted(fx.bad_rows)
    for bad in result.bad_rows:
        assert bad.detail and (bad.line is None or bad.where().endswith(f":{bad.line}"))
    assert len({item.item_id for item in result.items}) == len(result.items)
    for item in result.items:
        assert item.facts and item.skill == adapter.skill and item.dataset == name
        assert item.where.startswith(str(fx.root))


def _items(fixtures, name):
    return {i.item_id: i for i in ADAPTERS[name].scan(fixtures[name].root).items}


def test_adapters_keep_the_datasets_metadata(fixtures):
    audioset = _items(fixtures, "audioset")["ytGood0000_30.000"]
    assert audioset.facts == {"sound_labels": ["Dog", "Bark"]} and audioset.info["mids"] == ["/m/0bt9lr", "/m/05tny_"]
    clotho = _items(fixtures, "clotho")["development/Clip number 1.wav"]
    assert len(clotho.facts["captions"]) == 5 and clotho.facts["keywords"] == ["water", "stream", "rocks"]
    assert clotho.info["manufacturer"] == "Caf\u00e9 maker"  # a Latin-1 metadata file is read, not garbled
    audiocaps = _items(fixtures, "audiocaps")["val/capGood0000_30"]
    assert len(audiocaps.facts["captions"]) == 2 and audiocaps.info["audiocap_ids"] == ["100", "101"]
    meld = _items(fixtures, "meld")["dev/dia0_utt1"]
    assert meld.facts["transcript"] == "Oh my God, you\u2019re here 1!"  # cp1252 apostrophe
    assert meld.facts["emotion"] == "surprise" and meld.facts["sentiment"] == "positive"
    assert meld.facts["dialogue_history"] == ["Ross: Oh my God, you\u2019re here 0!"]
    assert meld.speech["voice"] == "Rachel"
    covost = _items(fixtures, "covost2")["fr/common_voice_fr_1000.mp3"]
    assert covost.facts["transcript"] == 'Bonjour "tout" le monde 0.'  # QUOTE_NONE with backslash escapes
    assert covost.facts["translations"] == {"english": "Hello everyone 0."} and covost.facts["language"] == "french"
    daily = _items(fixtures, "dailytalk")
    assert daily["0/0_0_d0.wav"].facts["emotion"] == "happiness" and daily["0/1_1_d0.wav"].facts["emotion"] == "neutral"
    assert daily["0/2_0_d0.wav"].facts["dialogue_history"][-1] == "speaker 1: Can I help you with turn 1?"
    assert daily["0/1_1_d0.wav"].facts["dialogue_act"] == "question" and daily["0/1_1_d0.wav"].facts["topic"] == "work"
    music = _items(fixtures, "musicbench")["data/mb000.wav"]
    assert music.facts["tempo_bpm"] == 100.0 and music.facts["metre"] == 3 and music.facts["key"] == "A minor"
    assert music.facts["scale_mode"] == "minor" and music.facts["chords"] == ["Am", "F"]
    assert music.audio == fixtures["musicbench"].root / "datashare" / "data" / "mb000.wav"
    fma = _items(fixtures, "fma")
    assert fma["000002"].facts["genre"] == "Hip-Hop" and fma["000002"].facts["genres"] == ["Hip-Hop", "Hip-Hop Beats"]
    assert fma["000003"].facts["genres"] == ["Rock"] and "genre" not in fma["000003"].facts
    assert fma["000002"].audio.parts[-3:] == ("fma_small", "000", "000002.mp3")
    medley = next(iter(_items(fixtures, "medley_solos_db").values()))
    assert medley.facts == {"instrument": "clarinet"} and medley.skill == "instrument"


def test_probe_names_the_missing_files(tmp_path):
    for name in AVAILABLE:
        ok, message = ADAPTERS[name].probe(tmp_path)
        assert not ok and ADAPTERS[name].download in message, (name, message)
    ok, message = ADAPTERS["complexaudio"].probe(tmp_path)
    assert not ok and "no published format" in message


# ---------------------------------------------------------------------------------------------------------------
# audio

def test_load_clip_resamples_downmixes_and_cuts(tmp_path):
    path = sfx.write_audio(tmp_path / "stereo.flac", seconds=1.5, rate=44100, channels=2, freq=440.0)
    samples, info = load_clip(path, target_rate=16000, max_s=1.0)
    assert samples.ndim == 1 and samples.shape[0] == 16000
    assert info == {"source_rate": 44100, "source_channels": 2, "truncated": True}
    spectrum = np.abs(np.fft.rfft(samples))
    assert abs(np.argmax(spectrum) * 16000 / samples.shape[0] - 440) < 3  # the tone survives resampling
    short, info = load_clip(sfx.write_audio(tmp_path / "short.wav", seconds=0.5, rate=16000), max_s=1.0)
    assert short.shape[0] == 8000 and not info["truncated"]
    mp3, info = load_clip(sfx.write_audio(tmp_path / "x.mp3", seconds=0.8, rate=44100), max_s=2.0)
    assert info["source_rate"] == 44100 and abs(mp3.shape[0] - 0.8 * 16000) < 0.1 * 16000


def test_broken_audio_has_a_reason(tmp_path, monkeypatch):
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "garbage.wav").write_bytes(sfx.GARBAGE)
    sf.write(tmp_path / "silent.wav", np.zeros(1600, dtype=np.float32), 16000)
    (tmp_path / "clip.mp4").write_bytes(sfx.GARBAGE)
    monkeypatch.setattr("shutil.which", lambda name: None)
    expected = {"missing.wav": "audio_missing", "empty.wav": "audio_empty", "garbage.wav": "audio_undecodable",
                "silent.wav": "audio_silent", "clip.mp4": "ffmpeg_missing"}
    for name, reason in expected.items():
        with pytest.raises(AudioError) as err:
            load_clip(tmp_path / name, max_s=1.0)
        assert err.value.reason == reason and str(tmp_path / name) in err.value.detail
    with pytest.raises(AudioError, match="apt-get install -y ffmpeg"):
        load_clip(tmp_path / "clip.mp4")


# ---------------------------------------------------------------------------------------------------------------
# sampling plan

def test_paper_mix_keeps_the_papers_numbers_and_domain_split():
    assert sum(PAPER_MIX.values()) == 550_000
    plan = {row["dataset"]: row for row in sampling_plan(paper(), num_clips=550_000)}
    assert sum(row["planned"] for row in plan.values()) == 550_000
    for name in ("meld", "covost2", "dailytalk", "musicbench", "fma", "medley_solos_db"):
        assert plan[name]["planned"] == PAPER_MIX[name]
    assert plan["complexaudio"]["planned"] == 0  # no adapter: its share goes to the other sound datasets
    sound = {n: plan[n]["planned"] for n in ("audioset", "clotho", "audiocaps")}
    assert sum(sound.values()) == 179_000 + 6_000 + 40_000 + 37_000  # the paper's sound total is kept
    assert abs(sound["audioset"] / sound["audiocaps"] - 179 / 40) < 1e-3  # in proportion
    small = quotas(paper_weights(), 7)
    assert sum(small.values()) == 7 and small["audioset"] >= max(v for k, v in small.items() if k != "audioset")


def test_user_mix_and_its_validation():
    plan = {r["dataset"]: r["planned"] for r in sampling_plan(paper(**{"collect.mix": "clotho=3, fma=1"}), 8)}
    assert plan["clotho"] == 6 and plan["fma"] == 2 and sum(plan.values()) == 8
    as_dict = paper(**{"collect.mix": {"clotho": 3, "fma": 1}})
    assert {r["dataset"]: r["planned"] for r in sampling_plan(as_dict, 8)} == plan
    with pytest.raises(ConfigError, match=r"collect\.mix.*complexaudio.*no adapter"):
        sampling_plan(paper(**{"collect.mix": "complexaudio=1,clotho=1"}))
    with pytest.raises(ConfigError, match=r"collect\.mix: unknown dataset 'spotify'"):
        paper(**{"collect.mix": "spotify=1"})
    with pytest.raises(ConfigError, match=r"collect\.mix: the weight of 'fma' must be a number"):
        paper(**{"collect.mix": "fma=lots"})


def test_sampling_is_deterministic_and_seeded(fixtures, tmp_path):
    fx = {"medley_solos_db": sfx.write_medley_solos_db(tmp_path / "medley", n=8, broken=False)}

    def chosen(seed, name):
        profile = paper(fx, **{"collect.mix": "medley_solos_db=1", "collect.num_clips": 3, "collect.seed": seed})
        collect_datasets(profile, tmp_path / name, progress=False)
        return [r["dataset_id"] for r in read_jsonl(tmp_path / name / STAGE / "manifest.jsonl")]

    first, again, other = chosen(1, "a"), chosen(1, "b"), chosen(7, "c")
    assert first == again and len(first) == 3 and set(first) != set(other)


# ---------------------------------------------------------------------------------------------------------------
# the stage

def test_stage_writes_manifest_failures_and_stats(fixtures, full_run):
    stage, stats = full_run
    manifest = read_jsonl(stage / "manifest.jsonl")
    failures = read_jsonl(stage / "failures.jsonl")
    assert not (stage / collect_module.JOURNAL).exists()
    by_dataset = Counter(r["dataset"] for r in manifest)
    assert by_dataset == {name: fx.good for name, fx in fixtures.items()}
    for name, fx in fixtures.items():  # every broken file was tried, skipped and logged with its reason
        audio_failures = Counter(f["reason"] for f in failures if f["dataset"] == name and "clip_id" in f)
        assert audio_failures == Counter({r: c for r, c in fx.broken.items() if c}), name
        rows = sorted((Path(f["file"]).name, f["line"]) for f in failures
                      if f["dataset"] == name and f["reason"] == "bad_metadata_row")
        assert rows == sorted(fx.bad_rows), name
        row = stats["plan"][name]
        assert row["obtained"] == fx.good and row["shortfall"] == row["planned"] - fx.good and row["reason"]
    assert stats["num_clips"] == len(manifest)
    assert stats["num_bad_rows"] == sum(len(f.bad_rows) for f in fixtures.values())
    assert stats["plan"]["complexaudio"]["planned"] == 0
    assert set(stats["clips_by_modality"]) == set(MODALITIES)
    assert sorted(p.name for p in (stage / "audio").iterdir()) == sorted(Path(r["audio_path"]).name for r in manifest)
    for record in manifest:
        assert record["modality"] == record["domain"] == ADAPTERS[record["dataset"]].domain
        assert record["source"] == ADAPTERS[record["dataset"]].title and record["skill"] and record["layers"]
        assert Path(record["original_path"]).is_file() and record["dataset_id"]
        data, rate = sf.read(stage / record["audio_path"], dtype="float32", always_2d=True)
        assert rate == 16000 and data.shape[1] == 1 and data.shape[0] == record["num_samples"] <= 8000
        assert sf.info(stage / record["audio_path"]).subtype == "PCM_16"
    speech = [r for r in manifest if r["domain"] == "speech"]
    assert speech and all(r["events"][0]["kind"] == "speech" and r["events"][0]["text"] for r in speech)


def test_stage_2_accepts_the_manifest(full_run):
    stage, _ = full_run
    manifest = read_jsonl(stage / "manifest.jsonl")
    assert [clip_problem(c, stage) for c in manifest] == [None] * len(manifest)
    prompt = build_annotator_prompt(next(c for c in manifest if c["dataset"] == "musicbench"), [])
    assert '"chords": ["Am", "F"]' in prompt and "A minor" in prompt


def test_resume_after_interruption_matches_an_uninterrupted_run(fixtures, tmp_path, monkeypatch):
    profile = paper(fixtures, **{"collect.mix": EQUAL_MIX, "collect.num_clips": 18, "collect.workers": 2})
    collect_datasets(profile, tmp_path / "whole", progress=False)  # two worker processes
    reference = tmp_path / "whole" / STAGE

    calls = {"n": 0}
    real = collect_module.make_dataset_clip

    def interrupted(*args):
        calls["n"] += 1
        if calls["n"] > 7:
            raise KeyboardInterrupt("simulated kill")
        return real(*args)

    one_worker = paper(fixtures, **{"collect.mix": EQUAL_MIX, "collect.num_clips": 18})
    monkeypatch.setattr(collect_module, "make_dataset_clip", interrupted)
    with pytest.raises(KeyboardInterrupt):
        collect_datasets(one_worker, tmp_path / "resumed", progress=False)
    stage = tmp_path / "resumed" / STAGE
    journal = stage / collect_module.JOURNAL
    done = len(read_jsonl(journal))
    assert 0 < done <= 7 and not (stage / "manifest.jsonl").exists()
    with open(journal, "a") as fh:
        fh.write('{"fingerprint": "torn')  # a writer killed mid-line
    monkeypatch.setattr(collect_module, "make_dataset_clip", real)
    stats = collect_datasets(one_worker, tmp_path / "resumed", progress=False)
    assert stats["resumed"] == done
    assert (stage / "manifest.jsonl").read_bytes() == (reference / "manifest.jsonl").read_bytes()
    assert (stage / "failures.jsonl").read_bytes() == (reference / "failures.jsonl").read_bytes()
    for wav in (reference / "audio").iterdir():
        assert (stage / "audio" / wav.name).read_bytes() == wav.read_bytes()
    rerun = collect_datasets(one_worker, tmp_path / "resumed", progress=False)  # a finished stage: nothing to redo
    assert rerun["resumed"] == rerun["num_clips"] and rerun["decoded"] == rerun["num_failed"]  # only failures retried


def test_no_root_is_a_config_error_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="export COGITO_AUDIOSET_ROOT="):
        collect_datasets(paper(), tmp_path)
    assert not (tmp_path / STAGE).exists()


def test_stage_one_and_cli_dispatch_to_the_datasets(fixtures, tmp_path, capsys):
    from cogito_lib.pipe.__main__ import main
    from cogito_lib.pipe.collect import collect

    root = f"datasets.medley_solos_db={fixtures['medley_solos_db'].root}"
    base = ["collect", "--profile", "paper", "--run-dir", str(tmp_path), "--set", root, "--set", "collect.enrichers=",
            "--num-clips", "2", "--workers", "1", "--no-progress"]
    assert main(base + ["--mix", "medley_solos_db=1", "--max-clip-s", "0.4"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["source"] == "datasets" and out["num_clips"] == 2 and out["max_clip_s"] == 0.4
    assert main(base + ["--mix", "complexaudio=1"]) == 2
    assert "collect.mix" in capsys.readouterr().err
    assert main(base + ["--split", "heldout"]) == 2  # the datasets make only the curation pool
    assert "curation" in capsys.readouterr().err
    stats = collect(paper(fixtures), tmp_path / "again", num_clips=1, workers=1, progress=False)
    assert stats["source"] == "datasets" and stats["num_clips"] == 1


def test_enrichers_run_only_when_declared(fixtures, tmp_path, monkeypatch):
    calls = []

    def enrich_records(records, stage_dir, names, *, progress=True):
        calls.append(tuple(names))
        for record in records:
            record["facts"]["transcript"] = "added by a fake enricher"
        return {"fake": {"enriched": len(records)}}

    monkeypatch.setitem(sys.modules, "cogito_lib.sources.enrich",
                        types.SimpleNamespace(enrich_records=enrich_records))
    fx = {"medley_solos_db": fixtures["medley_solos_db"]}
    mix = {"collect.mix": "medley_solos_db=1", "collect.num_clips": 2}
    stats = collect_datasets(paper(fx, **mix), tmp_path / "none", progress=False)
    assert calls == [] and "enrichment" not in stats
    stats = collect_datasets(paper(fx, **mix, **{"collect.enrichers": ("vad",)}), tmp_path / "vad", progress=False)
    assert calls == [("vad",)] and stats["enrichment"] == {"fake": {"enriched": 2}}
    manifest = read_jsonl(tmp_path / "vad" / STAGE / "manifest.jsonl")
    assert all(r["facts"]["transcript"] == "added by a fake enricher" and "Semantic" in r["layers"] for r in manifest)


def test_plan_reports_roots_and_metadata(fixtures, tmp_path, monkeypatch, capsys):
    from cogito_lib.run import plan

    monkeypatch.setenv("COGITO_CLOTHO_ROOT", str(fixtures["clotho"].root))
    monkeypatch.setenv("COGITO_FMA_ROOT", str(tmp_path))  # a folder without FMA's metadata
    assert plan("paper", tmp_path / "run") is False
    out = capsys.readouterr().out
    assert "[ok] dataset clotho: COGITO_CLOTHO_ROOT=" in out and "clotho_captions_development.csv" in out
    assert "[MISSING] dataset fma: COGITO_FMA_ROOT=" in out and "tracks.csv" in out
    assert "[MISSING] dataset meld: root not set: export COGITO_MELD_ROOT=" in out
    assert "[ok] dataset complexaudio: not collected (no published format found" in out
    monkeypatch.setenv("COGITO_FMA_ROOT", str(fixtures["fma"].root))
    from cogito_lib.checks import check_dataset_sources

    checks = {c.name: c for c in check_dataset_sources(load_profile("paper", {"collect.mix": "clotho=1,fma=1"}))}
    assert checks["dataset clotho"].ok and checks["dataset fma"].ok
    assert checks["dataset audioset"].ok and "weight 0" in checks["dataset audioset"].message


def test_plot_source_mix(full_run, tmp_path):
    from cogito_lib.plots import plot_source_mix

    _, stats = full_run
    figure = plot_source_mix(stats["plan"], save_as=tmp_path / "mix.png")
    assert (tmp_path / "mix.png").stat().st_size > 1000
    ax = figure.axes[0]
    heights = sorted(int(p.get_width()) for p in ax.patches if p.get_width() > 0)
    assert sum(heights) == sum(r["planned"] + r["obtained"] for r in stats["plan"].values())
    assert "planned sound" in ax.get_title() and "obtained" in ax.get_title()
    planned_only = plot_source_mix(sampling_plan(paper(), 100))
    assert "obtained" not in planned_only.axes[0].get_title()
