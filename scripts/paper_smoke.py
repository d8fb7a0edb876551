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
fine-tunes the tiny Thinking model with LoRA on attention and every expert, with the kit's trainer under
`accelerate launch` on 2 ranks (`train.engine` in the run configuration, as at paper scale), and 07 evaluates it
through a server the run starts on the merged weights (`serve.launch`).

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
TEACH_STEPS = {"thinking": 80, "instruct": 50}  # optimisation steps that teach each checkpoint its reply
STAND_IN = f"{shlex.quote(sys.executable)} -m cogito_lib.models.serve"
TINY_SIZE: dict = {}  # TinySize overrides of both checkpoints (--tiny-size)
# the answer every taught reply gives, and the question the taught annotator asks
TAUGHT_ANSWER = "a tone"
TAUGHT_QUESTION = {"question": "What is heard?", "choices": [TAUGHT_ANSWER, "a dog"], "answer": TAUGHT_ANSWER,
                   "category": "Signal Layer", "sub-category": "Sound"}
# What the tiny checkpoints are taught to reply, whatever the prompt: the Instruct one a single JSON object that
# parses as an annotator's questions, a trace judge's verdict and a rubric judge's scores (each parser reads its
# key); the Thinking one a reasoning trace with the taught answer.
REPLIES = {
    "instruct": json.dumps({"questions": [TAUGHT_QUESTION], "verdict": "pass", "reasons": [],
                            "scores": [1, 1, 0, 1, 1]}),
    "thinking": f"<think>\nI hear one steady tone.\n</think>\n\nThe answer is {TAUGHT_ANSWER}.",
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
                 modality="sound", category="Signal Layer", **{"sub-category": "Sound"})
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


LABELS = ("water", "piano", "speech", "dog", "rain", "violin", "engine", "birds", "laughter", "drums")


def teaching_batch(role: str, rng: np.random.Generator, size: int = 3) -> list[tuple[list[dict], np.ndarray | None, str]]:
    """(messages, audio, reply) examples for one teaching step, built by the kit's own prompt builders on random
    content, so that the checkpoint learns its reply whatever the prompt says: MMAR questions (the seed pool's)
    for the Thinking role; an annotator's, a trace judge's and a rubric judge's prompts for Instruct."""
    from cogito_lib.judges.llm import SYSTEM_PROMPT as JUDGE_SYSTEM, build_judge_prompt
    from cogito_lib.judges.rubric import OpenAIRubricJudge
    from cogito_lib.models.generate import build_messages, format_mmar_question
    from cogito_lib.pipe.annotate import LLM_SYSTEM, build_annotator_prompt, load_seed_pool

    seeds = load_seed_pool(ROOT / "data" / "seed_questions.jsonl")
    rows = mmar_rows()
    examples = []
    for k in range(size):
        seed = seeds[int(rng.integers(len(seeds)))]
        audio = _tone(float(rng.uniform(0.5, 3.0)), float(rng.uniform(150, 3000)))
        if role == "thinking":
            examples.append((build_messages(format_mmar_question(seed["question"], seed["choices"])), audio,
                             REPLIES["thinking"]))
            continue
        labels = [str(x) for x in rng.choice(LABELS, size=int(rng.integers(1, 4)), replace=False)]
        words = " ".join(seeds[int(i)]["question"] for i in rng.choice(len(seeds), size=int(rng.integers(0, 6))))
        clip = {"clip_id": f"c{k}", "modality": seed["modality"], "caption": " and ".join(labels),
                "events": [{"label": label, "onset_s": float(i), "offset_s": float(i) + 0.5}
                           for i, label in enumerate(labels)],
                "facts": {"source": str(rng.choice(CORPORA)), "labels": labels, "captions": words}}
        kind = ("annotator", "judge", "rubric")[k % 3]
        if kind == "annotator":
            shots = [seeds[int(i)] for i in rng.choice(len(seeds), size=4, replace=False)]
            text = build_annotator_prompt(clip, shots, min_questions=1, max_questions=3)
            messages = [{"role": "system", "content": LLM_SYSTEM},
                        {"role": "user", "content": [{"type": "audio"}, {"type": "text", "text": text}]}]
        elif kind == "judge":
            question = {**seed, "audio_path": "x.wav"}
            text = build_judge_prompt(question, f"I hear {clip['caption']}.", seed["answer"], clip)
            messages = [{"role": "system", "content": JUDGE_SYSTEM},
                        {"role": "user", "content": [{"type": "audio"}, {"type": "text", "text": text}]}]
        else:
            row = rows[int(rng.integers(len(rows)))]
            messages, audio = OpenAIRubricJudge(model="x").messages(row, f"I hear {clip['caption']}.",
                                                                    row["answer"]), None
        examples.append((messages, audio, REPLIES["instruct"]))
    return examples


