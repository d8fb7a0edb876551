"""Stage 2 (QA construction): seed pool, metadata and LLM annotators, resumability, bad inputs, CLI."""
import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cogito_lib.world import skills
from cogito_lib.config import ConfigError, load_profile, resolve_data_path
from cogito_lib.io import read_json, read_jsonl
from cogito_lib.mmar.rule import CATEGORIES, MODALITIES
from cogito_lib.layout import StageFailed
from cogito_lib.pipe import annotate as A
from cogito_lib.world import collect

ROOT = Path(__file__).resolve().parents[1]
TINY = load_profile("tiny")
OUTPUTS = ("qa.jsonl", "rejected.jsonl", A.JOURNAL)
TIMING = ("wall_s", "questions_per_s", "clips_per_s", "resumed", "num_questions_this_run")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A stage-1 folder of 14 tiny clips (all 7 modality classes), made once and copied per test."""
    run_dir = tmp_path_factory.mktemp("world")
    collect(TINY, run_dir, num_clips=14, progress=False)
    return run_dir / A.MANIFEST_STAGE


@pytest.fixture
def run_dir(world, tmp_path):
    shutil.copytree(world, tmp_path / "run" / A.MANIFEST_STAGE)
    return tmp_path / "run"


def _copy_run(world, path):
    shutil.copytree(world, path / A.MANIFEST_STAGE)
    return path


def _stage(run_dir):
    return run_dir / A.STAGE_DIR


def _files(run_dir):
    return {name: (_stage(run_dir) / name).read_bytes() for name in OUTPUTS}


def _stats_without_timing(run_dir):
    return {k: v for k, v in read_json(_stage(run_dir) / "stats.json").items() if k not in TIMING}


# ------------------------------------------------------------------------------------------------ seed pool
def test_seed_pool_is_valid_and_covers_every_layer_and_modality():
    seeds = A.load_seed_pool(resolve_data_path(TINY.annotate.seed_pool))
    assert len(seeds) >= 60
    cells = collections.Counter((s["category"], s["modality"]) for s in seeds)
    assert all(cells[(c, m)] >= 1 for c in CATEGORIES for m in MODALITIES), A.seed_coverage(seeds)
    named = {s["skill"] for s in seeds}
    assert set(skills.skills_of("composite")) <= named  # every composite template has an exemplar
    assert None in named  # and some seeds only an LLM annotator can use
    for seed in seeds:
        assert seed["answer"] in seed["choices"] and 2 <= len(seed["choices"]) <= 5
    assert len({s["id"] for s in seeds}) == len(seeds)


def test_the_held_out_tier_is_never_annotated_and_has_no_seeds():
    seeds = A.load_seed_pool(resolve_data_path(TINY.annotate.seed_pool))
    held_out = set(skills.skills_of("heldout"))
    assert held_out and not any(s["skill"] in held_out or s["tier"] == "heldout" for s in seeds)
    with pytest.raises(ConfigError, match="held-out"):
        A.MetadataAnnotator(seeds, tiers=("composite", "heldout"))


def test_bad_seed_lines_are_reported_with_file_and_line(tmp_path):
    good = {"id": "s1", "question": "Is the beat fast or slow?", "choices": ["fast", "slow"], "answer": "fast",
            "modality": "music", "category": "Perception Layer", "sub-category": "Temporal Analysis",
            "tier": "atomic", "skill": "tempo"}
    lines = [json.dumps(good), "{not json", json.dumps(dict(good, id="s2", answer="medium")),
             json.dumps(dict(good, id="s3", category="Signal Layer")), json.dumps(dict(good, id="s4", skill="nope"))]
    path = tmp_path / "seeds.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(A.SeedPoolError) as err:
        A.load_seed_pool(path)
    message = str(err.value)
    for number in (2, 3, 4, 5):
        assert f"{path}:{number}:" in message
    assert f"{path}:1:" not in message
    with pytest.raises(A.SeedPoolError, match="not found"):
        A.load_seed_pool(tmp_path / "missing.jsonl")


def test_question_problem_reasons():
    ok = {"question": "q?", "choices": ["a", "b"], "answer": "a", "category": "Signal", "sub-category": "x"}
    assert A.question_problem(ok) is None
    assert A.question_problem(dict(ok, answer="c"))[0] == "answer_not_in_choices"
    assert A.question_problem(dict(ok, choices=["a"], answer="a"))[0] == "bad_choices"
    assert A.question_problem(dict(ok, choices=list("abcdef")))[0] == "bad_choices"
    assert A.question_problem(dict(ok, choices=["a", "A"]))[0] == "bad_choices"
    assert A.question_problem(dict(ok, category="Vibes Layer"))[0] == "unknown_category"
    assert A.question_problem({k: v for k, v in ok.items() if k != "sub-category"})[0] == "missing_field"
    assert A.question_problem(["not", "a", "dict"])[0] == "bad_schema"


# ------------------------------------------------------------------------------------------------ metadata annotator
def test_metadata_annotator_writes_composite_labels_only(run_dir):
    stats = A.annotate(TINY, run_dir, progress=False)
    questions = read_jsonl(_stage(run_dir) / "qa.jsonl")
    manifest = read_jsonl(run_dir / A.MANIFEST_STAGE / "manifest.jsonl")
    assert stats["num_clips"] == len(manifest) == 14
    assert stats["num_questions"] == len(questions) > 0
    per_clip = collections.Counter(q["clip_id"] for q in questions)
    assert all(TINY.annotate.min_questions_per_clip <= n <= TINY.annotate.max_questions_per_clip
               for n in per_clip.values())
    assert stats["num_clips_annotated"] + stats["num_clips_skipped"] == 14
    assert len({q["id"] for q in questions}) == len(questions)
    for q in questions:
        assert "thinking" not in q  # the annotator gives labels, never gold reasoning
        assert q["tier"] == "composite" and q["skill"] in skills.skills_of("composite") and not q["fallback"]
        assert q["answer"] in q["choices"] and len(set(q["choices"])) == len(q["choices"]) >= 2
        assert q["category"] in CATEGORIES and q["modality"] in MODALITIES
        assert q["annotator"] == "metadata" and len(q["seed_ids"]) == 1
        assert q["audio_path"].startswith("02-data-collection/audio/") and (run_dir / q["audio_path"]).is_file()
        assert q["listing"] and q["steps"]  # kept for the stage-4 metadata judge
    # clips no composite skill fits (music-only, speech-only) are skipped with a counted reason
    skipped = read_jsonl(_stage(run_dir) / "rejected.jsonl")
    assert {r["reason"] for r in skipped} == {"no_supported_skill"}
    assert stats["rejections_by_reason"]["no_supported_skill"] == stats["num_clips_skipped"]
    assert {m for m in ("music", "speech")} <= {c["modality"] for c in manifest if c["clip_id"] not in per_clip}
    assert stats["questions_by_tier"] == {"atomic": 0, "composite": len(questions)}
    assert stats["questions_per_s"] > 0


def test_metadata_annotator_is_deterministic_per_clip_and_seed(world, tmp_path):
    first, second = _copy_run(world, tmp_path / "a"), _copy_run(world, tmp_path / "b")
    A.annotate(TINY, first, progress=False)
    A.annotate(TINY, second, progress=False)
    assert _files(first) == _files(second)
    # the same clip and seed give the same questions, whatever else is in the manifest
    seeds = A.load_seed_pool(resolve_data_path(TINY.annotate.seed_pool))
    annotator = A.MetadataAnnotator(seeds, num_seed_questions=20, seed=3)
    clip = next(c for c in read_jsonl(world / "manifest.jsonl") if c["modality"] == "mix-sound-speech")
    one = annotator.annotate(clip, A.clip_rng(clip["clip_id"], 3)).questions
    two = annotator.annotate(clip, A.clip_rng(clip["clip_id"], 3)).questions
    assert one == two and one
    assert all(q["seed_ids"][0] in {s["id"] for s in annotator.pool} for q in one)


def test_atomic_fallback_is_flagged(run_dir):
    skipped = A.annotate(TINY, run_dir, progress=False)["num_clips_skipped"]
    stats = A.annotate(TINY, run_dir, fallback="atomic", progress=False)
    questions = read_jsonl(_stage(run_dir) / "qa.jsonl")
    fallback = [q for q in questions if q["fallback"]]
    assert fallback and all(q["tier"] == "atomic" for q in fallback)
    assert all(q["tier"] == "composite" for q in questions if not q["fallback"])
    assert {q["modality"] for q in fallback} >= {"music", "speech"}
    assert stats["num_fallback_questions"] == len(fallback)
    assert stats["num_clips_skipped"] < skipped
    assert stats["rejections_by_reason"].get("no_supported_skill", 0) == stats["num_clips_skipped"]


def test_settings_change_the_fingerprint_and_nothing_stale_is_reused(run_dir):
    composite = A.annotate(TINY, run_dir, progress=False)
    mixed = A.annotate(TINY, run_dir, tiers=("composite", "atomic"), progress=False)
    assert composite["fingerprint"] != mixed["fingerprint"] and mixed["resumed"] == 0
    assert mixed["questions_by_tier"]["atomic"] > 0
    assert len(read_jsonl(_stage(run_dir) / A.JOURNAL)) == 14  # compacted to the current run
    with pytest.raises(Exception, match="tiers"):
        A.annotate(TINY, run_dir, tiers=("hard",), progress=False)


# ------------------------------------------------------------------------------------------------ resumability
KILLER = textwrap.dedent("""
    import os, signal, sys
    from cogito_lib.config import load_profile
    from cogito_lib.pipe import annotate as A

    calls = {"n": 0}
    original = A.MetadataAnnotator.annotate

    def annotate_then_die(self, clip, rng, audio_file=None):
        calls["n"] += 1
        if calls["n"] == int(sys.argv[2]):
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, clip, rng, audio_file)

    A.MetadataAnnotator.annotate = annotate_then_die
    A.annotate(load_profile("tiny"), sys.argv[1], progress=False)
