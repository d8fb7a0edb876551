"""Check a trainer recipe written beside a stage-4 export with the trainer's own code. Run it with the python of
the trainer's pinned environment (envs/ms-swift, envs/llamafactory; scripts/trainer_env_cpu.sh builds one for a
CPU), from the kit's repository root:

    envs/.ms-swift/bin/python scripts/check_trainer_recipe.py ms-swift RUN_DIR/05-quality-verification/exports
    envs/.llamafactory/bin/python scripts/check_trainer_recipe.py llamafactory RUN_DIR/05-quality-verification/exports \
        [--tokenizer TOKENIZER_DIR] [--train TINY_CHECKPOINT --steps 2]

- ms-swift: `exports/ms-swift/sft_args.json` (the arguments of train.sh) through ms-swift's own argument parser
  (the HfArgumentParser over `SftArguments` that `swift sft` uses; an unknown flag is what makes `swift sft` stop with
  `remaining_argv`), and the values the kit means (tuner, learning rate, epochs, LoRA settings, batch split).
- LLaMA-Factory: `exports/llamafactory/cogito_sft.yaml` through LLaMA-Factory's own config loader (`read_args`, as
  `llamafactory-cli train` reads a YAML, then `get_train_args`), its dataset declaration, and, with
  `--tokenizer`, every exported sample encoded by the recipe's template: the reasoning must be in the training
  targets (and is shown to vanish with enable_thinking false, so the check can fail).
- `--train CHECKPOINT`: run the trainer itself for `--steps` steps on a tiny checkpoint (on a CPU, no DeepSpeed),
  from the run dir as train.sh does, and report the logged losses.

Prints one JSON line: {"trainer", "checks": {name: true/false}, "problems": [...], ...}; exits 1 on any problem.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


def _flags(argv: list[str]) -> dict[str, str]:
    return {argv[i][2:]: argv[i + 1] for i in range(0, len(argv) - 1, 2) if argv[i].startswith("--")}


def check_ms_swift(export_dir: Path, out: dict) -> None:
    from transformers import HfArgumentParser

    import swift
    from swift.arguments import SftArguments
    from swift.utils.utils import _patch_get_type_hints

    spec = json.loads((export_dir / "ms-swift" / "sft_args.json").read_text())
    argv = spec["argv"]
    with _patch_get_type_hints():
        parser = HfArgumentParser([SftArguments])
    namespace, remaining = parser.parse_known_args(argv)  # what parse_args_into_dataclasses parses, before __post_init__
    out["version"] = swift.__version__
    out["checks"]["parsed_by_ms_swift"] = not remaining
    if remaining:
        out["problems"].append(f"ms-swift does not know: {remaining}")
    flags = _flags(argv)
    want = {"tuner_type": "lora", "learning_rate": float(flags["learning_rate"]),
            "num_train_epochs": float(flags["num_train_epochs"]), "lora_rank": int(flags["lora_rank"]),
            "lora_alpha": float(flags["lora_alpha"]), "target_regex": flags["target_regex"],
            "template": flags["template"], "model_type": flags["model_type"]}
    got = {key: getattr(namespace, key, None) for key in want}
    out["parsed"] = got
    out["checks"]["values_as_meant"] = got == want
    if got != want:
        out["problems"].append(f"parsed {got}, meant {want}")
    for flag in ("learning_rate", "num_train_epochs"):  # ms-swift's own defaults (1e-4, 3 epochs) must not apply
        out["checks"][f"{flag}_written"] = f"--{flag}" in argv
    if spec["ms_swift"] != out["version"]:
        out["problems"].append(f"the recipe is for ms-swift {spec['ms_swift']}, this environment has {out['version']}")


def _lf_train_args(yaml_path: Path, overrides: list[str]):
    from llamafactory.hparams.parser import get_train_args, read_args

    saved = sys.argv
    sys.argv = ["llamafactory-cli", str(yaml_path), *overrides]  # read_args reads a YAML exactly like the CLI
    try:
        config = read_args()
    finally:
        sys.argv = saved
    return config, get_train_args(config)


def check_llamafactory(export_dir: Path, run_dir: Path, tokenizer_dir: str | None, out: dict) -> None:
    import llamafactory

    out["version"] = llamafactory.__version__
    folder = export_dir / "llamafactory"
    cwd = os.getcwd()
    os.chdir(run_dir)  # the recipe's paths are relative to the run dir (train.sh changes into it)
    try:
        overrides = [f"model_name_or_path={tokenizer_dir}"] if tokenizer_dir else []
        if not tokenizer_dir:
            # get_train_args only needs a model folder for its checks; any config.json folder does not exist here
            overrides = []
        config, (model_args, data_args, training_args, finetuning_args, _) = _lf_train_args(
            (folder / "cogito_sft.yaml").resolve(), overrides + ["deepspeed=null", "bf16=false"])
    finally:
        os.chdir(cwd)
    out["checks"]["loaded_by_llamafactory"] = True
    meant = {"template": config["template"], "enable_thinking": True, "learning_rate": config["learning_rate"],
             "num_train_epochs": config["num_train_epochs"], "lora_rank": config["lora_rank"],
             "finetuning_type": "lora"}
    got = {"template": data_args.template, "enable_thinking": data_args.enable_thinking,
           "learning_rate": training_args.learning_rate, "num_train_epochs": training_args.num_train_epochs,
           "lora_rank": finetuning_args.lora_rank, "finetuning_type": finetuning_args.finetuning_type}
    out["parsed"] = got
    out["checks"]["values_as_meant"] = got == meant
    if got != meant:
        out["problems"].append(f"parsed {got}, meant {meant}")
    info = json.loads((folder / "dataset_info.json").read_text())
    out["checks"]["dataset_declared"] = config["dataset"] in info
    if not tokenizer_dir:
        return
    from transformers import AutoTokenizer

    from llamafactory.data import get_template_and_fix_tokenizer

    data = json.loads((folder / info[config["dataset"]]["file_name"]).read_text())

    def targets(enable_thinking: bool) -> list[str]:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        data_args.enable_thinking = enable_thinking
        template = get_template_and_fix_tokenizer(tokenizer, data_args)
        texts = []
        for sample in data:
            messages = [{"role": m["role"], "content": m["content"].replace("<audio>", "")}
                        for m in sample["messages"]]
            _, response = template.encode_oneturn(tokenizer, messages)
            texts.append(tokenizer.decode(response))
        return texts

    def reasoning(sample) -> str:
        text = sample["messages"][-1]["content"]
        return text[text.index(THINK_OPEN) + len(THINK_OPEN):text.index(THINK_CLOSE)].strip()

    kept = targets(True)
    dropped = targets(False)
    in_labels = [reasoning(s) in t for s, t in zip(data, kept)]
    out["samples"] = len(data)
    out["reasoning_in_labels"] = sum(in_labels)
    out["reasoning_in_labels_if_enable_thinking_false"] = sum(reasoning(s) in t for s, t in zip(data, dropped))
    out["checks"]["reasoning_in_labels"] = bool(data) and all(in_labels)
    if not all(in_labels):
        out["problems"].append(f"{len(data) - sum(in_labels)} of {len(data)} samples lose their reasoning in "
                               f"the {config['template']} template's targets")


def train(trainer: str, export_dir: Path, run_dir: Path, checkpoint: str, steps: int, out: dict) -> None:
    """The trainer itself for a few steps on CPU, as train.sh runs it (from the run dir), recipe values kept
    except the model, steps, batch split, precision and DeepSpeed (no GPU here)."""
    output = (export_dir / f"{trainer}-check-output").resolve()
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    bindir = Path(sys.executable).parent
    if trainer == "ms-swift":
        argv = json.loads((export_dir / "ms-swift" / "sft_args.json").read_text())["argv"]
        flags = _flags(argv)
        flags.update(model=checkpoint, output_dir=str(output), max_steps=str(steps), torch_dtype="float32",
                     per_device_train_batch_size="1", gradient_accumulation_steps="1", dataset_num_proc="1",
                     dataloader_num_workers="0", save_steps=str(steps), logging_steps="1", warmup_steps="0",
                     gradient_checkpointing="false", report_to="none")
        flags.pop("deepspeed", None)
        cmd = [str(bindir / "swift"), "sft"] + [x for k, v in flags.items() for x in (f"--{k}", v)]
        env.update(ROOT_IMAGE_DIR=str(run_dir), NPROC_PER_NODE="1")
    else:
        yaml = (export_dir / "llamafactory" / "cogito_sft.yaml").resolve()
        cmd = [str(bindir / "llamafactory-cli"), "train", str(yaml), f"model_name_or_path={checkpoint}",
               f"output_dir={output}", f"max_steps={steps}", "bf16=false", "deepspeed=null",
               "per_device_train_batch_size=1", "gradient_accumulation_steps=1", "preprocessing_num_workers=1",
               "dataloader_num_workers=0", f"save_steps={steps}", "logging_steps=1", "warmup_steps=0",
               "disable_gradient_checkpointing=true", "plot_loss=false"]
    done = subprocess.run(cmd, cwd=run_dir, env=env, capture_output=True, text=True)
    log = done.stdout + done.stderr
    losses = []
    for line in log.splitlines():
        line = line.strip()
        if line.startswith("{") and "'loss'" in line:
            try:
                losses.append(float(line.split("'loss':")[1].split(",")[0].strip(" '")))
            except (IndexError, ValueError):
                pass
    out["train_command"] = cmd
    out["train_returncode"] = done.returncode
    out["train_losses"] = losses
    out["checks"]["trained"] = done.returncode == 0 and len(losses) >= 1
    if done.returncode != 0:
        out["problems"].append(f"{trainer} exited {done.returncode}: " + " | ".join(log.strip().splitlines()[-6:]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trainer", choices=("ms-swift", "llamafactory"))
    parser.add_argument("export_dir", help="a stage-4 exports/ folder (with ms-swift/ and llamafactory/)")
    parser.add_argument("--run-dir", help="the run dir the export was made from (default: two folders up)")
    parser.add_argument("--tokenizer", help="a tokenizer folder for encoding the samples (LLaMA-Factory)")
    parser.add_argument("--train", metavar="CHECKPOINT", help="also train a few steps on this tiny checkpoint")
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args(argv)
    export_dir = Path(args.export_dir).resolve()
    run_dir = Path(args.run_dir).resolve() if args.run_dir else export_dir.parent.parent
    out: dict = {"trainer": args.trainer, "checks": {}, "problems": []}
    if args.trainer == "ms-swift":
        check_ms_swift(export_dir, out)
    else:
        check_llamafactory(export_dir, run_dir, args.tokenizer, out)
    if args.train:
        train(args.trainer, export_dir, run_dir, str(Path(args.train).resolve()), args.steps, out)
    ok = all(out["checks"].values()) and not out["problems"]
    out["ok"] = ok
    print(json.dumps(out, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
