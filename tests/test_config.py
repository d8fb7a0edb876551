from pathlib import Path

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


# ------------------------------------------------------------------------------------------------ run configuration
PAPER_CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs" / "paper").glob("*.toml"))


def _write(path, text):
    path.write_text(text)
    return path


def test_a_config_file_sets_any_profile_key_and_set_overrides_it(tmp_path):
    from cogito_lib.config import resolve_config

    config = _write(tmp_path / "run.toml", 'profile = "paper"\nrun_dir = "/data/runs/x"\n\n[models]\n'
                    'base = "/models/T"\ndevice = "cpu"\ngpus = 0\n\n[serve]\n'
                    'base_urls = ["http://127.0.0.1:8000/v1", "http://127.0.0.1:8001/v1"]\n\n'
                    '[collect.mix]\nclotho = 1\nmeld = 2\n')
    run_config, profile = resolve_config(None, config, ["think.num_samples=4", "models.device=cuda"])
    assert profile.name == "paper" and run_config.run_dir == "/data/runs/x" and run_config.source == str(config)
    assert profile.models.base == "/models/T" and profile.models.gpus == 0
    assert profile.serve.base_urls == ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8001/v1")
    assert profile.think.num_samples == 4 and profile.models.device == "cuda"  # --set wins over the file
    assert profile.collect.mix == "clotho=1,meld=2"
    # the command line's --profile wins over the file's; a command's own options sit between file and --set
    _, tiny = resolve_config("tiny", config, overrides={"think.num_samples": 3, "models.gpus": None})
    assert tiny.name == "tiny" and tiny.think.num_samples == 3 and tiny.models.gpus == 0


@pytest.mark.parametrize("text,message", [
    ('[models]\nbase = 3\n', r"run.toml: models.base must be str, got int 3"),
    ('[modles]\nbase = "x"\n', r"unknown section or key 'modles'"),
    ('[models]\nbsae = "x"\n', r"unknown parameter 'models.bsae'"),
    ('profile = "huge"\n', r"unknown profile 'huge'"),
    ('[models\nbase = "x"\n', r"not valid TOML"),
    ('[models.base]\nx = 1\n', r"models.base is a table"),
    ('[serve]\nbase_urls = ["127.0.0.1:8000"]\n', r"is not an http\(s\) URL"),
    ('[serve]\nlaunch = "vllm serve"\n', r"serve.launch must contain \{model\} and \{port\}"),
])
def test_a_wrong_key_or_type_in_a_config_file_fails_naming_it(tmp_path, text, message):
    from cogito_lib.config import resolve_config

    with pytest.raises(ConfigError, match=message):
        resolve_config(None, _write(tmp_path / "run.toml", text))


def test_set_values_read_as_toml_or_json_literals_else_strings():
    from cogito_lib.config import parse_override

    assert parse_override("think.num_samples=8") == ("think.num_samples", 8)
    assert parse_override("train.learning_rate=1e-5") == ("train.learning_rate", 1e-5)
    assert parse_override("serve.base_urls=[\"http://a:1/v1\"]") == ("serve.base_urls", ["http://a:1/v1"])
    assert parse_override("models.base=/models/Qwen3 Omni") == ("models.base", "/models/Qwen3 Omni")
    assert parse_override("train.merge=false") == ("train.merge", False)
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_override("models.base")


def test_the_resolved_configuration_round_trips_through_its_toml(tmp_path, monkeypatch):
    from cogito_lib.config import config_text, profile_changes, resolve_config

    monkeypatch.setenv("COGITO_MMAR_ROOT", "/data/MMAR")
    profile = load_profile("paper", {"models.base": "/m/T", "serve.launch": "vllm serve {model} --port {port} "
                                     "--limit-mm-per-prompt '{\"audio\": 1}'", "train.lora_targets": ["q_proj"],
                                     "audit.max_thinking_chars": 5000, "think.temperature": 0.5})
    text = config_text(profile)
    monkeypatch.delenv("COGITO_MMAR_ROOT")  # the dataset root set from the environment is written out too
    _, again = resolve_config(None, _write(tmp_path / "resolved.toml", text))
    assert again == profile and profile_changes(again) == profile_changes(profile)
    assert again.datasets.mmar == "/data/MMAR"


def test_paper_limits_fit_the_challenge_and_served_backends_need_no_plan_samples():
    from cogito_lib.mmar import THINKING_LIMIT

    paper = load_profile("paper")
    assert paper.audit.max_thinking_chars == THINKING_LIMIT - 1  # < 10,000 characters, the challenge's rule
    assert load_profile("mini").audit.max_thinking_chars == 4000
    with pytest.raises(ConfigError, match="audit.max_thinking_chars"):
        load_profile("paper", {"audit.max_thinking_chars": 10_000})
    with pytest.raises(ConfigError, match="think.plan_samples > 0 needs models.backend = 'hf'"):
        # plan-guided samples continue prompts in-process, which a served backend cannot do
        load_profile("mini", {"models.backend": "vllm", "think.plan_samples": 1})


@pytest.mark.parametrize("path", PAPER_CONFIGS, ids=lambda p: p.name)
def test_the_shipped_paper_configs_load(path):
    from cogito_lib.config import resolve_config

    run_config, profile = resolve_config(None, path)
    assert profile.name == "paper" and profile.models.backend == "vllm" and run_config.run_dir
    assert profile.serve.launch.startswith(("envs/.vllm/bin/vllm serve", "CUDA_VISIBLE_DEVICES"))
    # every dataset root, except ComplexAudio's, which the kit cannot collect (no published format)
    assert all(getattr(profile.datasets, name) for name in DATASET_ENV if name != "complexaudio")


def test_notebook_setup_reads_config_and_prints_the_resolved_configuration(tmp_path, capsys):
    from cogito_lib.notebook import setup_stage

    config = _write(tmp_path / "run.toml", f'profile = "tiny"\nrun_dir = "{tmp_path / "r"}"\n[think]\nnum_samples = 3\n')
    profile, run_dir, _ = setup_stage("mini", "", "04-x", {"think.temperature": 0.5}, config=str(config))
    out = capsys.readouterr().out
    assert profile.name == "tiny" and run_dir == tmp_path / "r"  # the file's profile and run dir
    assert profile.think.num_samples == 3 and profile.think.temperature == 0.5  # the notebook's parameter on top
    assert "with 2 value(s) changed" in out and "[think]\n    num_samples = 3\n    temperature = 0.5" in out
    with pytest.raises(ConfigError, match=r"run.toml: think.num_samples must be int"):
        setup_stage("tiny", str(tmp_path), "04-x", config=str(_write(config, '[think]\nnum_samples = "3"\n')))


def test_profile_changes_rebuild_the_profile_in_another_process():
    from cogito_lib.config import profile_changes

    changed = load_profile("mini", {"train.seed": 10000, "base.world_seed": 11001, "train.variants": ["answer_only"]})
    overrides = profile_changes(changed)
    assert overrides == {"train.seed": 10000, "base.world_seed": 11001, "train.variants": ("answer_only",)}
    assert load_profile("mini", overrides) == changed
    assert profile_changes(load_profile("tiny")) == {}
