"""`kill -9` with the front-end cache: a stage killed mid-way (some clips' features already on disk) and run again
ends with the files of an uninterrupted run, for stage 3 (the thinker) and the base's pretraining (01)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from cogito_lib.base_model import pretrain_base
from cogito_lib.config import load_profile
from cogito_lib.io import read_jsonl, write_jsonl
from cogito_lib.layout import base_dir, frontend_cache
from cogito_lib.world import collect, skills

ROOT = Path(__file__).resolve().parents[1]
# dies right after the journal line that `KILL_WHEN` (a python expression of `row`) is true for
KILLER = """
import os, signal, sys
from cogito_lib import io
append = io.JsonlJournal.append
def append_then_die(self, row):
    append(self, row)
    if eval(os.environ["KILL_WHEN"]):
        os.kill(os.getpid(), signal.SIGKILL)
io.JsonlJournal.append = append_then_die
from cogito_lib.config import load_profile
profile = load_profile("tiny")
if sys.argv[1] == "think":
    from cogito_lib.pipe import think
    think.CHUNK_QUESTIONS = 2
    think.think(profile, sys.argv[2], progress=False)
else:
    from cogito_lib.base_model import pretrain_base
    pretrain_base(profile, sys.argv[2], progress=False)
"""


def _run(script: Path, *args: str, kill_when: str = "False") -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "KILL_WHEN": kill_when,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, str(script), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("cache_resume")
    profile = load_profile("tiny")
    pretrain_base(profile, run_dir, progress=False)
    collect(profile, run_dir, progress=False)
    clips = read_jsonl(run_dir / "02-data-collection" / "manifest.jsonl")
    rng = np.random.default_rng(0)
    questions = []
    for clip in clips[:6]:
        for q in skills.questions_for_clip(clip, skills.skills_of("atomic"), rng, max_questions=1):
            q.pop("thinking")
            q["audio_path"] = f"02-data-collection/{q['audio_path']}"
            questions.append(q)
    write_jsonl(run_dir / "03-qa-construction" / "qa.jsonl", questions)
    script = run_dir.parent / "killer.py"
    script.write_text(KILLER)
    return run_dir, script


def test_a_thinker_killed_mid_stage_resumes_to_the_uninterrupted_samples(prepared, tmp_path):
    run_dir, script = prepared
    fresh, killed = tmp_path / "fresh", tmp_path / "killed"
    for target in (fresh, killed):
        shutil.copytree(run_dir, target, symlinks=True,
                        ignore=shutil.ignore_patterns("04-cot-generation", "cache"))
    done = _run(script, "think", str(fresh))
    assert done.returncode == 0, done.stderr[-2000:]
    died = _run(script, "think", str(killed), kill_when="row.get('kind') == 'chunk_done' and row['chunk'] == 0")
    assert died.returncode == -9, died.stderr[-2000:]
    cached = list(frontend_cache(killed).rglob("*.npy"))
    assert cached  # the first chunk's clips were encoded before the kill
    again = _run(script, "think", str(killed))
    assert again.returncode == 0, again.stderr[-2000:]
    name = "04-cot-generation/cot.jsonl"
    samples = [read_jsonl(folder / name) for folder in (fresh, killed)]
    for records, folder in zip(samples, (fresh, killed)):  # the thinker's path names its run dir
        for record in records:
            assert record.pop("thinker").startswith(str(folder))
    assert samples[0] == samples[1] and samples[0]


def test_pretraining_killed_mid_way_reruns_to_the_same_base(prepared, tmp_path):
    run_dir, script = prepared
    profile = load_profile("tiny")
    fresh, killed = tmp_path / "fresh", tmp_path / "killed"
    for target in (fresh, killed):  # the pretraining world is reused, the base and the cache are not
        shutil.copytree(run_dir / "01-base-model" / "pretrain-world", target / "01-base-model" / "pretrain-world")
    done = _run(script, "pretrain", str(fresh))
    assert done.returncode == 0, done.stderr[-2000:]
    reference = load_file(str(base_dir(profile, fresh) / "model" / "model.safetensors"))
    died = _run(script, "pretrain", str(killed), kill_when="row.get('step') == 3")
    assert died.returncode == -9, died.stderr[-2000:]
    assert list(frontend_cache(killed).rglob("*.npy"))
    again = _run(script, "pretrain", str(killed))
    assert again.returncode == 0, again.stderr[-2000:]
    rebuilt = load_file(str(base_dir(profile, killed) / "model" / "model.safetensors"))
    assert rebuilt.keys() == reference.keys()
    assert all(bool((rebuilt[k] == reference[k]).all()) for k in reference)
