"""MMAR-synth (the miniature's benchmark) and chapter 07's evaluation runner, on the tiny profile."""
import json

import numpy as np
import subprocess
import sys
from pathlib import Path

import pytest

from cogito_lib import evaluate as ev
from cogito_lib import layout, plots, widgets
from cogito_lib.config import load_profile
from cogito_lib.mmar import (CATEGORIES, MODALITIES, load_meta, read_predictions, score_predictions,
                             validate_submission)
from cogito_lib.world.mmar_synth import build_mmar_synth, select_balanced, synth_dir

ROOT = Path(__file__).resolve().parents[1]
MMAR_FIELDS = ("id", "audio_path", "question", "choices", "answer", "modality", "category", "sub-category",
               "language", "source", "url", "timestamp")
KIT_FIELDS = ("thinking", "cue", "rubric", "tier", "skill", "listing", "steps")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("synth")
    info = build_mmar_synth(load_profile("tiny"), run_dir, progress=False)
    return run_dir, info


def test_synth_has_every_field_and_loads_cleanly(synth):
    run_dir, info = synth
    meta = load_meta(synth_dir(run_dir) / "MMAR-meta.jsonl", require_rubrics=True)
    assert meta.problems == []
    assert len(meta.items) == info["num_items"] == load_profile("tiny").eval.num_items
    for item in meta.items:
        assert all(key in item for key in MMAR_FIELDS + KIT_FIELDS)
        assert item["category"] in CATEGORIES and item["modality"] in MODALITIES
        assert item["answer"] in item["choices"] and len(item["rubric"]) == 5
        assert item["thinking"].endswith(f"So the answer is {item['answer']}.")
        assert Path(item["audio_file"]).is_file() and item["audio_path"].startswith("./audio/")


def test_synth_is_balanced_over_tiers_modalities_and_layers(synth):
    _, info = synth
    tiers = info["by_tier"]
    assert set(tiers) == {"atomic", "composite", "heldout"} and max(tiers.values()) - min(tiers.values()) <= 1
    assert all(n >= 1 for n in info["by_modality"].values())   # every modality class present
    assert all(n >= 1 for n in info["by_layer"].values())      # every layer present
    assert max(info["by_modality"].values()) - min(info["by_modality"].values()) <= 4


def test_synth_is_deterministic_and_cached(synth, tmp_path):
    run_dir, info = synth
    again = build_mmar_synth(load_profile("tiny"), run_dir, progress=False)
    assert again["cached"] and again["fingerprint"] == info["fingerprint"]
    other = build_mmar_synth(load_profile("tiny"), tmp_path, progress=False)
    assert not other["cached"]
    assert (synth_dir(tmp_path) / "MMAR-meta.jsonl").read_bytes() == \
        (synth_dir(run_dir) / "MMAR-meta.jsonl").read_bytes()


def test_select_balanced_prefers_the_smaller_tier_and_emptier_cells():
    pool = [{"id": f"{t}{m}{i}", "clip_id": f"c{m}{i}", "skill": f"s{t}", "tier": t, "modality": m,
             "category": "Signal Layer"} for t in ("atomic", "composite") for m in MODALITIES[:2] for i in range(5)]
    chosen = select_balanced(pool, 8, seed=0)
    assert sorted(r["tier"] for r in chosen).count("atomic") == 4
    assert sorted(r["modality"] for r in chosen).count(MODALITIES[0]) == 4


