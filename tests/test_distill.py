"""Self-distillation fine-tuning (06): loss mask, LoRA placement, each variant's training set, equal steps,
resumption after `kill -9`, the CLI, a run where nothing survived the audit, and later rounds (tiny profile,
synthetic run dir)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cogito_lib.layout import BASE as BASE_STAGE
from cogito_lib.layout import base_fingerprint as fingerprint
from cogito_lib.layout import lock_path
from cogito_lib.mmar import item_prompt as mmar_prompt_text
from cogito_lib.config import load_profile
from cogito_lib.distill import (STAGE, balance_survivors, build_training_sets, load_inputs, merged_thinker,
                                next_round, planned_steps, run_variants)
from cogito_lib.io import read_json, read_jsonl, write_json, write_jsonl
from cogito_lib.world.skills import reasoning_text

ROOT = Path(__file__).resolve().parents[1]
TINY = load_profile("tiny", {"train.max_steps": 2, "train.replay_atomic": 3, "train.checkpoint_every": 2})
THINKING = "I hear: loud low beep; quiet high beep\nLow beeps: loud low beep\nCount: 1\nSo the answer is 1."


def _question(i: int, tier: str = "composite") -> dict:
    return {"id": f"q{i}", "clip_id": f"c{i % 3}", "audio_path": f"02-data-collection/audio/c{i % 3}.wav",
            "question": "How many low beeps are there?", "choices": ["1", "2", "3"], "answer": "1", "tier": tier,
            "skill": "count_pitch", "listing": ["loud low beep", "quiet high beep"],
            "steps": [["Low beeps", "loud low beep"], ["Count", "1"]]}


def make_run_dir(run_dir: Path, *, survivors: bool = True, profile=TINY) -> Path:
    """A run dir with the files 06 reads: a tiny base (01), audio, qa.jsonl, cot.jsonl, train.jsonl and the
    base's pretraining questions. Cheap: no world synthesis, no pretraining."""
    import soundfile as sf

    from cogito_lib.models import build_tiny_model

    audio_dir = run_dir / "02-data-collection" / "audio"
    audio_dir.mkdir(parents=True)
    # no clip metadata: the auditor's metadata judge checks a trace against its question's listing and steps
    write_jsonl(run_dir / "02-data-collection" / "manifest.jsonl", [])
    rng = np.random.default_rng(0)
    for i in range(3):
        t = np.arange(16000) / 16000
        sf.write(audio_dir / f"c{i}.wav", (0.3 * np.sin(2 * np.pi * (300 + 500 * i) * t)
                                             + 0.01 * rng.standard_normal(t.size)).astype("float32"), 16000)
    qa = [_question(i) for i in range(6)]
    write_jsonl(run_dir / "03-qa-construction" / "qa.jsonl", qa)
    cot = []
    for q in qa:
        for s in range(2):
            good = s == 0 and q["id"] in ("q0", "q1", "q2")
            cot.append({"id": f"{q['id']}-s{s}", "question_id": q["id"], "clip_id": q["clip_id"], "sample_index": s,
                        "thinking": THINKING if good else "I hear: loud beep\nCount: 3\nSo the answer is 3.",
                        "answer_prediction": "1" if good else "3", "parse_failed": False})
    write_jsonl(run_dir / "04-cot-generation" / "cot.jsonl", cot)
    kept = [dict(r, audio_path=q["audio_path"], question=q["question"], choices=q["choices"], answer=q["answer"],
                 tier=q["tier"], skill=q["skill"])
            for r in cot for q in qa if r["question_id"] == q["id"] and r["answer_prediction"] == "1"]
    write_jsonl(run_dir / "05-quality-verification" / "train.jsonl", kept if survivors else [])
    pretrain = [dict(_question(10 + i, "atomic"), audio_file=str(audio_dir / f"c{i % 3}.wav"), thinking=THINKING,
                     id=f"p{i}") for i in range(8)]
    write_jsonl(run_dir / BASE_STAGE / "pretrain-questions.jsonl", pretrain)
    base_dir = run_dir / BASE_STAGE / f"base-{fingerprint(profile)}"
    corpus = [mmar_prompt_text(q) for q in qa] + [THINKING, "I hear: loud beep Count: 3 So the answer is 3."]
    build_tiny_model(profile.models.family, base_dir / "model", corpus * 5, size="tiny", seed=0)
    write_json(base_dir / "base.json", {"model_dir": str(base_dir / "model")})
    return run_dir


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run_dir(tmp_path_factory.mktemp("distill"))


