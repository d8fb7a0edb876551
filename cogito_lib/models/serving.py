"""Who plays each role of the paper, and on which servers: the profile's backends, URLs and launch command.

    backend = role_backend(profile, "annotator", cache_dir=stage_dir / "llm-cache")
    with served(profile, "base", "/runs/paper/06-.../self_distill/merged", log_dir=stage_dir) as backend:
        results = backend.generate(requests)      # a server launched for the fine-tuned model, stopped after

| role | model | backend | servers |
|---|---|---|---|
| base | `models.base` (stage 3's thinker, 07's base) | `models.backend` | `serve.base_urls` |
| annotator | `models.annotator` | `models.annotator_backend` or `models.backend` | `serve.annotator_urls` |
| judge | `models.judge` (stage 4's trace judge) | `models.judge_backend` or `models.backend` | `serve.judge_urls` |
| rubric | `models.rubric_judge` (MMAR-Rubrics) | `models.rubric_backend` | `serve.rubric_urls` |

Backend `hf` runs the model in this process; `vllm` sends chat completions to the role's vLLM servers (no key
unless $VLLM_API_KEY is set), `openai` to an API (key in `serve.api_key_env`). A vLLM server must serve the
role's model: `GET /v1/models` is asked first and a server serving something else is an error naming both. A
model no configured server serves (a fine-tuned model in 07, a later round's thinker) is served by a process
started from `serve.launch` for as long as it is needed, then stopped.
"""
from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from ..config import REPO_ROOT, Profile
from .backends import BackendError, OpenAIChatBackend, OpenAIChatClient, list_models, make_backend

ROLES = ("base", "annotator", "judge", "rubric")
_MODEL_KEY = {"base": "models.base", "annotator": "models.annotator", "judge": "models.judge",
              "rubric": "models.rubric_judge"}
VLLM_KEY_ENV = "VLLM_API_KEY"  # the variable `vllm serve` itself reads for --api-key


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; the roles are: {', '.join(ROLES)}")


def role_kind(profile: Profile, role: str) -> str:
    """The backend of `role`: hf, vllm or openai."""
    _check_role(role)
    m = profile.models
    return {"base": m.backend, "annotator": m.annotator_backend or m.backend,
            "judge": m.judge_backend or m.backend, "rubric": m.rubric_backend}[role]


def role_model(profile: Profile, role: str) -> str:
    """The model `role` is configured with (a folder, a hub id or an API model name)."""
    _check_role(role)
    return profile.get(_MODEL_KEY[role])


def role_urls(profile: Profile, role: str) -> tuple[str, ...]:
    """The servers configured for `role` (serve.<role>_urls)."""
    _check_role(role)
    return profile.get(f"serve.{role}_urls")


def _key_name(role: str) -> str:
    return _MODEL_KEY[role]


def same_model(a: str | os.PathLike | None, b: str | os.PathLike | None) -> bool:
    """Whether two model references name the same model: equal, the same folder, or the same last path part
    (`/models/Qwen3-Omni-30B-A3B-Thinking` and `Qwen/Qwen3-Omni-30B-A3B-Thinking`)."""
    if not a or not b:
        return False
    a, b = str(a).rstrip("/"), str(b).rstrip("/")
    if a == b:
        return True
    try:
        if Path(a).expanduser().resolve() == Path(b).expanduser().resolve():
            return True
    except OSError:
        pass
    return Path(a).name.lower() == Path(b).name.lower()


def served_name(url: str, model: str, *, role: str = "base", api_key_env: str | None = VLLM_KEY_ENV) -> str:
    """The name under which the server at `url` serves `model` (its `/v1/models` card whose id or root is that
    model). BackendError naming what it serves instead, or why it cannot be asked."""
    cards = list_models(url, api_key_env=api_key_env)
    for card in cards:
        if same_model(card.get("id"), model) or same_model(card.get("root"), model):
            return card["id"]
    listed = ", ".join(f"{c['id']} ({c.get('root')})" if c.get("root") else c["id"] for c in cards) or "nothing"
    raise BackendError(f"{url} serves {listed}, not {_key_name(role)} = {model!r}: start it with `vllm serve "
                       f"{model}` or list the server that does in serve.{role}_urls")


def role_backend(profile: Profile, role: str, *, model: str | None = None, urls: tuple[str, ...] | list | None = None,
                 cache_dir: str | os.PathLike | None = None, progress: bool = False, batch_size: int | None = None):
    """The backend that plays `role` with `model` (default: the role's model) on `urls` (default: the role's
    servers). Raises BackendError when a vllm role has no server."""
    kind = role_kind(profile, role)
    model = str(model or role_model(profile, role))
    if kind == "hf":
        kwargs: dict[str, Any] = {"dtype": profile.models.dtype, "device": profile.models.device}
        if batch_size:
            kwargs["batch_size"] = batch_size
        return make_backend("hf", model, **kwargs)
    serve = profile.serve
    urls = list(urls if urls is not None else role_urls(profile, role))
    # a vLLM server's reply may be K samples of a long reasoning (serve.timeout_s); an API's is one short reply
    # (llm.timeout_s); both retry a failed request as llm.* says
    common = dict(cache_dir=cache_dir, timeout=serve.timeout_s if kind == "vllm" else profile.llm.timeout_s,
                  max_retries=profile.llm.retries, backoff_max=profile.llm.backoff_max_s, cache_scope=model)
    if kind == "openai":
        clients = [OpenAIChatClient(model, url, api_key_env=serve.api_key_env, **common) for url in (urls or [None])]
    else:
        if not urls:
            raise BackendError(
                f"{_key_name(role)} = {model!r} runs on vLLM servers (backend vllm) but serve.{role}_urls is empty: "
                f"start a server (`vllm serve {model} --port 8000`, docs/paper-scale.md) and set serve.{role}_urls "
                f"= [\"http://127.0.0.1:8000/v1\"], or set serve.launch so the kit starts one")
        clients = [OpenAIChatClient(served_name(url, model, role=role), url, api_key_env=VLLM_KEY_ENV,
                                    require_key=False, **common) for url in urls]
    return OpenAIChatBackend(clients, concurrency=serve.concurrency, progress=progress, desc=role, name=kind)