# --------------------------------------------------------------------------------------------- evaluation
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny pretrained base and a 10-item MMAR-synth in one run dir."""
    from cogito_lib.base_model import pretrain_base

    run_dir = tmp_path_factory.mktemp("eval")
    profile = load_profile("tiny", {"eval.num_items": 10})
    pretrain_base(profile, run_dir, progress=False)
    return profile, run_dir


def test_evaluation_of_the_base_is_cached_scored_and_submittable(trained, monkeypatch):
    profile, run_dir = trained
    evaluation = ev.evaluate(profile, run_dir, progress=False, n_boot=200)
    assert list(evaluation.scores) == ["base"] and evaluation.runs["base"]["generated"] == 10
    stage = run_dir / layout.EVAL
    path = stage / "predictions-base.jsonl"
    records = read_predictions(path)
    assert [r["id"] for r in records] == [it["id"] for it in evaluation.benchmark.items]
    assert all({"id", "thinking_prediction", "answer_prediction", "parse_failed"} <= set(r) for r in records)
    # scores on disk are score_predictions of the cached file
    scores = json.loads((stage / "scores-base.json").read_text())
    expected = score_predictions(evaluation.benchmark.items, records)
    assert scores["accuracy"]["accuracy"] == expected["accuracy"]
    assert scores["accuracy"]["per_item"] == expected["per_item"]
    assert scores["rubrics"]["num_items"] == 10 and set(scores["by_tier"]) <= {"atomic", "composite", "heldout"}
    assert validate_submission(evaluation.benchmark.items, stage / "submission-base.jsonl") == []
    assert json.loads((stage / "summary.json").read_text())["models"]["base"]["accuracy"] == expected["accuracy"]
    table = evaluation.table()
    assert table.loc["base", "accuracy"] == round(expected["accuracy"], 2)
    # a second call generates nothing
    def boom(*args, **kwargs):
        raise AssertionError("generation should have been skipped: predictions are cached")

    monkeypatch.setattr(ev, "generate_predictions", boom)
    monkeypatch.setattr(ev, "load_eval_model", boom)
    again = ev.evaluate(profile, run_dir, progress=False, n_boot=200)
    assert again.runs["base"] == {**again.runs["base"], "generated": 0, "reused": 10}
    assert again.scores["base"]["accuracy"]["per_item"] == expected["per_item"]


def test_a_copied_run_dir_reuses_its_predictions(trained, monkeypatch, tmp_path):
    import shutil

    profile, run_dir = trained
    first = ev.evaluate(profile, run_dir, progress=False, n_boot=50)
    copy = tmp_path / "copied-run"
    shutil.copytree(run_dir, copy, symlinks=True)   # copy2: the files keep their times, like `cp -a`

    def boom(*args, **kwargs):
        raise AssertionError("a copied run dir must reuse its predictions")

    monkeypatch.setattr(ev, "generate_predictions", boom)
    monkeypatch.setattr(ev, "load_eval_model", boom)
    again = ev.evaluate(profile, copy, progress=False, n_boot=50)
    assert again.runs["base"]["generated"] == 0 and again.benchmark.meta_path.is_relative_to(copy)
    assert again.scores["base"]["accuracy"]["per_item"] == first.scores["base"]["accuracy"]["per_item"]
    from cogito_lib.layout import base_model_path
    assert Path(base_model_path(profile, copy)).is_relative_to(copy)


def test_a_partial_prediction_file_is_completed_not_redone(trained, monkeypatch):
    profile, run_dir = trained
    ev.evaluate(profile, run_dir, progress=False, n_boot=50)
    path = run_dir / layout.EVAL / "predictions-base.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:7]) + lines[7][:20])   # killed mid-write: 7 whole lines and a torn one
    asked = []
    real = ev.generate_predictions

    def counting(model, processor, items, **kwargs):
        asked.extend(it["id"] for it in items)
        return real(model, processor, items, **kwargs)

    monkeypatch.setattr(ev.predictions, "generate_predictions", counting)
    evaluation = ev.evaluate(profile, run_dir, progress=False, n_boot=50)
    assert len(asked) == 3 and evaluation.runs["base"]["generated"] == 3
    assert len(read_predictions(path)) == 10


def test_adapters_in_the_run_dir_are_evaluated_against_the_base(trained):
    from cogito_lib.layout import base_model_path
    from cogito_lib.models import add_lora, load_model

    profile, run_dir = trained
    model, _ = load_model(base_model_path(profile, run_dir), dtype="float32")
    adapter_dir = run_dir / layout.TRAIN / "self_distill" / "adapter"
    add_lora(model, rank=2, alpha=4).save_pretrained(adapter_dir)
    specs = ev.discover_models(profile, run_dir)
    assert list(specs) == ["base", "self_distill"] and specs["self_distill"].adapter == str(adapter_dir)
    evaluation = ev.evaluate(profile, run_dir, progress=False, n_boot=200)
    assert evaluation.runs["base"]["generated"] == 0 and evaluation.runs["self_distill"]["generated"] == 10
    vs = evaluation.intervals["self_distill"]["vs_reference"]
    assert vs["overall"]["paired"] and vs["overall"]["n"] == 10
    sentences = evaluation.gain_sentences()
    assert len(sentences) == 1 and sentences[0].startswith("self_distill vs base: ")
    assert f"{vs['overall']['estimate']:+.1f} points" in sentences[0]
    versus = evaluation.gain_sentences(reference="self_distill", models=["base"])   # against a control
    assert len(versus) == 1 and versus[0].startswith("base vs self_distill: ")
    assert evaluation.gain_sentences(reference="base_cont") == []                   # no such control trained
    assert validate_submission(evaluation.benchmark.items,
                               run_dir / layout.EVAL / "submission-self_distill.jsonl") == []
    # the notebook's views
    assert plots.plot_heatmaps(evaluation) is not None and plots.plot_gains(evaluation) is not None
    paired = ev.paired_examples(evaluation, "self_distill", want=(0, 0))
    if paired:
        assert "gold reasoning" in widgets.example_html(paired[0])
    widgets.win_browser(evaluation)
    both = ev.side_by_side(evaluation)
    paper_rows = [s for s in both.index.get_level_values("source") if s == ev.PAPER_LABEL]
    assert len(paper_rows) == 2 and "paper" in ev.PAPER_LABEL
    metrics = evaluation.metrics()
    assert metrics["self_distill.submission_valid"] and "self_distill.vs_base.overall" in metrics
    skills = ev.skill_accuracy(evaluation)
    assert list(skills.columns) == ["base", "self_distill", "n", "chance"] and skills["n"].sum() == 10
    for (tier, skill), row in skills.iterrows():
        mine = [it for it in evaluation.benchmark.items if it["skill"] == skill]
        assert row["base"] == pytest.approx(100 * np.mean([evaluation.scores["base"]["accuracy"]["per_item"][it["id"]]
                                                           for it in mine]))
    summary = json.loads((run_dir / layout.EVAL / "summary.json").read_text())
    assert summary["models"]["self_distill"]["per_item"] == evaluation.scores["self_distill"]["accuracy"]["per_item"]
    assert set(summary["item_tiers"]) == {it["id"] for it in evaluation.benchmark.items}


def test_gain_sentence_follows_the_numbers():
    ci = {"estimate": -2.5, "low": -4.0, "high": -1.0, "n": 600}
    text = ev.gain_sentence("self_distill", {"reference": "base", "overall": ci, "composite": ci})
    assert text.startswith("self_distill vs base: -2.5 points [95% CI -4.0, -1.0] over 600 items")
    assert "worse than base" in text and "composite: -2.5" in text
    up = ev.gain_sentence("x", {"overall": {"estimate": 1.0, "low": -0.5, "high": 2.5, "n": 10}})
    assert "no clear difference" in up


def test_paper_profile_without_mmar_stops_with_one_clear_message(monkeypatch, tmp_path):
    monkeypatch.delenv("COGITO_MMAR_ROOT", raising=False)
    profile = load_profile("paper")
    with pytest.raises(ev.BenchmarkMissing) as err:
        ev.evaluate(profile, tmp_path, progress=False)
    message = str(err.value)
    assert "COGITO_MMAR_ROOT" in message and "MMAR-meta.jsonl" in message and "huggingface" in message


# --------------------------------------------------------------------------------------------- headline
def _fake_run(run_dir: Path, base: float, gain: float):
    def model(acc, vs=None):
        return {"accuracy": acc, "accuracy_ci": [acc - 4, acc + 4], "num_items": 600, "parse_failures": 0,
                "tiers": {"atomic": {"accuracy": acc + 10, "n": 300, "ci": [acc + 6, acc + 14]},
                          "composite": {"accuracy": acc - 10, "n": 300, "ci": [acc - 14, acc - 6]}},
                "rubrics": acc - 5, "crs": 0.8, "vs_base": vs or {}}

    vs = {part: {"estimate": gain, "low": gain - 2, "high": gain + 2, "n": 600, "paired": True}
          for part in ("overall", "atomic", "composite")}
    summary = {"benchmark": "mmar-synth", "num_items": 600, "models": {"base": model(base),
                                                                        "self_distill": model(base + gain, vs)}}
    (run_dir / layout.EVAL).mkdir(parents=True)
    (run_dir / layout.EVAL / "summary.json").write_text(json.dumps(summary))


def test_headline_summary_over_fake_seed_run_dirs(tmp_path):
    for seed, (base, gain) in enumerate([(50.0, 2.0), (54.0, 4.0), (52.0, 0.0)]):
        _fake_run(tmp_path / f"mini-seed{seed}", base, gain)
    summary = ev.summarise_seeds({str(s): tmp_path / f"mini-seed{s}" for s in range(3)})
    base = summary["models"]["base"]["overall"]
    assert base["mean"] == pytest.approx(52.0) and base["std"] == pytest.approx(2.0) and base["n_seeds"] == 3
    gain = summary["models"]["self_distill"]["composite"]["vs_base"]
    assert gain["mean"] == pytest.approx(2.0) and gain["std"] == pytest.approx(2.0)
    assert summary["models"]["self_distill"]["atomic"]["ci"]["1"] == [64.0, 72.0]
    markdown = ev.seeds_markdown(summary)
    assert "| self_distill | composite |" in markdown and "+2.0 +- 2.0" in markdown
    # the script's summary part, as a user runs it
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "headline.py"), "--profile", "mini", "--seeds",
                          "0", "1", "2", "--runs-root", str(tmp_path), "--summary-only"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    written = json.loads((tmp_path / "mini-headline" / "headline.json").read_text())
    assert written["seeds"] == ["0", "1", "2"]
    assert (tmp_path / "mini-headline" / "headline.md").read_text().startswith("# Headline: profile mini, 3 seed(s)")


def test_pooled_comparisons_resample_items_within_seeds(tmp_path):
    """self_distill minus a control, pooled over seeds: the mean of the seeds' paired differences, an interval
    from a bootstrap over items within each seed, and every seed's own difference."""
    rng = np.random.default_rng(3)
    ids = [f"q{i:03d}" for i in range(200)]
    tiers = {i: ("atomic" if n % 2 else "composite") for n, i in enumerate(ids)}
    for seed, lift in enumerate([0.10, 0.20, 0.15]):
        base = {i: int(rng.random() < 0.4) for i in ids}
        # self_distill = base, plus a lift on composite items only
        sd = {i: (1 if tiers[i] == "composite" and rng.random() < lift else base[i]) for i in ids}
        models = {name: {"accuracy": 100 * np.mean(list(p.values())), "tiers": {}, "per_item": p, "rubrics": 30.0 + seed,
                         "crs": 0.8} for name, p in (("base", base), ("base_cont", dict(base)), ("self_distill", sd))}
        run = tmp_path / f"s{seed}" / layout.EVAL
        run.mkdir(parents=True)
        (run / "summary.json").write_text(json.dumps({"benchmark": "mmar-synth", "num_items": 200, "models": models,
                                                      "item_tiers": tiers}))
    summary = ev.summarise_seeds({str(s): tmp_path / f"s{s}" for s in range(3)})
    vs = summary["comparisons"]["vs"]
    assert set(vs) == {"base", "base_cont"}
    comp, atomic = vs["base_cont"]["composite"], vs["base_cont"]["atomic"]
    assert atomic["estimate"] == 0 and atomic["low"] == 0 == atomic["high"]      # untouched tier: no difference
    assert comp["low"] > 0 and comp["low"] < comp["estimate"] < comp["high"] and comp["n_seeds"] == 3
    assert comp["estimate"] == pytest.approx(np.mean(list(comp["per_seed"].values())))
    assert summary["quality"]["self_distill"]["rubrics"]["mean"] == pytest.approx(31.0)
    markdown = ev.seeds_markdown(summary)
    assert "| base_cont | composite |" in markdown and "yes, above" in markdown and "| no |" in markdown
    verdicts = dict(ev.headline_verdicts(summary))
    assert [ok for text, ok in verdicts.items() if text.startswith("self_distill - base >=")] == [
        vs["base"]["overall"]["estimate"] >= 5 and vs["base"]["overall"]["low"] > 0]
    # the controls of the other bars are not in these runs: said, and not met
    missing = [text for text, ok in verdicts.items() if "not measured" in text]
    assert len(missing) == 2 and not any(verdicts[text] for text in missing)
    overall = summary["models"]["self_distill"]["overall"]
    assert overall["pooled"]["low"] < overall["mean"] < overall["pooled"]["high"]
    assert overall["pooled"]["estimate"] == pytest.approx(overall["mean"])


