"""`make paper-smoke`: notebooks 00-07 through the paper profile's code path, on a CPU, in a few minutes.

    python scripts/paper_smoke.py                      # -> runs/paper-smoke/
    python scripts/paper_smoke.py --server "envs/.vllm/bin/vllm serve"   # the real vLLM (scripts/gpu_smoke.sh)

What runs is the `paper` profile with a run configuration (`runs/paper-smoke/inputs/paper-smoke.toml`) that only
makes it small: tiny random-weight Qwen3-Omni-MoE checkpoints in local folders in the Thinking (base, thinker)
and Instruct (annotator, trace judge, rubric judge) roles; fixture copies of four of the paper's corpora in their
published layouts (tests/source_fixtures.py); a small MMAR meta with synthetic audio, evaluated on its first items
only (`eval.num_items`); every model call through the kit's OpenAI-compatible client (`backend = "vllm"`) to
servers on 127.0.0.1 that this script starts and stops: the kit's stand-in (`python -m cogito_lib.models.serve`,
vLLM's request and response shapes, the tiny model behind them) or, with `--server`, vLLM itself. Notebook 06
fine-tunes the tiny Thinking model with LoRA with the kit's trainer, and 07 evaluates it through a server the
run starts on the merged weights (`serve.launch`).

Random weights would never write a parsable question or verdict, and then nothing would reach stages 3-7. So the
tiny checkpoints are first taught the reply formats, a fixed reply per prompt kind (`REPLIES`), for a few dozen
steps on prompts built by the kit's own prompt builders: a real model, served and sampled, that happens to have
learnt one answer. The numbers are garbage by design; the run proves that the paper's path runs end to end. The
script checks what it must leave behind (every notebook ok in metrics.json, the adapter's adapter_config.json,
predictions of both models through the servers) and prints the wall time of each part.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shlex
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402

CORPORA = ("clotho", "audiocaps", "meld", "musicbench")  # four of the paper's ten corpora, as fixtures
CLIPS_PER_CORPUS = 2
MMAR_ITEMS, MMAR_EVALUATED = 6, 4  # meta rows, and the first N evaluated (the others have no audio on purpose)
TEACH_STEPS = 60  # optimisation steps that teach each tiny checkpoint its replies
STAND_IN = f"{shlex.quote(sys.executable)} -m cogito_lib.models.serve"
# the answer every taught reply gives, and the question the taught annotator asks
TAUGHT_ANSWER = "a steady tone"
TAUGHT_QUESTION = {"question": "Which sound is heard in this clip?", "choices": [TAUGHT_ANSWER, "a dog barking",
                   "a car horn", "rain on a roof"], "answer": TAUGHT_ANSWER, "category": "Perception Layer",
                   "sub-category": "Sound Identification", "tier": "composite"}
REPLIES = {
    "annotator": json.dumps({"questions": [TAUGHT_QUESTION]}),
    "judge": json.dumps({"verdict": "pass", "reasons": []}),
    "rubric": json.dumps({"scores": [1, 1, 0, 1, 1]}),
    "thinker": f"<think>\nI hear one long steady tone and nothing else.\n</think>\n\nThe answer is {TAUGHT_ANSWER}.",
}


# ------------------------------------------------------------------------------------------------------ inputs
def write_datasets(folder: Path) -> dict[str, str]:
    """Fixture copies of CORPORA (no broken rows): {name: root}."""
    import source_fixtures

    return {name: str(source_fixtures.WRITERS[name](folder / name, CLIPS_PER_CORPUS, broken=False).root)
            for name in CORPORA}


def mmar_rows() -> list[dict]:
    """MMAR_ITEMS rows in MMAR-Rubrics' format: the kit's MMAR fixture, and first one item the taught reply
    answers correctly (so that the rubric judge has a correct answer to grade)."""
    fixture = [json.loads(line) for line in (ROOT / "tests" / "fixtures" / "mmar" / "MMAR-meta.jsonl")
               .read_text().splitlines() if line.strip()]
    first = dict(fixture[0], id="s00_steady-tone", audio_path="./audio/s00_steady-tone.wav",
                 question=TAUGHT_QUESTION["question"], choices=list(TAUGHT_QUESTION["choices"]), answer=TAUGHT_ANSWER,
                 modality="sound", category="Perception Layer", **{"sub-category": "Sound Identification"})
    return ([first] + fixture)[:MMAR_ITEMS]


def write_mmar(folder: Path) -> str:
    """MMAR-meta.jsonl with the audio of its first MMAR_EVALUATED items only (a partial evaluation needs no more)."""
    from source_fixtures import write_audio

    rows = mmar_rows()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "MMAR-meta.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for index, row in enumerate(rows[:MMAR_EVALUATED]):
        write_audio(folder / row["audio_path"], seconds=1.0, freq=300.0 + 150 * index)
    return str(folder)


# ------------------------------------------------------------------------------------------------------ models
def _tone(seconds: float = 1.0, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(16_000 * seconds)) / 16_000
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def teaching_prompts(role: str) -> list[tuple[list[dict], np.ndarray | None, str]]:
    """(messages, audio, reply) examples for one checkpoint, built by the kit's own prompt builders."""
    from cogito_lib.judges.llm import SYSTEM_PROMPT as JUDGE_SYSTEM, build_judge_prompt
    from cogito_lib.judges.rubric import OpenAIRubricJudge
    from cogito_lib.models.generate import build_messages, format_mmar_question
    from cogito_lib.pipe.annotate import LLM_SYSTEM, build_annotator_prompt, load_seed_pool

    seeds = load_seed_pool(ROOT / "data" / "seed_questions.jsonl")
    rows = mmar_rows()
    examples = []
    for k in range(3):
        question = {**TAUGHT_QUESTION, "id": f"q{k}", "audio_path": "x.wav"}
        if role == "thinker":
            row = rows[k % len(rows)]
            examples.append((build_messages(format_mmar_question(row["question"], row["choices"])), _tone(1, 300 + k),
                             REPLIES["thinker"]))
            continue
        clip = {"clip_id": f"c{k}", "modality": ["sound", "music", "speech"][k], "caption": f"a fixture clip {k}",
                "events": [{"label": ["water", "piano", "speech"][k], "onset_s": 0.0, "offset_s": 0.6}],
                "facts": {"source": ["clotho", "musicbench", "meld"][k]}}
        prompt = build_annotator_prompt(clip, seeds[4 * k:4 * k + 4], min_questions=1, max_questions=3)
        examples.append(([{"role": "system", "content": LLM_SYSTEM},
                          {"role": "user", "content": [{"type": "audio"}, {"type": "text", "text": prompt}]}],
                         _tone(1, 500 + k), REPLIES["annotator"]))
        judge = build_judge_prompt(question, REPLIES["thinker"].split("\n")[1], TAUGHT_ANSWER, clip)
        examples.append(([{"role": "system", "content": JUDGE_SYSTEM},
                          {"role": "user", "content": [{"type": "audio"}, {"type": "text", "text": judge}]}],
                         _tone(1, 700 + k), REPLIES["judge"]))
        row = rows[k % len(rows)]
        examples.append((OpenAIRubricJudge(model="x").messages(row, "I hear a tone.", row["answer"]), None,
                         REPLIES["rubric"]))
    return examples


