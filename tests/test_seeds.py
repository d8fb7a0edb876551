"""Replicate seeds: the notebooks' SEED parameter moves each stage's seeds so that seeds are independent runs."""
import json
from pathlib import Path

from cogito_lib.notebook import SEED_STRIDE, replicate_seed, setup_stage
from cogito_lib.config import load_profile
from cogito_lib.run import discover_notebooks, parameter_names

ROOT = Path(__file__).resolve().parents[1]


def test_replicate_zero_and_minus_one_keep_the_profile_seed():
    assert replicate_seed(2026, -1) == 2026 and replicate_seed(2026, 0) == 2026
    assert replicate_seed(2026, 2) == 2026 + 2 * SEED_STRIDE


def test_setup_stage_moves_only_the_named_seeds(tmp_path, capsys):
    default = load_profile("tiny")
    profile, _, _ = setup_stage("tiny", str(tmp_path), "06-x", {"train.max_steps": 3}, seed=1,
                                seed_keys=("train.seed",))
    assert profile.train.seed == default.train.seed + SEED_STRIDE
    assert profile.train.max_steps == 3 and profile.collect.seed == default.collect.seed
    assert "replicate seed 1: train.seed" in capsys.readouterr().out
    same, _, _ = setup_stage("tiny", str(tmp_path), "06-x", {}, seed=-1, seed_keys=("train.seed",))
    assert same.train.seed == default.train.seed


def test_the_stages_with_randomness_declare_seed():
    """headline.py passes SEED to every notebook that declares it: base, world, questions, samples, training."""
    takes = {nb.name[:2] for nb in discover_notebooks() if "SEED" in parameter_names(nb)}
    assert {"01", "03", "04", "06"} <= takes
    for nb in discover_notebooks():
        if nb.name[:2] in takes:
            text = json.loads(nb.read_text())
            source = "".join("".join(c["source"]) for c in text["cells"])
            assert "seed=SEED" in source, nb.name
    # every notebook that loads notebook 01's base finds the one 01 trained for the same SEED
    for nb in discover_notebooks():
        if nb.name[:2] in ("04", "06", "07"):
            source = "".join("".join(c["source"]) for c in json.loads(nb.read_text())["cells"])
            assert '"base.world_seed"' in source and "seed=SEED" in source, nb.name


def test_a_missing_base_names_the_bases_of_other_seeds(tmp_path):
    import pytest

    from cogito_lib.layout import BASE as STAGE
    from cogito_lib.layout import base_model_path

    profile = load_profile("tiny")
    other = tmp_path / STAGE / "base-0123456789"
    other.mkdir(parents=True)
    (other / "base.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="base-0123456789.*same SEED"):
        base_model_path(profile, tmp_path)


def test_headline_runs_seeds_at_once_on_separate_cores(tmp_path):
    """`headline.py --jobs 2`: two seeds of notebook 02 at once, each pinned to its own cores; each seed makes
    its own curation world (seed 0 is the profile's)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "headline.py"), "--profile", "tiny", "--seeds", "0",
                          "1", "--jobs", "2", "--only", "02", "--runs-root", str(tmp_path)],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    # no notebook 07 ran, so the summary step stops with its own message; both seeds ran before it
    assert "no seed has 07-mmar-evaluation/summary.json" in out.stderr + out.stdout
    assert "== seed 0 done" in out.stdout and "== seed 1 done" in out.stdout
    seeds = {}
    for seed in (0, 1):
        manifest = tmp_path / f"tiny-seed{seed}" / "02-data-collection" / "manifest.jsonl"
        seeds[seed] = {json.loads(line)["world_seed"] for line in manifest.read_text().splitlines()}
    default = load_profile("tiny").collect.seed
    assert seeds == {0: {default}, 1: {default + SEED_STRIDE}}