def describe_servers(backend: Any) -> str:
    """Where a backend's requests go, for logs and metrics."""
    if isinstance(backend, OpenAIChatBackend):
        return f"{backend.name}: {backend.client.model} at " + ", ".join(c.base_url for c in backend.clients)
    return getattr(backend, "name", type(backend).__name__)


@contextmanager
def served(profile: Profile, role: str, model: str | os.PathLike | None = None, *,
           log_dir: str | os.PathLike | None = None, name: str | None = None,
           cache_dir: str | os.PathLike | None = None, progress: bool = False,
           batch_size: int | None = None) -> Iterator[Any]:
    """A backend for `model` in `role`, for the duration of the block.

    In-process (`hf`) or an API (`openai` without servers): the role's backend. A model the role's servers are
    configured for: those servers. Any other model (a fine-tuned folder) on a vllm role, or a vllm role with
    no servers: a server started from `serve.launch` (its log in `log_dir`), stopped when the block ends."""
    model = str(model or role_model(profile, role))
    kind = role_kind(profile, role)
    urls = role_urls(profile, role)
    own = same_model(model, role_model(profile, role))
    if kind == "hf" or (own and urls) or (kind == "openai" and (urls or own)):
        yield role_backend(profile, role, model=model, cache_dir=cache_dir, progress=progress, batch_size=batch_size)
        return
    if not profile.serve.launch:
        why = (f"serve.{role}_urls is empty" if own else
               f"no configured server serves it (serve.{role}_urls serve {_key_name(role)})")
        raise BackendError(
            f"{model} must be served to run as the {role} model ({kind} backend) but {why}, and serve.launch is "
            f"empty: set serve.launch to a command that serves a folder, e.g. \"vllm serve {{model}} "
            f"--served-model-name {{name}} --host 127.0.0.1 --port {{port}}\" (docs/paper-scale.md)")
    log_dir = Path(log_dir) if log_dir is not None else Path.cwd()
    label = name or Path(model).name or "model"
    folder = Path(model)
    if (folder / "config.json").is_file():  # a thinker folder the kit saved: in the full layout vLLM serves
        from .loading import full_omni_checkpoint

        model = str(full_omni_checkpoint(folder))
    with launch_server(profile.serve.launch, model, name=label, log_path=log_dir / "servers" / f"{label}.log",
                       timeout=profile.serve.launch_timeout_s) as url:
        yield role_backend(profile, role, model=model, urls=[url], cache_dir=cache_dir, progress=progress)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def launch_command(template: str, model: str, name: str, port: int) -> str:
    """`template` with {model}, {name} and {port} filled in (shell-quoted); other braces (JSON) are left alone."""
    return (template.replace("{model}", shlex.quote(str(model))).replace("{name}", shlex.quote(name))
            .replace("{port}", str(port)))


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def stop_process(process: subprocess.Popen, grace_s: float = 30.0) -> None:
    """Stop a process started in its own session, with its children: SIGTERM to its group, SIGKILL after grace."""
    if process.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


@contextmanager
def launch_server(template: str, model: str, *, name: str, log_path: str | os.PathLike, timeout: float = 1800.0,
                  host: str = "127.0.0.1", poll_s: float = 0.5) -> Iterator[str]:
    """Start `template` (a shell command that serves `model` on 127.0.0.1:{port}, run from the repository root so
    that `envs/.vllm/bin/vllm` resolves), wait until its `/v1/models` answers, yield its base URL, and stop it (and
    its children) when the block ends.

    BackendError with the log's last lines when the process exits early or is not ready within `timeout`."""
    port = free_port(host)
    command = launch_command(template, model, name, port)
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    url = f"http://{host}:{port}/v1"
    started = time.monotonic()
    with open(log_path, "ab") as log:
        log.write(f"$ {command}\n".encode())
        log.flush()
        process = subprocess.Popen(command, shell=True, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    print(f"serving {model} as {name!r} at {url} (pid {process.pid}, log {log_path}) ...", flush=True)
    try:
        while True:
            if process.poll() is not None:
                raise BackendError(f"the server for {model} exited with code {process.returncode} before it was "
                                   f"ready; {log_path} ends with:\n{_tail(log_path)}")
            try:
                list_models(url, timeout=5.0)
                break
            except BackendError:
                if time.monotonic() - started > timeout:
                    raise BackendError(f"the server for {model} did not answer {url}/models within {timeout:.0f} s "
                                       f"(serve.launch_timeout_s); {log_path} ends with:\n{_tail(log_path)}") from None
                time.sleep(poll_s)
        print(f"server for {name!r} ready in {time.monotonic() - started:.1f} s", flush=True)
        yield url
    finally:
        stop_process(process)