def teach(folder: Path, examples, steps: int = TEACH_STEPS, seed: int = 0) -> dict:
    """A few AdamW steps on `examples` with the loss on the replies only; returns first and last loss."""
    import torch

    from cogito_lib.models import load_model
    from cogito_lib.models.generate import encode_batch

    torch.manual_seed(seed)
    model, processor = load_model(folder)
    model.train()
    texts = [processor.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m, _, _ in examples]
    batch = encode_batch(processor, texts, [a for _, a, _ in examples],
                         targets=[reply + "<|im_end|>" for _, _, reply in examples], padding_side="right")
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(steps):
        loss = model(**batch).loss
        loss.backward()
        optimiser.step()
        optimiser.zero_grad()
        losses.append(float(loss))
    model.eval()
    model.save_pretrained(folder)
    return {"first_loss": round(losses[0], 4), "final_loss": round(losses[-1], 4), "steps": steps}


def build_checkpoints(folder: Path) -> dict[str, str]:
    """The tiny Thinking and Instruct checkpoints, taught their replies; reused when built by this same recipe."""
    from cogito_lib.models import build_tiny_model

    recipe = hashlib.sha1(Path(__file__).read_bytes()).hexdigest()[:12]
    out = {}
    for role, kinds in (("thinking", ("thinker",)), ("instruct", ("annotator", "judge", "rubric"))):
        target = folder / role
        marker = target / "taught.json"
        if marker.is_file() and json.loads(marker.read_text()).get("recipe") == recipe:
            out[role] = str(target)
            continue
        shutil.rmtree(target, ignore_errors=True)
        examples = teaching_prompts("thinker" if role == "thinking" else "instruct")
        corpus = [REPLIES[k] for k in kinds] * 20 + [json.dumps(m) for m, _, _ in examples]
        build_tiny_model("qwen3_omni", target, corpus, size={"max_position_embeddings": 8192},
                         seed=1 if role == "thinking" else 2)
        started = time.perf_counter()
        stats = teach(target, examples)
        stats.update(recipe=recipe, role=role, replies={k: REPLIES[k] for k in kinds},
                     seconds=round(time.perf_counter() - started, 1))
        marker.write_text(json.dumps(stats, indent=1) + "\n")
        out[role] = str(target)
    return out