def _bars_run(run: Path, seed: int, rng, ids, tiers, lift: dict[str, float]) -> None:
    """A seed's summary.json where self_distill = base plus `lift[control]`-sized wins over each control."""
    base = {i: int(rng.random() < 0.4) for i in ids}
    per = {"base": base, "answer_only": dict(base), "answer_only_matched": dict(base)}
    sd = dict(base)
    for i in ids:
        if rng.random() < lift[tiers[i]]:
            sd[i] = 1
    per["self_distill"] = sd
    rubric = {name: {i: 0.8 * p[i] for i in ids} for name, p in per.items()}
    models = {name: {"accuracy": 100 * np.mean(list(p.values())), "per_item": p,
                     "tiers": {t: {"accuracy": 100 * np.mean([p[i] for i in ids if tiers[i] == t])}
                               for t in ("atomic", "composite", "heldout")},
                     "rubric_per_item": rubric[name], "rubrics": 100 * np.mean(list(rubric[name].values())),
                     "chain_profile": {t: {"n": 100, "reasons": 0.0 if name.startswith("answer_only") else 100.0,
                                           "lists": 90.0, "listing_right": 50.0, "gold_steps": 40.0 + seed,
                                           "chain_right": 30.0, "correct": 40.0} for t in ("atomic", "heldout")},
                     "crs": 0.8 + (0.01 if name == "self_distill" else 0.0)} for name, p in per.items()}
    (run / layout.EVAL).mkdir(parents=True)
    (run / layout.EVAL / "summary.json").write_text(json.dumps(
        {"benchmark": "mmar-synth", "num_items": len(ids), "models": models, "item_tiers": tiers,
         "item_skills": {i: f"{tiers[i]}-skill" for i in ids}}))


