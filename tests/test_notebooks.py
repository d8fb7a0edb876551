"""Every stage notebook, executed top to bottom by the runner under the `tiny` profile (papermill)."""
import json
from pathlib import Path

import pytest

from cogito_lib import run as runner
from cogito_lib.config import load_profile
from cogito_lib.metrics import load_run_metrics

pytestmark = pytest.mark.notebooks
TINY = load_profile("tiny")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("tiny-run")
    results = runner.run("tiny", run_dir, progress=False)
    return run_dir, results


def test_every_notebook_runs_and_records_its_wall_time(tiny_run):
    run_dir, results = tiny_run
    stages = [p.stem for p in runner.discover_notebooks()]
    assert [r.stage for r in results] == stages
    metrics = load_run_metrics(run_dir)
    for stage in stages:
        assert metrics["notebooks"][stage]["status"] == "ok"
        assert metrics["notebooks"][stage]["wall_s"] > 0
        assert stage in metrics["stages"], f"{stage} did not record metrics"
        executed = json.loads((run_dir / f"{stage}.ipynb").read_text())
        errors = [o for c in executed["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors


def test_setup_tour_checks_pass_and_clips_are_audible(tiny_run):
    run_dir, _ = tiny_run
    tour = load_run_metrics(run_dir)["stages"]["00-setup-and-tour"]
    assert tour["checks_missing"] == []
    assert tour["tour_clips"] == 7 and tour["tour_failed"] == 0


def test_data_collection_records_the_pool(tiny_run):
    run_dir, _ = tiny_run
    stats = load_run_metrics(run_dir)["stages"]["02-data-collection"]
    assert stats["num_clips"] + stats["num_failed"] == TINY.collect.num_clips
    assert stats["num_failed"] == 0
    assert len(stats["clips_by_modality"]) == 7
    assert set(stats["clips_by_layer"]) == {"Signal", "Perception", "Semantic", "Cultural"}
    stage_dir = run_dir / "02-data-collection"
    manifest = [json.loads(line) for line in (stage_dir / "manifest.jsonl").read_text().splitlines()]
    assert len(manifest) == stats["num_clips"]
    assert all((stage_dir / clip["audio_path"]).exists() for clip in manifest)
    for figure in ("clips_by_modality", "clips_by_fact_kind", "durations", "example_spectrogram"):
        assert (stage_dir / "figures" / f"{figure}.png").stat().st_size > 1000


def test_base_model_reports_both_tiers_on_its_check_set(tiny_run):
    run_dir, _ = tiny_run
    base = load_run_metrics(run_dir)["stages"]["01-base-model"]
    assert {"atomic", "composite"} <= set(base["check_by_tier"]) <= {"atomic", "composite", "heldout"}
    assert base["final_loss"] < base["first_loss"]
    assert (Path(base["base"]) / "config.json").exists()


def test_annotator_and_thinker_chain(tiny_run):
    run_dir, _ = tiny_run
    stages = load_run_metrics(run_dir)["stages"]
    qa = stages["03-qa-construction"]
    assert qa["num_questions"] > 0
    assert {tier for tier, n in qa["questions_by_tier"].items() if n} == {"composite"}
    cot = stages["04-cot-generation"]
    assert cot["questions"] == qa["num_questions"]
    assert cot["samples"] == TINY.think.num_samples * cot["questions_sampled"]


def test_auditor_accounts_for_every_sample(tiny_run):
    run_dir, _ = tiny_run
    stages = load_run_metrics(run_dir)["stages"]
    audit_dir = run_dir / "05-quality-verification"
    kept = [json.loads(x) for x in (audit_dir / "train.jsonl").read_text().splitlines()]
    rejected = [json.loads(x) for x in (audit_dir / "rejected.jsonl").read_text().splitlines()]
    assert len(kept) + len(rejected) == stages["04-cot-generation"]["samples"]
    assert all(r["reason"] for r in rejected)
    assert (audit_dir / "exports" / "llamafactory" / "dataset_info.json").exists()


def test_training_and_evaluation_close_the_loop(tiny_run):
    run_dir, _ = tiny_run
    stages = load_run_metrics(run_dir)["stages"]
    assert "06-self-distillation-training" in stages and "07-mmar-evaluation" in stages
    meta = run_dir / "07-mmar-evaluation" / "mmar-synth" / "MMAR-meta.jsonl"
    items = [json.loads(x) for x in meta.read_text().splitlines()]
    assert len(items) == TINY.eval.num_items
    assert {item["tier"] for item in items} == {"atomic", "composite", "heldout"}
    assert (run_dir / "07-mmar-evaluation" / "predictions-base.jsonl").exists()