def teach(folder: Path, role: str, steps: int, seed: int = 0) -> dict:
    """`steps` AdamW steps, each on a fresh `teaching_batch`, the loss on the reply only; saves the weights and
    returns the first and last loss. One torch thread: at this size, more threads only wait on each other."""
    import torch

    from cogito_lib.models import load_model
    from cogito_lib.models.generate import encode_batch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model, processor = load_model(folder)
    model.train()
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    decay = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps, eta_min=5e-4)
    losses = []
    for _ in range(steps):
        examples = teaching_batch(role, rng)
        texts = [processor.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m, _, _ in examples]
        batch = encode_batch(processor, texts, [a for _, a, _ in examples],
                             targets=[reply + "<|im_end|>" for _, _, reply in examples], padding_side="right")
        loss = model(**batch).loss
        loss.backward()
        optimiser.step()
        optimiser.zero_grad()
        decay.step()
        losses.append(loss.item())
    model.eval()
    model.save_pretrained(folder)
    torch.set_num_threads(threads)
    return {"first_loss": round(losses[0], 4), "final_loss": round(losses[-1], 4), "steps": steps}


def reply_as_one_token(folder: Path, reply: str) -> None:
    """Add `reply` to the checkpoint's vocabulary as one (non-special) token and grow the embeddings to match: a
    70-token JSON object is beyond what a 2-layer model learns to copy in a few dozen steps, one token is not."""
    from transformers import AddedToken

    from cogito_lib.models import load_model

    model, processor = load_model(folder)
    processor.tokenizer.add_tokens([AddedToken(reply, special=False, normalized=False)])
    model.resize_token_embeddings(len(processor.tokenizer))
    model.save_pretrained(folder)
    processor.save_pretrained(folder)


def build_checkpoint(folder: Path, role: str, recipe: str, size: dict) -> dict:
    """One tiny Qwen3-Omni-MoE checkpoint for `role`, taught its reply, saved in the full Qwen3-Omni layout (the one
    vLLM serves) as `folder`; its `taught.json` says how."""
    from cogito_lib.models import build_tiny_model, full_omni_checkpoint

    started = time.perf_counter()
    thinker = folder.with_name(folder.name + "-thinker")
    shutil.rmtree(thinker, ignore_errors=True)
    corpus = [REPLIES[role]] * 20 + [json.dumps(m) for m, _, _ in teaching_batch(role, np.random.default_rng(99), 12)]
    build_tiny_model("qwen3_omni", thinker, corpus, size={"max_position_embeddings": 8192, **size},
                     seed=1 if role == "thinking" else 2)
    if role == "instruct":
        reply_as_one_token(thinker, REPLIES[role])
    stats = teach(thinker, role, steps=TEACH_STEPS[role])
    full_omni_checkpoint(thinker, folder)
    shutil.rmtree(thinker)
    stats.update(recipe=recipe, role=role, reply=REPLIES[role], seconds=round(time.perf_counter() - started, 1))
    (folder / "taught.json").write_text(json.dumps(stats, indent=1) + "\n")
    return stats


def build_checkpoints(folder: Path) -> dict[str, str]:
    """The tiny Thinking and Instruct checkpoints, built at once (one process each), reused while this script's
    recipe is unchanged."""
    from concurrent.futures import ProcessPoolExecutor
    import multiprocessing

    recipe = hashlib.sha1(Path(__file__).read_bytes() + json.dumps(TINY_SIZE, sort_keys=True).encode()).hexdigest()[:12]
    out, todo = {}, []
    for role in ("thinking", "instruct"):
        out[role] = str(folder / role)
        marker = folder / role / "taught.json"
        if not (marker.is_file() and json.loads(marker.read_text()).get("recipe") == recipe):
            todo.append(role)
    if todo:
        folder.mkdir(parents=True, exist_ok=True)
        with ProcessPoolExecutor(len(todo), mp_context=multiprocessing.get_context("spawn")) as pool:
            for stats in pool.map(build_checkpoint, [folder / r for r in todo], todo, [recipe] * len(todo),
                                  [TINY_SIZE] * len(todo)):
                print(f"taught the {stats['role']} checkpoint its reply in {stats['seconds']} s "
                      f"(loss {stats['first_loss']} -> {stats['final_loss']})", flush=True)
    return out