def test_the_four_bars_are_judged_from_the_pooled_intervals(tmp_path):
    rng = np.random.default_rng(5)
    ids = [f"q{i:03d}" for i in range(300)]
    tiers = {i: ("atomic", "composite", "heldout")[n % 3] for n, i in enumerate(ids)}
    for seed in range(3):
        _bars_run(tmp_path / f"s{seed}", seed, rng, ids, tiers, {"atomic": 0.0, "composite": 0.3, "heldout": 0.0})
    summary = ev.summarise_seeds({str(s): tmp_path / f"s{s}" for s in range(3)})
    verdicts = ev.headline_verdicts(summary)
    assert len(verdicts) == 4
    met = [ok for _, ok in verdicts]
    # +10 points overall (all composite), above answer_only_matched on composite, nothing on the held-out tier,
    # rubrics and CRS above the base's
    assert met == [True, True, False, True], verdicts
    assert "answer_only_matched on composite" in verdicts[1][0] and "answer_only on held-out" in verdicts[2][0]
    assert "paired rubric difference +" in verdicts[3][0]
    markdown = ev.seeds_markdown(summary)
    assert markdown.count("**met**") == 3 and markdown.count("**not met**") == 1
    assert "| model | overall | atomic | composite | heldout | MMAR-Rubrics | CRS |" in markdown
    assert "| composite | composite-skill | 100 |" in markdown  # the per-skill view
    assert summary["skills"]["heldout-skill"]["tier"] == "heldout"
    assert summary["chains"]["self_distill"]["heldout"]["gold_steps"] == pytest.approx(41.0)  # mean over seeds
    assert "| answer_only | heldout | 0.0 | 90.0 | 50.0 | 41.0 | 30.0 | 40.0 |" in markdown


