"""Stage 4, the auditor: QA consistency, judges, dedup, length limits, resumability, bad input, CLI, plots."""
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from cogito_lib.world import skills
from cogito_lib.config import load_profile
from cogito_lib.exports import validate_llamafactory, validate_ms_swift
from cogito_lib.io import read_json, read_jsonl, write_jsonl
from cogito_lib.judges import MetadataTraceJudge
from cogito_lib.mmar import is_correct
from cogito_lib.models.backends import BackendError, GenerationResult
from cogito_lib.pipe import audit as A
from cogito_lib.judges import JudgeOutputError, LLMTraceJudge, build_judge_prompt, parse_judge_output

ROOT = Path(__file__).resolve().parents[1]
TINY = load_profile("tiny")


# --- a run dir in the formats of stages 02-04 ---------------------------------------------------------------------

def cot_line(question, k, thinking, answer_prediction, *, parse_failed=False, parse_status="ok"):
    text = f"<think>\n{thinking}\n</think>\n\n{answer_prediction}" if not parse_failed else thinking
    return {"id": f"{question['id']}-s{k}", "question_id": question["id"], "clip_id": question["clip_id"],
            "sample_index": k, "text": text, "thinking": thinking, "answer_prediction": answer_prediction,
            "parse_status": parse_status, "parse_failed": parse_failed, "thinker": "fixture",
            "generation": {"temperature": 1.0, "top_p": 0.95, "max_new_tokens": 48, "seed": 11, "num_samples": 4}}


def hallucinated(question):
    """The gold reasoning with the last listed event dropped (a claim the clip contradicts)."""
    listing = question["listing"][:-1] or ["loud high beep"]
    return skills.reasoning_text(listing, [tuple(s) for s in question["steps"]], question["answer"])


def standard_samples(question):
    """Four samples per question: gold (kept), its repeat (duplicate), a wrong answer, a hallucinated listing."""
    gold = skills.reasoning_text(question["listing"], [tuple(s) for s in question["steps"]], question["answer"])
    wrong = next(c for c in question["choices"] if not is_correct(c, question["answer"], question["choices"]))
    return [cot_line(question, 0, gold, question["answer"]),
            cot_line(question, 1, gold, question["answer"]),
            cot_line(question, 2, gold.replace(question["answer"] + ".", wrong + "."), wrong),
            cot_line(question, 3, hallucinated(question), question["answer"])]


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """02 from the real world (tiny, 14 clips), 03 from cogito_lib.world.skills, 04 with known good and bad samples."""
    from cogito_lib.world import collect

    run_dir = tmp_path_factory.mktemp("audit-base")
    collect(TINY, run_dir, num_clips=14, progress=False)
    clips = read_jsonl(run_dir / "02-data-collection" / "manifest.jsonl")
    rng = np.random.default_rng(0)
    questions = []
    for clip in clips:
        for tier in skills.TRAINED_TIERS:  # at most one question of each tier the annotator writes, per clip
            question = next((q for q in (skills.make_question(clip, s, rng) for s in skills.skills_of(tier)) if q),
                            None)
            if question is None:
                continue
            question.pop("thinking")
            question["audio_path"] = f"02-data-collection/{clip['audio_path']}"
            question.update(annotator="metadata", seed_ids=[])
            questions.append(question)
    write_jsonl(run_dir / "03-qa-construction" / "qa.jsonl", questions)
    write_jsonl(run_dir / "04-cot-generation" / "cot.jsonl", [s for q in questions for s in standard_samples(q)])
    return run_dir


