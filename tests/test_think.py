"""Stage 3: the thinker samples K traces per question without seeing the answer; resumable; bad input counted."""
import json

import numpy as np
import pytest

from cogito_lib import tasks
from cogito_lib.base import pretrain_base
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
        for q in tasks.questions_for_clip(clip, tasks.skills_of("composite") + ["count"], rng, max_questions=1):
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
        think_module.think(profile, run_dir, progress=False)
    journal = read_jsonl(run_dir / "04-cot-generation" / "cot.partial.jsonl")
    assert sum(r.get("kind") == "chunk_done" for r in journal) == 2
    monkeypatch.setattr(HFBackend, "generate", real)
    stats = think_module.think(profile, run_dir, progress=False)
    assert stats["resumed_chunks"] == 2
    assert (run_dir / "04-cot-generation" / "cot.jsonl").read_bytes() == reference


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


def test_the_thinker_refuses_an_api_backend(run_dir):
    with pytest.raises(ValueError, match="the thinker is the base model itself"):
        think_module.thinker_backend(load_profile("tiny", {"models.backend": "openai"}), "x")


def test_missing_inputs_name_the_notebook_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="run notebook 03"):
        think_module.think(load_profile("tiny"), tmp_path, progress=False)