def test_the_headline_reports_the_final_self_distillation_round(tmp_path):
    """With later rounds, the headline model is the last round, compared with every control and with round 1."""
    assert ev.headline_model(["base", "self_distill", "base_cont"]) == "self_distill"
    assert ev.headline_model(["self_distill", "self_distill_round2", "self_distill_round10"]) == "self_distill_round10"
    ids = [f"q{i}" for i in range(40)]
    tiers = {i: "composite" for i in ids}
    per = {"base": {i: 0 for i in ids}, "base_cont": {i: int(n < 4) for n, i in enumerate(ids)},
           "self_distill": {i: int(n < 8) for n, i in enumerate(ids)},
           "self_distill_round2": {i: int(n < 20) for n, i in enumerate(ids)}}
    models = {name: {"accuracy": 100 * np.mean(list(p.values())), "tiers": {}, "per_item": p}
              for name, p in per.items()}
    (tmp_path / layout.EVAL).mkdir(parents=True)
    (tmp_path / layout.EVAL / "summary.json").write_text(json.dumps({"benchmark": "mmar-synth", "num_items": 40,
                                                                 "models": models, "item_tiers": tiers}))
    summary = ev.summarise_seeds({"0": tmp_path})
    assert summary["comparisons"]["model"] == "self_distill_round2"
    vs = summary["comparisons"]["vs"]
    assert set(vs) == {"base", "base_cont", "self_distill"}
    assert vs["base"]["composite"]["estimate"] == pytest.approx(50.0)
    assert vs["self_distill"]["composite"]["estimate"] == pytest.approx(30.0)
    verdicts = dict(ev.headline_verdicts(summary))
    assert any(text.startswith("self_distill_round2 - base >= 5") and ok for text, ok in verdicts.items())


