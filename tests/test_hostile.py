"""Hostile input: every case where the kit once gave a wrong or silent result, or a traceback instead of a message.

Each test drives the kit the way a careless or unlucky user would: two writers on one run dir, a bad benchmark
meta, separators inside strings, wavs damaged after a run, an LLM endpoint that answers garbage or hangs, a copied
run dir missing its model, unreadable files. Every one must end in a correct result or one line saying what is
wrong and what to do.
"""
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cogito_lib.config import load_profile
from cogito_lib.io import read_json, read_jsonl, write_jsonl
from cogito_lib.world import skills

sys.path.insert(0, str(Path(__file__).parent))
from fake_openai import FakeOpenAI, chat_reply  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures" / "mmar"
TINY = load_profile("tiny")
COLLECT, QA, COT, AUDIT = "02-data-collection", "03-qa-construction", "04-cot-generation", "05-quality-verification"


def env(**extra):
    """The environment of a child command: this checkout first, no inherited lock token."""
    out = {k: v for k, v in os.environ.items() if k != "COGITO_LOCK_TOKEN"}
    out.update(PYTHONPATH=str(ROOT), MPLBACKEND="Agg", **extra)
    return out


def cli(module, *args, timeout=300, **extra_env):
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, env=env(**extra_env), timeout=timeout)


def one_line_error(proc, *parts):
    """The command failed with exactly one `error:` line on stderr naming every part, and no traceback."""
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    for part in parts:
        assert str(part) in errors[0], errors[0]
    return errors[0]


# ------------------------------------------------------------------------------------------------ a real tiny run
@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """Stages 01-04 of the tiny profile, for real: the base, 14 clips, the metadata annotator, the thinker."""
    from cogito_lib.base_model import pretrain_base
    from cogito_lib.pipe.annotate import annotate
    from cogito_lib.pipe.think import think
    from cogito_lib.world import collect

    run_dir = tmp_path_factory.mktemp("hostile") / "run"
    pretrain_base(TINY, run_dir, progress=False)
    collect(TINY, run_dir, progress=False)
    annotate(TINY, run_dir, progress=False)
    think(TINY, run_dir, progress=False)
    return run_dir


