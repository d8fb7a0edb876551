"""The seed question pool (data/seed_questions.jsonl): the paper's few-shot pool of at least 500 MMAR-style seeds.

Checks its size and spread over MMAR's taxonomy, that no seed copies an MMAR question (by hash: MMAR's text is not
committed) or the kit's MMAR fixture, and that growing the pool left the miniature's sampled pool unchanged."""
import collections
import difflib
import hashlib
import json
from pathlib import Path

import pytest

from cogito_lib.world import skills
from cogito_lib.config import load_profile, resolve_data_path
from cogito_lib.mmar.rule import CATEGORIES, MODALITIES, is_correct
from cogito_lib.pipe import annotate as A

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
POOL_PATH = resolve_data_path(load_profile("paper").annotate.seed_pool)
POOL = A.load_seed_pool(POOL_PATH)

# The first 83 lines are the miniature's hand-written seeds: byte-identical and first, in this order (sha256 of
# those 83 lines as committed before the pool grew). Every later seed is for LLM annotators only (skill null).
ORIGINAL_SEEDS = 83
ORIGINAL_SHA256 = "b337166943ebe570ea5fec891130f3753fc7a05e0692b8713c5669ca5e9282fa"

# MMAR's 16 sub-categories and the layer each belongs to (MMAR-meta.jsonl: each sub-category sits in one layer).
MMAR_SUB_CATEGORIES = {
    "Acoustic Quality Analysis": "Signal Layer", "Anomaly Detection": "Signal Layer",
    "Audio Difference Analysis": "Signal Layer",
    "Correlation Analysis": "Perception Layer", "Counting and Statistics": "Perception Layer",
    "Environmental Perception and Reasoning": "Perception Layer", "Music Theory": "Perception Layer",
    "Spatial Analysis": "Perception Layer", "Temporal Analysis": "Perception Layer",
    "Content Analysis": "Semantic Layer", "Emotion and Intention": "Semantic Layer",
    "Speaker Analysis": "Semantic Layer",
    "Aesthetic Evaluation": "Cultural Layer", "Culture of Speaker": "Cultural Layer", "Imagination": "Cultural Layer",
    "Professional Knowledge and Reasoning": "Cultural Layer",
}
# MMAR's 1000 items use all 28 (layer, modality class) cells: the fewest is (Signal, mix-sound-music) with 1 item.
MMAR_CELLS = {(c, m) for c in CATEGORIES for m in MODALITIES}
MIN_SEEDS, MIN_PER_SUB_CATEGORY, MIN_PER_MODALITY, MIN_PER_CELL, MIN_PER_LAYER_TIER = 500, 20, 40, 5, 20
MAX_RATIO, MAX_JACCARD = 0.85, 0.5  # a seed closer than this to another question is a near-copy


def _lines():
    return POOL_PATH.read_bytes().splitlines(keepends=True)


def _new_seeds():
    return POOL[ORIGINAL_SEEDS:]


# ------------------------------------------------------------------------------------------------------ size
def test_pool_holds_at_least_500_valid_seeds_with_unique_numbered_ids():
    assert len(POOL) >= MIN_SEEDS
    assert len(POOL) >= load_profile("paper").annotate.num_seed_questions  # the paper samples a real subset
    assert len(POOL) == len([line for line in _lines() if line.strip()])  # load_seed_pool kept every line
    ids = [s["id"] for s in POOL]
    assert len(set(ids)) == len(ids)
    assert ids == [f"seed-{i:03d}" for i in range(1, len(POOL) + 1)]


def test_the_paper_profile_samples_500_seeds_that_still_span_the_taxonomy():
    paper = load_profile("paper")
    annotator = A.LLMAnnotator(object(), POOL, num_seed_questions=paper.annotate.num_seed_questions,
                               seed=paper.collect.seed)
    assert len(annotator.pool) == paper.annotate.num_seed_questions < len(POOL)
    assert {s["sub-category"] for s in annotator.pool} == set(MMAR_SUB_CATEGORIES)
    assert {(s["category"], s["modality"]) for s in annotator.pool} >= MMAR_CELLS


