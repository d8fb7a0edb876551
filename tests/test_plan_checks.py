"""`--plan`'s checks at paper scale: GPUs against the config, servers against the configured model, keys, the
seed pool against the profile, the launch program, the training engines."""
import sys

import pytest

from cogito_lib import checks
from cogito_lib.config import load_profile
from fake_openai import FakeOpenAI


@pytest.fixture
def models_server():
    """A server whose /v1/models lists one model, as vLLM does."""
    server = FakeOpenAI(models=[{"id": "qwen3-omni-thinking", "root": "/models/Qwen3-Omni-30B-A3B-Thinking"}])
    yield server.base_url
    server.close()


def test_gpus_are_checked_against_the_config():
    assert checks.check_gpu(load_profile("paper", {"models.device": "cpu", "models.gpus": 0})).ok
    missing = checks.check_gpu(load_profile("paper"))  # this machine has no GPU; the paper profile wants 8
    assert not missing.ok and "the config needs 8 (models.gpus = 8" in missing.message


def test_a_server_must_serve_the_configured_model(models_server):
    right = load_profile("paper", {"serve.base_urls": [models_server],
                                   "models.base": "Qwen/Qwen3-Omni-30B-A3B-Thinking"})
    [check] = checks.check_role_servers(right, "base")
    assert check.ok and "serves Qwen/Qwen3-Omni-30B-A3B-Thinking as 'qwen3-omni-thinking'" in check.message
    wrong = load_profile("paper", {"serve.annotator_urls": [models_server]})
    [check] = checks.check_role_servers(wrong, "annotator")
    assert not check.ok and "not models.annotator = 'Qwen/Qwen3-Omni-30B-A3B-Instruct'" in check.message
    assert "envs/.vllm/bin/vllm serve Qwen/Qwen3-Omni-30B-A3B-Instruct" in check.message
    gone = load_profile("paper", {"serve.judge_urls": ["http://127.0.0.1:9/v1"]})
    [check] = checks.check_role_servers(gone, "judge")
    assert not check.ok and "cannot be reached" in check.message


def test_an_api_role_needs_its_key_and_the_rubric_key_is_optional(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    profile = load_profile("paper", {"models.judge_backend": "openai", "models.judge": "gpt-4o-mini"})
    [judge] = checks.check_role_servers(profile, "judge")
    [rubric] = checks.check_role_servers(profile, "rubric")
    assert not judge.ok and judge.required and "export OPENAI_API_KEY" in judge.message
    assert not rubric.ok and not rubric.required and rubric.line().startswith("[missing, optional] rubric server")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert all(c.ok for c in checks.check_role_servers(profile, "judge"))


def test_the_launch_program_must_exist():
    found = load_profile("paper", {"serve.launch": f"{sys.executable} -m x {{model}} --port {{port}}"})
    assert checks.check_launch(found, "07 serves fine-tuned models with it").ok
    absent = load_profile("paper", {"serve.launch": "CUDA_VISIBLE_DEVICES=0 envs/.nope/bin/vllm serve {model} "
                                                    "--port {port}"})
    check = checks.check_launch(absent, "x")
    assert not check.ok and "'envs/.nope/bin/vllm' not found" in check.message and "envs/README.md" in check.message
    [check] = checks.check_role_servers(found, "base")  # no URL, a launch command: it serves the base per stage
    assert check.ok and check.name == "serve.launch"


def test_the_seed_pool_must_hold_what_an_llm_annotator_samples(tmp_path):
    lines = (checks.resolve_data_path("data/seed_questions.jsonl")).read_text().splitlines()[:83]
    small = tmp_path / "seeds.jsonl"
    small.write_text("\n".join(lines) + "\n")
    check = checks.check_seed_pool(load_profile("paper", {"annotate.seed_pool": str(small)}))
    assert not check.ok and "83 seeds in " in check.message
    assert "but the LLM annotator samples annotate.num_seed_questions = 500" in check.message
    assert checks.check_seed_pool(load_profile("paper")).ok  # the shipped pool: 529 seeds
    assert checks.check_seed_pool(load_profile("mini", {"annotate.seed_pool": str(small)})).ok  # metadata annotator


def test_the_training_engine_is_checked_where_the_profile_launches_one():
    import importlib.util

    deepspeed = checks.check_deepspeed()
    if importlib.util.find_spec("deepspeed") is None:  # the kit's test environment: not installed
        assert not deepspeed.ok and "pip install -e '.[deepspeed]'" in deepspeed.message
    else:
        assert deepspeed.ok and deepspeed.message.startswith("deepspeed ")
    paper = checks.training_engine_checks(load_profile("paper"))  # accelerate launch under DeepSpeed ZeRO-3
    assert [c.name for c in paper] == ["training engine", "DeepSpeed"] and paper[0].ok
    assert "8 ranks, deepspeed_zero3.yaml" in paper[0].message and paper[1] == deepspeed
    plain = checks.training_engine_checks(load_profile("paper", {"train.accelerate_config": ""}))
    assert [(c.name, c.ok) for c in plain] == [("training engine", True)]
    missing = checks.training_engine_checks(load_profile("paper", {"train.accelerate_config": "nope.yaml"}))
    assert not missing[0].ok and "deepspeed_zero3.yaml" in missing[0].message
    assert checks.training_engine_checks(load_profile("tiny")) == []  # in-process: nothing to check


def test_the_rubric_judge_follows_the_run_configuration(models_server, tmp_path, monkeypatch):
    from cogito_lib.judges import JudgeUnavailable, make_judge, rubric_judge_for

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    judge = rubric_judge_for(None, ["serve.rubric_urls=[\"http://judge.example/v1\"]"], cache_dir=tmp_path)
    assert (judge.model, judge.base_url, judge.api_key_env) == ("gpt-4o-2024-11-20", "http://judge.example/v1",
                                                                "OPENAI_API_KEY")  # no key needed to build it
    with pytest.raises(JudgeUnavailable, match="OPENAI_API_KEY is not set"):
        make_judge(load_profile("paper"), "rubric")  # 07 reads accuracy without rubrics instead
    config = tmp_path / "run.toml"
    config.write_text(f'[models]\nrubric_judge = "/models/Qwen3-Omni-30B-A3B-Thinking"\nrubric_backend = "vllm"\n'
                      f'[serve]\nrubric_urls = ["{models_server}"]\n')
    local = rubric_judge_for(str(config))
    assert local.model == "qwen3-omni-thinking" and local.base_url == models_server  # the name it is served as
    assert not local.client.require_key