@pytest.fixture
def run_dir(pipeline, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(pipeline, copy, symlinks=True)
    return copy


def clip_with_questions(run_dir):
    """(manifest record, wav path, question ids) of the first clip that has questions."""
    questions = read_jsonl(run_dir / QA / "qa.jsonl")
    clip_id = questions[0]["clip_id"]
    clip = next(c for c in read_jsonl(run_dir / COLLECT / "manifest.jsonl") if c["clip_id"] == clip_id)
    return clip, run_dir / COLLECT / clip["audio_path"], {q["id"] for q in questions if q["clip_id"] == clip_id}


def truncate_keeping_header(wav):
    """Cut the samples in half and keep the header, which still announces all of them."""
    data = wav.read_bytes()
    wav.write_bytes(data[:44 + (len(data) - 44) // 2])
    return data


def zero_out(wav):
    data = wav.read_bytes()
    wav.write_bytes(bytes(len(data)))
    return data


# ------------------------------------------------------------------------------------------------ one writer
SLOW_THINK = """
import sys, time
import cogito_lib.models.backends as backends
real = backends.HFBackend.generate
def slow(self, requests):
    time.sleep(4)
    return real(self, requests)
backends.HFBackend.generate = slow
from cogito_lib.pipe.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_second_think_on_the_same_run_dir_stops_naming_the_first(run_dir):
    args = ["think", "--profile", "tiny", "--run-dir", run_dir, "--force", "--no-progress"]
    first = subprocess.Popen([sys.executable, "-c", SLOW_THINK, *map(str, args)], cwd=ROOT, env=env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    journal = run_dir / COT / "cot.partial.jsonl"
    deadline = time.time() + 240
    while not journal.exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert first.poll() is None, first.communicate()
    second = cli("cogito_lib.pipe", *args)
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-3000:]
    one_line_error(second, "is being written by", f"pid {first.pid}", COT)
    stats = json.loads(out)
    assert stats["samples"] == len(read_jsonl(run_dir / COT / "cot.jsonl")) > 0


RUNNER = """
import sys
from pathlib import Path
from cogito_lib import run
run.run("tiny", sys.argv[1], notebook_dir=Path(sys.argv[2]), progress=False)
"""


def test_a_second_runner_on_the_same_run_dir_stops_naming_the_first(tmp_path):
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    notebooks = tmp_path / "nbs"
    notebooks.mkdir()
    params = new_code_cell('PROFILE: str = "tiny"  # profile\nRUN_DIR: str = ""  # run dir')
    params.metadata["tags"] = ["parameters"]
    body = new_code_cell("import os, time\nfrom pathlib import Path\n"
                         "Path(RUN_DIR, 'started').write_text(str(os.getpid()))\ntime.sleep(6)\nprint('runner one')")
    nb = new_notebook(cells=[params, body])
    nb.metadata["kernelspec"] = {"name": "cogito", "display_name": "cogito", "language": "python"}
    nbformat.write(nb, notebooks / "00-setup-and-tour.ipynb")
    run_dir = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-c", RUNNER, str(run_dir), str(notebooks)], cwd=ROOT, env=env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while not (run_dir / "started").exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert first.poll() is None, first.communicate()
    second = subprocess.run([sys.executable, "-c", RUNNER, str(run_dir), str(notebooks)], cwd=ROOT, env=env(),
                            capture_output=True, text=True, timeout=300)
    first.communicate(timeout=300)
    assert first.returncode == 0
    assert second.returncode != 0 and f"is being written by pid {first.pid}" in second.stderr, second.stderr[-2000:]
    executed = (run_dir / "00-setup-and-tour.ipynb").read_text()
    assert "runner one" in executed  # the first runner's executed notebook, not overwritten


def test_a_dead_writers_lock_is_taken_over_and_another_hosts_is_reported(tmp_path):
    import socket

    from cogito_lib import layout
    from cogito_lib.io import LockHeld

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = layout.lock_path(tmp_path, COT)
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "since": "earlier", "token": "x"}))
    with layout.stage_lock(tmp_path, COT) as info:  # its writer is gone: taken over
        assert info["pid"] == os.getpid() and json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()
    lock.parent.mkdir(exist_ok=True)
    lock.write_text(json.dumps({"pid": 1, "host": "another-machine", "since": "earlier", "token": "y"}))
    with pytest.raises(LockHeld, match=f"pid 1 on host another-machine.*another machine.*delete {lock}"):
        with layout.stage_lock(tmp_path, COT):
            pass


def test_a_second_writer_can_wait_for_the_first(tmp_path):
    from cogito_lib import layout

    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from cogito_lib import layout
        with layout.stage_lock({str(tmp_path)!r}, {COT!r}):
            print("held", flush=True)
            time.sleep(3)
        """)], cwd=ROOT, env=env(), stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    started = time.perf_counter()
    with layout.stage_lock(tmp_path, COT, wait=True) as info:  # waits while the holder sleeps, then takes it
        waited = time.perf_counter() - started
        assert info["pid"] == os.getpid()
    assert waited > 1.0
    holder.wait()


# ------------------------------------------------------------------------------------------------ benchmark inputs
META = FIXTURES / "MMAR-meta.jsonl"
PREDICTIONS = FIXTURES / "predictions.jsonl"


def meta_rows():
    return [json.loads(line) for line in META.read_text().splitlines() if line.strip()]


def bad_meta(case):
    rows = meta_rows()
    if case == "missing field":
        del rows[2]["question"]
    elif case == "bad category":
        rows[2]["category"] = "Emotion Layer"
    elif case == "answer not among the choices":
        rows[2]["answer"] = "none of these"
    elif case == "duplicate id":
        rows[2]["id"] = rows[1]["id"]
    return "".join(json.dumps(r) + "\n" for r in rows)


@pytest.mark.parametrize("case", ["missing field", "bad category", "answer not among the choices", "duplicate id"])
def test_a_bad_meta_row_stops_the_scorer_unless_excluded_explicitly(tmp_path, case):
    meta = tmp_path / "MMAR-meta.jsonl"
    meta.write_text(bad_meta(case))
    proc = cli("cogito_lib.mmar", "score", "--meta", meta, "--predictions", PREDICTIONS)
    one_line_error(proc, meta, "line 3", "--exclude-bad-rows")
    excluded = cli("cogito_lib.mmar", "score", "--meta", meta, "--predictions", PREDICTIONS, "--exclude-bad-rows",
                   "--out", tmp_path / "scores.json")
    assert excluded.returncode == 0, excluded.stderr
    assert "excluded 1 bad row(s)" in excluded.stderr and "line 3" in excluded.stderr
    assert "over 7 items" in excluded.stdout
    assert read_json(tmp_path / "scores.json")["excluded_meta_rows"][0]["line"] == 3


def test_a_meta_with_a_byte_order_mark_is_rejected_by_name(tmp_path):
    meta = tmp_path / "MMAR-meta.jsonl"
    meta.write_bytes(b"\xef\xbb\xbf" + META.read_bytes())
    one_line_error(cli("cogito_lib.mmar", "score", "--meta", meta, "--predictions", PREDICTIONS),
                   f"{meta}:1", "byte-order mark")


def test_an_empty_meta_is_an_error_not_zero_over_zero(tmp_path):
    meta = tmp_path / "MMAR-meta.jsonl"
    meta.write_text("")
    one_line_error(cli("cogito_lib.mmar", "score", "--meta", meta, "--predictions", PREDICTIONS), meta, "empty")


def test_duplicate_prediction_ids_need_a_policy(tmp_path):
    lines = PREDICTIONS.read_text().splitlines()
    first = json.loads(lines[0])
    wrong = dict(first, answer_prediction="something else entirely")
    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text("\n".join(lines + [json.dumps(wrong)]) + "\n")
    one_line_error(cli("cogito_lib.mmar", "score", "--meta", META, "--predictions", predictions),
                   first["id"], "--duplicates")
    kept_first = cli("cogito_lib.mmar", "score", "--meta", META, "--predictions", predictions, "--duplicates",
                     "first", "--out", tmp_path / "first.json")
    kept_last = cli("cogito_lib.mmar", "score", "--meta", META, "--predictions", predictions, "--duplicates",
                    "last", "--out", tmp_path / "last.json")
    assert kept_first.returncode == kept_last.returncode == 0
    first_scores, last_scores = read_json(tmp_path / "first.json"), read_json(tmp_path / "last.json")
    assert first_scores["duplicate_predictions"] == last_scores["duplicate_predictions"] == 1
    assert first_scores["per_item"][first["id"]] == 1 and last_scores["per_item"][first["id"]] == 0


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85"])
def test_score_and_validate_agree_on_separators_inside_strings(tmp_path, separator):
    from cogito_lib.mmar import write_submission

    rows = meta_rows()
    records = [{"id": r["id"], "thinking_prediction": f"first{separator}second", "answer_prediction": r["answer"]}
               for r in rows]
    path = write_submission(records, tmp_path / "submission.jsonl")
    assert separator in path.read_text(encoding="utf-8")  # the kit's own writer leaves it in the string
    validated = cli("cogito_lib.mmar", "validate-submission", "--meta", META, "--predictions", path)
    assert validated.returncode == 0 and "OK" in validated.stdout, validated.stdout + validated.stderr
    scored = cli("cogito_lib.mmar", "score", "--meta", META, "--predictions", path)
    assert scored.returncode == 0 and "Total accuracy: 100.00 over 8 items" in scored.stdout


# ------------------------------------------------------------------------------------------------ unreadable files
def deep(path):
    path.write_text("[" * 100_000 + "\n")


def torn(path):
    path.write_text(PREDICTIONS.read_text().rstrip("\n")[:-15])


def not_json(path):
    lines = PREDICTIONS.read_text().splitlines()
    path.write_text("\n".join(lines[:2] + ["this is not json"] + lines[2:]) + "\n")


UNREADABLE = {  # how to make the file, what the message says, the line it names (None: the file as a whole)
    "missing file": (lambda p: None, "not found", None),
    "a directory": (lambda p: p.mkdir(), "folder", None),
    "invalid UTF-8": (lambda p: p.write_bytes(PREDICTIONS.read_bytes()[:200] + b"\xff\xfe\xfd\n"), "not UTF-8",
                      PREDICTIONS.read_bytes()[:200].count(b"\n") + 1),
    "UTF-16": (lambda p: p.write_bytes(PREDICTIONS.read_text().encode("utf-16")), "UTF-16", 1),
    "UTF-16 without a BOM": (lambda p: p.write_bytes(PREDICTIONS.read_text().encode("utf-16-le")), "UTF-16", 1),
    "deep nesting": (deep, "JSON nested too deeply", 1),
    "a torn last line": (torn, "cut short", len(PREDICTIONS.read_text().splitlines())),
    "a non-JSON line": (not_json, "not valid JSON", 3),
}


def names_line(text, line):
    return line is None or f":{line}:" in text or f"line {line}:" in text


@pytest.mark.parametrize("case", list(UNREADABLE))
@pytest.mark.parametrize("command", ["score", "validate-submission"])
def test_the_mmar_cli_explains_an_unreadable_predictions_file_in_one_line(tmp_path, case, command):
    make, says, line = UNREADABLE[case]
    predictions = tmp_path / "predictions.jsonl"
    make(predictions)
    proc = cli("cogito_lib.mmar", command, "--meta", META, "--predictions", predictions)
    if command == "score":
        assert names_line(one_line_error(proc, predictions, says), line)
    else:  # the validator lists every problem, one line each, the unreadable one first
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
        first = (proc.stdout + proc.stderr).splitlines()[0]
        assert str(predictions) in first and says in first and names_line(first, line), first


@pytest.mark.parametrize("case", ["missing file", "a directory", "invalid UTF-8", "UTF-16", "deep nesting",
                                  "a non-JSON line"])
def test_the_mmar_cli_explains_an_unreadable_meta_in_one_line(tmp_path, case):
    make, says, line = UNREADABLE[case]
    meta = tmp_path / "MMAR-meta.jsonl"
    make(meta)
    if case == "a non-JSON line":
        meta.write_text("\n".join(META.read_text().splitlines()[:2] + ["this is not json"]) + "\n")
    error = one_line_error(cli("cogito_lib.mmar", "score", "--meta", meta, "--predictions", PREDICTIONS), meta, says)
    assert names_line(error, line), error


def test_debug_keeps_the_traceback(tmp_path):
    proc = cli("cogito_lib.mmar", "score", "--meta", tmp_path / "none.jsonl", "--predictions", PREDICTIONS,
               "--debug")
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_think_on_a_malformed_question_line_says_which_line(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / QA).mkdir(parents=True)
    good = {"id": "q1", "clip_id": "c1", "audio_path": "02-data-collection/audio/c1.wav", "question": "How many?",
            "choices": ["1", "2"], "answer": "1"}
    torn = '{"id": "q2", "question'
    (run_dir / QA / "qa.jsonl").write_text(f"{json.dumps(good)}\n{torn}\n{json.dumps(good)}\n")
    proc = cli("cogito_lib.pipe", "think", "--profile", "tiny", "--run-dir", run_dir, "--no-progress")
    one_line_error(proc, f"{run_dir / QA / 'qa.jsonl'}:2", "notebook 03")
    debug = cli("cogito_lib.pipe", "think", "--profile", "tiny", "--run-dir", run_dir, "--no-progress", "--debug")
    assert debug.returncode != 0 and "Traceback" in debug.stderr


# ------------------------------------------------------------------------------------------------ corrupt audio
@pytest.mark.parametrize("damage", [truncate_keeping_header, zero_out], ids=["truncated", "zeroed"])
def test_a_damaged_wav_is_made_again_by_a_rerun_of_collect(run_dir, damage):
    from cogito_lib.world import collect

    clip, wav, _ = clip_with_questions(run_dir)
    original = damage(wav)
    stats = collect(TINY, run_dir, progress=False)
    assert wav.read_bytes() == original
    assert stats["remade"] == {"audio_truncated" if damage is truncate_keeping_header else "audio_unreadable": 1}
    assert clip["audio_sha256"] == read_jsonl(run_dir / COLLECT / "manifest.jsonl")[clip["index"]]["audio_sha256"]


@pytest.mark.parametrize("damage", [truncate_keeping_header, zero_out], ids=["truncated", "zeroed"])
def test_a_damaged_wav_invalidates_its_questions_and_samples(run_dir, damage):
    from cogito_lib.pipe.annotate import annotate
    from cogito_lib.pipe.think import think

    clip, wav, question_ids = clip_with_questions(run_dir)
    written = (run_dir / QA / "qa.jsonl").read_bytes()
    before = len(read_jsonl(run_dir / QA / "qa.jsonl"))
    damage(wav)
    stats = annotate(TINY, run_dir, progress=False)  # 03 rerun: its journal holds this clip's questions
    reasons = {r["reason"] for r in read_jsonl(run_dir / QA / "rejected.jsonl") if r["clip_id"] == clip["clip_id"]}
    assert reasons & {"audio_truncated", "audio_unreadable"}
    assert stats["num_questions"] == before - len(question_ids)
    assert not question_ids & {q["id"] for q in read_jsonl(run_dir / QA / "qa.jsonl")}

    # 04 rerun on the questions written before the damage: those of the damaged clip are skipped, not reused
    (run_dir / QA / "qa.jsonl").write_bytes(written)
    stats = think(TINY, run_dir, progress=False)
    assert not stats["reused"] and stats["skipped"] == len(question_ids)
    skipped = read_jsonl(run_dir / COT / "skipped.jsonl")
    assert {s["question_id"] for s in skipped} == question_ids
    assert {s["reason"] for s in skipped} <= {"audio_truncated", "audio_unreadable"}
    assert not question_ids & {s["question_id"] for s in read_jsonl(run_dir / COT / "cot.jsonl")}


def test_a_truncated_wav_with_an_intact_header_is_caught_by_the_audit_and_the_models(run_dir):
    import soundfile

    from cogito_lib.models.audio import AudioCache
    from cogito_lib.pipe.audit import audit

    clip, wav, question_ids = clip_with_questions(run_dir)
    samples = [s for s in read_jsonl(run_dir / COT / "cot.jsonl") if s["question_id"] in question_ids]
    truncate_keeping_header(wav)
    assert soundfile.info(str(wav)).frames > 0  # a decoder still opens it: only its length gives it away
    stats = audit(TINY, run_dir, progress=False, figures=False, export=False)
    rejected = {r["id"]: r for r in read_jsonl(run_dir / AUDIT / "rejected.jsonl")}
    assert samples and all(s["id"] in rejected for s in samples)
    assert {rejected[s["id"]]["reason"] for s in samples} == {"missing_audio"}
    assert all("audio_truncated" in rejected[s["id"]]["detail"] for s in samples)
    assert stats["audio_problems"] == {"audio_truncated": 1}
    with pytest.raises(ValueError, match="header announces") as err:
        AudioCache()(str(wav))  # what training (06) and evaluation (07) read clips with
    assert getattr(err.value, "kind", None) == "audio_truncated"


def test_a_wav_replaced_by_another_clip_is_caught_by_its_hash(run_dir):
    from cogito_lib.pipe.annotate import annotate

    clip, wav, question_ids = clip_with_questions(run_dir)
    other = next(p for p in (run_dir / COLLECT / "audio").glob("*.wav") if p != wav)
    shutil.copy(other, wav)  # a valid wav that decodes, of another scene: the questions no longer hold
    annotate(TINY, run_dir, progress=False)
    rejected = [r for r in read_jsonl(run_dir / QA / "rejected.jsonl") if r["clip_id"] == clip["clip_id"]]
    assert [r["reason"] for r in rejected] == ["audio_changed"]
    assert not question_ids & {q["id"] for q in read_jsonl(run_dir / QA / "qa.jsonl")}


# ------------------------------------------------------------------------------------------------ LLM replies
@pytest.fixture
def endpoint(monkeypatch):
    server = FakeOpenAI(default=chat_reply("Sorry, I cannot help with that."))
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    yield server
    server.close()


def cache_files(folder):
    return sorted(folder.rglob("*.json")) if folder.exists() else []


def test_an_unreadable_annotator_reply_is_not_kept_and_can_be_asked_again(run_dir, endpoint):
    from cogito_lib.pipe.annotate import annotate

    llm = load_profile("tiny", {"models.annotator": "fake-annotator", "models.backend": "openai"})
    shutil.rmtree(run_dir / QA)
    with pytest.raises(Exception, match="every annotator request failed"):
        annotate(llm, run_dir, progress=False)
    asked = len(endpoint.requests)
    assert asked > 0 and cache_files(run_dir / QA / "llm-cache") == []  # the garbage is not cached
    good = json.dumps({"questions": [{"question": "How many beeps are there?", "choices": ["2", "3", "4", "5"],
                                      "answer": "3", "category": "Perception Layer",
                                      "sub-category": "Counting and Statistics"}]})
    endpoint.default = chat_reply(good)  # the server is fixed
    stats = annotate(llm, run_dir, progress=False, retry_failed=True)
    assert len(endpoint.requests) - asked == stats["num_clips_annotated"] == stats["num_questions"] > 0
    assert len(cache_files(run_dir / QA / "llm-cache")) == stats["num_clips_annotated"]
    again = annotate(llm, run_dir, progress=False, retry_failed=True)  # nothing failed: nothing asked
    assert again["num_questions"] == stats["num_questions"] and len(endpoint.requests) - asked == stats["num_questions"]


def gold_cot(run_dir):
    """One gold trace per question (the judge is asked about each)."""
    samples = []
    for q in read_jsonl(run_dir / QA / "qa.jsonl"):
        text = skills.reasoning_text(q["listing"], [tuple(s) for s in q["steps"]], q["answer"])
        samples.append({"id": f"{q['id']}-s0", "question_id": q["id"], "clip_id": q["clip_id"], "sample_index": 0,
                        "thinking": text, "answer_prediction": q["answer"], "parse_failed": False,
                        "parse_status": "ok"})
    write_jsonl(run_dir / COT / "cot.jsonl", samples)
    return samples


def test_a_judge_reply_without_a_verdict_is_not_kept_and_can_be_asked_again(run_dir, endpoint):
    from cogito_lib.pipe.audit import audit

    samples = gold_cot(run_dir)
    llm = load_profile("tiny", {"models.judge": "fake-judge", "models.backend": "openai"})
    with pytest.raises(Exception, match="no valid verdict"):
        audit(llm, run_dir, progress=False, figures=False, export=False)
    asked = len(endpoint.requests)
    assert asked > 0 and cache_files(run_dir / AUDIT / "judge-cache") == []
    endpoint.default = chat_reply('{"verdict": "pass", "reasons": []}')
    stats = audit(llm, run_dir, progress=False, figures=False, export=False, retry_failed=True)
    assert stats["kept"] == len(samples) and len(endpoint.requests) > asked
    assert len(cache_files(run_dir / AUDIT / "judge-cache")) == len(endpoint.requests) - asked


def test_an_annotate_whose_every_request_failed_exits_non_zero_with_a_summary(run_dir, endpoint):
    shutil.rmtree(run_dir / QA)
    proc = cli("cogito_lib.pipe", "annotate", "--profile", "tiny", "--run-dir", run_dir, "--no-progress",
               "--annotator", "fake-annotator", "--backend", "openai", OPENAI_BASE_URL=endpoint.base_url,
               OPENAI_API_KEY="test-key")
    one_line_error(proc, "every annotator request failed", "malformed_json 14", "--retry-failed")
    assert not (run_dir / QA / "qa.jsonl").exists()


def test_a_hung_endpoint_costs_seconds_says_so_and_fails_the_stage(run_dir, endpoint):
    def hang(request):
        time.sleep(3)
        return chat_reply("late")

    endpoint.default = hang
    shutil.rmtree(run_dir / QA)
    started = time.perf_counter()
    proc = cli("cogito_lib.pipe", "annotate", "--profile", "tiny", "--run-dir", run_dir, "--no-progress",
               "--annotator", "fake-annotator", "--backend", "openai", "--set", "llm.timeout_s=0.3", "--set",
               "llm.retries=1", "--set", "llm.backoff_max_s=0", OPENAI_BASE_URL=endpoint.base_url,
               OPENAI_API_KEY="test-key")
    assert time.perf_counter() - started < 60
    assert "try 1 of 2 failed" in proc.stderr and "timed out" in proc.stderr
    one_line_error(proc, "every annotator request failed", "backend_error")


# ------------------------------------------------------------------------------------------------ stale results
def test_a_rerun_does_not_reuse_an_emptied_cot_file(run_dir):
    from cogito_lib.pipe.think import think

    stats = read_json(run_dir / COT / "stats.json")
    (run_dir / COT / "cot.jsonl").write_text("")
    again = think(TINY, run_dir, progress=False)
    assert not again["reused"] and len(read_jsonl(run_dir / COT / "cot.jsonl")) == stats["samples"] > 0


def test_the_audit_of_an_empty_cot_file_is_an_error(run_dir):
    (run_dir / COT / "cot.jsonl").write_text("")
    proc = cli("cogito_lib.pipe", "audit", "--profile", "tiny", "--run-dir", run_dir, "--no-progress",
               "--no-figures")
    one_line_error(proc, run_dir / COT / "cot.jsonl", "no samples")
    assert proc.returncode == 2


def test_a_journal_of_other_inputs_is_never_published(run_dir):
    from cogito_lib.pipe.think import think

    questions = read_jsonl(run_dir / QA / "qa.jsonl")
    stranger = {"kind": "sample", "chunk": 0, "id": "not-from-this-run-s0", "question_id": questions[0]["id"],
                "clip_id": questions[0]["clip_id"], "sample_index": 0, "text": "x", "thinking": "x",
                "answer_prediction": "x", "parse_status": "ok", "parse_failed": False, "thinker": "another model",
                "generation": {}, "guided": False}
    write_jsonl(run_dir / COT / "cot.partial.jsonl", [stranger, {"kind": "chunk_done", "chunk": 0}])
    think(TINY, run_dir, progress=False, force=True)
    assert "not-from-this-run-s0" not in {r["id"] for r in read_jsonl(run_dir / COT / "cot.jsonl")}


# ------------------------------------------------------------------------------------------------ paths
def test_a_copied_run_dir_whose_base_model_was_deleted_never_uses_the_original(tmp_path):
    from cogito_lib import layout

    original = tmp_path / "original"
    folder = layout.base_dir(TINY, original)
    (folder / "model").mkdir(parents=True)
    (folder / "model" / "config.json").write_text("{}")
    (folder / "base.json").write_text(json.dumps({"model_dir": str(folder / "model")}))
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    assert layout.base_model_path(TINY, copy) == str(layout.base_dir(TINY, copy) / "model")
    shutil.rmtree(layout.base_dir(TINY, copy) / "model")
    with pytest.raises(FileNotFoundError) as err:
        layout.base_model_path(TINY, copy)
    assert str(layout.base_dir(TINY, copy) / "model") in str(err.value) and str(original) not in str(err.value)
    recorded = str(original / layout.BASE / "pretrain-world" / "audio" / "x.wav")
    assert layout.in_run(recorded, copy) == str(copy / layout.BASE / "pretrain-world" / "audio" / "x.wav")


# ------------------------------------------------------------------------------------------------ shareable files
@pytest.mark.parametrize("umask, file_mode", [(0o022, 0o644), (0o027, 0o640)], ids=["umask 022", "umask 027"])
def test_run_files_are_readable_as_the_umask_allows(tmp_path, umask, file_mode):
    from cogito_lib.io import write_json
    from cogito_lib.mmar.jsonl import write_json as mmar_write_json

    previous = os.umask(umask)
    try:
        written = [write_json(tmp_path / "stage" / "stats.json", {"a": 1}),
                   mmar_write_json(tmp_path / "scores.json", {"a": 1})]
    finally:
        os.umask(previous)
    assert [p.stat().st_mode & 0o777 for p in written] == [file_mode, file_mode]
    assert (tmp_path / "stage").stat().st_mode & 0o777 == 0o777 & ~umask
