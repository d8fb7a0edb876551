"""Questions, gold reasoning and the metadata judge, built from real world clips."""
import numpy as np
import pytest

from cogito_lib.world import skills
from cogito_lib.config import load_profile
from cogito_lib.judges import MetadataRubricJudge, MetadataTraceJudge
from cogito_lib.mmar import is_correct
from cogito_lib.world import generate_clip

WORLD = load_profile("tiny").world


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    cache = tmp_path_factory.mktemp("tts")
    out = []
    for index in range(84):  # enough for every composite and held-out type to appear
        _, meta = generate_clip(WORLD, 5, index, "test", tts_cache=cache)
        out.append(meta)
    return out


@pytest.fixture(scope="module")
def questions(clips):
    rng = np.random.default_rng(0)
    out = []
    for clip in clips:
        for skill in skills.SKILLS:
            q = skills.make_question(clip, skill, rng)
            if q is not None:
                q["rubric"] = skills.rubric_for(q)
                out.append((clip, q))
    return out


def test_every_tier_and_many_skills_are_covered(questions):
    names = {q["skill"] for _, q in questions}
    assert {skills.SKILLS[s].tier for s in names} == set(skills.TIERS) == {"atomic", "composite", "heldout"}
    assert len(names) >= 12


@pytest.fixture(scope="module")
def chain_questions(clips):
    rng = np.random.default_rng(1)
    out = []
    for clip in clips:
        for name in skills.skills_of("composite") + skills.skills_of("heldout"):
            q = skills.make_question(clip, name, rng)
            if q is not None:
                out.append((clip, q))
    return out


def test_every_composite_and_held_out_type_is_answerable_by_chaining_its_steps(chain_questions):
    """The reference reasoning of every type passes the judge and MMAR's official rule, and its answer is a
    function of the chain's step values: a model that writes the steps right can always answer."""
    judge = MetadataTraceJudge()
    seen, answer_of = set(), {}
    for clip, q in chain_questions:
        parsed = skills.parse_reasoning(q["thinking"])
        assert judge.verify(q, q["thinking"], parsed.conclusion, clip=clip).ok, q["skill"]
        assert is_correct(parsed.conclusion, q["answer"], q["choices"]), (q["skill"], parsed.conclusion)
        key = (q["skill"], tuple(map(tuple, q["steps"])))
        assert answer_of.setdefault(key, q["answer"]) == q["answer"], key
        seen.add(q["skill"])
    assert seen == set(skills.skills_of("composite") + skills.skills_of("heldout"))


def test_yes_no_and_comparison_conclusions_are_stated_as_steps(chain_questions):
    for _, q in chain_questions:
        steps = dict(map(tuple, q["steps"]))
        if q["answer"] in ("yes", "no"):
            assert steps.get("Same") == q["answer"], q["skill"]
        if q["skill"] == "more_high_or_low":
            assert steps["More"] == q["answer"]


def test_held_out_types_chain_only_steps_that_training_teaches(clips):
    """Every step key of a held-out chain is a step the atomic skills or the composite tier's conclusions teach,
    and no held-out type shares its wording with a trained one."""
    taught, used, wording = set(), {}, {"trained": set(), "heldout": set()}
    rng = np.random.default_rng(2)
    for clip in clips:
        for name, skill in skills.SKILLS.items():
            q = skills.make_question(clip, name, rng)
            if q is None:
                continue
            keys = {step[0] for step in q["steps"]}
            if skill.tier == "heldout":
                used.setdefault(name, set()).update(keys)
                wording["heldout"].add(q["question"])
            else:
                taught |= keys
                wording["trained"].add(q["question"])
    assert set(used) == set(skills.skills_of("heldout"))
    for name, keys in used.items():
        assert keys <= taught, (name, keys - taught)
    assert not wording["heldout"] & wording["trained"]


def test_questions_are_mmar_shaped_and_the_answer_is_a_choice(questions):
    for clip, q in questions:
        assert q["answer"] in q["choices"] and len(set(q["choices"])) == len(q["choices"]) >= 2
        assert all(type(c) is str for c in q["choices"])
        assert q["category"].endswith(" Layer") and q["sub-category"]
        assert q["modality"] == clip["modality"]
        # the official matching rule accepts the answer and rejects every other choice
        assert is_correct(q["answer"], q["answer"], q["choices"])
        for other in q["choices"]:
            if other != q["answer"] and not set(other.lower().split()) <= set(q["answer"].lower().split()):
                assert not is_correct(other, q["answer"], q["choices"]), (q["question"], other)


def test_question_ids_are_stable(clips):
    a = skills.make_question(clips[0], "count", np.random.default_rng(3))
    b = skills.make_question(clips[0], "count", np.random.default_rng(3))
    assert a == b