# ---------------------------------------------------------------------------------------------------- spread
def test_every_mmar_sub_category_has_at_least_20_seeds_in_its_mmar_layer():
    counts = collections.Counter(s["sub-category"] for s in POOL)
    assert set(counts) == set(MMAR_SUB_CATEGORIES), set(counts) ^ set(MMAR_SUB_CATEGORIES)
    assert min(counts.values()) >= MIN_PER_SUB_CATEGORY, counts
    # new seeds follow MMAR's layer; the originals put Music Theory under Cultural (skills.SKILLS mood/dance do)
    wrong_new = [s["id"] for s in _new_seeds() if s["category"] != MMAR_SUB_CATEGORIES[s["sub-category"]]]
    assert not wrong_new
    wrong_old = {(s["category"], s["sub-category"]) for s in POOL[:ORIGINAL_SEEDS]
                 if s["category"] != MMAR_SUB_CATEGORIES[s["sub-category"]]}
    assert wrong_old <= {("Cultural Layer", "Music Theory")}


def test_every_modality_class_has_at_least_40_seeds():
    counts = collections.Counter(s["modality"] for s in POOL)
    assert all(counts[m] >= MIN_PER_MODALITY for m in MODALITIES), counts


def test_every_layer_and_modality_cell_mmar_uses_has_seeds():
    cells = collections.Counter((s["category"], s["modality"]) for s in POOL)
    thin = {cell: cells[cell] for cell in MMAR_CELLS if cells[cell] < MIN_PER_CELL}
    assert not thin, A.seed_coverage(POOL)


def test_both_tiers_are_well_represented_in_every_layer():
    counts = collections.Counter((s["category"], s["tier"]) for s in POOL)
    assert all(counts[(c, t)] >= MIN_PER_LAYER_TIER for c in CATEGORIES for t in skills.TRAINED_TIERS), counts


def test_every_seed_is_scored_right_by_mmar_string_match():
    """The official rule must accept the answer and reject every other choice (no choice is a reordering or a
    token subset of the answer that the scorer cannot tell apart)."""
    for seed in POOL:
        verdicts = {c: is_correct(c, seed["answer"], seed["choices"]) for c in seed["choices"]}
        assert verdicts == {c: c == seed["answer"] for c in seed["choices"]}, seed["id"]


# ------------------------------------------------------------------------------------------- no copies of MMAR
def _mmar_hashes():
    lines = (FIXTURES / "mmar_question_hashes.txt").read_text(encoding="utf-8").splitlines()
    return {line for line in lines if line and not line.startswith("#")}


def test_question_hash_normalises_case_and_punctuation():
    assert A.normalise_question("  How many DOGS bark?!  ") == "how many dogs bark"
    assert A.question_hash("How many dogs bark?") == A.question_hash("how many dogs   bark")
    assert A.question_hash("How many dogs bark?") == hashlib.sha256(b"how many dogs bark").hexdigest()
    assert A.question_hash("How many dogs bark?") != A.question_hash("How many cats bark?")


def test_no_seed_is_an_mmar_question():
    hashes = _mmar_hashes()
    assert len(hashes) >= 950 and all(len(h) == 64 for h in hashes)  # MMAR's 1000 questions, 970 distinct
    copies = [s["id"] for s in POOL if A.question_hash(s["question"]) in hashes]
    assert not copies