# ------------------------------------------------------------------------------------------------------ config
def smoke_config(inputs: Path, models: dict[str, str], urls: dict[str, str], datasets: dict[str, str], mmar: str,
                 server: str) -> str:
    """The run configuration of the smoke: the paper profile, made small."""
    from cogito_lib.config import _toml_value as v

    launch = f"{server} {{model}} --served-model-name {{name}} --host 127.0.0.1 --port {{port}}"
    if server == STAND_IN:
        launch += " --max-num-seqs 8 --max-model-len 8192 --threads 1"
    mix = ",".join(f"{name}=1" for name in datasets)
    lines = [
        "# paper-smoke: the paper profile, every model tiny, every dataset a fixture (scripts/paper_smoke.py)",
        'profile = "paper"',
        "",
        "[models]",
        f"base = {v(models['thinking'])}",
        f"annotator = {v(models['instruct'])}",
        f"judge = {v(models['instruct'])}",
        f"rubric_judge = {v(models['instruct'])}",
        'backend = "vllm"',
        'rubric_backend = "vllm"',
        'device = "cpu"',
        'dtype = "float32"',
        "gpus = 0",
        "gpu_memory_gb = 0.0",
        "",
        "[serve]",
        f"base_urls = [{v(urls['thinking'])}]",
        f"annotator_urls = [{v(urls['instruct'])}]",
        f"judge_urls = [{v(urls['instruct'])}]",
        f"rubric_urls = [{v(urls['instruct'])}]",
        f"launch = {v(launch)}",
        "launch_timeout_s = 300.0",
        "concurrency = 4",
        "timeout_s = 300.0",
        "",
        "[collect]",
        f"num_clips = {len(datasets) * CLIPS_PER_CORPUS}",
        f"mix = {v(mix)}",
        "enrichers = []",
        "workers = 2",
        "",
        "[annotate]",
        "max_new_tokens = 160",
        "",
        "[think]",
        "num_samples = 2",
        "max_new_tokens = 48",
        "batch_size = 8",
        "",
        "[audit]",
        "judge_max_new_tokens = 32",
        "",
        "[train]",
        "max_steps = 2",
        "batch_size = 2",
        "warmup_steps = 1",
        "checkpoint_every = 0",
        "threads = 2",
        "",
        "[eval]",
        f"num_items = {MMAR_EVALUATED}",
        "rubric_runs = 3",
        "",
        "[datasets]",
    ] + [f"{name} = {v(root)}" for name, root in datasets.items()] + [f"mmar = {v(mmar)}"]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------------ checks
def verify(run_dir: Path) -> list[str]:
    """What a finished smoke must have left behind; the problems found (empty: all there)."""
    from cogito_lib.layout import EVAL, TRAIN
    from cogito_lib.metrics import load_run_metrics
    from cogito_lib.run import discover_notebooks

    problems = []
    metrics = load_run_metrics(run_dir)
    for notebook in discover_notebooks():
        stage = notebook.stem
        if (metrics.get("notebooks", {}).get(stage) or {}).get("status") != "ok":
            problems.append(f"{stage}: not run ok")
        if stage not in metrics.get("stages", {}):
            problems.append(f"{stage}: recorded no metrics")
        if not (run_dir / notebook.name).is_file():
            problems.append(f"{notebook.name}: no executed copy")
    adapter = run_dir / TRAIN / "self_distill" / "adapter" / "adapter_config.json"
    if not adapter.is_file():
        problems.append(f"{adapter} missing")
    for model in ("base", "self_distill"):
        info = run_dir / EVAL / f"predictions-{model}.info.json"
        record = json.loads(info.read_text()) if info.is_file() else {}
        if record.get("backend") != "vllm" or record.get("num_items") != MMAR_EVALUATED:
            problems.append(f"{info.name}: not {MMAR_EVALUATED} predictions through the served backend ({record})")
    return problems


