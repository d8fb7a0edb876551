"""Trainer recipes beside the stage-4 exports: what they say (hermetic), and, when a trainer's pinned environment is
on this machine, what the trainer itself makes of them: ms-swift 4.6.0's argument parser, LLaMA-Factory 0.9.5's
config loader and template (does the reasoning reach the labels?), and a few training steps of each on a tiny
Qwen3-Omni checkpoint. Build the environments with scripts/trainer_env_cpu.sh and point COGITO_MS_SWIFT_ENV /
COGITO_LLAMAFACTORY_ENV at them (default envs/.ms-swift, envs/.llamafactory); without them those tests skip."""
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from cogito_lib import exports as E
from cogito_lib import recipes as R
from cogito_lib.config import load_profile

ROOT = Path(__file__).resolve().parents[1]
THINKING = "I hear: beep; beep\nCount: 2\nSo the answer is 2."


def _records(run_dir: Path) -> list[dict]:
    (run_dir / "02-data-collection" / "audio").mkdir(parents=True)
    out = []
    for i in range(3):
        sf.write(run_dir / "02-data-collection" / "audio" / f"c{i}.wav",
                 (0.1 * np.sin(np.arange(8000) / 9)).astype("float32"), 16000)
        out.append({"id": f"q{i}-s0", "question_id": f"q{i}", "audio_path": f"02-data-collection/audio/c{i}.wav",
                    "question": "How many beeps are there?", "choices": ["1", "2", "3"], "answer": "2",
                    "thinking": THINKING, "answer_prediction": "2"})
    return out


@pytest.fixture
def paper_export(tmp_path):
    run_dir = tmp_path / "run"
    paths = E.export_all(_records(run_dir), run_dir, run_dir / "05-quality-verification" / "exports",
                         profile=load_profile("paper"))
    return run_dir, run_dir / "05-quality-verification" / "exports", paths


def _flags(argv):
    return dict(zip(argv[::2], argv[1::2]))


def test_the_ms_swift_command_has_the_paper_s_settings(paper_export):
    run_dir, export, paths = paper_export
    spec = json.loads(Path(paths["ms_swift_args"]).read_text())
    flags = _flags(spec["argv"])
    assert spec["ms_swift"] == "4.6.0" and spec["model"] == "Qwen/Qwen3-Omni-30B-A3B-Thinking"
    assert "--train_type" not in flags and flags["--tuner_type"] == "lora"  # 4.x renamed it; the old name dies
    assert float(flags["--learning_rate"]) == 1e-5 and float(flags["--num_train_epochs"]) == 1.0
    assert (flags["--lora_rank"], flags["--lora_alpha"], flags["--lora_dropout"]) == ("8", "32", "0.0")
    assert (flags["--template"], flags["--model_type"]) == ("qwen3_omni", "qwen3_omni_moe")
    per_device, accumulation = int(flags["--per_device_train_batch_size"]), int(flags["--gradient_accumulation_steps"])
    assert spec["nproc_per_node"] * per_device * accumulation == 32 and flags["--deepspeed"] == "zero3"
    regex = re.compile(flags["--target_regex"])
    for name in ("thinker.model.layers.0.self_attn.q_proj", "thinker.model.layers.47.mlp.experts.127.down_proj",
                 "thinker.model.layers.3.mlp.experts.0.gate_proj", "thinker.model.layers.3.mlp.experts.0.up_proj"):
        assert regex.fullmatch(name), name
    for name in ("thinker.audio_tower.layers.0.self_attn.q_proj", "thinker.model.layers.0.mlp.gate",
                 "thinker.lm_head", "thinker.visual.blocks.0.attn.qkv"):
        assert not regex.fullmatch(name), name
    script = Path(paths["ms_swift_recipe"]).read_text()
    assert "--tuner_type lora" in script and 'cd "$(dirname "$0")/../../.."' in script
    assert 'ROOT_IMAGE_DIR="$PWD"' in script and "NPROC_PER_NODE:-8" in script


def test_the_llamafactory_config_keeps_the_reasoning(paper_export):
    run_dir, export, paths = paper_export
    text = Path(paths["llamafactory_recipe"]).read_text()
    config = {k: json.loads(v) for k, v in (line.split(": ", 1) for line in text.splitlines()
                                            if line and not line.startswith("#"))}
    assert config["template"] == "qwen3_omni" and config["enable_thinking"] is True
    assert re.search(r"^learning_rate: 1\.0e-05$", text, re.M)  # a YAML float, not the string "1e-05"
    assert config["lora_target"] == "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
    assert config["media_dir"] == "." and not os.path.isabs(config["dataset_dir"])
    assert (run_dir / config["dataset_dir"] / "dataset_info.json").exists()
    assert (run_dir / config["deepspeed"]).exists() and R.check_keeps_reasoning(config) == []
    dropped = R.check_keeps_reasoning({**config, "enable_thinking": False})
    assert dropped and "delete every <think>" in dropped[0]
    assert R.check_keeps_reasoning({**config, "template": "qwen3_omni_nothink"})
    with pytest.raises(R.RecipeError, match="enable_thinking"):  # such a config is never written
        R.llamafactory_config(R.recipe_settings(load_profile("paper")), model="m", dataset_dir="d", dataset="x",
                              output_dir="o", deepspeed=None, enable_thinking=False)