def test_an_answer_without_a_think_block_is_scored_not_dropped(monkeypatch):
    """The answer_only control answers without reasoning: evaluation scores what it said (MMAR scores answers)."""
    import cogito_lib.models.generate as generate
    from cogito_lib.evaluate import generate_predictions

    def fake_generate_texts(model, processor, prompts, audios, sampling, batch_size, progress):
        return [["a sad organ tune"], ["<think>\nI hear: x\nstill thinking"]][: len(prompts)]

    monkeypatch.setattr(generate, "generate_texts", fake_generate_texts)
    monkeypatch.setattr(generate, "build_mmar_prompt", lambda processor, q, c: q)
    items = [{"id": "a", "question": "q1", "choices": ["x"], "audio_file": None},
             {"id": "b", "question": "q2", "choices": ["y"], "audio_file": None}]
    monkeypatch.setattr("cogito_lib.models.audio.AudioCache.__call__", lambda self, path: None)
    records = generate_predictions(None, None, items, max_new_tokens=8, batch_size=2)
    assert records[0]["answer_prediction"] == "a sad organ tune" and not records[0]["parse_failed"]
    assert records[1]["answer_prediction"] == "" and records[1]["parse_failed"]  # unclosed: never invented


def _mmar_root(tmp_path, audio_for):
    """The kit's MMAR fixture meta (8 items) with wav files for its first `audio_for` items only."""
    import soundfile as sf

    root = tmp_path / "MMAR"
    (root / "audio").mkdir(parents=True)
    text = (Path(__file__).parent / "fixtures" / "mmar" / "MMAR-meta.jsonl").read_text()
    (root / "MMAR-meta.jsonl").write_text(text)
    for line in text.splitlines()[:audio_for]:
        sf.write(root / json.loads(line)["audio_path"], np.zeros(1600, np.float32), 16000)
    return root


