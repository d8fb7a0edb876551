"""Every stage notebook, executed top to bottom by the runner under the `tiny` profile (papermill)."""
import json
import re
from pathlib import Path

import pytest

from cogito_lib import run as runner
from cogito_lib.config import load_profile
from cogito_lib.metrics import load_run_metrics

pytestmark = pytest.mark.notebooks
TINY = load_profile("tiny")


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


def _outputs(notebook: Path):
    nb = json.loads(notebook.read_text())
    return nb, [(cell, o) for cell in nb["cells"] for o in cell.get("outputs", [])]


def _text(output) -> str:
    data = output.get("data", {})
    value = data.get("text/html") or data.get("text/plain") or output.get("text") or ""
    return "".join(value) if isinstance(value, list) else value


def test_executed_notebooks_read_well_without_a_kernel(tiny_run):
    """What a saved notebook keeps: no widget (state or view), no progress bar stuck below 100%, every example as
    static HTML with its audio embedded, every figure as an image."""
    run_dir, _ = tiny_run
    for stage in [p.stem for p in runner.discover_notebooks()]:
        nb, outputs = _outputs(run_dir / f"{stage}.ipynb")
        assert "widgets" not in nb["metadata"], stage
        assert not [o for _, o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})], stage
        for _, output in outputs:
            text = _text(output)
            for bar in re.findall(r"^[\w: ]+:\s+\d+%\|", text, flags=re.MULTILINE):
                assert bar.rstrip("|").endswith("100%"), f"{stage}: a progress bar saved at {bar!r}"
        markdown = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
        assert "](../" not in markdown and 'src="../' not in markdown, f"{stage}: a figure linked by relative path"
    audio = {stage: sum(_text(o).count('<audio controls preload="none" src="data:audio/wav;base64,')
                        for _, o in _outputs(run_dir / f"{stage}.ipynb")[1])
             for stage in ("00-setup-and-tour", "02-data-collection", "03-qa-construction", "04-cot-generation",
                           "05-quality-verification", "07-mmar-evaluation")}
    assert audio["00-setup-and-tour"] == 7  # the listening strip: every tour clip
    wins = "".join(_text(o) for _, o in _outputs(run_dir / "07-mmar-evaluation.ipynb")[1])
    shown = re.search(r"<p>(\d+) of <b>[\w-]+</b>'s wins below", wins)
    assert shown, "07: the win browser's static twin is missing"
    assert audio.pop("07-mmar-evaluation") == int(shown.group(1))  # every win shown is playable (tiny may have none)
    assert all(audio[stage] >= 1 for stage in audio), audio  # clip browser, questions, reasoning, pipeline


def test_cot_generation_shows_the_thinkers_samples_and_audit_the_whole_pipeline(tiny_run):
    run_dir, _ = tiny_run
    _, outputs = _outputs(run_dir / "04-cot-generation.ipynb")
    shown = [o for cell, o in outputs if "reasoning_examples(" in "".join(cell["source"])]
    assert any("&lt;think&gt;" in _text(o) for o in shown)  # section 3 shows its examples
    _, outputs = _outputs(run_dir / "05-quality-verification.ipynb")
    browser = [_text(o) for cell, o in outputs if "PipelineBrowser(run_dir)" in "".join(cell["source"])]
    assert browser and "clips with questions" in browser[0] and "sample 0" in browser[0]
