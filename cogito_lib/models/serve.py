"""A stand-in for `vllm serve` on a CPU: a checkpoint of the kit served with vLLM's OpenAI-compatible API.

    python -m cogito_lib.models.serve /path/to/checkpoint --served-model-name qwen3-omni-thinking \
        --host 127.0.0.1 --port 8000 --reasoning-parser qwen3

It answers what the kit's client asks of vLLM 0.19 (`GET /v1/models`, `POST /v1/chat/completions`, `GET
/health`) with vLLM's request and response shapes: audio as an `input_audio` part (base64 with a format) or an
`audio_url` part (a `data:` URL, or `file://` under `--allowed-local-media-path`), at most one audio per prompt;
`n` samples per request; `temperature`, `top_p`, `max_tokens` (or `max_completion_tokens`), `seed`, `stop`;
`choices[i].message.reasoning` split off by `--reasoning-parser qwen3` as vLLM's Qwen3 parser does (a `<think>`
in the output is dropped, the text before the first `</think>` is the reasoning, all of it when the reply was cut
off); errors as `{"error": {"message", "type", "param", "code"}}`. Unknown request fields are ignored, as vLLM does.

It runs the model with the kit's in-process generation (transformers), batching the requests that arrive
together (up to `--max-num-seqs`). It exists so that the paper profile's inference path (client, servers, data
parallelism, reasoning split) runs end to end on a CPU in tests; it is not fast and makes no claim on vLLM's
numbers. `usage` counts text tokens as the tokenizer sees them (the audio placeholder counts as its text).
"""
from __future__ import annotations

import argparse
import base64
import io
import json
import queue
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Sequence

import numpy as np

REASONING_PARSERS = ("qwen3",)
BATCH_WAIT_S = 0.02  # how long the batcher waits for more requests to join a batch


class RequestError(ValueError):
    """A request vLLM would answer with 400; the message is what the client sees."""


def decode_audio(data: bytes) -> tuple[np.ndarray, int]:
    """Mono float32 samples and their rate from encoded audio bytes (wav, flac, ogg, mp3)."""
    import soundfile as sf

    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as err:  # noqa: BLE001 - any decoding failure is the client's audio
        raise RequestError(f"the audio could not be decoded ({type(err).__name__}: {err})") from None
    return samples.mean(axis=1), int(rate)


def _audio_from_url(url: str, allowed: Path | None) -> tuple[np.ndarray, int]:
    if url.startswith("data:"):
        header, _, payload = url.partition(",")
        if ";base64" not in header:
            raise RequestError("audio data URLs must be base64 encoded (data:audio/wav;base64,...)")
        return decode_audio(base64.b64decode(payload))
    if url.startswith("file://"):
        path = Path(url[len("file://"):]).resolve()
        if allowed is None or not path.is_relative_to(allowed):
            raise RequestError("Cannot load local files without `--allowed-local-media-path`."
                               if allowed is None else f"The file path {path} must be a subpath of "
                               f"`--allowed-local-media-path {allowed}`.")
        return decode_audio(path.read_bytes())
    raise RequestError(f"this server fetches no remote media: send the audio as input_audio or a data: URL, "
                       f"not {url[:40]!r}")


def parse_messages(messages: Any, allowed: Path | None = None) -> tuple[list[dict], tuple[np.ndarray, int] | None]:
    """Chat messages for the chat template (audio parts as {"type": "audio"}) and the one audio clip, if any."""
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' must be a non-empty list")
    out, audio = [], None
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise RequestError("every message needs a 'role' and 'content'")
        content = message.get("content")
        if content is None or isinstance(content, str):
            out.append({"role": message["role"], "content": content or ""})
            continue
        if not isinstance(content, list):
            raise RequestError("'content' must be a string or a list of parts")
        parts = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                parts.append({"type": "text", "text": str(part.get("text", ""))})
                continue
            if kind == "input_audio":
                spec = part.get("input_audio") or {}
                if not isinstance(spec.get("data"), str):
                    raise RequestError("input_audio needs 'data' (base64) and 'format'")
                clip = decode_audio(base64.b64decode(spec["data"]))
            elif kind == "audio_url":
                clip = _audio_from_url(str((part.get("audio_url") or {}).get("url", "")), allowed)
            else:
                raise RequestError(f"unsupported content part type {kind!r} (text, input_audio, audio_url)")
            if audio is not None:
                raise RequestError("At most 1 audio(s) may be provided in one prompt.")
            audio = clip
            parts.append({"type": "audio"})
        out.append({"role": message["role"], "content": parts})
    return out, audio


