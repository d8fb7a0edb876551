"""Stage 1 (data collection): files, determinism, resume after kill -9, failures, CLI."""
from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import soundfile as sf

from cogito_lib.config import load_profile
from cogito_lib.io import read_jsonl
from cogito_lib.world import MODALITIES, collect
from cogito_lib.world import tts

# `cogito_lib.world.collect` the attribute is the stage function; the module is reached through importlib.
collect_module = importlib.import_module("cogito_lib.world.collect")
JOURNAL, STAGE_DIR = collect_module.JOURNAL, collect_module.STAGE_DIR

PROFILE = load_profile("tiny")
NUM_CLIPS = 14
STATS_KEYS = {"num_requested", "num_clips", "num_failed", "failures_by_reason", "clips_by_modality",
              "clips_by_fact_kind", "clips_by_layer", "total_audio_s", "wall_s", "clips_per_s", "workers", "resumed"}


def snapshot(run_dir: Path, out_subdir: str = STAGE_DIR) -> dict[str, bytes]:
    """Bytes of every file a finished stage must reproduce exactly (stats.json holds timings, so not it)."""
    stage = run_dir / out_subdir
    files = [stage / "manifest.jsonl", stage / "failures.jsonl", *sorted((stage / "audio").iterdir())]
    return {str(p.relative_to(stage)): p.read_bytes() for p in files}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run (2 workers) of the tiny profile."""
    run_dir = tmp_path_factory.mktemp("reference")
    stats = collect(PROFILE, run_dir, num_clips=NUM_CLIPS, workers=2, progress=False)
    return run_dir, stats


def test_stage_files_and_stats(reference):
    run_dir, stats = reference
    stage = run_dir / STAGE_DIR
    assert STATS_KEYS <= stats.keys()
    assert stats["num_clips"] == NUM_CLIPS and stats["num_failed"] == 0 and stats["resumed"] == 0
    assert stats["clips_by_modality"] == {m: 2 for m in MODALITIES}
    assert not (stage / JOURNAL).exists()
    manifest = read_jsonl(stage / "manifest.jsonl")
    assert [r["index"] for r in manifest] == list(range(NUM_CLIPS))
    assert len({r["clip_id"] for r in manifest}) == NUM_CLIPS
    for record in manifest:
        info = sf.info(stage / record["audio_path"])
        assert (info.samplerate, info.channels, info.subtype, info.frames) == (16000, 1, "PCM_16", record["num_samples"])
    assert read_jsonl(stage / "failures.jsonl") == []
    assert abs(stats["total_audio_s"] - sum(r["duration_s"] for r in manifest)) < 1e-2


def test_deterministic_across_runs_and_workers(reference, tmp_path):
    run_dir, _ = reference
    collect(PROFILE, tmp_path / "same", num_clips=NUM_CLIPS, workers=1, progress=False)
    assert snapshot(tmp_path / "same") == snapshot(run_dir)
    collect(PROFILE, tmp_path / "other", num_clips=NUM_CLIPS, seed=PROFILE.collect.seed + 1, workers=2, progress=False)
    other = snapshot(tmp_path / "other")
    assert other["manifest.jsonl"] != snapshot(run_dir)["manifest.jsonl"]


KILLABLE = textwrap.dedent("""
    import importlib, sys, time
    from cogito_lib.config import load_profile
    stage = importlib.import_module("cogito_lib.world.collect")
    make = stage.generate_clip
    def slow(*args, **kwargs):  # slow enough to be killed mid-stage; output unchanged
        time.sleep(0.15)
        return make(*args, **kwargs)
    stage.generate_clip = slow
    stage.collect(load_profile("tiny"), sys.argv[1], num_clips=int(sys.argv[2]), workers=1, progress=False)
""")


def test_resume_after_kill_matches_uninterrupted_run(reference, tmp_path):
    run_dir, _ = reference
    journal = tmp_path / STAGE_DIR / JOURNAL
    proc = subprocess.Popen([sys.executable, "-c", KILLABLE, str(tmp_path), str(NUM_CLIPS)])
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None and (not journal.exists() or len(read_jsonl(journal)) < 5):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = read_jsonl(journal)
    assert 5 <= len(done) < NUM_CLIPS, "the stage should have been killed part-way"
    # make it worse: a torn last line and a journalled clip whose wav is gone
    with open(journal, "a") as fh:
        fh.write('{"fingerprint": "torn')
    (tmp_path / STAGE_DIR / done[1]["record"]["audio_path"]).unlink()

    stats = collect(PROFILE, tmp_path, num_clips=NUM_CLIPS, workers=2, progress=False)
    assert stats["resumed"] == len(done) - 1
    assert stats["num_clips"] == NUM_CLIPS
    assert snapshot(tmp_path) == snapshot(run_dir)
    again = collect(PROFILE, tmp_path, num_clips=NUM_CLIPS, workers=2, progress=False)  # finished: nothing to do
    assert again["resumed"] == NUM_CLIPS and snapshot(tmp_path) == snapshot(run_dir)


def test_failing_clip_is_logged_and_stage_completes(tmp_path, monkeypatch):
    make = collect_module.generate_clip

    def broken(world, world_seed, index, split, *args, **kwargs):
        if index == 3:
            raise RuntimeError("synthesiser exploded")
        return make(world, world_seed, index, split, *args, **kwargs)

    monkeypatch.setattr(collect_module, "generate_clip", broken)
    stats = collect(PROFILE, tmp_path, num_clips=7, workers=1, progress=False)
    stage = tmp_path / STAGE_DIR
    assert stats["num_failed"] == 1 and stats["num_clips"] == 6
    assert stats["failures_by_reason"] == {"RuntimeError: synthesiser exploded": 1}
    (failure,) = read_jsonl(stage / "failures.jsonl")
    assert failure["index"] == 3 and failure["modality"] == MODALITIES[3]
    assert 3 not in [r["index"] for r in read_jsonl(stage / "manifest.jsonl")]
    assert len(list((stage / "audio").glob("*.wav"))) == 6


def test_missing_espeak_fails_speech_clips_only(tmp_path, monkeypatch):
    monkeypatch.setattr(tts.shutil, "which", lambda name: None)
    tts._synthesize_cached.cache_clear()
    stats = collect(PROFILE, tmp_path, num_clips=7, workers=1, progress=False)
    tts._synthesize_cached.cache_clear()
    reason = "espeak-ng not found on PATH: apt-get install espeak-ng"
    assert stats["failures_by_reason"] == {reason: stats["num_failed"]} and stats["num_failed"] >= 1
    assert stats["num_clips"] + stats["num_failed"] == 7
    assert "speech" in {f["modality"] for f in read_jsonl(tmp_path / STAGE_DIR / "failures.jsonl")}


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cogito_lib.pipe", *args], capture_output=True, text=True, timeout=120)


def test_cli_collect(tmp_path):
    proc = _cli("collect", "--profile", "tiny", "--run-dir", str(tmp_path), "--num-clips", "7", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert '"num_clips": 7' in proc.stdout
    assert len(read_jsonl(tmp_path / STAGE_DIR / "manifest.jsonl")) == 7


@pytest.mark.parametrize("args", [("--profile", "huge"), ("--profile", "tiny", "--set", "world.no_such_key=1"),
                                  ("--profile", "tiny", "--set", "world.max_duration_s=long")])
def test_cli_bad_profile_or_key(tmp_path, args):
    proc = _cli("collect", "--run-dir", str(tmp_path), *args)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("error:")
