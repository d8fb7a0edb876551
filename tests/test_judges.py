"""The OpenAI-compatible rubric judge against a fake local HTTP server (no network), and the reply parser."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cogito_lib.judges import JudgeError, OpenAIRubricJudge, RubricJudge, build_rubric_prompt, parse_rubric_scores
from cogito_lib.models.backends import RateLimiter
from cogito_lib.mmar import load_meta, score_rubrics
from fake_openai import FakeOpenAI, chat_reply

FIXTURES = Path(__file__).parent / "fixtures" / "mmar"
FAKE_KEY = "sk-test-SECRET-0123456789abcdef"
REAL_KEY = os.environ.get("OPENAI_API_KEY")   # only the api-marked test uses it


@pytest.fixture
def server():
    fake = FakeOpenAI()
    yield fake
    fake.close()


@pytest.fixture
def item():
    return load_meta(FIXTURES / "MMAR-meta.jsonl", check_audio=False, require_rubrics=True).items[0]


@pytest.fixture(autouse=True)
def fake_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)


def make_judge(server, tmp_path, **kwargs):
    options = dict(base_url=server.base_url, cache_dir=tmp_path / "cache", requests_per_minute=0,
                   backoff_base=0.01, backoff_max=0.05, timeout=5)
    options.update(kwargs)
    return OpenAIRubricJudge(**options)


def test_protocol_and_request_shape(server, tmp_path, item):
    judge = make_judge(server, tmp_path)
    assert isinstance(judge, RubricJudge)
    server.script = [chat_reply('{"scores": [1, 0, 1, 0, 1]}')]
    assert judge.score(item, "I hear three barks.", "Three", run=0) == [1, 0, 1, 0, 1]
    request = server.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == f"Bearer {FAKE_KEY}"
    body = request["body"]
    assert body["model"] == "gpt-4o-2024-11-20" and body["temperature"] == 0.0 and body["seed"] == 42
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    user = body["messages"][1]["content"]
    assert item["thinking"] in user and "I hear three barks." in user and '{"scores"' in user
    assert all(entry["scoring_point"] in user for entry in item["rubric"])


def test_seed_is_42_for_every_run_unless_varied(server, tmp_path, item):
    judge = make_judge(server, tmp_path)
    for run in range(3):
        judge.score(item, "t", "Three", run)
    assert [r["body"]["seed"] for r in server.requests] == [42, 42, 42]   # official: same seed, 5 raters
    varied = make_judge(server, tmp_path, cache_dir=tmp_path / "other", vary_seed=True)
    for run in range(3):
        varied.score(item, "t", "Three", run)
    assert [r["body"]["seed"] for r in server.requests[3:]] == [42, 43, 44]


def test_cache_hit_makes_no_request_and_never_holds_the_key(server, tmp_path, item, monkeypatch):
    judge = make_judge(server, tmp_path)
    server.script = [chat_reply('{"scores": [1, 1, 0, 0, 1]}')]
    assert judge.score(item, "t", "Three", 0) == [1, 1, 0, 0, 1]
    again = make_judge(server, tmp_path)                      # a rerun: fresh object, same cache folder
    assert again.score(item, "t", "Three", 0) == [1, 1, 0, 0, 1]
    assert len(server.requests) == 1 and again.stats["cache_hits"] == 1
    again.score(item, "t", "Three", 1)                        # another run is another request
    assert len(server.requests) == 2
    files = list((tmp_path / "cache").rglob("*.json"))
    assert len(files) == 2
    for path in files:
        assert FAKE_KEY not in path.read_text() and FAKE_KEY not in path.name
    assert FAKE_KEY not in repr(judge) and FAKE_KEY not in json.dumps(judge.stats)
    assert all(FAKE_KEY not in str(v) for v in vars(judge).values())
    # cached replies need no key at all
    monkeypatch.delenv("OPENAI_API_KEY")
    assert make_judge(server, tmp_path).score(item, "t", "Three", 0) == [1, 1, 0, 0, 1]


def test_retries_on_500_and_429_then_succeeds(server, tmp_path, item):
    judge = make_judge(server, tmp_path)
    server.script = [(500, '{"error": "boom"}'), (429, '{"error": "slow down"}'), (503, "unavailable"),
                     chat_reply('```json\n{"scores": [0, 1, 1, 1, 1]}\n```')]
    assert judge.score(item, "t", "Three", 0) == [0, 1, 1, 1, 1]
    assert len(server.requests) == 4 and judge.stats["retries"] == 3


def test_gives_up_after_max_retries(server, tmp_path, item):
    judge = make_judge(server, tmp_path, max_retries=2)
    server.default = (500, "down")
    with pytest.raises(JudgeError, match="gave up after 3 attempts"):
        judge.score(item, "t", "Three", 0)
    assert len(server.requests) == 3
    assert not list((tmp_path / "cache").rglob("*.json"))   # failures are not cached


def test_timeout_is_retried(server, tmp_path, item):
    judge = make_judge(server, tmp_path, timeout=0.3)

    def slow(request):
        time.sleep(0.8)
        return chat_reply('{"scores": [0, 0, 0, 0, 0]}')

    server.script = [slow, chat_reply('{"scores": [1, 1, 1, 1, 0]}')]
    assert judge.score(item, "t", "Three", 0) == [1, 1, 1, 1, 0]
    assert judge.stats["retries"] == 1


def test_malformed_reply_is_reasked_then_recorded_as_failure(server, tmp_path, item):
    judge = make_judge(server, tmp_path, parse_retries=2)
    server.script = [chat_reply("I think it deserves full marks."), chat_reply('{"scores": [1, 1]}'),
                     chat_reply('Here you go: {"scores": [1, 0, 0, 0, 1]} hope this helps')]
    assert judge.score(item, "t", "Three", 0) == [1, 0, 0, 0, 1]
    assert judge.stats["parse_failures"] == 2

    server.default = chat_reply("{not json at all")
    with pytest.raises(JudgeError, match="malformed judge reply after 3 tries"):
        judge.score(item, "t", "Three", 1)
    # inside score_rubrics the failure is recorded, not raised
    preds = [{"id": item["id"], "thinking_prediction": "t2", "answer_prediction": "Three"}]
    result = score_rubrics([item], preds, judge, runs=5)
    assert result["judge_failures"] == 1 and not result["complete"]
    assert "malformed" in result["judge_failure_ids"][item["id"]]


def test_client_error_is_not_retried_and_the_key_is_scrubbed(server, tmp_path, item):
    judge = make_judge(server, tmp_path)
    server.script = [(401, json.dumps({"error": {"message": f"Incorrect API key provided: {FAKE_KEY}"}}))]
    with pytest.raises(JudgeError) as err:
        judge.score(item, "t", "Three", 0)
    assert "401" in str(err.value) and FAKE_KEY not in str(err.value)
    assert len(server.requests) == 1


def test_missing_key_names_the_variable(server, tmp_path, item, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    judge = make_judge(server, tmp_path, api_key_env="MY_JUDGE_KEY")
    with pytest.raises(JudgeError, match="MY_JUDGE_KEY is not set"):
        judge.score(item, "t", "Three", 0)
    monkeypatch.setenv("MY_JUDGE_KEY", "another-secret")
    judge.score(item, "t", "Three", 0)
    assert server.requests[-1]["headers"]["Authorization"] == "Bearer another-secret"


def test_base_url_from_env(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://localhost:9/v1/")
    assert OpenAIRubricJudge().base_url == "http://localhost:9/v1"
    assert OpenAIRubricJudge(base_url="http://x/v1").base_url == "http://x/v1"


def test_rate_limiter_spaces_requests():
    now = [0.0]
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(120, clock=lambda: now[0], sleep=sleep)   # one request per 0.5 s
    for _ in range(3):
        limiter.acquire()
    assert slept == pytest.approx([0.5, 0.5])


def test_parse_rubric_scores_variants(item):
    rubric = item["rubric"]
    assert parse_rubric_scores('{"scores": [1, 0, 1, 0, 1]}', rubric) == [1, 0, 1, 0, 1]
    assert parse_rubric_scores('{"scores": [1.0, 0, "1", 0, 1]}', rubric) == [1, 0, 1, 0, 1]
    official = json.dumps([{"name": e["name"], "score": 1, "justification": "ok"} for e in rubric])
    assert parse_rubric_scores(f"Evaluation:\n{official}", rubric) == [1] * 5
    for bad in ("", "no json", '{"scores": [1, 0]}', '{"scores": [2, 0, 0, 0, 0]}', '{"scores": [true, 0, 0, 0, 0]}',
                '{"other": 1}'):
        with pytest.raises(ValueError):
            parse_rubric_scores(bad, rubric)


def test_prompt_mentions_every_criterion(item):
    prompt = build_rubric_prompt(item, "my reasoning", "Three")
    assert all(entry["name"] in prompt for entry in item["rubric"])
    assert "Correct answer: Three" in prompt and "exactly 5 integers" in prompt


@pytest.mark.api
def test_real_openai_judge_scores_one_item(tmp_path, item, monkeypatch):
    if not REAL_KEY:
        pytest.skip("needs a real OPENAI_API_KEY")
    monkeypatch.setenv("OPENAI_API_KEY", REAL_KEY)
    judge = OpenAIRubricJudge(cache_dir=tmp_path / "cache", max_retries=3)
    scores = judge.score(item, item["thinking"], item["answer"], run=0)
    assert len(scores) == 5 and set(scores) <= {0, 1}


def test_cli_rubrics_against_the_fake_server(server, tmp_path):
    """`python -m cogito_lib.mmar rubrics`: 4 correct fixture answers x 5 runs = 20 requests, then all cached."""
    out = tmp_path / "rubrics.json"
    command = [sys.executable, "-m", "cogito_lib.mmar", "rubrics", "--meta", str(FIXTURES / "MMAR-meta.jsonl"),
               "--predictions", str(FIXTURES / "predictions.jsonl"), "--out", str(out),
               "--cache-dir", str(tmp_path / "cache"), "--rpm", "0"]
    env = dict(os.environ, OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY=FAKE_KEY)
    server.default = chat_reply('{"scores": [1, 1, 1, 1, 0]}')
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=repo, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert FAKE_KEY not in proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    assert len(server.requests) == 20
    assert result["crs"] == pytest.approx(0.8) and result["rubrics"] == pytest.approx(100 * 0.8 * 4 / 8)
    assert "Total rubrics: 40.00" in proc.stdout and "CRS: 0.800" in proc.stdout
    proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=repo, timeout=60)
    assert proc.returncode == 0 and len(server.requests) == 20          # the rerun is free