@pytest.fixture
def run_dir(base_run, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(base_run, target)
    return target


def questions_of(run_dir):
    return read_jsonl(run_dir / "03-qa-construction" / "qa.jsonl")


def append_samples(run_dir, samples):
    path = run_dir / "04-cot-generation" / "cot.jsonl"
    write_jsonl(path, read_jsonl(path) + samples)


def by_id(path):
    return {r["id"]: r for r in read_jsonl(path)}


def stage(run_dir):
    return run_dir / A.STAGE


# --- the checks ---------------------------------------------------------------------------------------------------

def test_audit_keeps_gold_and_rejects_each_bad_sample_with_its_reason(run_dir):
    stats = A.audit(TINY, run_dir, progress=False)
    n = len(questions_of(run_dir))
    assert stats["samples"] == 4 * n and stats["kept"] == n
    assert stats["rejected_by_reason"]["duplicate"] == n
    assert stats["rejected_by_reason"]["answer_mismatch"] == n
    assert stats["rejected_by_reason"]["judge_rejected"] == n
    assert set(stats["rejected_by_reason"]) == set(A.REASONS)
    kept = read_jsonl(stage(run_dir) / "train.jsonl")
    assert [r["sample_index"] for r in kept] == [0] * n
    assert list(kept[0]) == list(sorted(A.TRAIN_FIELDS)) and kept[0]["audio_path"].startswith("02-data-collection/")
    assert stats["questions_covered"] == n and stats["question_coverage"] == 1.0
    assert stats["funnel"] == {"samples": 4 * n, "parsed": 4 * n, "answer-consistent": 3 * n, "length ok": 3 * n,
                               "judge-approved": 2 * n, "kept": n}
    assert stats["samples_per_s"] > 0 and stats["limits"] == {"min_thinking_chars": 10, "max_thinking_chars": 4000}
    for group in ("by_layer", "by_modality", "by_tier", "by_skill"):
        assert sum(v["samples"] for v in stats[group].values()) == 4 * n
        assert sum(v["kept"] for v in stats[group].values()) == n
    assert set(stats["by_tier"]) == {"atomic", "composite"}
    assert read_json(stage(run_dir) / "stats.json")["kept"] == n
    rejected = read_jsonl(stage(run_dir) / "rejected.jsonl")
    assert all(r["reason"] in A.REASONS and r["detail"] for r in rejected)
    for name in ("funnel", "kept_rate", "rejections"):
        assert (stage(run_dir) / "figures" / f"{name}.png").stat().st_size > 1000


def test_plan_guided_samples_are_audited_alike_and_counted(run_dir):
    questions = questions_of(run_dir)
    path = run_dir / "04-cot-generation" / "cot.jsonl"
    cot = read_jsonl(path)
    cot[0]["guided"] = True  # the first question's gold sample, as if it had been plan-guided
    cot += [dict(cot_line(q, 4, hallucinated(q), q["answer"]), guided=True) for q in questions]
    write_jsonl(path, cot)
    stats = A.audit(TINY, run_dir, progress=False)
    n = len(questions)
    assert stats["guided_samples"] == n + 1 and stats["kept"] == n
    kept = read_jsonl(stage(run_dir) / "train.jsonl")
    assert stats["kept_guided"] == 1 and [r["id"] for r in kept if r["guided"]] == [cot[0]["id"]]
    rejected = read_jsonl(stage(run_dir) / "rejected.jsonl")
    assert sum(r["guided"] and r["reason"] == "judge_rejected" for r in rejected) == n  # judged like any sample


def test_consistency_is_the_official_mmar_rule(run_dir):
    q = questions_of(run_dir)[0]
    gold = skills.reasoning_text(q["listing"], [tuple(s) for s in q["steps"]], q["answer"])
    wrong = next(c for c in q["choices"] if c != q["answer"])
    variants = [f"The answer is {q['answer']}", q["answer"].upper(), f"{q['answer']} or {wrong}", "", "none of these"]
    append_samples(run_dir, [cot_line(q, 10 + i, gold, v) for i, v in enumerate(variants)])
    A.audit(TINY, run_dir, progress=False, figures=False, export=False)
    rejected, kept = by_id(stage(run_dir) / "rejected.jsonl"), by_id(stage(run_dir) / "train.jsonl")
    for i, prediction in enumerate(variants):
        sample_id = f"{q['id']}-s{10 + i}"
        if not prediction:
            assert rejected[sample_id]["reason"] == "parse_failed"
        elif is_correct(prediction, q["answer"], q["choices"]):
            # consistent; the judge then wants the conclusion line to say the same thing
            assert sample_id in kept or rejected[sample_id]["reason"] in ("judge_rejected", "duplicate")
        else:
            assert rejected[sample_id]["reason"] == "answer_mismatch"
            assert q["answer"] in rejected[sample_id]["detail"]


def test_judge_rejections_carry_the_judges_reasons(run_dir):
    A.audit(TINY, run_dir, progress=False, figures=False, export=False)
    judged = [r for r in read_jsonl(stage(run_dir) / "rejected.jsonl") if r["reason"] == "judge_rejected"]
    assert judged and all(r["judge_reasons"] and "listing" in r["detail"] for r in judged)
    verdicts = read_jsonl(stage(run_dir) / "verdicts.jsonl")
    assert {v["judge"] for v in verdicts} == {"metadata"}
    assert sum(not v["ok"] for v in verdicts) == len(judged)


def test_duplicates_are_kept_once_per_question_after_normalisation(run_dir):
    q0, q1 = questions_of(run_dir)[:2]
    gold = skills.reasoning_text(q0["listing"], [tuple(s) for s in q0["steps"]], q0["answer"])
    shouty = "  " + gold.upper().replace("\n", " \n\n ") + "  "
    append_samples(run_dir, [cot_line(q0, 7, shouty, q0["answer"])])
    stats = A.audit(TINY, run_dir, progress=False, figures=False, export=False)
    rejected = by_id(stage(run_dir) / "rejected.jsonl")
    assert rejected[f"{q0['id']}-s1"]["detail"] == f"same reasoning as {q0['id']}-s0"
    assert rejected[f"{q0['id']}-s7"]["reason"] in ("duplicate", "judge_rejected")  # upper case fails the listing
    assert f"{q1['id']}-s0" in by_id(stage(run_dir) / "train.jsonl")  # other questions are untouched
    assert stats["rejected_by_reason"]["duplicate"] >= len(questions_of(run_dir))


def test_length_limits_are_parameters_and_reported(run_dir):
    q = questions_of(run_dir)[0]
    append_samples(run_dir, [cot_line(q, 8, "3.", q["answer"])])
    lengths = [len(r["thinking"]) for r in read_jsonl(run_dir / "04-cot-generation" / "cot.jsonl")
               if r["sample_index"] == 0]
    limit = sorted(lengths)[len(lengths) // 2]
    stats = A.audit(TINY, run_dir, progress=False, figures=False, export=False, max_thinking_chars=limit)
    rejected = by_id(stage(run_dir) / "rejected.jsonl")
    assert rejected[f"{q['id']}-s8"]["reason"] == "too_short"
    assert stats["limits"]["max_thinking_chars"] == limit
    assert stats["rejected_by_reason"]["too_long"] > 0
    for record in read_jsonl(stage(run_dir) / "train.jsonl"):
        assert 10 <= len(record["thinking"]) <= limit
    with pytest.raises(ValueError, match="limits"):
        A.audit(TINY, run_dir, progress=False, max_thinking_chars=5, min_thinking_chars=10)


def test_bad_inputs_are_rejected_with_a_reason_never_a_crash(run_dir):
    questions = questions_of(run_dir)
    clip_of = {}
    for q in questions:
        clip_of.setdefault(q["audio_path"], []).append(q)
    paths = list(clip_of)
    (run_dir / paths[0]).unlink()                                 # missing audio
    (run_dir / paths[1]).write_bytes(b"RIFF\x00garbage, not a wav")  # corrupt audio
    empty = clip_of[paths[2]][0]                                  # a question without metadata
    empty.update(listing=None, steps=None)
    no_answer = clip_of[paths[3]][0]
    no_answer["answer"] = ""
    write_jsonl(run_dir / "03-qa-construction" / "qa.jsonl", questions)
    q = clip_of[paths[4]][0]
    gold = skills.reasoning_text(q["listing"], [tuple(s) for s in q["steps"]], q["answer"])
    broken = cot_line(q, 20, "I hear: a beep", "", parse_failed=True, parse_status="unclosed_think")
    no_fields = {"id": f"{q['id']}-s21", "question_id": q["id"], "sample_index": 21}
    raw_only = {"id": f"{q['id']}-s22", "question_id": q["id"], "sample_index": 22, "text": "no tags at all"}
    unknown = cot_line({**q, "id": "no-such-question"}, 0, gold, q["answer"])
    append_samples(run_dir, [broken, no_fields, raw_only, unknown])
    with open(run_dir / "04-cot-generation" / "cot.jsonl", "a") as fh:
        fh.write('{"id": "torn", "question_id": \n')
        fh.write('["not", "an", "object"]\n')

    stats = A.audit(TINY, run_dir, progress=False, figures=False)
    rejected = by_id(stage(run_dir) / "rejected.jsonl")
    for sample in clip_of[paths[0]] + clip_of[paths[1]]:
        detail = rejected[f"{sample['id']}-s0"]["detail"]
        assert rejected[f"{sample['id']}-s0"]["reason"] == "missing_audio"
    assert "not found" in rejected[f"{clip_of[paths[0]][0]['id']}-s0"]["detail"]
    assert "unreadable" in rejected[f"{clip_of[paths[1]][0]['id']}-s0"]["detail"]
    assert rejected[f"{empty['id']}-s0"]["reason"] == "judge_output_invalid"
    assert "no listing" in rejected[f"{empty['id']}-s0"]["detail"]
    assert rejected[f"{no_answer['id']}-s0"]["reason"] == "unknown_question"
    for k in (20, 21, 22):
        assert rejected[f"{q['id']}-s{k}"]["reason"] == "parse_failed"
    assert rejected["no-such-question-s0"]["reason"] == "unknown_question"
    unreadable = [r for r in rejected.values() if r["id"].startswith("cot-line-")]
    assert len(unreadable) == 2 and all(r["reason"] == "parse_failed" for r in unreadable)
    assert stats["unreadable_lines"]["cot"] == 2
    assert stats["samples"] == stats["kept"] + stats["rejected"]
    assert sum(stats["rejected_by_reason"].values()) == stats["rejected"]
    assert not validate_ms_swift(stage(run_dir) / "exports" / "ms-swift" / "audio_cogito.jsonl", media_root=run_dir)


def test_missing_inputs_name_the_file_and_the_notebook(tmp_path, run_dir):
    with pytest.raises(A.MissingInput, match=r"02-data-collection/manifest.jsonl not found: run notebook 02"):
        A.audit(TINY, tmp_path, progress=False)
    (run_dir / "04-cot-generation" / "cot.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match=r"04-cot-generation/cot.jsonl not found: run notebook 04"):
        A.audit(TINY, run_dir, progress=False)


# --- resumability -------------------------------------------------------------------------------------------------

KILLER = textwrap.dedent("""
    import os, signal, sys
    from cogito_lib.config import load_profile
    from cogito_lib.judges import MetadataTraceJudge
    from cogito_lib.pipe.audit import audit

    class KillingJudge(MetadataTraceJudge):
        calls = 0
        def verify(self, *args, **kwargs):
            KillingJudge.calls += 1
            if KillingJudge.calls > int(sys.argv[2]):
                os.kill(os.getpid(), signal.SIGKILL)
            return super().verify(*args, **kwargs)

    audit(load_profile("tiny"), sys.argv[1], progress=False, judge=KillingJudge(), judge_batch_size=4)
""")

OUTPUTS = ("train.jsonl", "rejected.jsonl", "verdicts.jsonl", "exports/ms-swift/audio_cogito.jsonl",
           "exports/llamafactory/audio_cogito.json", "exports/llamafactory/dataset_info.json")


def test_kill_9_mid_stage_then_rerun_gives_the_same_files(run_dir, tmp_path):
    reference = tmp_path / "reference"
    shutil.copytree(run_dir, reference)
    expected = A.audit(TINY, reference, progress=False, figures=False)

    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    done = subprocess.run([sys.executable, str(script), str(run_dir), "9"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL, done.stderr
    journal = stage(run_dir) / A.JOURNAL
    journalled = sum(len(entry["verdicts"]) for entry in read_jsonl(journal))
    assert journalled >= 8 and not (stage(run_dir) / "train.jsonl").exists()
    with open(journal, "a") as fh:
        fh.write('{"judge": "metadata", "verdicts": [{"id": "x", "ke')  # torn last line of a killed writer

    stats = A.audit(TINY, run_dir, progress=False, figures=False)
    assert stats["resumed_verdicts"] == journalled
    assert 0 < stats["judged_this_run"] < expected["judged_this_run"]
    assert not journal.exists()
    for name in OUTPUTS:
        got = (stage(run_dir) / name).read_text().replace(str(run_dir.resolve()), "RUN")
        want = (stage(reference) / name).read_text().replace(str(reference.resolve()), "RUN")
        assert got == want, name
    assert {k: v for k, v in stats.items() if k not in ("wall_s", "samples_per_s", "judge_traces_per_s",
                                                         "judged_this_run", "resumed_verdicts")} == \
        {k: v for k, v in expected.items() if k not in ("wall_s", "samples_per_s", "judge_traces_per_s",
                                                         "judged_this_run", "resumed_verdicts")}
    again = A.audit(TINY, run_dir, progress=False, figures=False)  # a finished stage asks the judge nothing
    assert again["judged_this_run"] == 0 and again["kept"] == expected["kept"]


# --- the LLM judge, with a fake backend (no network) --------------------------------------------------------------

class FakeBackend:
    """Answers every judge request with `reply(request)`; records the requests."""

    name = "fake"

    def __init__(self, reply):
        self.reply, self.requests = reply, []

    def generate(self, requests):
        self.requests += requests
        return [GenerationResult(r.request_id, [self.reply(r)]) for r in requests]


def _prompt_of(request):
    user = request.messages[-1]["content"]
    return user[-1]["text"] if isinstance(user, list) else user


def test_parse_judge_output_accepts_only_a_valid_verdict():
    assert parse_judge_output('{"verdict": "pass", "reasons": []}').ok
    fenced = '<think>hmm</think>\n```json\n{"verdict": "FAIL", "reasons": ["counts 4 beeps, there are 3"]}\n```'
    assert parse_judge_output(fenced).reasons == ["counts 4 beeps, there are 3"]
    assert parse_judge_output('Here: {"verdict": "pass"} done').ok
    for bad in ("", "pass", '{"verdict": "maybe", "reasons": []}', '{"verdict": "fail", "reasons": []}',
                '{"verdict": "fail", "reasons": "wrong"}', '["pass"]', '{"verdict": "pass", "reasons": [1]}',
                '{"verdict": "pa'):
        with pytest.raises(JudgeOutputError):
            parse_judge_output(bad)


def test_llm_judge_prompt_holds_metadata_question_label_and_reasoning(run_dir):
    q = questions_of(run_dir)[0]
    clip = {c["clip_id"]: c for c in read_jsonl(run_dir / "02-data-collection" / "manifest.jsonl")}[q["clip_id"]]
    prompt = build_judge_prompt(q, "I hear: x\nSo the answer is y.", "y", clip)
    for part in (clip["caption"], q["question"], f"Correct answer: {q['answer']}", "I hear: x", '"verdict"',
                 "Hallucination", "Broken logic", *q["choices"]):
        assert part in prompt


def test_audit_with_llm_judge_fake_backend_valid_and_malformed(run_dir):
    def reply(request):
        prompt = _prompt_of(request)
        if "-s3" in request.request_id:
            return "not json at all"  # malformed -> judge_output_invalid, never passed
        if "So the answer is" in prompt and "Count:" in prompt:
            return '{"verdict": "fail", "reasons": ["the count is not supported"]}'
        return '```json\n{"verdict": "pass", "reasons": []}\n```'

    backend = FakeBackend(reply)
    judge = LLMTraceJudge(backend, "fake-judge", audio_root=run_dir)
    stats = A.audit(TINY, run_dir, progress=False, figures=False, judge=judge)
    rejected = read_jsonl(stage(run_dir) / "rejected.jsonl")
    invalid = [r for r in rejected if r["reason"] == "judge_output_invalid"]
    assert invalid and all(r["id"].endswith("-s3") for r in invalid)
    failed = [r for r in rejected if r["reason"] == "judge_rejected"]
    assert all(r["judge_reasons"] == ["the count is not supported"] for r in failed)
    assert stats["judge"].startswith("llm:fake:fake-judge:")
    assert stats["kept"] == len({r["question_id"] for r in read_jsonl(stage(run_dir) / "train.jsonl")})
    first = backend.requests[0]
    assert first.temperature == 0.0 and Path(first.audio_path).is_file() and Path(first.audio_path).is_absolute()
    # a duplicate trace is judged once: identical judge input is asked for one time only
    assert len(backend.requests) == stats["judged_this_run"] < stats["judged"]


def test_llm_judge_transport_failure_stops_the_stage_and_rejects_nothing(run_dir):
    class DownBackend:
        name = "down"

        def generate(self, requests):
            raise BackendError("endpoint unreachable")

    with pytest.raises(BackendError):
        A.audit(TINY, run_dir, progress=False, judge=LLMTraceJudge(DownBackend(), "m", audio_root=run_dir))
    assert not (stage(run_dir) / "rejected.jsonl").exists()


def test_llm_judge_without_audio_sends_text_only(run_dir):
    backend = FakeBackend(lambda r: '{"verdict": "pass", "reasons": []}')
    judge = LLMTraceJudge(backend, "text-model", with_audio=False)
    q = questions_of(run_dir)[0]
    assert judge.verify(q, "I hear: a beep\nSo the answer is 1.", "1").ok
    assert backend.requests[0].audio_path is None and isinstance(backend.requests[0].messages[-1]["content"], str)


def test_make_judge_follows_the_profile(tmp_path):
    assert isinstance(A.make_judge(TINY, tmp_path), MetadataTraceJudge)
    paper_like = load_profile("tiny", {"models.judge": "gpt-4o-mini", "models.backend": "openai"})
    judge = A.make_judge(paper_like, tmp_path)
    assert isinstance(judge, LLMTraceJudge) and judge.name.startswith("llm:openai:gpt-4o-mini:")


# --- exports, CLI, plots --------------------------------------------------------------------------------------------

def test_exports_validate_against_both_schemas(run_dir):
    stats = A.audit(TINY, run_dir, progress=False, figures=False)
    exports = stage(run_dir) / "exports"
    assert validate_ms_swift(exports / "ms-swift" / "audio_cogito.jsonl", media_root=run_dir) == []
    assert validate_llamafactory(exports / "llamafactory", media_root=run_dir) == []
    # with the trainer recipes beside them, paths relative to the run dir
    assert (exports / "ms-swift" / "train.sh").exists() and (exports / "llamafactory" / "cogito_sft.yaml").exists()
    assert {"ms_swift_recipe", "llamafactory_recipe"} <= set(stats["exports"])
    lines = (exports / "ms-swift" / "audio_cogito.jsonl").read_text().splitlines()
    data = json.loads((exports / "llamafactory" / "audio_cogito.json").read_text())
    assert len(lines) == len(data) == stats["kept"]
    assert stats["exports"]["ms_swift"] == "exports/ms-swift/audio_cogito.jsonl"


def test_cli_runs_the_stage_and_reports_missing_inputs(run_dir, tmp_path):
    command = [sys.executable, "-m", "cogito_lib.pipe", "audit", "--profile", "tiny", "--no-progress"]
    env = {**os.environ, "MPLBACKEND": "Agg"}
    done = subprocess.run(command + ["--run-dir", str(run_dir), "--max-thinking-chars", "3000", "--no-figures"],
                          cwd=ROOT, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout)
    assert stats["kept"] > 0 and stats["limits"]["max_thinking_chars"] == 3000
    assert (stage(run_dir) / "train.jsonl").exists()
    missing = subprocess.run(command + ["--run-dir", str(tmp_path / "empty")], cwd=ROOT, capture_output=True,
                             text=True, env=env)
    assert missing.returncode == 2
    assert "manifest.jsonl not found: run notebook 02" in missing.stderr and "Traceback" not in missing.stderr


def test_plots_return_figures_and_examples_pair_kept_with_rejected(run_dir, tmp_path):
    from matplotlib.figure import Figure

    stats = A.audit(TINY, run_dir, progress=False, figures=False, export=False)
    for plot in (A.plot_funnel, A.plot_kept_rate, A.plot_rejections):
        figure = plot(stats, save_as=tmp_path / f"{plot.__name__}.png")
        assert isinstance(figure, Figure) and (tmp_path / f"{plot.__name__}.png").stat().st_size > 1000
    pairs = A.example_pairs(run_dir, n=3)
    assert len(pairs) == 3
    for pair in pairs:
        assert pair["kept"]["question_id"] == pair["rejected"]["question_id"]
        assert pair["rejected"]["reason"] == "judge_rejected"
    assert "judge_rejected" in A.examples_html(pairs)


def test_llm_judge_runs_on_a_real_hf_backend_and_rejects_garbage(run_dir, tmp_path):
    """End to end through HFBackend (chat template, audio features, generation) with an untrained tiny model:
    its reply is noise, so every trace is judge_output_invalid, none is passed."""
    from cogito_lib.models import build_tiny_model, load_model
    from cogito_lib.models.backends import HFBackend

    corpus = ["I hear: loud mid beep; quiet high beep", "So the answer is 3."] * 20  # 8 tokens cannot spell a verdict
    model, processor = load_model(build_tiny_model("qwen2_audio", tmp_path / "judge", corpus, size="tiny"))
    judge = LLMTraceJudge(HFBackend(model, processor), "tiny-judge", audio_root=run_dir, max_new_tokens=8)
    q = questions_of(run_dir)[0]
    results = judge.verify_batch([{"id": "a", "question": q, "thinking": "I hear: a beep\nSo the answer is 1.",
                                   "answer_prediction": "1", "clip": None}])
    assert len(results) == 1 and isinstance(results[0], JudgeOutputError)