# ------------------------------------------------------------------------------------------------------ config
def launch_template(server: str, extra: str = "") -> str:
    """How the smoke serves a model folder: `server` (the stand-in, or `vllm serve`) with vLLM's flags, then `extra`."""
    template = f"{server} {{model}} --served-model-name {{name}} --host 127.0.0.1 --port {{port}} --max-model-len 8192"
    template += " --max-num-seqs 8 --threads 1" if server == STAND_IN else ""
    return template + (f" {extra}" if extra else "")


def smoke_config(models: dict[str, str], urls: dict[str, str], datasets: dict[str, str], mmar: str,
                 launch: str) -> str:
    """The run configuration of the smoke: the paper profile, made small."""
    from cogito_lib.config import _toml_value as v

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
        "judge_max_new_tokens = 160",
        "",
        "[train]",
        "# 06 trains as at paper scale, under `accelerate launch` with the MoE's experts adapted: here 2 gloo ranks",
        "# without DeepSpeed (ZeRO-3 is scripts/gpu_smoke_train.sh's), each step's 4 sequences as 2 ranks x 1 x 2",
        "# accumulated micro-batches",
        'engine = "accelerate"',
        "processes = 2",
        'accelerate_config = ""',
        "micro_batch_size = 1",
        "batch_size = 4",
        "max_steps = 2",
        "warmup_steps = 1",
        "checkpoint_every = 0",
        "threads = 1",
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
    else:
        problems += training_problems(run_dir / TRAIN / "self_distill")
    for model in ("base", "self_distill"):
        info = run_dir / EVAL / f"predictions-{model}.info.json"
        record = json.loads(info.read_text()) if info.is_file() else {}
        if record.get("backend") != "vllm" or record.get("num_items") != MMAR_EVALUATED:
            problems.append(f"{info.name}: not {MMAR_EVALUATED} predictions through the served backend ({record})")
    return problems


def training_problems(folder: Path) -> list[str]:
    """Whether 06 trained through the engine (2 ranks of `accelerate launch`) with LoRA on the MoE's experts: the
    summary says so, and the saved adapter's config names the fused expert weights of every layer."""
    summary = json.loads((folder / "summary.json").read_text()) if (folder / "summary.json").is_file() else {}
    config = json.loads((folder / "adapter" / "adapter_config.json").read_text())
    problems = []
    if (summary.get("engine"), summary.get("processes")) != ("accelerate", 2):
        problems.append(f"06 did not train with 2 ranks of accelerate launch ({summary.get('engine')}, "
                        f"{summary.get('processes')} processes)")
    experts = [p for p in config.get("target_parameters") or [] if ".mlp.experts." in p]
    if {p.rsplit(".", 1)[-1] for p in experts} != {"gate_up_proj", "down_proj"}:
        problems.append(f"the adapter does not name the experts' gate_up_proj and down_proj: "
                        f"target_parameters = {config.get('target_parameters')}")
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
    parser.add_argument("--tiny-size", default="{}", metavar="JSON",
                        help="TinySize fields of both checkpoints, e.g. '{\"hidden_size\": 256}' (head_dim 64 for "
                             "GPU attention kernels)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one key of the smoke's configuration (e.g. models.device=cuda)")
    args = parser.parse_args(argv)
    global TINY_SIZE
    TINY_SIZE = json.loads(args.tiny_size)

    from cogito_lib.config import ConfigError
    from cogito_lib.models.serving import launch_server
    from cogito_lib.run import RunError, run

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
    template = launch_template(args.server, args.server_args)
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
        config.write_text(smoke_config(models, urls, datasets, mmar, template))
        t = time.perf_counter()
        try:
            results = run(None, run_dir, config=config, sets=args.set, progress=False)
        except (ConfigError, RunError) as err:
            print(f"paper-smoke FAILED: {err}\n  server logs: {logs}", file=sys.stderr)
            return 1
        times["notebooks"] = time.perf_counter() - t
    times["total"] = time.perf_counter() - started
    problems = verify(run_dir)
    for result in results:
        print(f"  {result.stage}: {result.wall_s:.1f} s")
    print("paper-smoke: " + ", ".join(f"{k} {v:.1f} s" for k, v in times.items()))
    (run_dir / "smoke.json").write_text(json.dumps({"seconds": {k: round(v, 1) for k, v in times.items()},
                                                    "server": template, "problems": problems}, indent=1) + "\n")
    if problems:
        print("paper-smoke FAILED:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    print(f"paper-smoke ok: {run_dir} (executed notebooks, metrics.json, "
          f"06-self-distillation-training/self_distill/adapter/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
