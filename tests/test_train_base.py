"""The shared SFT loop and the miniature base's pretraining, caching and skill evaluation (tiny profile)."""
import numpy as np
import pytest

from cogito_lib.base_model import check_set, evaluate_skills, pretrain_base, summarise_rows
from cogito_lib.layout import base_fingerprint as fingerprint
from cogito_lib.config import load_profile
from cogito_lib.io import read_jsonl
from cogito_lib.train import LoopConfig, batch_order, lr_at

TINY = load_profile("tiny")


def test_lr_schedule_warms_up_then_decays_to_a_tenth():
    cfg = LoopConfig(steps=100, batch_size=4, learning_rate=1e-3, warmup_steps=10)
    assert lr_at(0, cfg) == pytest.approx(1e-4)
    assert lr_at(9, cfg) == pytest.approx(1e-3)
    assert lr_at(99, cfg) == pytest.approx(1e-4, rel=0.05)
    assert all(lr_at(s, cfg) >= lr_at(s + 1, cfg) for s in range(10, 99))


def test_batch_order_sees_every_example_before_repeating():
    batches = batch_order(10, steps=5, batch_size=4, seed=0)
    flat = np.concatenate(batches)
    assert sorted(flat[:10]) == list(range(10))
    assert [b.tolist() for b in batches] == [b.tolist() for b in batch_order(10, 5, 4, 0)]


def test_fingerprint_tracks_what_shapes_the_base_only():
    assert fingerprint(TINY) == fingerprint(load_profile("tiny", {"base.check_clips": 99}))
    assert fingerprint(TINY) != fingerprint(load_profile("tiny", {"base.steps": 7}))
    assert fingerprint(TINY) != fingerprint(load_profile("tiny", {"world.loudness_step_db": 15.0}))


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("base")
    profile = load_profile("tiny", {"base.steps": 30, "base.learning_rate": 5e-3})
    return profile, run_dir, pretrain_base(profile, run_dir, progress=False)


def test_pretraining_learns_and_is_cached(pretrained):
    profile, run_dir, info = pretrained
    assert not info["cached"]
    log = read_jsonl(run_dir / "01-base-model" / f"base-{info['fingerprint']}" / "train_log.jsonl")
    assert [r["step"] for r in log] == list(range(1, 31))
    assert info["final_loss"] < 0.7 * info["first_loss"]  # it learns on its own data
    assert info["pretrain_questions"] >= info["pretrain_clips"]
    from cogito_lib.base_model import chain_skills
    from cogito_lib.world.skills import skills_of

    # atomic questions, and gold chains of the profile's chain skills as their share; never a held-out type
    questions = read_jsonl(run_dir / "01-base-model" / "pretrain-questions.jsonl")
    chains = [q for q in questions if q["tier"] != "atomic"]
    assert set(info["pretrain_skills"]) <= set(skills_of("atomic")) | set(chain_skills(profile))
    assert {q["tier"] for q in chains} == {"composite"} and all(q["thinking"] for q in chains)
    assert info["pretrain_by_tier"] == {"atomic": len(questions) - len(chains), "composite": len(chains)}
    share = len(chains) / len(questions)
    assert abs(share - profile.base.chain_share) < 0.05, share
    again = pretrain_base(profile, run_dir, progress=False)
    assert again["cached"] and again["model_dir"] == info["model_dir"]


def test_check_set_evaluation_reports_every_skill(pretrained):
    from cogito_lib.models import load_model

    profile, run_dir, info = pretrained
    model, processor = load_model(info["model_dir"])
    questions = check_set(profile, run_dir, progress=False)
    assert {"atomic", "composite"} <= {q["tier"] for q in questions} <= {"atomic", "composite", "heldout"}
    rows, summary = evaluate_skills(model, processor, questions, num_samples=2, max_new_tokens=24, progress=False)
    assert len(rows) == len(questions)
    assert set(summary["by_skill"]) == {q["skill"] for q in questions}
    for row in rows:
        assert row["judge_pass@1"] <= row["pass@1"]
        assert row["judge_pass@1"] <= row["judge_pass@K"] or row["judge_pass@K"] == 0
    assert summary["greedy"]["num_outputs"] == len(questions)
    assert summary["sampled"]["num_outputs"] == 2 * len(questions)


def test_chain_pretraining_draws_the_named_skills_round_robin_and_rejects_others(tmp_path):
    from cogito_lib.base_model import chain_skills, pretraining_questions
    from cogito_lib.config import ConfigError
    from cogito_lib.world import generate_clip

    clips = [generate_clip(TINY.world, 3, i, "pretrain", tts_cache=tmp_path)[1] for i in range(42)]
    atomic_only = pretraining_questions(load_profile("tiny", {"base.chain_share": 0.0}), clips, tmp_path)
    assert {q["tier"] for q in atomic_only} == {"atomic"}
    named = ("word_count", "mood_instrument")
    profile = load_profile("tiny", {"base.chain_share": 0.4, "base.chain_skills": named})
    questions = pretraining_questions(profile, clips, tmp_path)
    chains = [q for q in questions if q["tier"] == "composite"]
    assert {q["skill"] for q in chains} == set(named)
    # round-robin: the skills get equal numbers, except a skill whose clips run out gives all it has
    counts = {n: sum(q["skill"] == n for q in chains) for n in named}
    pool = {n: sum(q["tier"] == "composite" for q in pretraining_questions(
        load_profile("tiny", {"base.chain_share": 0.95, "base.chain_skills": (n,)}), clips, tmp_path)) for n in named}
    for a in named:
        assert all(counts[a] >= counts[b] - 1 or counts[a] == pool[a] for b in named), (counts, pool)
    assert questions[: len(atomic_only)] == atomic_only  # the atomic part does not move
    with pytest.raises(ConfigError, match="never pretrained"):
        chain_skills(load_profile("tiny", {"base.chain_skills": ("dance_mood",)}))
    with pytest.raises(ConfigError, match="chain_share"):
        load_profile("tiny", {"base.chain_share": 1.0})


def test_summarise_rows_averages_in_percent():
    rows = [{"skill": "a", "pass@1": 1, "judge_pass@1": 0, "judge_pass@K": 1, "chance": 0.5},
            {"skill": "a", "pass@1": 0, "judge_pass@1": 0, "judge_pass@K": 1, "chance": 0.5}]
    assert summarise_rows(rows, "skill") == {"a": {"n": 2, "pass@1": 50.0, "judge_pass@1": 0.0,
                                                   "judge_pass@K": 100.0, "chance": 50.0}}
