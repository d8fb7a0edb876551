"""Backends: HF in-process, vLLM request/response mapping (fake engine), OpenAI-compatible client (fake server)."""
from __future__ import annotations

import base64
import io
import json
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

from cogito_lib.models import build_messages, build_prompt, build_tiny_model, generate_texts, load_model
from cogito_lib.models.backends import (
    BackendError, GenerationBackend, GenerationRequest, HFBackend, OpenAIChatBackend, OpenAIChatClient, VLLMBackend,
    make_backend, request_to_openai_messages, request_to_vllm, results_parse_failures,
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


# ------------------------------------------------------------------------------------------------ vLLM
class FakeSamplingParams:
    def __init__(self, **kwargs):
        self.kwargs = kwargs


class FakeLLM:
    """Mimics `vllm.LLM.generate`: a list of RequestOutput-like objects, one per prompt, in order."""

    def __init__(self):
        self.calls = []

    def generate(self, prompts, sampling_params, use_tqdm=True):
        self.calls.append((prompts, sampling_params))
        outputs = []
        for i, (prompt, params) in enumerate(zip(prompts, sampling_params)):
            n = params.kwargs["n"]
            completions = [SimpleNamespace(index=k, text=f"<think>r{i}.{k}</think>(A)", token_ids=[1, 2],
                                           finish_reason="stop") for k in reversed(range(n))]
            outputs.append(SimpleNamespace(request_id=str(i), prompt=prompt["prompt"], prompt_token_ids=[0] * 7,
                                           outputs=completions))
        return outputs


def test_vllm_request_and_response_mapping(tiny):
    _, processor = tiny
    render = lambda m: processor.apply_chat_template(m, tokenize=False, add_generation_prompt=True)  # noqa: E731
    request = GenerationRequest("q1", messages=build_messages("How many?"), waveform=_clip(8000), sample_rate=8000,
                                max_new_tokens=64, temperature=0.7, top_p=0.9, num_samples=3, seed=11)
    prompt, params = request_to_vllm(request, render)
    assert prompt["prompt"].count("<|AUDIO|>") == 1  # vLLM expands the placeholder itself
    audio, rate = prompt["multi_modal_data"]["audio"][0]
    assert rate == 16000 and audio.shape == (16000,)
    assert params == {"n": 3, "max_tokens": 64, "seed": 11, "temperature": 0.7, "top_p": 0.9}
    greedy = GenerationRequest("q2", prompt="hello", max_new_tokens=8)
    prompt, params = request_to_vllm(greedy, render)
    assert "multi_modal_data" not in prompt and params["temperature"] == 0.0 and params["top_p"] == 1.0

    fake = FakeLLM()
    backend = VLLMBackend(llm=fake, render=render, sampling_params_cls=FakeSamplingParams)
    results = backend.generate([request, greedy])
    assert [r.request_id for r in results] == ["q1", "q2"]
    assert results[0].texts == ["<think>r0.0</think>(A)", "<think>r0.1</think>(A)", "<think>r0.2</think>(A)"]
    assert results[0].splits[1].thinking == "r0.1" and results[0].splits[1].answer_prediction == "(A)"
    assert results[0].finish_reasons == ["stop"] * 3 and results[0].num_prompt_tokens == 7
    assert results[1].backend == "vllm"


def test_vllm_missing_gives_clear_message():
    pytest.importorskip("torch")
    try:
        import vllm  # noqa: F401
        pytest.skip("vllm is installed here")
    except ImportError:
        pass
    with pytest.raises(BackendError, match=r"pip install -e \.\[vllm\]"):
        VLLMBackend(model="Qwen/Qwen3-Omni-30B-A3B-Thinking")
    with pytest.raises(BackendError, match="optional GPU-only extra"):
        make_backend("vllm", "some/model")


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
    _, params = request_to_vllm(request, lambda messages: "unused")
    assert params["stop"] == ["\n"] and params["include_stop_str_in_output"] is True
    assert request.sampling().stop == ("\n",)
    assert "stop" not in request_to_vllm(GenerationRequest("q", prompt="hello"), lambda m: "")[1]
