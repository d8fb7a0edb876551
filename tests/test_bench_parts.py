"""The parts benchmark (benchmarks/bench_mini_parts.py `parts`): a py-spy profile is split into parts and notebooks
by the frames it holds, idle waits are left out, and a profile of the code before the refactor (`base.py`,
`train.py`, `evaluate.py`) reads the same as one of today's rooms."""
from pathlib import Path

from script_module import load

SITE = "/venv/lib/python3.12/site-packages"
KERNEL = 'process 11:"python -m ipykernel_launcher -f k.json"'


def _bench():
    return load("benchmarks/bench_mini_parts.py")


def _line(process: str, frames: list[tuple[str, str, int]], count: int) -> str:
    return ";".join([process] + [f"{func} ({file}:{line})" for func, file, line in frames]) + f" {count}"


def _profile(tmp_path, lib: str, train: str, evaluate: str, base: str) -> Path:
    runner = 'process 10:"python -m cogito_lib.run --profile mini"'
    worker = 'process 12:"python -m cogito_lib.train --variant x"'
    lines = [
        # notebook 01's kernel: pretraining steps, then the front-end inside a step
        _line(KERNEL, [("<module>", "cell", 1), ("pretrain_base", f"{lib}/{base}", 140),
                       ("train_sft", f"{lib}/{train}", 90), ("backward", f"{SITE}/torch/_tensor.py", 600)], 30),
        _line(KERNEL, [("<module>", "cell", 1), ("pretrain_base", f"{lib}/{base}", 140),
                       ("_np_extract_fbank_features", f"{SITE}/transformers/feature_extraction_whisper.py", 99)], 10),
        # an idle kernel waiting for a message: not work
        _line(KERNEL, [("<module>", "cell", 1), ("pretrain_base", f"{lib}/{base}", 140),
                       ("wait", "/usr/lib/python3.12/threading.py", 300)], 500),
        # notebook 07's kernel (another process id), and a training worker that notebook 06's kernel started
        _line(KERNEL.replace("11", "13"), [("<module>", "cell", 1), ("predict", f"{lib}/{evaluate}", 50)], 40),
        _line(f'{runner};{KERNEL.replace("11", "14")};{worker}',
              [("<module>", f"{lib}/distill.py", 5), ("step", f"{lib}/{train}", 70)], 20),
        # the runner starting up
        _line(runner, [("_find_and_load", "<frozen importlib._bootstrap>", 1176)], 5),
    ]
    path = tmp_path / f"{base}.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_parts_split_a_profile_by_part_and_notebook(tmp_path):
    bench = _bench()
    table = bench.parts_table(_profile(tmp_path, "/k/cogito_lib", "train/loop.py", "evaluate/predictions.py",
                                       "base_model.py"))
    assert table["samples"] == 105  # the 500 idle samples are left out
    assert table["fraction"] == {"front-end encoding": round(10 / 105, 4), "process start-up": round(5 / 105, 4),
                                 "training steps": round(50 / 105, 4), "evaluation": round(40 / 105, 4)}
    by_nb = table["fraction_by_notebook"]
    assert by_nb["01"] == {"front-end encoding": round(10 / 105, 4), "training steps": round(30 / 105, 4)}
    assert by_nb["06"] == {"training steps": round(20 / 105, 4)}
    assert by_nb["07"] == {"evaluation": round(40 / 105, 4)}
    assert by_nb["runner"] == {"process start-up": round(5 / 105, 4)}


def test_a_profile_of_the_code_before_the_refactor_reads_the_same(tmp_path):
    bench = _bench()
    today = bench.parts_table(_profile(tmp_path, "/k/cogito_lib", "train/loop.py", "evaluate/predictions.py",
                                       "base_model.py"))
    before = bench.parts_table(_profile(tmp_path, "/k/cogito_lib", "train.py", "evaluate.py", "base.py"))
    assert before == today
