"""Inference on servers: the stand-in `vllm serve` (vLLM's shapes, a tiny Qwen3-Omni-MoE behind them), the roles'
backends from the profile, and servers launched for a model no configured server serves."""
from __future__ import annotations

import base64
import io
import json
import sys
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest
import soundfile as sf

from cogito_lib.config import load_profile
from cogito_lib.models import build_tiny_model
from cogito_lib.models.backends import BackendError, GenerationRequest, OpenAIChatBackend, make_backend
from cogito_lib.models.generate import build_messages
from cogito_lib.models.serve import StandInServer, split_reasoning
from cogito_lib.models.serving import launch_command, launch_server, role_backend, role_kind, same_model, served

CORPUS = ["<think>\nI hear a tone.\n</think>\n\nThe answer is a tone.", "Which sound is heard? a tone a dog"] * 20


def _wav_b64(seconds=0.5, rate=16000):
    buffer = io.BytesIO()
    sf.write(buffer, (0.2 * np.sin(np.arange(int(seconds * rate)) / 3)).astype(np.float32), rate, format="WAV")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    """The stand-in serving a tiny Qwen3-Omni-MoE thinker, in a thread, with vLLM's qwen3 reasoning parser."""
    folder = build_tiny_model("qwen3_omni", tmp_path_factory.mktemp("serve") / "thinker", CORPUS,
                              size={"hidden_size": 32, "num_layers": 1, "num_heads": 2, "num_kv_heads": 1,
                                    "intermediate_size": 32, "vocab_size": 300})
    server = StandInServer(str(folder), "tiny-thinker", reasoning_parser="qwen3", max_num_seqs=4, max_model_len=2048)
    thread = threading.Thread(target=server.serve, kwargs={"port": 0}, daemon=True)
    thread.start()
    while server.httpd is None:
        threading.Event().wait(0.05)
    yield server, f"http://127.0.0.1:{server.httpd.server_address[1]}/v1", folder
    server.httpd.shutdown()


