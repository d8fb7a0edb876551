"""GPU check of the vLLM backend: load a model with vLLM and generate for 2 audio prompts, printing timings.

    python scripts/gpu_check_vllm.py                       # a tiny Qwen2-Audio build made here (no download)
    python scripts/gpu_check_vllm.py --model /models/Qwen3-Omni-30B-A3B-Thinking --max-new-tokens 512

Not run by the tests (needs CUDA and the optional `vllm` extra). Prints one JSON line per stage and a summary;
exit code 0 = generated, 2 = vLLM or CUDA missing (with the reason), 1 = vLLM failed on the model.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CORPUS = ["I hear three beeps at 440 Hz. The answer is (B) three.", "The low tone comes first, then a high tone."] * 20


def log(stage: str, **fields) -> None:
    print(json.dumps({"stage": stage, **fields}), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="checkpoint folder or cached hub id (default: tiny build)")
    parser.add_argument("--family", default="qwen2_audio", help="family of the tiny build when --model is omitted")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="tokens per output")
    parser.add_argument("--num-samples", type=int, default=2, help="samples per prompt (temperature 0.7)")
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.5, help="vLLM memory fraction")
    parser.add_argument("--max-model-len", type=int, default=4096, help="vLLM context length")
    args = parser.parse_args(argv)

    try:
        import torch
        import vllm
    except ImportError as err:
        log("import", ok=False, reason=f"{err}; install the extra on a CUDA machine: pip install -e .[vllm]")
        return 2
    if not torch.cuda.is_available():
        log("cuda", ok=False, reason="no CUDA device visible; vLLM needs a GPU")
        return 2
    log("versions", vllm=vllm.__version__, torch=torch.__version__, gpu=torch.cuda.get_device_name(0))

    from cogito_lib.models import build_messages, build_tiny_model
    from cogito_lib.models.backends import GenerationRequest, VLLMBackend

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            started = time.perf_counter()
            model = str(build_tiny_model(args.family, Path(tmp) / "tiny", CORPUS, size="mini"))
            log("tiny_build", family=args.family, seconds=round(time.perf_counter() - started, 2))
        started = time.perf_counter()
        try:
            backend = VLLMBackend(model, gpu_memory_utilization=args.gpu_memory_utilization,
                                  max_model_len=args.max_model_len, enforce_eager=True)
        except Exception as err:  # noqa: BLE001 - report and exit: this is a diagnostic script
            log("load", ok=False, model=model, error=f"{type(err).__name__}: {str(err)[:500]}")
            return 1
        log("load", ok=True, model=model, seconds=round(time.perf_counter() - started, 2))

        rng = np.random.default_rng(0)
        t = np.arange(16000 * 2) / 16000
        clips = [0.3 * np.sin(2 * np.pi * 440 * t).astype(np.float32),
                 (0.1 * rng.standard_normal(16000 * 3)).astype(np.float32)]
        questions = ["How many beeps do you hear?", "Is this noise or a tone?"]
        requests = [GenerationRequest(f"gpu-{i}", messages=build_messages(q), waveform=c,
                                      max_new_tokens=args.max_new_tokens, temperature=0.7, top_p=0.95,
                                      num_samples=args.num_samples, seed=i)
                    for i, (q, c) in enumerate(zip(questions, clips))]
        for attempt in ("cold", "warm"):
            started = time.perf_counter()
            try:
                results = backend.generate(requests)
            except Exception as err:  # noqa: BLE001
                log("generate", ok=False, error=f"{type(err).__name__}: {str(err)[:500]}")
                return 1
            seconds = time.perf_counter() - started
            outputs = sum(len(r.texts) for r in results)
            log("generate", ok=True, run=attempt, seconds=round(seconds, 3), outputs=outputs,
                outputs_per_s=round(outputs / seconds, 2),
                parse_failed=sum(r.num_parse_failed for r in results),
                first=[r.texts[0][:120] for r in results])
    return 0


if __name__ == "__main__":
    sys.exit(main())