def test_a_copied_run_dir_trains_on_its_own_clips(paper_export, tmp_path):
    run_dir, export, paths = paper_export
    first = json.loads(Path(paths["ms_swift"]).read_text().splitlines()[0])
    assert first["audios"] == ["02-data-collection/audio/c0.wav"]
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    shutil.rmtree(run_dir)
    moved = copy / "05-quality-verification" / "exports"
    assert E.validate_ms_swift(moved / "ms-swift" / "audio_cogito.jsonl", media_root=copy) == []
    assert E.validate_llamafactory(moved / "llamafactory", media_root=copy) == []
    assert str(run_dir) not in (moved / "ms-swift" / "train.sh").read_text()
    assert str(run_dir) not in (moved / "llamafactory" / "cogito_sft.yaml").read_text()


def test_the_miniature_s_recipes_follow_its_own_settings(tmp_path):
    run_dir = tmp_path / "run"
    profile = load_profile("tiny", {"models.base": str(tmp_path / "run" / "01-base-model" / "model")})
    (run_dir / "01-base-model" / "model").mkdir(parents=True)
    paths = E.export_all(_records(run_dir), run_dir, run_dir / "05-quality-verification" / "exports",
                         profile=profile)
    flags = _flags(json.loads(Path(paths["ms_swift_args"]).read_text())["argv"])
    assert float(flags["--learning_rate"]) == profile.train.learning_rate and flags["--max_steps"] == "4"
    assert flags["--model_type"] == "qwen2_audio" and "--deepspeed" not in flags
    assert json.loads(Path(paths["ms_swift_args"]).read_text())["model"] == "01-base-model/model"  # relative


# --------------------------------------------------------------------------------- the trainers' own code
def _env_python(variable: str, default: str) -> Path | None:
    folder = Path(os.environ.get(variable) or ROOT / default)
    python = folder / "bin" / "python"
    return python if python.exists() else None


SWIFT = _env_python("COGITO_MS_SWIFT_ENV", "envs/.ms-swift")
FACTORY = _env_python("COGITO_LLAMAFACTORY_ENV", "envs/.llamafactory")
needs_swift = pytest.mark.skipif(SWIFT is None, reason="no ms-swift environment: build one with "
                                 "scripts/trainer_env_cpu.sh ms-swift DIR and set COGITO_MS_SWIFT_ENV=DIR")
needs_factory = pytest.mark.skipif(FACTORY is None, reason="no LLaMA-Factory environment: build one with "
                                   "scripts/trainer_env_cpu.sh llamafactory DIR and set COGITO_LLAMAFACTORY_ENV=DIR")


def _check(python: Path, *args: str, timeout: int = 900) -> dict:
    done = subprocess.run([str(python), str(ROOT / "scripts" / "check_trainer_recipe.py"), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, (done.stdout + done.stderr)[-3000:]
    return json.loads(lines[-1])


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A tiny Qwen3-Omni in the trainers' transformers 4.57 format, with a kit tiny build's tokenizer."""
    python = SWIFT or FACTORY
    if python is None:
        pytest.skip("no trainer environment")
    from cogito_lib.models import build_tiny_model

    root = tmp_path_factory.mktemp("trainer_ckpt")
    kit = build_tiny_model("qwen3_omni", root / "kit", [THINKING, "How many beeps are there? Select one option "
                                                        "from the provided choices"] * 10, size="tiny")
    done = subprocess.run([str(python), str(ROOT / "scripts" / "tiny_trainer_checkpoint.py"), str(root / "ckpt"),
                           "--tokenizer-json", str(kit / "tokenizer.json")], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return root / "ckpt"


@needs_swift
def test_ms_swift_parses_the_command_and_rejects_the_old_flag(paper_export, tmp_path):
    run_dir, export, paths = paper_export
    result = _check(SWIFT, "ms-swift", str(export))
    assert result["ok"] and result["version"] == "4.6.0", result
    assert result["parsed"]["learning_rate"] == 1e-5 and result["parsed"]["num_train_epochs"] == 1.0
    spec = json.loads(Path(paths["ms_swift_args"]).read_text())
    spec["argv"] = ["--train_type" if a == "--tuner_type" else a for a in spec["argv"]]  # the documented old command
    Path(paths["ms_swift_args"]).write_text(json.dumps(spec))
    broken = _check(SWIFT, "ms-swift", str(export))
    assert not broken["ok"] and "train_type" in broken["problems"][0]


@needs_swift
def test_ms_swift_trains_a_few_steps_on_the_export(paper_export, tiny_checkpoint):
    run_dir, export, _ = paper_export
    result = _check(SWIFT, "ms-swift", str(export), "--train", str(tiny_checkpoint), "--steps", "2", timeout=1500)
    assert result["ok"] and len(result["train_losses"]) == 2, result


@needs_factory
def test_llamafactory_loads_the_config_and_its_template_keeps_the_reasoning(paper_export, tiny_checkpoint):
    run_dir, export, _ = paper_export
    result = _check(FACTORY, "llamafactory", str(export), "--tokenizer", str(tiny_checkpoint))
    assert result["ok"] and result["reasoning_in_labels"] == result["samples"] == 3, result
    assert result["reasoning_in_labels_if_enable_thinking_false"] == 0  # so the check can fail


@needs_factory
def test_llamafactory_trains_a_few_steps_on_the_export(paper_export, tiny_checkpoint):
    run_dir, export, _ = paper_export
    result = _check(FACTORY, "llamafactory", str(export), "--train", str(tiny_checkpoint), "--steps", "2",
                    timeout=1500)
    assert result["ok"] and len(result["train_losses"]) == 2, result
