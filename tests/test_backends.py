"""Backends: HF in-process; the OpenAI-compatible client (fake server): retries, cache, key, vLLM's reasoning field,
several servers with bounded concurrency; `list_models`."""
from __future__ import annotations

import base64
import io
import json
import threading
import time

import numpy as np
import pytest
import soundfile as sf

from cogito_lib.models import build_messages, build_prompt, build_tiny_model, generate_texts, load_model
from cogito_lib.models.backends import (
    BackendError, GenerationBackend, GenerationRequest, HFBackend, OpenAIChatBackend, OpenAIChatClient, chat_arguments,
    list_models, make_backend, openai_choice_text, request_to_openai_messages, results_parse_failures,
)
from cogito_lib.models.generate import SamplingConfig
from fake_openai import FakeOpenAI

CORPUS = ["I hear three beeps at 440 Hz. The answer is (B) three.", "user assistant question answer"] * 10
SECRET = "sk-test-SECRET-123"


def _clip(n=16000, seed=0):
    return (0.1 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = build_tiny_model("qwen2_5_omni", tmp_path_factory.mktemp("tiny_backend") / "m", CORPUS,
                              size={"hidden_size": 32, "num_layers": 1, "num_heads": 2, "num_kv_heads": 1,
                                    "intermediate_size": 64, "vocab_size": 300})
    return load_model(folder)


# ------------------------------------------------------------------------------------------------ HF
def test_hf_backend_matches_generate_texts_and_keeps_order(tiny, tmp_path):
    model, processor = tiny
    wav_path = tmp_path / "clip.wav"
    sf.write(wav_path, _clip(12000, 1), 16000)
    requests = [
        GenerationRequest("a", messages=build_messages("How many beeps?"), waveform=_clip(), max_new_tokens=5),
        GenerationRequest("b", prompt=build_prompt(processor, "Why?"), audio_path=str(wav_path), max_new_tokens=5,
                          temperature=1.0, top_p=0.9, num_samples=2, seed=3),
        GenerationRequest("c", messages=build_messages("Text only?", with_audio=False), max_new_tokens=5),
    ]
    backend = HFBackend(model, processor, batch_size=2)
    assert isinstance(backend, GenerationBackend)
    results = backend.generate(requests)
    assert [r.request_id for r in results] == ["a", "b", "c"]
    assert [len(r.texts) for r in results] == [1, 2, 1]
    expected = generate_texts(model, processor, [build_prompt(processor, "How many beeps?")], [_clip()],
                              SamplingConfig(max_new_tokens=5))[0]
    assert results[0].texts == expected
    assert all(len(r.splits) == len(r.texts) for r in results)
    assert results_parse_failures(results)["num_outputs"] == 4
    # 8 kHz waveforms are resampled
    req = GenerationRequest("d", prompt="x<|AUDIO|>", waveform=_clip(8000), sample_rate=8000)
    assert req.audio().shape == (16000,)


# ------------------------------------------------------------------------------------------------ OpenAI-compatible
class FakeChatServer:
    """The shared fake server, scripted to fail the first `fail_first` requests with 500, check the key, and answer
    with `n` choices carrying reasoning; `requests` and `headers` record what it received."""

    def __init__(self, fail_first=1):
        self.fail_first = fail_first
        self.fake = FakeOpenAI(default=self._reply)

    def _reply(self, request):
        if len(self.fake.requests) <= self.fail_first:
            return 500, '{"error": "overloaded"}'
        if request["headers"].get("Authorization") != f"Bearer {SECRET}":
            return 401, '{"error": "bad key"}'
        choices = [{"index": k, "finish_reason": "stop",
                    "message": {"role": "assistant", "content": f"(B) answer {k}",
                                "reasoning_content": f"thought {k}"}} for k in range(request["body"].get("n", 1))]
        return 200, json.dumps({"choices": choices, "usage": {"prompt_tokens": 12}})

    @property
    def requests(self):
        return [r["body"] for r in self.fake.requests]

    @property
    def headers(self):
        return [r["headers"] for r in self.fake.requests]

    @property
    def url(self):
        return self.fake.base_url

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fake.close()


def test_openai_backend_retries_caches_and_never_leaks_the_key(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COGITO_TEST_KEY", SECRET)
    cache = tmp_path / "cache"
    sleeps = []
    with FakeChatServer(fail_first=1) as server:
        client = OpenAIChatClient("qwen3-omni-instruct", base_url=server.url, api_key_env="COGITO_TEST_KEY",
                                  cache_dir=cache, sleep=sleeps.append)
        backend = OpenAIChatBackend(client)
        request = GenerationRequest("q", messages=build_messages("How many beeps?"), waveform=_clip(),
                                    temperature=0.7, top_p=0.9, num_samples=2, max_new_tokens=32, seed=1)
        results = backend.generate([request])
        assert len(server.requests) == 2 and sleeps == [1.0]  # one 500, one backoff, one success
        assert results[0].texts[0] == "<think>\nthought 0\n</think>\n\n(B) answer 0"
        assert results[0].splits[1].answer_prediction == "(B) answer 1" and results[0].num_prompt_tokens == 12
        assert not results[0].cached
        # the audio went as base64 WAV
        part = server.requests[-1]["messages"][0]["content"][0]
        assert part["type"] == "input_audio" and part["input_audio"]["format"] == "wav"
        audio, rate = sf.read(io.BytesIO(base64.b64decode(part["input_audio"]["data"])))
        assert rate == 16000 and len(audio) == 16000

        # a rerun costs nothing: served from the cache, even without a key
        monkeypatch.delenv("COGITO_TEST_KEY")
        again = OpenAIChatBackend(OpenAIChatClient("qwen3-omni-instruct", base_url=server.url,
                                                   api_key_env="COGITO_TEST_KEY", cache_dir=cache)).generate([request])
        assert len(server.requests) == 2 and again[0].cached and again[0].texts == results[0].texts

    files = list(cache.rglob("*.json"))
    assert len(files) == 1 and SECRET not in files[0].read_text()
    assert SECRET not in repr(client) and SECRET not in json.dumps(vars(client), default=str)
    assert SECRET not in capsys.readouterr().out
    # the cache key ignores the key: same request, another key, same entry
    monkeypatch.setenv("COGITO_TEST_KEY", "another")
    assert client.cache_key({"a": 1}) == OpenAIChatClient("qwen3-omni-instruct", base_url=server.url,
                                                          api_key_env="COGITO_TEST_KEY").cache_key({"a": 1})


def test_openai_client_errors_are_clear_and_scrubbed(tmp_path, monkeypatch):
    monkeypatch.delenv("COGITO_TEST_KEY", raising=False)
    client = OpenAIChatClient("m", base_url="http://127.0.0.1:9/v1", api_key_env="COGITO_TEST_KEY",
                              max_retries=1, sleep=lambda s: None)
    with pytest.raises(BackendError, match="COGITO_TEST_KEY is not set"):
        client.chat([{"role": "user", "content": "hi"}])
    monkeypatch.setenv("COGITO_TEST_KEY", SECRET)
    with FakeChatServer(fail_first=10) as server:
        client = OpenAIChatClient("m", base_url=server.url, api_key_env="COGITO_TEST_KEY", max_retries=2,
                                  sleep=lambda s: None)
        with pytest.raises(BackendError, match="gave up after 3 attempts") as err:
            client.chat([{"role": "user", "content": "hi"}])
        assert SECRET not in str(err.value)
        assert all(h["Authorization"] == f"Bearer {SECRET}" for h in server.headers)


def test_prompt_only_request_to_openai_messages():
    req = GenerationRequest("p", prompt="What is heard?", waveform=_clip(4000))
    messages = request_to_openai_messages(req)
    assert messages[0]["content"][0]["type"] == "input_audio" and messages[0]["content"][1]["text"] == "What is heard?"
    assert request_to_openai_messages(GenerationRequest("t", prompt="hi"))[0] == {"role": "user", "content": "hi"}
    with pytest.raises(ValueError, match="unknown backend"):
        make_backend("tgi")


def test_a_stop_string_reaches_vllm_and_keeps_itself_in_the_text():
    request = GenerationRequest("q", prompt="hello", max_new_tokens=8, temperature=0.7, stop=("\n",))
    params = chat_arguments(request)
    assert params["stop"] == ["\n"] and params["include_stop_str_in_output"] is True
    assert params["n"] == 1 and params["max_tokens"] == 8 and params["top_p"] == 1.0
    assert request.sampling().stop == ("\n",)
    greedy = chat_arguments(GenerationRequest("q", prompt="hello", num_samples=1))
    assert "stop" not in greedy and greedy["temperature"] == 0.0 and greedy["top_p"] is None


def test_vllm_reasoning_field_goes_back_into_think_tags():
    def choice(content, reasoning, finish="stop"):
        return {"message": {"content": content, "reasoning": reasoning}, "finish_reason": finish}

    assert openai_choice_text(choice("(B)", "\nI hear two beeps.\n")) == "<think>\n\nI hear two beeps.\n\n</think>\n\n(B)"
    assert openai_choice_text(choice("(B)", "")) == "<think>\n\n</think>\n\n(B)"  # an empty think block stays one
    assert openai_choice_text(choice(None, "I hear", "length")) == "<think>\nI hear"  # cut off: unclosed, as written
    assert openai_choice_text(choice("<think>r</think>(A)", None)) == "<think>r</think>(A)"  # no parser: raw text
    assert openai_choice_text({"message": {"content": "x", "reasoning_content": "y"}}).endswith("</think>\n\nx")


class SlowServer:
    """A fake vLLM endpoint that answers after `delay` seconds and records how many requests it held at once."""

    def __init__(self, delay=0.15, name="m"):
        self.lock, self.active, self.peak, self.count = threading.Lock(), 0, 0, 0
        self.fake = FakeOpenAI(default=self._reply)
        self.delay, self.name = delay, name

    def _reply(self, request):
        with self.lock:
            self.active += 1
            self.count += 1
            self.peak = max(self.peak, self.active)
        time.sleep(self.delay)
        with self.lock:
            self.active -= 1
        if request["headers"].get("Authorization"):
            return 400, '{"error": "no key expected"}'
        text = request["body"]["messages"][0]["content"]
        return 200, json.dumps({"choices": [{"index": 0, "finish_reason": "stop",
                                             "message": {"role": "assistant", "content": f"echo {text}"}}]})


def test_requests_spread_over_servers_with_bounded_concurrency(monkeypatch):
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    servers = [SlowServer(), SlowServer()]
    try:
        backend = make_backend("vllm", "m", base_urls=[s.fake.base_url for s in servers], concurrency=2)
        requests = [GenerationRequest(f"r{i}", prompt=f"q{i}", max_new_tokens=4) for i in range(12)]
        started = time.perf_counter()
        results = backend.generate(requests)
        wall = time.perf_counter() - started
    finally:
        for s in servers:
            s.fake.close()
    assert [r.texts[0] for r in results] == [f"echo q{i}" for i in range(12)]  # in request order
    assert all(s.peak <= 2 for s in servers) and sum(s.count for s in servers) == 12
    assert all(s.count >= 3 for s in servers)  # both servers took a share
    assert wall < 12 * 0.15 * 0.75  # requests overlapped (4 in flight), not one after another
    assert results[0].backend == "vllm"


def test_a_request_that_fails_for_good_stops_the_batch_with_its_error(monkeypatch):
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    fake = FakeOpenAI(default=(400, '{"error": {"message": "bad audio", "type": "BadRequestError", "code": 400}}'))
    try:
        backend = make_backend("vllm", "m", base_urls=[fake.base_url], concurrency=3, max_retries=0)
        with pytest.raises(BackendError, match="HTTP 400.*bad audio"):
            backend.generate([GenerationRequest(f"r{i}", prompt="x") for i in range(5)])
    finally:
        fake.close()


def test_list_models_reads_vllm_cards_and_says_why_it_cannot():
    server = FakeOpenAI(models=[{"id": "thinker", "root": "/models/T"}])
    try:
        cards = list_models(server.base_url)
        assert cards == [{"id": "thinker", "root": "/models/T"}]
    finally:
        server.close()
    with pytest.raises(BackendError, match="cannot be reached"):
        list_models("http://127.0.0.1:9/v1", timeout=2)
