"""Stage 3: the thinker samples K traces per question without seeing the answer; resumable; bad input counted."""
import json

import numpy as np
import pytest

from cogito_lib.world import skills
from cogito_lib.base_model import pretrain_base
from cogito_lib.config import load_profile
from cogito_lib.io import read_jsonl, write_jsonl
from cogito_lib.pipe import think as think_module
from cogito_lib.world import collect


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("think")
    profile = load_profile("tiny")
    pretrain_base(profile, run_dir, progress=False)
    collect(profile, run_dir, progress=False)
    clips = read_jsonl(run_dir / "02-data-collection" / "manifest.jsonl")
    rng = np.random.default_rng(0)
    questions = []
    for clip in clips:
        for q in skills.questions_for_clip(clip, skills.skills_of("composite") + ["count"], rng, max_questions=1):
            q.pop("thinking")
            q["audio_path"] = f"02-data-collection/{q['audio_path']}"
            questions.append(q)
    write_jsonl(run_dir / "03-qa-construction" / "qa.jsonl", questions)
    return run_dir


def test_thinker_samples_k_traces_per_question(run_dir):
    profile = load_profile("tiny")
    stats = think_module.think(profile, run_dir, progress=False)
    questions = read_jsonl(run_dir / "03-qa-construction" / "qa.jsonl")
    cot = read_jsonl(run_dir / "04-cot-generation" / "cot.jsonl")
    k = profile.think.num_samples
    assert stats["samples"] == len(cot) == k * len(questions)
    assert stats["skipped"] == 0
    for record in cot:
        assert set(record) >= {"id", "question_id", "sample_index", "thinking", "answer_prediction",
                               "parse_status", "generation", "thinker"}
        assert record["generation"]["num_samples"] == k
    assert not (run_dir / "04-cot-generation" / "cot.partial.jsonl").exists()


def test_thinker_prompt_never_carries_the_answer_or_reference(run_dir):
    q = read_jsonl(run_dir / "03-qa-construction" / "qa.jsonl")[0]
    shown = json.dumps(think_module.thinker_prompt_fields(q))
    assert "listing" not in shown and "steps" not in shown
    assert set(think_module.thinker_prompt_fields(q)[1]) == set(q["choices"])  # choices, not the label alone


def test_resume_after_a_kill_gives_the_same_files(run_dir, monkeypatch):
    profile = load_profile("tiny")
    monkeypatch.setattr(think_module, "CHUNK_QUESTIONS", 3)
    think_module.think(profile, run_dir, progress=False)
    reference = (run_dir / "04-cot-generation" / "cot.jsonl").read_bytes()

    from cogito_lib.models.backends import HFBackend

    real = HFBackend.generate
    calls = {"n": 0}

    def dies_on_the_third_chunk(self, requests):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated kill")
        return real(self, requests)

    monkeypatch.setattr(HFBackend, "generate", dies_on_the_third_chunk)
    with pytest.raises(KeyboardInterrupt):
        think_module.think(profile, run_dir, progress=False, force=True)
    journal = read_jsonl(run_dir / "04-cot-generation" / "cot.partial.jsonl")
    assert sum(r.get("kind") == "chunk_done" for r in journal) == 2
    monkeypatch.setattr(HFBackend, "generate", real)
    stats = think_module.think(profile, run_dir, progress=False)
    assert stats["resumed_chunks"] == 2
    assert (run_dir / "04-cot-generation" / "cot.jsonl").read_bytes() == reference


def test_a_finished_stage_is_reused_until_its_inputs_change(run_dir, monkeypatch):
    from cogito_lib.models.backends import HFBackend

    profile = load_profile("tiny")
    first = think_module.think(profile, run_dir, progress=False)
    cot = (run_dir / "04-cot-generation" / "cot.jsonl").read_bytes()
    calls = []
    real = HFBackend.generate
    monkeypatch.setattr(HFBackend, "generate", lambda self, requests: calls.append(1) or real(self, requests))
    again = think_module.think(profile, run_dir, progress=False)
    assert again["reused"] and not calls and again["inputs_key"] == first["inputs_key"]
    assert (run_dir / "04-cot-generation" / "cot.jsonl").read_bytes() == cot
    hotter = think_module.think(load_profile("tiny", {"think.temperature": 0.9}), run_dir, progress=False)
    assert calls and not hotter["reused"] and hotter["inputs_key"] != first["inputs_key"]
    calls.clear()
    forced = think_module.think(load_profile("tiny", {"think.temperature": 0.9}), run_dir, progress=False, force=True)
    assert calls and not forced["reused"]
    think_module.think(profile, run_dir, progress=False)  # leave the module's run dir as the other tests expect it


def test_missing_audio_is_skipped_with_a_reason(run_dir, tmp_path):
    questions = read_jsonl(run_dir / "03-qa-construction" / "qa.jsonl")
    broken = dict(questions[0], id="broken", audio_path="02-data-collection/audio/nope.wav")
    other = tmp_path / "run"
    (other / "03-qa-construction").mkdir(parents=True)
    write_jsonl(other / "03-qa-construction" / "qa.jsonl", [broken] + questions[1:3])
    for name in ("02-data-collection", "01-base-model"):
        (other / name).symlink_to(run_dir / name)
    stats = think_module.think(load_profile("tiny"), other, progress=False)
    assert stats["skipped"] == 1 and stats["questions_sampled"] == 2
    assert read_jsonl(other / "04-cot-generation" / "skipped.jsonl")[0]["reason"] == "missing_audio"