# ------------------------------------------------------------------------------------------------------ main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/paper_smoke.py", description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default=str(ROOT / "runs" / "paper-smoke"))
    parser.add_argument("--server", default=STAND_IN,
                        help="the command that serves a model folder, vLLM's way (default: the kit's stand-in; "
                             "the real one: 'envs/.vllm/bin/vllm serve')")
    parser.add_argument("--server-args", default="",
                        help="extra arguments for every server (e.g. '--gpu-memory-utilization 0.2 --enforce-eager')")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds a server may take to start")
    parser.add_argument("--fresh", action="store_true", help="delete the run dir first (inputs are rebuilt too)")
    args = parser.parse_args(argv)

    from cogito_lib.models.serving import launch_server
    from cogito_lib.run import run

    run_dir = Path(args.run_dir).resolve()
    if args.fresh:
        shutil.rmtree(run_dir, ignore_errors=True)
    inputs = run_dir / "inputs"
    times: dict[str, float] = {}
    started = time.perf_counter()
    for stale in [p for p in run_dir.iterdir() if p.name != "inputs"] if run_dir.is_dir() else []:
        shutil.rmtree(stale) if stale.is_dir() else stale.unlink()  # a smoke always runs every stage
    t = time.perf_counter()
    models = build_checkpoints(inputs / "models")
    times["checkpoints"] = time.perf_counter() - t
    t = time.perf_counter()
    shutil.rmtree(inputs / "data", ignore_errors=True)
    datasets = write_datasets(inputs / "data")
    mmar = write_mmar(inputs / "data" / "mmar")
    times["fixtures"] = time.perf_counter() - t
    server = args.server + (f" {args.server_args}" if args.server_args else "")
    stand_in = args.server == STAND_IN
    template = (f"{server} {{model}} --served-model-name {{name}} --host 127.0.0.1 --port {{port}} "
                + ("--max-num-seqs 8 --max-model-len 8192 --threads 1" if stand_in else "--max-model-len 8192"))
    logs = run_dir / "servers"
    with contextlib.ExitStack() as stack:
        t = time.perf_counter()
        servers = {"thinking": launch_server(template + " --reasoning-parser qwen3", models["thinking"],
                                             name="qwen3-omni-thinking-tiny", log_path=logs / "thinking.log",
                                             timeout=args.timeout),
                   "instruct": launch_server(template, models["instruct"], name="qwen3-omni-instruct-tiny",
                                             log_path=logs / "instruct.log", timeout=args.timeout)}
        with ThreadPoolExecutor(2) as pool:  # both load at once
            urls = dict(zip(servers, pool.map(stack.enter_context, servers.values())))
        times["servers start"] = time.perf_counter() - t
        config = inputs / "paper-smoke.toml"
        config.write_text(smoke_config(inputs, models, urls, datasets, mmar, server))
        t = time.perf_counter()
        results = run(None, run_dir, config=config, progress=False)
        times["notebooks"] = time.perf_counter() - t
    times["total"] = time.perf_counter() - started
    problems = verify(run_dir)
    for result in results:
        print(f"  {result.stage}: {result.wall_s:.1f} s")
    print("paper-smoke: " + ", ".join(f"{k} {v:.1f} s" for k, v in times.items()))
    (run_dir / "smoke.json").write_text(json.dumps({"seconds": {k: round(v, 1) for k, v in times.items()},
                                                    "server": server, "problems": problems}, indent=1) + "\n")
    if problems:
        print("paper-smoke FAILED:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    print(f"paper-smoke ok: {run_dir} (executed notebooks, metrics.json, "
          f"06-self-distillation-training/self_distill/adapter/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
