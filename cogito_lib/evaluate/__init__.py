"""Notebook 07: evaluate the base and every fine-tuned adapter on MMAR-synth (miniature) or MMAR (paper).

For each model: batched greedy answers with reasoning, cached as the challenge's prediction format in
`RUN_DIR/07-mmar-evaluation/predictions-<model>.jsonl` ({id, thinking_prediction, answer_prediction} plus
parse_failed / parse_status) and reused when complete for the same benchmark and model (a killed run resumes
where it stopped); accuracy by MMAR's official rule (`score_predictions`) overall, by modality, layer,
sub-category and tier (atomic / composite); MMAR-Rubrics and CRS (`score_rubrics`, with the metadata judge in
miniature and the OpenAI-compatible judge at paper scale); paired 95% bootstrap intervals over items for every
model against the base; and a validated challenge submission file per model. Everything lands in the stage
folder (`scores-<model>.json`, `submission-<model>.jsonl`, `summary.json`) so later tools (scripts/headline.py)
read files, not notebook state.

    from cogito_lib.evaluate import evaluate
    evaluation = evaluate(profile, run_dir)
    evaluation.table()                  # accuracy overall / per tier, rubrics, CRS, intervals
    evaluation.gain_sentences()         # "self_distill vs base: +X points [CI]" from the numbers

The parts: `benchmark` (what is evaluated), `predictions` (models and their cached predictions), `score`
(accuracy, rubrics, intervals), `report` (the Evaluation, tables, submissions, the paper's numbers) and
`headline` (pooling seeds, the headline's bars). Plots are in `cogito_lib.plots`, the browser in
`cogito_lib.widgets`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..config import Profile
from ..io import write_json
from ..judges import JudgeUnavailable, describe, make_judge
from ..layout import EVAL as STAGE
from ..layout import headline_model, writes_stage
from .benchmark import Benchmark, BenchmarkMissing, check_benchmark, load_benchmark, mmar_missing_message
from .headline import (chains_table, differences_table, headline_table, headline_verdicts, pooled_comparisons,
                       seeds_markdown, skills_table, summarise_seeds, verdicts_markdown)
from .predictions import ModelSpec, discover_models, generate_predictions, load_eval_model, predict, predictions_path
from .report import (PAPER_LABEL, PAPER_MMAR, Evaluation, gain_sentence, paired_examples, paper_table,
                     side_by_side, write_submissions)
from .score import cell_accuracy, chain_profile, compare, score_model, skill_accuracy, tier_scores


def rubric_judge(profile: Profile, benchmark: Benchmark, stage_dir: str | Path):
    """(the profile's rubric judge, a note saying which) or (None, why not): the benchmark has no rubric fields,
    or the judge cannot run here (no API key)."""
    if not benchmark.has_rubrics:
        return None, f"{benchmark.meta_path} has no thinking/cue/rubric fields (use the MMAR-Rubrics meta file)"
    try:
        judge = make_judge(profile, "rubric", cache_dir=Path(stage_dir) / "judge-cache")
    except JudgeUnavailable as err:
        return None, str(err)
    return judge, describe(judge)


@writes_stage(STAGE)
def evaluate(profile: Profile, run_dir: str | Path, *, models: Sequence[str] | None = None,
             max_new_tokens: int | None = None, batch_size: int | None = None, n_boot: int = 2000,
             progress: bool = True) -> Evaluation:
    """Chapter 07 in one call: benchmark, every model's (cached) predictions, scores, rubrics, intervals,
    submissions, and the files `scores-<model>.json` and `summary.json` in `RUN_DIR/07-mmar-evaluation/`."""
    run_dir = Path(run_dir)
    stage_dir = run_dir / STAGE
    stage_dir.mkdir(parents=True, exist_ok=True)
    check_benchmark(profile)
    specs = discover_models(profile, run_dir, models)
    benchmark = load_benchmark(profile, run_dir, progress=progress)
    max_new_tokens = int(max_new_tokens or profile.think.max_new_tokens)
    batch_size = int(batch_size or profile.eval.batch_size)
    judge, judge_note = rubric_judge(profile, benchmark, stage_dir)
    predictions, scores, runs = {}, {}, {}
    for name, spec in specs.items():
        records, run = predict(spec, benchmark, profile, stage_dir, max_new_tokens=max_new_tokens,
                               batch_size=batch_size, progress=progress)
        predictions[name], runs[name] = records, run
        scores[name] = score_model(benchmark, records, judge, profile.eval.rubric_runs)
        write_json(stage_dir / f"scores-{name}.json", {"model": name, "benchmark": benchmark.name,
                                                       "spec": spec.__dict__, **scores[name]})
    intervals = compare(benchmark, scores, n_boot=n_boot)
    evaluation = Evaluation(benchmark, specs, predictions, scores, intervals, runs,
                            judge_note if judge is not None else f"no rubrics: {judge_note}")
    write_submissions(evaluation, stage_dir)
    write_json(stage_dir / "summary.json", evaluation.summary())
    return evaluation


__all__ = ["Benchmark", "BenchmarkMissing", "Evaluation", "ModelSpec", "PAPER_LABEL", "PAPER_MMAR", "cell_accuracy",
           "chain_profile", "chains_table", "check_benchmark", "compare", "differences_table", "discover_models",
           "evaluate", "gain_sentence", "generate_predictions", "headline_model", "headline_table",
           "headline_verdicts", "load_benchmark", "load_eval_model", "mmar_missing_message", "paired_examples",
           "paper_table", "pooled_comparisons", "predict", "predictions_path", "rubric_judge", "score_model",
           "seeds_markdown", "side_by_side", "skill_accuracy", "skills_table", "summarise_seeds", "tier_scores",
           "verdicts_markdown", "write_submissions"]
