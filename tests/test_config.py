import pytest

from cogito_lib.config import PROFILES, ConfigError, load_profile, resolve_run_dir, DATASET_ENV


@pytest.mark.parametrize("name", PROFILES)
def test_every_profile_loads_and_validates(name):
    profile = load_profile(name)
    assert profile.name == name
    assert profile.world.sample_rate == 16000
    assert set(profile.keys()) >= {"collect.num_clips", "world.loudness_step_db", "train.learning_rate"}


def test_tiny_is_smaller_than_mini():
    tiny, mini = load_profile("tiny"), load_profile("mini")
    assert tiny.collect.num_clips < mini.collect.num_clips
    assert tiny.eval.num_items < mini.eval.num_items
    assert not tiny.requires_gpu and not mini.requires_gpu


def test_paper_profile_has_the_papers_values(monkeypatch):
    monkeypatch.setenv("COGITO_FMA_ROOT", "/data/fma")
    paper = load_profile("paper")
    assert paper.models.base == "Qwen/Qwen3-Omni-30B-A3B-Thinking"
    assert paper.models.annotator == paper.models.judge == "Qwen/Qwen3-Omni-30B-A3B-Instruct"
    assert (paper.annotate.min_questions_per_clip, paper.annotate.max_questions_per_clip) == (1, 3)
    assert paper.annotate.num_seed_questions == 500
    assert paper.train.epochs == 1.0 and paper.train.learning_rate == 1e-5
    assert paper.requires_gpu and paper.collect.source == "datasets"
    assert paper.datasets.fma == "/data/fma"  # dataset roots come from env vars
    assert set(DATASET_ENV) == set(paper.datasets.__dataclass_fields__)
    assert paper.think.plan_samples == 0  # the paper's thinker sees the question and choices only
    assert paper.train.skill_target == 0  # the paper trains on every survivor once


def test_overrides_apply_and_none_keeps_the_profile_value():
    profile = load_profile("mini", {"collect.num_clips": 21, "collect.seed": None, "world.max_duration_s": 5})
    assert profile.collect.num_clips == 21
    assert profile.collect.seed == load_profile("mini").collect.seed
    assert profile.world.max_duration_s == 5.0 and isinstance(profile.world.max_duration_s, float)


def test_unknown_profile_names_the_allowed_ones():
    with pytest.raises(ConfigError, match=r"unknown profile 'huge'.*tiny, mini, paper"):
        load_profile("huge")


def test_unknown_parameter_names_the_field_and_allowed_keys():
    with pytest.raises(ConfigError) as err:
        load_profile("mini", {"collect.num_clip": 3})
    assert "collect.num_clip" in str(err.value) and "collect.num_clips" in str(err.value)


@pytest.mark.parametrize("key,value", [("collect.num_clips", "3"), ("collect.num_clips", 2.5),
                                       ("collect.num_clips", True), ("world.tts_engine", 3),
                                       ("train.learning_rate", "fast")])
def test_wrong_type_fails_naming_the_field(key, value):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.") + " must be"):
        load_profile("mini", {key: value})


def test_bad_choice_lists_the_allowed_values():
    with pytest.raises(ConfigError, match="hf, vllm, openai"):
        load_profile("mini", {"models.backend": "tensorrt"})


def test_inconsistent_values_are_rejected():
    with pytest.raises(ConfigError, match="min_duration_s"):
        load_profile("mini", {"world.min_duration_s": 9.0})
    with pytest.raises(ConfigError, match="pitch"):
        load_profile("mini", {"world.pitch_mid_hz": 100.0})
    with pytest.raises(ConfigError, match="think.plan_samples"):
        load_profile("mini", {"think.plan_samples": 9})  # more than the 8 plain samples it grows from
    with pytest.raises(ConfigError, match="train.skill_target"):
        load_profile("mini", {"train.skill_target": -1})
    with pytest.raises(ConfigError, match="train.skill_max_repeat"):
        load_profile("mini", {"train.skill_max_repeat": 0})


def test_run_dir_defaults_to_runs_profile(tmp_path):
    assert resolve_run_dir("mini").parts[-2:] == ("runs", "mini")
    assert resolve_run_dir("mini", str(tmp_path / "x")) == (tmp_path / "x").resolve()


def test_notebook_setup_keeps_profile_values_for_sentinels(tmp_path):
    from cogito_lib.notebook import setup_stage

    profile, run_dir, stage_dir = setup_stage("tiny", str(tmp_path), "02-x", {
        "collect.num_clips": -1, "collect.seed": 5, "world.tts_engine": ""})
    assert profile.collect.num_clips == load_profile("tiny").collect.num_clips
    assert profile.collect.seed == 5 and profile.world.tts_engine == "espeak-ng"
    assert stage_dir == tmp_path / "02-x" and stage_dir.is_dir()
    with pytest.raises(ConfigError, match="collect.workers must be"):
        setup_stage("tiny", str(tmp_path), "02-x", {"collect.workers": "two"})


def test_profile_overrides_rebuild_the_profile_in_another_process():
    from cogito_lib.config import profile_overrides

    changed = load_profile("mini", {"train.seed": 10000, "base.world_seed": 11001, "train.variants": ["answer_only"]})
    overrides = profile_overrides(changed)
    assert overrides == {"train.seed": 10000, "base.world_seed": 11001, "train.variants": ("answer_only",)}
    assert load_profile("mini", overrides) == changed
    assert profile_overrides(load_profile("tiny")) == {}