def test_count_distractors_are_off_by_one(clips):
    clip = next(c for c in clips if "event_count" in c["facts"])
    q = skills.make_question(clip, "count", np.random.default_rng(0))
    n = clip["facts"]["event_count"]
    assert q["answer"] == str(n) and str(n + 1) in q["choices"]


def test_gold_reasoning_parses_and_passes_the_judge(questions):
    judge = MetadataTraceJudge()
    for clip, q in questions:
        parsed = skills.parse_reasoning(q["thinking"])
        assert parsed.listing == q["listing"] == skills.listing(clip)
        assert parsed.conclusion == q["answer"]
        verdict = judge.verify(q, q["thinking"], q["answer"], clip=clip)
        assert verdict.ok, (q["skill"], verdict)
        assert MetadataRubricJudge().score(q, q["thinking"], q["answer"]) == [1, 1, 1, 1, 1]


def test_judge_rejects_hallucinations_skipped_steps_and_inconsistent_conclusions(questions):
    judge = MetadataTraceJudge()
    clip, q = next((c, q) for c, q in questions if q["skill"] == "count_pitch" or q["skill"] == "count_loud")
    listed, steps = q["listing"], [tuple(s) for s in q["steps"]]
    # a missing event in the listing
    short = skills.reasoning_text(listed[:-1], steps, q["answer"])
    assert "listing has" in "; ".join(judge.verify(q, short, q["answer"], clip).reasons)
    # a wrong count
    wrong = skills.reasoning_text(listed, steps[:-1] + [("Count", "9")], "9")
    assert any("false step 'Count: 9'" in r for r in judge.verify(q, wrong, "9", clip).reasons)
    # the filtering step skipped
    skipped = skills.reasoning_text(listed, steps[1:], q["answer"])
    assert any("skipped step" in r for r in judge.verify(q, skipped, q["answer"], clip).reasons)
    # a conclusion that is not the answer given
    assert any("does not match" in r for r in judge.verify(q, q["thinking"], "7", clip).reasons)
    # an invented step that the metadata cannot support
    extra = skills.reasoning_text(listed, steps + [("Weather", "sunny")], q["answer"])
    assert any("unsupported step 'Weather'" in r for r in judge.verify(q, extra, q["answer"], clip).reasons)
    assert MetadataRubricJudge().score(q, short, q["answer"])[:2] == [0, 0]


def test_true_extra_steps_are_accepted(questions):
    judge = MetadataTraceJudge()
    clip, q = next((c, q) for c, q in questions if q["skill"] == "count_loud")
    truths = skills.clip_truths(clip)
    extra = [(k, v) for k, v in truths.items() if k not in dict(q["steps"])][:1]
    if not extra:
        pytest.skip("clip has no extra truths")
    text = skills.reasoning_text(q["listing"], extra + [tuple(s) for s in q["steps"]], q["answer"])
    assert judge.verify(q, text, q["answer"], clip).ok


def test_parse_reasoning_tolerates_free_text():
    parsed = skills.parse_reasoning("hmm\nI hear: loud mid beep\nCount: 1\nSo the answer is 1.")
    assert parsed.listing == ["loud mid beep"] and parsed.steps == [("Count", "1")]
    assert parsed.conclusion == "1" and parsed.other_lines == ["hmm"]
    assert skills.parse_reasoning("").listing is None


def test_questions_for_clip_draws_distinct_skills(clips):
    rng = np.random.default_rng(1)
    for clip in clips[:14]:
        qs = skills.questions_for_clip(clip, skills.skills_of("atomic"), rng, max_questions=3)
        assert 1 <= len(qs) <= 3 and len({q["skill"] for q in qs}) == len(qs)
    with pytest.raises(ValueError, match="unknown tier"):
        skills.skills_of("hard")


def test_steps_that_restate_the_listing_are_optional_but_must_be_true(questions):
    judge = MetadataTraceJudge()
    found = [(c, q) for c, q in questions if q["optional_steps"]]
    if not found:
        pytest.skip("no question with an optional step in this sample")
    clip, q = found[0]
    key = q["optional_steps"][0]
    kept = [tuple(s) for s in q["steps"] if s[0] != key]
    assert judge.verify(q, skills.reasoning_text(q["listing"], kept, q["answer"]), q["answer"], clip).ok
    wrong = [(k, "something else" if k == key else v) for k, v in map(tuple, q["steps"])]
    verdict = judge.verify(q, skills.reasoning_text(q["listing"], wrong, q["answer"]), q["answer"], clip)
    assert any(f"false step '{key}" in r for r in verdict.reasons)