def test_no_seed_near_copies_the_kits_mmar_fixture():
    fixture = [json.loads(line)["question"] for line in
               (FIXTURES / "mmar" / "MMAR-meta.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    assert fixture
    close = [(s["id"], q) for s in POOL for q in fixture if _near_copy(s["question"], q)]
    assert not close


def _near_copy(a, b):
    ratio, jaccard = A.question_similarity(a, b)
    return ratio > MAX_RATIO or jaccard > MAX_JACCARD


def test_question_similarity_flags_near_copies():
    ratio, jaccard = A.question_similarity("How many times does the dog bark in the clip?",
                                           "how many times does the dog bark in the clip today")
    assert ratio > MAX_RATIO and jaccard > MAX_JACCARD and _near_copy("Where is this?", "where is this")
    ratio, jaccard = A.question_similarity("How many times does the dog bark?", "Which language is spoken?")
    assert ratio < MAX_RATIO and jaccard == 0 and not _near_copy("How many dogs bark?", "Which language is spoken?")


def test_new_seeds_are_distinct_questions_not_templated_copies_of_other_seeds():
    texts = [A.normalise_question(s["question"]) for s in POOL]
    matcher = difflib.SequenceMatcher(autojunk=False)
    close = []
    for i in range(ORIGINAL_SEEDS, len(texts)):
        matcher.set_seq2(texts[i])
        for j in range(i):
            matcher.set_seq1(texts[j])
            if matcher.real_quick_ratio() > MAX_RATIO and matcher.quick_ratio() > MAX_RATIO \
                    and matcher.ratio() > MAX_RATIO:
                close.append((POOL[i]["id"], POOL[j]["id"]))
    assert not close


# ------------------------------------------------------------------------------- the miniature is unchanged
def test_the_original_83_lines_are_byte_identical_and_first():
    assert hashlib.sha256(b"".join(_lines()[:ORIGINAL_SEEDS])).hexdigest() == ORIGINAL_SHA256


def test_only_the_original_seeds_have_a_skill():
    """The miniature's MetadataAnnotator samples from seeds with a skill; new seeds are for LLM annotators only."""
    assert all(s["skill"] is None for s in _new_seeds())
    assert sum(s["skill"] is not None for s in POOL[:ORIGINAL_SEEDS]) > 60


@pytest.mark.parametrize("seed", [0, 3, 11, 2026, 12026])
@pytest.mark.parametrize("num", [20, 60])
def test_the_miniatures_sampled_pool_is_what_the_original_83_seeds_give(tmp_path, seed, num):
    """Expected pool ids come from the first 83 lines alone: a new seed with a skill, or a reordering, changes them."""
    original = tmp_path / "original.jsonl"
    original.write_bytes(b"".join(_lines()[:ORIGINAL_SEEDS]))
    old = A.load_seed_pool(original)
    for kwargs in ({}, {"fallback": "atomic"}, {"tiers": ("atomic", "composite")}):
        expected = A.MetadataAnnotator(old, num_seed_questions=num, seed=seed, **kwargs).describe()
        got = A.MetadataAnnotator(POOL, num_seed_questions=num, seed=seed, **kwargs).describe()
        assert got["pool"] == expected["pool"] and got["fallback_pool"] == expected["fallback_pool"]
        assert got == expected  # the stage fingerprint too: a resumed miniature run reuses its journal


def test_the_profiles_miniature_pools_are_unchanged(tmp_path):
    original = tmp_path / "original.jsonl"
    original.write_bytes(b"".join(_lines()[:ORIGINAL_SEEDS]))
    old = A.load_seed_pool(original)
    for name in ("tiny", "mini"):
        profile = load_profile(name)
        assert profile.models.annotator == "metadata"
        n, s = profile.annotate.num_seed_questions, profile.collect.seed
        assert (A.MetadataAnnotator(POOL, num_seed_questions=n, seed=s).describe()
                == A.MetadataAnnotator(old, num_seed_questions=n, seed=s).describe())


def test_a_new_seed_with_a_skill_would_change_the_miniatures_pool(tmp_path):
    """The guard above can fail: give one LLM-only seed a skill and the sampled pool moves."""
    changed = [dict(s) for s in POOL]
    skilled = next(i for i in range(ORIGINAL_SEEDS, len(changed))
                   if changed[i]["sub-category"] == "Counting and Statistics" and changed[i]["tier"] == "composite")
    spec = skills.SKILLS["count_pitch"]
    changed[skilled].update(skill="count_pitch", category=spec.category, tier=spec.tier)
    moved = [seed for seed in range(8) if A.MetadataAnnotator(changed, num_seed_questions=60, seed=seed).describe()
             != A.MetadataAnnotator(POOL, num_seed_questions=60, seed=seed).describe()]
    assert moved