def split_reasoning(text: str) -> tuple[str | None, str | None]:
    """(reasoning, content) as vLLM 0.19's Qwen3ReasoningParser gives them (thinking enabled)."""
    before, tag, after = text.partition("<think>")
    text = after if tag else before
    if "</think>" not in text:
        return text, None
    reasoning, _, content = text.partition("</think>")
    return reasoning, content or None


@dataclass
class _Job:
    request: Any  # GenerationRequest
    stop: tuple[str, ...]
    keep_stop: bool
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None


class StandInServer:
    """The model and its HTTP front: one batching worker thread, one handler thread per connection."""

    def __init__(self, model: str, served_model_name: str | None = None, *, reasoning_parser: str | None = None,
                 max_num_seqs: int = 8, max_model_len: int = 4096, device: str = "cpu", dtype: str | None = None,
                 allowed_local_media_path: str | None = None):
        from .backends import HFBackend

        self.model_path = str(model)
        self.name = served_model_name or str(model)
        self.reasoning_parser = reasoning_parser
        self.max_num_seqs, self.max_model_len = max_num_seqs, max_model_len
        self.allowed = Path(allowed_local_media_path).resolve() if allowed_local_media_path else None
        self.backend = HFBackend.from_pretrained(self.model_path, batch_size=max_num_seqs, device=device, dtype=dtype)
        self.tokenizer = self.backend.processor.tokenizer
        self.jobs: queue.Queue[_Job] = queue.Queue()
        self.created = int(time.time())
        self.httpd: ThreadingHTTPServer | None = None
        threading.Thread(target=self._worker, daemon=True).start()

    # ------------------------------------------------------------------------------------------ the model side
    def _worker(self) -> None:
        while True:
            jobs = [self.jobs.get()]
            deadline = time.monotonic() + BATCH_WAIT_S
            while len(jobs) < self.max_num_seqs:
                try:
                    jobs.append(self.jobs.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            try:
                results = self.backend.generate([job.request for job in jobs])
                for job, result in zip(jobs, results):
                    job.result = result
            except BaseException as err:  # noqa: BLE001 - reported to each waiting request as a 500
                for job in jobs:
                    job.error = err
            for job in jobs:
                job.done.set()

    def _count(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def complete(self, body: dict) -> dict:
        """A chat-completions response for one request body (RequestError for what vLLM rejects with 400)."""
        from .backends import GenerationRequest

        if not isinstance(body, dict):
            raise RequestError("the request body must be a JSON object")
        model = body.get("model")
        if model is not None and model != self.name:
            raise RequestError(f"The model `{model}` does not exist.")
        messages, audio = parse_messages(body.get("messages"), self.allowed)
        n = body.get("n", 1)
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise RequestError("n must be a positive integer")
        temperature = float(body.get("temperature") if body.get("temperature") is not None else 1.0)
        top_p = float(body.get("top_p") if body.get("top_p") is not None else 1.0)
        stop = body.get("stop") or ()
        stop = (stop,) if isinstance(stop, str) else tuple(stop)
        prompt = self.backend.render(messages)
        prompt_tokens = self._count(prompt)
        if prompt_tokens >= self.max_model_len:
            raise RequestError(f"This model's maximum context length is {self.max_model_len} tokens. However, your "
                               f"request has {prompt_tokens} input tokens.")
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or (self.max_model_len - prompt_tokens)
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise RequestError("max_tokens must be a positive integer")
        if prompt_tokens + max_tokens > self.max_model_len:
            raise RequestError(f"'max_tokens' is too large: {max_tokens}. This model's maximum context length is "
                               f"{self.max_model_len} tokens and your request has {prompt_tokens} input tokens.")
        waveform, rate = audio if audio is not None else (None, 16_000)
        request = GenerationRequest(
            request_id=uuid.uuid4().hex, prompt=prompt, waveform=waveform, sample_rate=rate, max_new_tokens=max_tokens,
            temperature=temperature, top_p=top_p if temperature > 0 else 1.0, num_samples=n,
            seed=int(body.get("seed") or 0), stop=stop)
        job = _Job(request, stop, bool(body.get("include_stop_str_in_output", False)))
        self.jobs.put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        choices, completion_tokens = [], 0
        for index, text in enumerate(job.result.texts):
            finish = "stop"
            if stop and not job.keep_stop:
                for s in stop:
                    if s in text:
                        text = text[:text.index(s)]
            tokens = self._count(text)
            completion_tokens += tokens
            if tokens >= max_tokens:
                finish = "length"
            reasoning, content = (split_reasoning(text) if self.reasoning_parser else (None, text))
            choices.append({"index": index, "message": {
                "role": "assistant", "content": content, "reasoning": reasoning, "refusal": None,
                "annotations": None, "audio": None, "function_call": None, "tool_calls": []},
                "logprobs": None, "finish_reason": finish, "stop_reason": None, "token_ids": None})
        return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                "model": self.name, "choices": choices, "service_tier": None, "system_fingerprint": None,
                "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens + completion_tokens,
                          "completion_tokens": completion_tokens, "prompt_tokens_details": None},
                "prompt_logprobs": None, "prompt_token_ids": None, "kv_transfer_params": None}

    def models(self) -> dict:
        return {"object": "list", "data": [{
            "id": self.name, "object": "model", "created": self.created, "owned_by": "vllm",
            "root": self.model_path, "parent": None, "max_model_len": self.max_model_len, "permission": []}]}

    # ------------------------------------------------------------------------------------------ the HTTP side
    def serve(self, host: str = "127.0.0.1", port: int = 8000) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _send(self, status: int, payload: dict | None) -> None:
                data = json.dumps(payload).encode("utf-8") if payload is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status: int, message: str, kind: str) -> None:
                self._send(status, {"error": {"message": message, "type": kind, "param": None, "code": status}})

            def do_GET(self):  # noqa: N802
                if self.path.rstrip("/") == "/v1/models":
                    self._send(200, server.models())
                elif self.path == "/health":
                    self._send(200, None)
                else:
                    self._error(404, f"Not Found: {self.path}", "NotFoundError")

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._error(404, f"Not Found: {self.path}", "NotFoundError")
                    return
                try:
                    self._send(200, server.complete(json.loads(raw)))
                except (RequestError, json.JSONDecodeError) as err:
                    self._error(400, str(err), "BadRequestError")
                except Exception as err:  # noqa: BLE001 - the server keeps serving; the client sees why
                    self._error(500, f"{type(err).__name__}: {err}", "InternalServerError")

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        print(f"serving {self.model_path} as {self.name!r} at http://{host}:{self.httpd.server_address[1]}/v1",
              flush=True)
        self.httpd.serve_forever(poll_interval=0.2)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cogito_lib.models.serve",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("model", help="checkpoint folder (or a cached hub id)")
    parser.add_argument("--served-model-name", default=None, help="the name clients use (default: the model)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--reasoning-parser", choices=REASONING_PARSERS, default=None,
                        help="split <think> reasoning into message.reasoning, as vLLM's qwen3 parser")
    parser.add_argument("--max-num-seqs", type=int, default=8, help="requests generated together in one batch")
    parser.add_argument("--max-model-len", type=int, default=4096, help="prompt plus reply tokens")
    parser.add_argument("--allowed-local-media-path", default=None, help="folder file:// audio URLs may read from")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, help="float32 (CPU default), bfloat16, float16")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    server = StandInServer(args.model, args.served_model_name, reasoning_parser=args.reasoning_parser,
                           max_num_seqs=args.max_num_seqs, max_model_len=args.max_model_len, device=args.device,
                           dtype=args.dtype, allowed_local_media_path=args.allowed_local_media_path)
    try:
        server.serve(args.host, args.port)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