def test_a_served_thinker_needs_a_server_for_its_model(run_dir, tmp_path):
    from cogito_lib.models.backends import BackendError

    served = load_profile("tiny", {"models.backend": "vllm", "think.plan_samples": 0})
    with pytest.raises(ValueError, match="is served: use thinker_session"):
        think_module.thinker_backend(served, "x")
    with pytest.raises(BackendError, match="serve.launch is empty"):
        with think_module.thinker_session(served, str(tmp_path / "round2-thinker"), tmp_path):
            pass
    # a chunk fills every request slot of the servers (2 x 100), and is never smaller than CHUNK_QUESTIONS
    assert think_module.chunk_questions(load_profile("tiny", {"models.backend": "vllm", "serve.concurrency": 100,
                                                              "serve.base_urls": ["http://a:1/v1", "http://b:1/v1"]})) == 200
    assert think_module.chunk_questions(load_profile("tiny", {"models.backend": "vllm", "serve.concurrency": 2,
                                                              "serve.base_urls": ["http://a:1/v1"]})) == think_module.CHUNK_QUESTIONS


def test_missing_inputs_name_the_notebook_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="run notebook 03"):
        think_module.think(load_profile("tiny"), tmp_path, progress=False)


class _PlanBackend:
    """Answers a planned step with '<key> value' (and more lines, which must be cut) and the conclusion with 'rain'."""

    name = "fake"

    def __init__(self):
        self.requests = []

    def render(self, messages):
        return "PROMPT|"

    def generate(self, requests):
        from cogito_lib.models.backends import GenerationResult

        results = []
        for request in requests:
            self.requests.append(request)
            written = request.prompt.split("|", 1)[1]
            if written.endswith("So the answer is"):
                text = " rain.\n</think>\n\nrain"
            else:
                key = written.rsplit("\n", 1)[-1].removesuffix(":")
                text = f" {key.lower()} value\nInvented: more\n"
            results.append(GenerationResult(request.request_id, [text]))
        return results


def test_plan_guidance_writes_the_step_names_and_never_their_values():
    from cogito_lib.models.backends import GenerationResult

    planned = {"id": "q1", "steps": [["Words", "Come in"], ["Before", "doorbell"]]}
    unplanned = {"id": "q2"}
    first = '<think>\nI hear: loud knock; man says "Come in!"\nCount: 3\nSo the answer is 3.'
    results = [GenerationResult("q1", [first, "no listing at all", "<think>\nI hear: a third sample"]),
               GenerationResult("q2", ["<think>\nI hear: rain\nSo the answer is rain."] * 3)]
    backend = _PlanBackend()
    guided = think_module.plan_guided(backend, [planned, unplanned], results, [None, None],
                                      prompts=["PROMPT|", "PROMPT|"], num=2, temperature=0.7, top_p=0.95,
                                      max_new_tokens=99, seed=5)
    assert guided[1] == []  # no steps from the annotator: no plan
    assert guided[0] == [{"source": 0, "plan": ["Words", "Before"], "text": (
        '<think>\nI hear: loud knock; man says "Come in!"\nWords: words value\nBefore: before value\n'
        "So the answer is rain.\n</think>\n\nrain")}]  # sample 1 has no listing; sample 2 is past `num`
    steps, conclusion = backend.requests[:2], backend.requests[2]
    assert all(r.stop == ("\n",) and r.max_new_tokens == think_module.PLAN_STEP_TOKENS for r in steps)
    assert conclusion.stop == () and conclusion.max_new_tokens == 99
    assert [r.seed for r in backend.requests] == [5, 6, 7]
    assert not any("doorbell" in r.prompt or "Come in\n" in r.prompt for r in backend.requests)


def test_plan_guided_samples_join_the_plain_ones(run_dir, monkeypatch, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run_dir / "02-data-collection", copy / "02-data-collection")
    shutil.copytree(run_dir / "03-qa-construction", copy / "03-qa-construction")
    shutil.copytree(run_dir / "01-base-model", copy / "01-base-model")
    # the 6-step tiny base rarely writes a listing line: give every sample one, so the real generation path runs
    monkeypatch.setattr(think_module, "listing_head", lambda text: "<think>\nI hear: something\n")
    profile = load_profile("tiny", {"think.plan_samples": 1})
    stats = think_module.think(profile, copy, progress=False)
    questions = read_jsonl(copy / "03-qa-construction" / "qa.jsonl")
    cot = read_jsonl(copy / "04-cot-generation" / "cot.jsonl")
    k = profile.think.num_samples
    planned = [q for q in questions if q.get("steps")]
    guided = [r for r in cot if r["guided"]]
    assert stats["guided_samples"] == len(guided) == len(planned) > 0
    assert stats["samples"] == k * len(questions) + len(guided)
    by_id = {q["id"]: q for q in questions}
    for record in guided:
        assert record["sample_index"] == k and record["id"].endswith(f"-s{k}") and record["plan_source"] == 0
        plan = [key for key, _ in by_id[record["question_id"]]["steps"]]
        assert record["plan"] == plan
        lines = record["text"].split("\n")
        assert lines[:2] == ["<think>", "I hear: something"]
        assert [line.split(":", 1)[0] for line in lines[2:2 + len(plan)]] == plan  # one line per planned step
        assert lines[2 + len(plan)].startswith("So the answer is")
    assert not any(r["guided"] for r in cot if r["sample_index"] < k)