def test_loss_mask_covers_only_the_assistant_tokens(run_dir):
    from cogito_lib.models import build_training_text, encode_training_batch, load_model

    model, processor = load_model(read_json(next((run_dir / BASE_STAGE).glob("base-*/base.json")))["model_dir"])
    texts = [build_training_text(processor, "How many low beeps are there?", THINKING, "1"),
             build_training_text(processor, "How many?", None, "2")]
    batch = encode_training_batch(processor, texts, [np.zeros(16000, "float32")] * 2)
    tok = processor.tokenizer
    for row, text in enumerate(texts):
        labels = batch["labels"][row]
        supervised = labels != -100
        assert tok.decode(labels[supervised]).strip() == text.target.strip()
        # everything before the first supervised token is the prompt (audio, question): never a target
        first = int(supervised.nonzero()[0])
        assert tok.decode(batch["input_ids"][row][:first]).endswith(text.prompt[-20:])
        assert bool(supervised[first:int(supervised.nonzero()[-1]) + 1].all())
    assert "<think>" not in tok.decode(batch["labels"][1][batch["labels"][1] != -100])  # answer_only target


def test_lora_sits_on_the_language_model_only_and_the_audio_tower_is_frozen(run_dir):
    from cogito_lib.models import load_model
    from cogito_lib.train import prepare_lora

    base = read_json(next((run_dir / BASE_STAGE).glob("base-*/base.json")))["model_dir"]
    model = prepare_lora(load_model(base)[0], rank=4, alpha=8)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n and "language_model" in n for n in trainable)
    assert {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in trainable} == {
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert not any("audio_tower" in n for n, _ in model.named_modules() if "lora_" in n)
    unfrozen = prepare_lora(load_model(base)[0], rank=4, alpha=8, freeze_audio=False)
    assert any(p.requires_grad for n, p in unfrozen.named_parameters() if "audio_tower" in n)


def test_every_variant_builds_its_training_set(run_dir):
    inputs = load_inputs(run_dir)
    sets = build_training_sets(TINY, run_dir, "self_distill,answer_only,answer_only_matched,no_audit,base_cont,gold_cot",
                               inputs=inputs)
    replay = sets["base_cont"].examples[sets["base_cont"].own:]
    assert len(replay) == 3 and all(s.examples[s.own:] == replay for s in sets.values())  # same replay for all
    assert sets["self_distill"].own == 3 and all(e.reasoning == THINKING for e in sets["self_distill"].examples[:3])
    assert sets["answer_only"].own == len(inputs["qa"]) == 6
    assert all(e.reasoning is None for e in sets["answer_only"].examples[:6])
    assert sets["no_audit"].own == len(inputs["cot"]) == 12
    assert sets["no_audit"].sources["rejected_by_audit"] == 9  # rejected samples are in
    assert {e.answer for e in sets["no_audit"].examples[:12]} == {"1", "3"}
    gold = reasoning_text(["loud low beep", "quiet high beep"], [("Low beeps", "loud low beep"), ("Count", "1")], "1")
    assert sets["gold_cot"].own == 3 and all(e.reasoning == gold for e in sets["gold_cot"].examples[:3])
    assert sets["base_cont"].own == 8
    # the matched label control: the survivors' questions (as gold_cot), their labels, no reasoning
    matched = sets["answer_only_matched"]
    assert matched.own == 3 and all(e.reasoning is None and e.answer == "1" for e in matched.examples[:3])
    assert [e.prompt_text for e in matched.examples[:3]] == [e.prompt_text for e in sets["gold_cot"].examples[:3]]
    assert matched.sources == {"survivors": 3, "questions": 3}
    assert all(Path(e.audio_path).is_absolute() and Path(e.audio_path).exists()
               for s in sets.values() for e in s.examples)
    assert planned_steps(TINY, sets) == 2
    derived = load_profile("tiny", {"train.max_steps": 0, "train.replay_atomic": 3, "train.batch_size": 4})
    assert planned_steps(derived, sets) == 2  # one epoch over 3 survivors + 3 replay at batch 4


def _survivor(skill: str, question: int, sample: int) -> dict:
    return {"id": f"{skill}-q{question}-s{sample}", "question_id": f"{skill}-q{question}", "skill": skill}


def test_skill_balance_subsamples_big_skills_across_questions_and_repeats_small_ones_within_a_limit():
    rows = ([_survivor("easy", q, s) for q in range(10) for s in range(6)]  # 60 traces of 10 questions
            + [_survivor("hard", q, 0) for q in range(3)]  # 3 traces
            + [_survivor("rare", 0, 0)])  # 1 trace
    chosen, report = balance_survivors(rows, target=12, max_repeat=4, seed=0)
    by_skill = {k: [r for r in chosen if r["skill"] == k] for k in ("easy", "hard", "rare")}
    assert len(by_skill["easy"]) == 12 and len({r["id"] for r in by_skill["easy"]}) == 12
    # round-robin: every one of the 10 questions keeps a trace before any keeps a third
    per_question = [sum(r["question_id"] == f"easy-q{q}" for r in by_skill["easy"]) for q in range(10)]
    assert min(per_question) >= 1 and max(per_question) == 2
    assert len(by_skill["hard"]) == 12 and {r["id"] for r in by_skill["hard"]} == {f"hard-q{q}-s0" for q in range(3)}
    assert len(by_skill["rare"]) == 4  # one trace, repeated at most max_repeat times, not up to the target
    assert report["easy"] == {"survivors": 60, "used": 12, "distinct": 12}
    assert report["rare"] == {"survivors": 1, "used": 4, "distinct": 1}
    assert balance_survivors(rows, target=12, max_repeat=4, seed=0)[0] == chosen  # seeded
    assert balance_survivors(rows, target=12, max_repeat=4, seed=1)[0] != chosen
    unchanged, report = balance_survivors(rows, target=0, max_repeat=4, seed=0)
    assert unchanged == rows and report["easy"]["used"] == 60  # 0 = off: every survivor once


def test_skill_balance_reaches_self_distill_and_gold_cot_but_not_the_other_controls(run_dir):
    balanced = load_profile("tiny", {"train.max_steps": 2, "train.replay_atomic": 3, "train.skill_target": 5,
                                     "train.skill_max_repeat": 2})
    sets = build_training_sets(balanced, run_dir, "self_distill,gold_cot,no_audit,answer_only")
    assert sets["self_distill"].own == sets["gold_cot"].own == 5  # 3 survivors, one pass more cut to the target
    assert sets["self_distill"].sources["balance"]["skills"]["count_pitch"] == {"survivors": 3, "used": 5,
                                                                                 "distinct": 3}
    assert sets["no_audit"].own == 12 and sets["no_audit"].sources["kept_by_audit"] == 3
    assert sets["answer_only"].own == 6


def test_variants_train_with_equal_steps_and_are_cached(run_dir):
    stats = run_variants(TINY, run_dir, progress=False)
    trained = stats["variants"]
    assert set(trained) == {"self_distill", "answer_only", "answer_only_matched", "no_audit", "base_cont", "gold_cot"}
    for name, summary in trained.items():
        assert summary["status"] == "trained" and summary["steps"] == 2
        folder = run_dir / STAGE / name
        assert [r["step"] for r in read_jsonl(folder / "train_log.jsonl")] == [1, 2]
        assert (folder / "adapter" / "adapter_config.json").exists() and (folder / "merged" / "config.json").exists()
    assert run_variants(TINY, run_dir, "answer_only", progress=False)["variants"]["answer_only"]["cached"]


def test_nothing_survived_the_audit_is_recorded_not_a_crash(tmp_path):
    run_dir = make_run_dir(tmp_path / "empty", survivors=False)
    stats = run_variants(TINY, run_dir, "self_distill,gold_cot,answer_only", progress=False)
    assert stats["variants"]["self_distill"]["status"] == "skipped"
    assert "survived" in stats["variants"]["self_distill"]["reason"]
    assert stats["variants"]["gold_cot"]["status"] == "skipped"
    assert stats["variants"]["answer_only"]["status"] == "trained" and stats["steps"] == 2


class CannedThinker:
    """A thinker backend that answers every question with one good trace and one wrong one (round 2 of the test
    below needs survivors, which the tiny model's babble never gives)."""

    def __init__(self, model_path):
        self.model_path = model_path

    def generate(self, requests):
        from cogito_lib.models.backends import GenerationResult

        good = f"<think>\n{THINKING}\n</think>\n\n1"
        wrong = "<think>\nI hear: loud beep\nCount: 3\nSo the answer is 3.\n</think>\n\n3"
        return [GenerationResult(r.request_id, [good, wrong][: r.num_samples]) for r in requests]


def test_later_rounds_resample_audit_and_train_in_their_own_folders(tmp_path, monkeypatch):
    """rounds=3 without merged models: round 2 merges round 1's adapter, thinks (canned: 6 good traces) and audits
    into its round folder and trains its own adapter for round 1's steps from that model; round 3 merges round 2's
    adapter and thinks with the real tiny model, whose babble does not survive: recorded, not a crash."""
    from cogito_lib.pipe import think as think_module

    run_dir = make_run_dir(tmp_path / "rounds")
    real_cot = read_jsonl(run_dir / "04-cot-generation" / "cot.jsonl")
    profile = load_profile("tiny", {"train.max_steps": 2, "train.replay_atomic": 3, "train.checkpoint_every": 2,
                                    "train.merge": False, "train.rounds": 3})
    real_backend, thinkers = think_module.thinker_backend, []

    def backend(profile_, model_path, run_dir=None):
        thinkers.append(Path(model_path))
        return CannedThinker(model_path) if "round2" in str(model_path) else real_backend(profile_, model_path,
                                                                                         run_dir)

    monkeypatch.setattr(think_module, "thinker_backend", backend)
    stats = run_variants(profile, run_dir, "self_distill", progress=False)
    stage = run_dir / STAGE
    assert thinkers == [stage / "round2" / "thinker", stage / "round3" / "thinker"]

    # round 2: the round-1 adapter merged into its base is the thinker, and the base of round-2 training
    r2 = stats["variants"]["self_distill_round2"]
    assert r2["status"] == "trained" and r2["steps"] == stats["steps"] == 2 and not r2["cached"]
    assert r2["base"] == str(stage / "round2" / "thinker") and (stage / "round2" / "thinker" / "config.json").exists()
    merged_from = read_json(stage / "round2" / "thinker" / "thinker.json")["adapter"]
    assert merged_from == str(stage / "self_distill" / "adapter")
    full = stage / "round2" / "thinker"  # a full model folder is used as it is
    assert merged_thinker(profile, full, tmp_path / "unused")[0] == full and not (tmp_path / "unused").exists()
    shadow = stage / "round2" / "run"
    for linked in (BASE_STAGE, "02-data-collection", "03-qa-construction", "cache"):
        assert (shadow / linked).is_symlink() and not os.path.isabs(os.readlink(shadow / linked))
    for own in ("04-cot-generation", "05-quality-verification"):
        assert (shadow / own).is_dir() and not (shadow / own).is_symlink()
    cot = read_jsonl(shadow / "04-cot-generation" / "cot.jsonl")
    assert len(cot) == 12 and {r["thinker"] for r in cot} == {r2["base"]}
    kept = read_jsonl(shadow / "05-quality-verification" / "train.jsonl")
    rejected = read_jsonl(shadow / "05-quality-verification" / "rejected.jsonl")
    assert len(kept) == 6 and all(r["thinking"] == THINKING for r in kept)
    assert len(rejected) == 6 and {r["reason"] for r in rejected} == {"answer_mismatch"}
    assert (shadow / "05-quality-verification" / "verdicts.jsonl").exists()
    assert read_json(shadow / "05-quality-verification" / "stats.json")["kept"] == r2["round"]["kept"] == 6
    # the round's traces are exported too, with recipes that fine-tune this round's thinker (paths in the run dir)
    exports = shadow / "05-quality-verification" / "exports"
    assert r2["round"]["exports"] == str(exports)
    swift = read_jsonl(exports / "ms-swift" / "audio_cogito.jsonl")
    assert len(swift) == 6 and swift[0]["audios"][0].startswith("02-data-collection/audio/")
    assert read_json(exports / "ms-swift" / "sft_args.json")["model"] == "../thinker"
    assert (exports / "llamafactory" / "cogito_sft.yaml").exists() and (exports / "ms-swift" / "train.sh").exists()
    folder = stage / "self_distill_round2"
    assert (folder / "adapter" / "adapter_config.json").exists() and not (folder / "merged").exists()
    assert [r["step"] for r in read_jsonl(folder / "train_log.jsonl")] == [1, 2]
    data = read_jsonl(folder / "data.jsonl")
    assert [r["source"] for r in data] == ["own"] * 6 + ["replay"] * 3
    assert read_jsonl(run_dir / "04-cot-generation" / "cot.jsonl") == real_cot  # round 1's stage 3 untouched

    # round 3: the tiny model's own traces do not survive: skipped with the reason, on disk too
    r3 = stats["variants"]["self_distill_round3"]
    assert r3["status"] == "skipped" and "survived" in r3["reason"]
    assert r3["base"] == str(stage / "round3" / "thinker") and r3["round"]["samples"] == 12
    assert r3["round"]["kept"] == 0 and r3["round"]["rejected_by_reason"]
    assert read_json(stage / "self_distill_round3" / "summary.json")["reason"] == r3["reason"]
    assert read_jsonl(stage / "round3" / "run" / "05-quality-verification" / "train.jsonl") == []
    assert read_json(stage / "stats.json")["variants"]["self_distill_round3"]["status"] == "skipped"

    # again: nothing is resampled, re-audited or retrained
    again = next_round(profile, run_dir, 2, stage / "self_distill" / "adapter", progress=False)
    assert again["cached"] and again["fingerprint"] == r2["fingerprint"] and len(thinkers) == 2

    # moved elsewhere (the old place gone), the run dir still reuses every variant, round and sample
    moved = tmp_path / "elsewhere" / "rounds"
    moved.parent.mkdir()
    shutil.move(str(run_dir), str(moved))
    stats = run_variants(profile, moved, "self_distill", progress=False)
    assert len(thinkers) == 2, "a moved run dir must not sample again"
    for name in ("self_distill", "self_distill_round2"):
        summary = stats["variants"][name]
        assert summary["cached"] and summary["adapter"] == str(moved / STAGE / name / "adapter")
    assert stats["variants"]["self_distill_round2"]["base"] == str(moved / STAGE / "round2" / "thinker")
    from cogito_lib.exports import validate_ms_swift

    moved_shadow = moved / STAGE / "round2" / "run"
    assert validate_ms_swift(moved_shadow / "05-quality-verification" / "exports" / "ms-swift" / "audio_cogito.jsonl",
                             media_root=moved_shadow) == []
    assert stats["variants"]["self_distill_round3"]["status"] == "skipped"


def test_with_later_rounds_the_controls_train_every_round_s_steps(tmp_path):
    """rounds=2: round 1 of self_distill trains max_steps; a control trains 2 x max_steps (the compute of both
    rounds); `later_rounds=False` (the parallel launcher's subprocesses) leaves round 2 to a later call."""
    run_dir = make_run_dir(tmp_path / "equal")
    profile = load_profile("tiny", {"train.max_steps": 2, "train.replay_atomic": 3, "train.checkpoint_every": 0,
                                    "train.merge": False, "train.rounds": 2})
    stats = run_variants(profile, run_dir, ["self_distill", "base_cont"], later_rounds=False, progress=False)
    assert stats["steps"] == 2 and stats["control_steps"] == 4
    assert stats["variants"]["self_distill"]["steps"] == 2 and stats["variants"]["base_cont"]["steps"] == 4
    assert "self_distill_round2" not in stats["variants"] and not (run_dir / STAGE / "round2").exists()
    assert len(read_jsonl(run_dir / STAGE / "base_cont" / "train_log.jsonl")) == 4


def test_matched_controls_use_every_round_s_survivors_and_wait_for_the_last_round(tmp_path):
    """With rounds=2, gold_cot and answer_only_matched are built from the survivors of rounds 1 and 2 (what the
    final model trained on), and a call that does not run the rounds leaves them waiting rather than training them
    on round 1 alone; replay never draws the base's composite chains."""
    from cogito_lib.distill import matched_survivors, round_survivors_path

    run_dir = make_run_dir(tmp_path / "matched")
    pretrain = read_jsonl(run_dir / BASE_STAGE / "pretrain-questions.jsonl")
    chain = dict(pretrain[0], id="chain", tier="composite")
    write_jsonl(run_dir / BASE_STAGE / "pretrain-questions.jsonl", pretrain + [chain] * 20)
    profile = load_profile("tiny", {"train.max_steps": 2, "train.replay_atomic": 8, "train.checkpoint_every": 0,
                                    "train.merge": False, "train.rounds": 2})
    stats = run_variants(profile, run_dir, ["base_cont", "gold_cot", "answer_only_matched"], later_rounds=False,
                         progress=False)
    for name in ("gold_cot", "answer_only_matched"):
        assert stats["variants"][name]["status"] == "waiting" and not (run_dir / STAGE / name).exists()
    replayed = read_jsonl(run_dir / STAGE / "base_cont" / "data.jsonl")
    assert sum(r["source"] == "replay" for r in replayed) == 8
    assert all(r["prompt_text"] for r in replayed) and len(replayed) == 8 + 28  # base_cont keeps the chains

    round1 = read_jsonl(run_dir / "05-quality-verification" / "train.jsonl")
    second = [dict(r, id=r["id"] + "-r2", question_id="q4") for r in round1[:2]]
    write_jsonl(round_survivors_path(run_dir, 2), second)
    assert [r["id"] for r in matched_survivors(run_dir, 2)] == [r["id"] for r in round1 + second]
    inputs = load_inputs(run_dir, rounds=2)
    sets = build_training_sets(profile, run_dir, "self_distill,gold_cot,answer_only_matched", inputs=inputs)
    assert sets["self_distill"].own == 3  # round 1 trains on round 1's survivors only
    assert sets["gold_cot"].own == sets["answer_only_matched"].own == 5
    assert sets["answer_only_matched"].sources["questions"] == 4
    # with every round's survivors on disk, a later call trains them, for the compute of both rounds
    stats = run_variants(profile, run_dir, ["answer_only_matched"], progress=False)
    assert stats["variants"]["answer_only_matched"]["status"] == "trained"
    assert stats["variants"]["answer_only_matched"]["steps"] == 4 and stats["variants"]["answer_only_matched"]["own"] == 5


KILLER = """
import os, signal, sys
from cogito_lib import io
from cogito_lib.train.__main__ import main
append = io.JsonlJournal.append
def append_then_die(self, row):
    append(self, row)
    if row.get("step") == int(os.environ["KILL_AT_STEP"]):
        os.kill(os.getpid(), signal.SIGKILL)
io.JsonlJournal.append = append_then_die
sys.exit(main(sys.argv[1:]))
"""


def _adapter(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter" / "adapter_model.safetensors"))


def test_resume_after_kill_equals_an_uninterrupted_run_and_logs_each_step_once(run_dir, tmp_path):
    args = ["--profile", "tiny", "--variant", "answer_only", "--max-steps", "7", "--threads", "1", "--no-progress",
            "--set", "train.checkpoint_every=2", "--set", "train.replay_atomic=3", "--set", "train.merge=false"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    fresh, killed = tmp_path / "fresh", tmp_path / "killed"
    for target in (fresh, killed):
        shutil.copytree(run_dir, target, ignore=shutil.ignore_patterns(STAGE), symlinks=True)
    done = subprocess.run([sys.executable, "-m", "cogito_lib.train", "--run-dir", str(fresh), *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "answer_only: trained steps=7" in done.stdout
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    died = subprocess.run([sys.executable, str(script), "--run-dir", str(killed), *args], cwd=ROOT,
                          env={**env, "KILL_AT_STEP": "5"}, capture_output=True, text=True, timeout=120)
    assert died.returncode == -9  # killed after logging step 5; the checkpoint holds step 4
    folder = killed / STAGE / "answer_only"
    assert [r["step"] for r in read_jsonl(folder / "train_log.jsonl")] == [1, 2, 3, 4, 5]
    assert not (folder / "adapter").exists()
    again = subprocess.run([sys.executable, "-m", "cogito_lib.train", "--run-dir", str(killed), *args], cwd=ROOT,
                           env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr[-2000:]
    assert read_json(folder / "summary.json")["resumed"]
    assert [r["step"] for r in read_jsonl(folder / "train_log.jsonl")] == list(range(1, 8))
    a, b = _adapter(fresh / STAGE / "answer_only"), _adapter(folder)
    assert a.keys() == b.keys() and a
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6
    fresh_log = read_jsonl(fresh / STAGE / "answer_only" / "train_log.jsonl")
    assert [r["loss"] for r in fresh_log] == [r["loss"] for r in read_jsonl(folder / "train_log.jsonl")]


def test_cli_rejects_an_unknown_variant(run_dir):
    done = subprocess.run([sys.executable, "-m", "cogito_lib.train", "--profile", "tiny", "--run-dir", str(run_dir),
                           "--variant", "nonsense"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "invalid choice" in done.stderr


def test_parallel_variants_get_the_whole_profile_and_self_distill_keeps_its_rounds(tmp_path, monkeypatch):
    import cogito_lib.distill as distill

    started = []

    class Done:
        returncode = 0

        def __init__(self, cmd, **kwargs):
            started.append(cmd)

        def poll(self):
            return 0

    monkeypatch.setattr(distill.subprocess, "Popen", Done)
    profile = load_profile("tiny", {"train.seed": 20000, "base.world_seed": 21001, "train.rounds": 2})
    codes = distill.launch_parallel(profile, tmp_path, ["answer_only", "self_distill", "base_cont"], processes=2)
    assert codes == {"self_distill": 0, "answer_only": 0, "base_cont": 0}
    assert [cmd[cmd.index("--variant") + 1] for cmd in started] == ["self_distill", "answer_only", "base_cont"]
    for cmd in started:
        sets = {cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--set"}
        assert {"train.seed=20000", "base.world_seed=21001", "train.rounds=2"} <= sets
        assert ("--first-round-only" in cmd) == (cmd[cmd.index("--variant") + 1] != "self_distill")


def test_parallel_matched_controls_start_after_self_distill_s_rounds(tmp_path, monkeypatch):
    """With later rounds, gold_cot and answer_only_matched need every round's survivors: the launcher starts them
    only once self_distill's process (which runs the rounds) has ended, and lets them train (no first-round-only)."""
    import cogito_lib.distill as distill

    from cogito_lib.io import LOCK_TOKEN_ENV

    events, tokens = [], []

    class Proc:
        def __init__(self, cmd, **kwargs):
            self.name = cmd[cmd.index("--variant") + 1]
            self.cmd, self.polls, self.returncode = cmd, 0, None
            events.append(("start", self.name, "--first-round-only" in cmd))
            tokens.append(kwargs["env"].get(LOCK_TOKEN_ENV))

        def poll(self):
            self.polls += 1
            if self.polls < (3 if self.name == "self_distill" else 1):
                return None
            if ("end", self.name) not in events:
                events.append(("end", self.name))
            self.returncode = 0
            return 0

    monkeypatch.setattr(distill.subprocess, "Popen", Proc)
    monkeypatch.setattr(distill.time, "sleep", lambda s: None)
    profile = load_profile("tiny", {"train.rounds": 3})
    names = ["gold_cot", "answer_only", "self_distill", "answer_only_matched", "base_cont"]
    codes = distill.launch_parallel(profile, tmp_path, names, processes=2)
    assert set(codes) == set(names)
    end = events.index(("end", "self_distill"))
    for name in ("gold_cot", "answer_only_matched"):
        assert events.index(("start", name, False)) > end
    assert ("start", "answer_only", True) in events and ("start", "self_distill", False) in events
    # every worker writes 06 under the launcher's lock, which is gone once all have ended
    assert len(tokens) == len(names) and len(set(tokens)) == 1 and tokens[0]
    assert not lock_path(tmp_path, STAGE).exists()
    # one round: nothing waits
    events.clear()
    distill.launch_parallel(load_profile("tiny"), tmp_path, names, processes=2)
    assert ("start", "gold_cot", True) in events and ("start", "answer_only_matched", True) in events