def test_a_partial_mmar_run_needs_only_its_items_audio_and_plan_counts_it(tmp_path):
    from cogito_lib.checks import check_mmar

    root = _mmar_root(tmp_path, audio_for=3)
    profile = load_profile("paper", {"datasets.mmar": str(root), "eval.num_items": 3})
    benchmark = ev.load_benchmark(profile, tmp_path)
    assert len(benchmark.items) == 3 and benchmark.info["meta_items"] == 8
    [check] = check_mmar(profile)
    assert check.ok and "3 of the 3 wav files of the first 3 of 8 items" in check.message
    everything = load_profile("paper", {"datasets.mmar": str(root)})
    with pytest.raises(ev.BenchmarkMissing, match="5 of the 8 items to evaluate have no audio.*hf download"):
        ev.load_benchmark(everything, tmp_path)
    [check] = check_mmar(everything)
    assert not check.ok and "3 of the 8 wav files of all 8 items present" in check.message


def test_07_and_validate_submission_agree_on_a_partial_submission(tmp_path):
    from cogito_lib.evaluate.report import write_submissions

    root = _mmar_root(tmp_path, audio_for=2)
    profile = load_profile("paper", {"datasets.mmar": str(root), "eval.num_items": 2})
    benchmark = ev.load_benchmark(profile, tmp_path)
    records = [{"id": it["id"], "thinking_prediction": "t", "answer_prediction": it["answer"]} for it in benchmark.items]
    evaluation = ev.Evaluation(benchmark, {}, {"base": records}, {}, {}, {}, "")
    [sub] = write_submissions(evaluation, tmp_path).values()
    assert sub["problems"] == [] and sub["partial"] and (sub["items"], sub["meta_items"]) == (2, 8)
    assert sub["check"].endswith("--num-items 2")
    done = subprocess.run([sys.executable, "-m", *sub["check"].split()[2:]], capture_output=True, text=True)
    assert done.returncode == 0 and "valid submission for the first 2 of 8 items" in done.stdout
    whole = subprocess.run([sys.executable, "-m", *sub["check"].split()[2:-2]], capture_output=True, text=True)
    assert whole.returncode == 1 and whole.stdout.count("missing prediction") == 6


def test_chain_profile_says_whether_a_model_reasons_and_chains_the_steps_a_question_needs():
    item = {"id": "a", "tier": "heldout", "answer": "yes", "choices": ["yes", "no"], "listing": ["loud car horn"],
            "steps": [["Loudest", "car horn"], ["Last", "car horn"], ["Same", "yes"]]}
    right = "I hear: loud car horn\nLoudest: car horn\nLast: car horn\nSame: yes\nSo the answer is yes."
    wrong_value = right.replace("Last: car horn", "Last: whistle")
    other_chain = "I hear: loud car horn\nLoudest: car horn\nFirst: car horn\nSo the answer is yes."
    records = {"right": right, "value": wrong_value, "chain": other_chain, "none": ""}
    profiles = {name: ev.chain_profile([item], [{"id": "a", "thinking_prediction": text, "answer_prediction": "yes"}])
                ["heldout"] for name, text in records.items()}
    assert profiles["right"] == {"n": 1, "reasons": 100.0, "lists": 100.0, "listing_right": 100.0,
                                 "gold_steps": 100.0, "chain_right": 100.0, "correct": 100.0}
    assert profiles["value"]["gold_steps"] == 100.0 and profiles["value"]["chain_right"] == 0.0
    assert profiles["chain"]["gold_steps"] == 0.0 and profiles["chain"]["lists"] == 100.0
    assert profiles["none"]["reasons"] == 0.0 and profiles["none"]["correct"] == 100.0  # a label without reasoning