""")


def test_kill_9_mid_stage_then_rerun_gives_the_same_files(world, tmp_path):
    reference, killed = _copy_run(world, tmp_path / "ref"), _copy_run(world, tmp_path / "killed")
    A.annotate(TINY, reference, progress=False)
    proc = subprocess.run([sys.executable, "-c", KILLER, str(killed), "6"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert len(read_jsonl(_stage(killed) / A.JOURNAL)) == 5
    assert not (_stage(killed) / "qa.jsonl").exists()
    stats = A.annotate(TINY, killed, progress=False)
    assert stats["resumed"] == 5
    assert _files(killed) == _files(reference)
    assert _stats_without_timing(killed) == _stats_without_timing(reference)


def test_torn_journal_line_is_redone(world, tmp_path):
    reference, torn = _copy_run(world, tmp_path / "ref"), _copy_run(world, tmp_path / "torn")
    A.annotate(TINY, reference, progress=False)
    A.annotate(TINY, torn, progress=False)
    journal = _stage(torn) / A.JOURNAL
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(b"".join(lines[:7]) + lines[7][: len(lines[7]) // 2])  # killed mid-append
    for name in ("qa.jsonl", "rejected.jsonl", "stats.json"):
        (_stage(torn) / name).unlink()
    stats = A.annotate(TINY, torn, progress=False)
    assert stats["resumed"] == 7
    assert _files(torn) == _files(reference)
    # a journal damaged in the middle is not trusted at all: everything is redone, with the same result
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(b"".join(lines[:2]) + b"#garbage#\n" + b"".join(lines[3:]))
    assert A.annotate(TINY, torn, progress=False)["resumed"] == 0
    assert _files(torn) == _files(reference)


# ------------------------------------------------------------------------------------------------ bad input
def test_bad_inputs_are_counted_never_fatal(run_dir):
    stage1 = run_dir / A.MANIFEST_STAGE
    manifest = read_jsonl(stage1 / "manifest.jsonl")
    by_modality = {}
    for clip in manifest:
        by_modality.setdefault(clip["modality"], []).append(clip)
    missing, corrupt, empty, odd = (by_modality["mix-sound-speech"][0], by_modality["mix-sound-music"][0],
                                    by_modality["sound"][0], by_modality["mix-music-speech"][0])
    moved = run_dir / "moved.wav"
    shutil.move(stage1 / missing["audio_path"], moved)
    (stage1 / corrupt["audio_path"]).write_bytes(b"RIFF\x00\x00garbage, not a wav")
    empty.update(events=[], facts={})
    odd.update(modality="mix-everything")
    lines = [json.dumps(c) for c in manifest]
    lines.insert(3, '{"clip_id": "torn')
    (stage1 / "manifest.jsonl").write_text("\n".join(lines) + "\n")

    stats = A.annotate(TINY, run_dir, progress=False)
    reasons = stats["rejections_by_reason"]
    for reason in ("audio_missing", "audio_unreadable", "empty_metadata", "bad_clip_record", "manifest_line_invalid"):
        assert reasons.get(reason) == 1, reasons
    questions = read_jsonl(_stage(run_dir) / "qa.jsonl")
    bad_ids = {missing["clip_id"], corrupt["clip_id"], empty["clip_id"], odd["clip_id"]}
    assert not bad_ids & {q["clip_id"] for q in questions}
    assert stats["num_clips_annotated"] > 0
    rejected = read_jsonl(_stage(run_dir) / "rejected.jsonl")
    assert all({"clip_id", "reason", "detail"} <= set(r) for r in rejected)

    # a missing wav is an input problem a rerun may fix: it is not journalled, so the next run retries it
    shutil.move(moved, stage1 / missing["audio_path"])
    again = A.annotate(TINY, run_dir, progress=False)
    assert "audio_missing" not in again["rejections_by_reason"]
    assert again["resumed"] == 14 - 3  # all but the missing wav, the corrupt wav and the bad record
    assert [q for q in read_jsonl(_stage(run_dir) / "qa.jsonl") if q["clip_id"] == missing["clip_id"]]


def test_an_annotator_exception_is_rejected_and_retried(run_dir):
    seeds = A.load_seed_pool(resolve_data_path(TINY.annotate.seed_pool))

    class Flaky(A.MetadataAnnotator):
        def annotate(self, clip, rng, audio_file=None):
            if clip["modality"] == "sound":
                raise RuntimeError("boom")
            return super().annotate(clip, rng, audio_file)

    stats = A.annotate(TINY, run_dir, annotator=Flaky(seeds, num_seed_questions=20, seed=11), progress=False)
    assert stats["rejections_by_reason"]["annotator_error"] == 2
    assert stats["num_questions"] > 0


def test_missing_manifest_says_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}/02-data-collection/manifest.jsonl not found: run "
                                                r"notebook 02 \(or `python -m cogito_lib.pipe collect`\) first"):
        A.annotate(TINY, tmp_path, progress=False)


# ------------------------------------------------------------------------------------------------ LLM annotator
def _reply(*questions, think=False, fence=False):
    text = json.dumps({"questions": list(questions)})
    if fence:
        text = f"```json\n{text}\n```"
    return f"<think>\nLet me listen.\n</think>\n\n{text}" if think else text


def _q(question="How many loud sounds come before the voice?", choices=("1", "2", "3", "0"), answer="2",
       category="Signal Layer", sub="Acoustic Quality Analysis"):
    return {"question": question, "choices": list(choices), "answer": answer, "category": category,
            "sub-category": sub}


class FakeResult:
    def __init__(self, text):
        self.texts = [text]


class FakeBackend:
    """Stands in for HF / vLLM / OpenAI: canned replies by clip position, and records every request."""

    name = "fake"

    def __init__(self, replies):
        self.replies, self.requests = replies, []

    def generate(self, requests):
        self.requests += requests
        return [FakeResult(self.replies(r.request_id)) for r in requests]


def test_llm_annotator_parses_validates_and_rejects_with_reasons(run_dir):
    manifest = read_jsonl(run_dir / A.MANIFEST_STAGE / "manifest.jsonl")
    position = {c["clip_id"]: i for i, c in enumerate(manifest)}
    canned = {
        0: _reply(_q(), _q("Is the loudest sound first?", ["yes", "no"], "no", "Signal", "Audio Difference Analysis"),
                  think=True, fence=True),
        1: "Sure! Here are your questions: question 1 ...",  # no JSON at all
        2: '{"questions": [{"question": "broken", ',  # torn JSON
        3: _reply(_q(answer="7")),  # answer not among choices
        4: _reply(_q(choices=["1"], answer="1")),  # too few choices
        5: _reply(_q(category="Vibes Layer")),  # unknown category
        6: _reply(_q(), _q()),  # a duplicate
        7: _reply(*[_q(f"Question {i}?") for i in range(5)]),  # more than max_questions (3)
        8: json.dumps({"items": []}),  # wrong schema
    }
    backend = FakeBackend(lambda clip_id: canned.get(position[clip_id], _reply(_q())))
    seeds = A.load_seed_pool(resolve_data_path(TINY.annotate.seed_pool))
    annotator = A.LLMAnnotator(backend, seeds, model="fake-omni", num_seed_questions=30, num_shots=4, batch_size=4,
                               seed=11)
    stats = A.annotate(TINY, run_dir, annotator=annotator, progress=False)
    reasons = stats["rejections_by_reason"]
    assert reasons == {"malformed_json": 2, "answer_not_in_choices": 1, "bad_choices": 1, "unknown_category": 1,
                       "duplicate_question": 1, "over_max_questions": 2, "bad_schema": 1}
    questions = read_jsonl(_stage(run_dir) / "qa.jsonl")
    assert stats["num_questions"] == len(questions) == 2 + 1 + 3 + (14 - 9)
    for q in questions:
        assert q["annotator"] == "llm" and q["listing"] is None and q["steps"] is None and q["skill"] is None
        assert "thinking" not in q and q["answer"] in q["choices"] and q["tier"] == "composite"
        assert len(q["seed_ids"]) == 4 and q["category"] in CATEGORIES
        assert q["audio_path"].startswith("02-data-collection/audio/")
    first = [q for q in questions if q["clip_id"] == manifest[0]["clip_id"]]
    assert {q["category"] for q in first} == {"Signal Layer"}  # "Signal" normalised to MMAR's name
    # the prompt carries the audio, the clip's metadata and the seeds; requests are batched
    request = backend.requests[0]
    assert Path(request.audio_path).is_file()
    user = request.messages[-1]["content"]
    assert user[0]["type"] == "audio"
    prompt = user[-1]["text"]
    assert manifest[0]["caption"] in prompt and '"questions"' in prompt
    shot_ids = set(first[0]["seed_ids"])
    assert sum(s["question"] in prompt for s in seeds if s["id"] in shot_ids) == 4
    assert len(backend.requests) == 14


def test_profile_picks_the_annotator(tmp_path):
    assert isinstance(A.make_annotator(TINY, tmp_path), A.MetadataAnnotator)
    paper_like = load_profile("tiny", {"models.annotator": "Qwen/Qwen3-Omni-30B-A3B-Instruct"})
    llm = A.make_annotator(paper_like, tmp_path, backend=FakeBackend(lambda _: ""))
    assert isinstance(llm, A.LLMAnnotator) and llm.describe()["model"] == "Qwen/Qwen3-Omni-30B-A3B-Instruct"
    assert isinstance(llm, A.Annotator) and isinstance(A.make_annotator(TINY, tmp_path), A.Annotator)


def test_llm_backend_failure_is_transient(run_dir):
    class Down:
        name = "down"

        def generate(self, requests):
            raise ConnectionError("endpoint unreachable")

    seeds = A.load_seed_pool(resolve_data_path(TINY.annotate.seed_pool))
    with pytest.raises(StageFailed, match="every annotator request failed.*backend_error 14"):  # not a silent 0
        A.annotate(TINY, run_dir, annotator=A.LLMAnnotator(Down(), seeds, seed=11), progress=False)
    assert read_jsonl(_stage(run_dir) / A.JOURNAL) == []  # nothing journalled: the next run asks again
    up = FakeBackend(lambda clip_id: _reply(_q()))
    again = A.annotate(TINY, run_dir, annotator=A.LLMAnnotator(up, seeds, seed=11), progress=False)
    assert again["num_questions"] == 14 and again["num_rejections"] == 0


# ------------------------------------------------------------------------------------------------ CLI and views
def _cli(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "cogito_lib.pipe", "annotate", *args], cwd=ROOT,
                          capture_output=True, text=True, env=env, timeout=120)


def test_cli_annotates_and_reports_a_missing_manifest(run_dir, tmp_path):
    proc = _cli("--profile", "tiny", "--run-dir", str(run_dir), "--no-progress", "--fallback", "atomic",
                "--max-questions", "2")
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(proc.stdout)
    assert stats["num_questions"] == len(read_jsonl(_stage(run_dir) / "qa.jsonl")) > 0
    assert stats["settings"]["max_questions"] == 2 and stats["settings"]["fallback"] == "atomic"
    assert max(collections.Counter(q["clip_id"] for q in read_jsonl(_stage(run_dir) / "qa.jsonl")).values()) <= 2
    missing = _cli("--profile", "tiny", "--run-dir", str(tmp_path / "empty"), "--no-progress")
    assert missing.returncode == 2
    assert f"{tmp_path / 'empty'}/02-data-collection/manifest.jsonl not found: run notebook 02" in missing.stderr


def test_plot_helpers_and_tables(run_dir, tmp_path):
    A.annotate(TINY, run_dir, fallback="atomic", progress=False)
    questions = read_jsonl(_stage(run_dir) / "qa.jsonl")
    A.plot_questions_by_skill(questions, save_as=tmp_path / "skill.png")
    A.plot_category_by_modality(questions, save_as=tmp_path / "grid.png")
    assert (tmp_path / "skill.png").stat().st_size > 1000 and (tmp_path / "grid.png").stat().st_size > 1000
    table = A.rejections_table([{"clip_id": "c", "reason": "audio_missing", "detail": "gone"}])
    assert table.iloc[0]["count"] == 1 and table.iloc[0]["meaning"]
    import html

    from cogito_lib.widgets import question_examples

    view = question_examples(questions, run_dir, n=3)
    assert len(view.widget.children) == 3
    assert view.static_html().count("<audio controls") == 3 and html.escape(questions[0]["question"]) in view.static_html()