def _post(url, body):
    request = urllib.request.Request(f"{url}/chat/completions", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_models_and_chat_completions_have_vllms_shapes(stand_in):
    _, url, folder = stand_in
    with urllib.request.urlopen(f"{url}/models", timeout=30) as response:
        models = json.loads(response.read())
    assert models["object"] == "list" and models["data"][0]["id"] == "tiny-thinker"
    assert models["data"][0]["root"] == str(folder) and models["data"][0]["owned_by"] == "vllm"
    status, reply = _post(url, {"model": "tiny-thinker", "n": 3, "temperature": 0.8, "max_tokens": 6, "seed": 1,
                                "messages": [{"role": "user", "content": [
                                    {"type": "input_audio", "input_audio": {"data": _wav_b64(), "format": "wav"}},
                                    {"type": "text", "text": "Which sound is heard?"}]}]})
    assert status == 200 and reply["object"] == "chat.completion" and reply["model"] == "tiny-thinker"
    assert [c["index"] for c in reply["choices"]] == [0, 1, 2]
    for choice in reply["choices"]:
        assert set(choice["message"]) >= {"role", "content", "reasoning", "tool_calls"}
        assert choice["finish_reason"] in ("stop", "length")
    usage = reply["usage"]
    assert usage["prompt_tokens"] > 0 and usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_requests_vllm_refuses_are_400_with_its_error_shape(stand_in):
    _, url, _ = stand_in
    audio = {"type": "input_audio", "input_audio": {"data": _wav_b64(), "format": "wav"}}
    two = {"model": "tiny-thinker", "messages": [{"role": "user", "content": [audio, audio]}]}
    status, reply = _post(url, two)
    assert status == 400 and reply["error"]["type"] == "BadRequestError" and "At most 1 audio" in reply["error"]["message"]
    status, reply = _post(url, {"model": "other", "messages": [{"role": "user", "content": "hi"}]})
    assert status == 400 and "does not exist" in reply["error"]["message"]
    status, reply = _post(url, {"messages": [{"role": "user", "content": [
        {"type": "audio_url", "audio_url": {"url": "file:///etc/hostname"}}]}]})
    assert status == 400 and "allowed-local-media-path" in reply["error"]["message"]
    status, reply = _post(url, {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10_000})
    assert status == 400 and "maximum context length" in reply["error"]["message"]
    data_url = {"type": "audio_url", "audio_url": {"url": f"data:audio/wav;base64,{_wav_b64()}"}}
    status, _ = _post(url, {"messages": [{"role": "user", "content": [data_url, {"type": "text", "text": "q"}]}],
                            "max_tokens": 3})
    assert status == 200


def test_the_qwen3_reasoning_split_is_vllms():
    assert split_reasoning("<think>\nabc\n</think>\n\nB") == ("\nabc\n", "\n\nB")
    assert split_reasoning("abc</think>B") == ("abc", "B")        # the template opened the tag
    assert split_reasoning("abc</think>") == ("abc", None)
    assert split_reasoning("cut off here") == ("cut off here", None)  # no </think>: all reasoning
    assert split_reasoning("a</think>b</think>c") == ("a", "b</think>c")  # the first </think> splits


def test_the_kits_client_gets_k_samples_split_into_thinking_and_answer(stand_in):
    _, url, folder = stand_in
    profile = load_profile("tiny", {"models.backend": "vllm", "models.base": str(folder),
                                    "serve.base_urls": [url, url], "serve.concurrency": 2})
    backend = role_backend(profile, "base")
    assert isinstance(backend, OpenAIChatBackend) and backend.client.model == "tiny-thinker"  # asked /v1/models
    requests = [GenerationRequest(f"q{i}", messages=build_messages("Which sound is heard?"),
                                  waveform=np.zeros(8000, np.float32), max_new_tokens=5, temperature=0.7,
                                  num_samples=2, seed=i) for i in range(3)]
    results = backend.generate(requests)
    assert [r.request_id for r in results] == ["q0", "q1", "q2"] and all(len(r.texts) == 2 for r in results)
    for result in results:  # the reasoning field came back inside think tags, and was split again
        for text, split in zip(result.texts, result.splits):
            assert text.startswith("<think>\n") and split.parse_status in ("ok", "unclosed_think", "empty_answer")


def test_served_roles_take_the_request_settings_and_re_ask_unreadable_replies(stand_in):
    _, url, folder = stand_in
    profile = load_profile("tiny", {"models.backend": "vllm", "models.base": str(folder), "serve.base_urls": [url],
                                    "serve.timeout_s": 99.0, "llm.timeout_s": 7.0, "llm.retries": 1,
                                    "llm.backoff_max_s": 0.5, "models.judge_backend": "openai",
                                    "models.judge": "gpt-4o-mini"})
    backend = role_backend(profile, "base")  # a vLLM server: a long reply's timeout, llm.* retries
    assert [(c.timeout, c.max_retries, c.backoff_max) for c in backend.clients] == [(99.0, 1, 0.5)]
    api = role_backend(profile, "judge")  # an API: llm.timeout_s
    assert [(c.timeout, c.max_retries, c.backoff_max) for c in api.clients] == [(7.0, 1, 0.5)]

    def accept(text):
        raise ValueError("never readable")

    request = GenerationRequest("q", messages=build_messages("Which sound is heard?"), max_new_tokens=3,
                                waveform=np.zeros(8000, np.float32), temperature=0.7, num_samples=1, seed=1,
                                accept=accept)
    before = backend.client.stats["requests"]
    [result] = backend.generate([request])
    # asked 1 + parse_retries times, then the last reply is handed back for the caller to record as a failure
    assert backend.client.stats["requests"] - before == 1 + backend.client.parse_retries
    assert result.request_id == "q" and len(result.texts) == 1


def test_a_server_serving_another_model_is_named(stand_in):
    _, url, _ = stand_in
    profile = load_profile("tiny", {"models.backend": "vllm", "models.base": "/models/Qwen3-Omni-30B-A3B-Thinking",
                                    "serve.base_urls": [url]})
    with pytest.raises(BackendError, match=r"serves tiny-thinker .*not models.base = '/models/Qwen3-Omni"):
        role_backend(profile, "base")


def test_roles_follow_the_profile():
    paper = load_profile("paper", {"models.judge_backend": "openai", "models.judge": "gpt-4o-mini"})
    assert [role_kind(paper, r) for r in ("base", "annotator", "judge", "rubric")] == ["vllm", "vllm", "openai",
                                                                                      "openai"]
    assert same_model("/models/Qwen3-Omni-30B-A3B-Thinking", "Qwen/Qwen3-Omni-30B-A3B-Thinking")
    assert not same_model("/models/a", "/models/b")
    with pytest.raises(BackendError, match=r"serve.base_urls is empty"):
        role_backend(paper, "base")


FAKE_SERVER = """
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
port, name, model = int(sys.argv[1]), sys.argv[2], sys.argv[3]
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        data = json.dumps({"object": "list", "data": [{"id": name, "root": model}]}).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(data))); self.end_headers()
        self.wfile.write(data)
    def log_message(self, *a):
        pass
HTTPServer(("127.0.0.1", port), H).serve_forever()
"""


def test_a_model_no_server_serves_is_launched_and_stopped(tmp_path):
    script = tmp_path / "fake_server.py"
    script.write_text(FAKE_SERVER)
    launch = f"{sys.executable} {script} {{port}} {{name}} {{model}}"
    profile = load_profile("tiny", {"models.backend": "vllm", "models.base": "/models/base",
                                    "serve.base_urls": ["http://127.0.0.1:9/v1"], "serve.launch": launch})
    with served(profile, "base", str(tmp_path / "merged"), log_dir=tmp_path, name="cogito-ft") as backend:
        url = backend.client.base_url
        assert backend.client.model == "cogito-ft" and url != "http://127.0.0.1:9/v1"
        with urllib.request.urlopen(f"{url}/models", timeout=10) as response:
            assert json.loads(response.read())["data"][0]["root"] == str(tmp_path / "merged")
    with pytest.raises(OSError):  # stopped with the block (refused, or reset while it went down)
        urllib.request.urlopen(f"{url}/models", timeout=5)
    assert (tmp_path / "servers" / "cogito-ft.log").read_text().startswith("$ ")


def test_a_launch_that_dies_or_is_missing_says_why(tmp_path):
    with pytest.raises(BackendError, match=r"(?s)exited with code 3 .*boom"):
        with launch_server(f"{sys.executable} -c \"print('boom'); raise SystemExit(3)\" {{model}} {{port}}", "m",
                           name="x", log_path=tmp_path / "x.log", timeout=30):
            pass
    profile = load_profile("tiny", {"models.backend": "vllm", "models.base": "/models/base",
                                    "serve.base_urls": ["http://127.0.0.1:9/v1"]})
    with pytest.raises(BackendError, match="serve.launch is empty"):
        with served(profile, "base", "/runs/x/merged"):
            pass
    assert launch_command("serve {model} --port {port} --limit '{\"audio\": 1}'", "/a b", "n", 7) == \
        "serve '/a b' --port 7 --limit '{\"audio\": 1}'"


def test_make_backend_names_the_kinds():
    with pytest.raises(ValueError, match="hf, vllm or openai"):
        make_backend("tgi")


def test_a_thinker_folder_is_rewritten_in_the_full_layout_vllm_serves(stand_in, tmp_path):
    import torch
    from safetensors import safe_open

    from cogito_lib.models import full_omni_checkpoint, load_model

    _, _, folder = stand_in
    full = full_omni_checkpoint(folder, tmp_path / "full")
    config = json.loads((full / "config.json").read_text())
    assert config["model_type"] == "qwen3_omni_moe" and config["architectures"] == ["Qwen3OmniMoeForConditionalGeneration"]
    assert config["thinker_config"]["text_config"]["num_experts"] == 4 and config["enable_audio_output"] is False
    with safe_open(str(full / "model.safetensors"), framework="pt") as f:
        assert f.keys() and all(key.startswith("thinker.") for key in f.keys())
    assert (full / "tokenizer.json").is_file() and (full / "chat_template.jinja").is_file()
    original, _ = load_model(folder)
    again, _ = load_model(full)  # the kit reads it back as the same thinker
    ids = torch.tensor([[3, 5, 7, 11]])
    assert torch.equal(original(input_ids=ids).logits, again(input_ids=ids).logits)
    stamp = (full / "model.safetensors").stat().st_mtime_ns
    assert full_omni_checkpoint(folder, tmp_path / "full") == full and (full / "model.safetensors").stat().st_mtime_ns == stamp
    assert full_omni_checkpoint(full) == full  # already full: as it is
