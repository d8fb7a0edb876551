"""GPU step time, throughput, peak memory and MFU of a LoRA fine-tuning step at a realistic size (random weights,
no download): Qwen2-Audio-7B, or the paper's own base, Qwen3-Omni-30B-A3B (MoE, experts adapted).

    python scripts/gpu_bench_lora.py                          # Qwen2-Audio-7B sizes, batch 4, 512 text tokens + 30 s
    python scripts/gpu_bench_lora.py --steps 20 --batch-size 2 --gradient-checkpointing
    python scripts/gpu_bench_lora.py --model qwen3_omni_30b_a3b --gradient-checkpointing   # one H200 (~61 GB of bf16)
    python scripts/gpu_bench_lora.py --model qwen3_omni_30b_a3b --layers 24 ...            # half depth on 80 GB cards
    python scripts/gpu_bench_lora.py --dry-run-cpu [--model qwen3_omni_30b_a3b]   # the same code path, tiny, on CPU

`--model qwen3_omni_30b_a3b` builds `Qwen3OmniMoeThinkerForConditionalGeneration` with Qwen3-Omni-30B-A3B's
thinker sizes (text: hidden 2048, 48 layers, 32 heads of 128, 4 KV heads, 128 experts of FFN 768, 8 routed per
token, vocab 152064; audio and vision towers: transformers' config defaults, which are the released model's: audio
d_model 1280, 32 layers, 128 mel bins), LoRA through `cogito_lib.train.prepare_lora` with the kit's default targets
(attention + every expert through peft's target_parameters; `--attention-only` for q/k/v/o only), one micro-batch
of `--batch-size` sequences of 30 s audio (390 audio tokens) + `--text-tokens` text. Its MFU counts the FLOPs of
the *activated* parameters (attention, router, 8 of 128 experts, LM head): 4 * N_active * T + 6 * N_lora_active * T
+ 2 * N_audio * T_audio, where N_lora_active counts the expert LoRA factors at 8/128 (peft folds every expert's
update into the fused weight each forward, work that is overhead here, not model FLOPs).

The model is `Qwen2AudioForConditionalGeneration` built from a config: the text decoder has Qwen2-7B's sizes
(hidden 3584, 28 layers, 28 heads, 4 KV heads, FFN 18944, vocab 152064) and the audio tower Whisper-large's
(d_model 1280, 32 layers, 20 heads, FFN 5120, 128 mel bins, 30 s = 3000 mel frames -> 1500 encoder positions ->
750 audio tokens after the tower's pooling). Weights are random and bf16 on CUDA. LoRA (`cogito_lib.models.add_lora`,
rank 16, alpha 32, dropout 0) sits on the language model's q/k/v/o/gate/up/down projections only, as in notebook 06;
everything else is frozen. Each step: forward with labels on the text tokens, backward, AdamW step, zero_grad.
Batches are random token ids with the audio placeholder repeated once per audio token, and random features.

MFU (model FLOPs utilisation) counts the FLOPs the step needs, not what the kernels execute (no recomputation):

    step FLOPs = 4 * N_lm * T                 # frozen language model: forward (2NT) + activation gradients (2NT);
                                              #   no weight gradients for frozen weights, so not 6NT
               + 6 * N_lora * T               # LoRA factors: forward, activation and weight gradients
               + 2 * N_audio * T_enc          # frozen audio tower: forward only (nothing before it is trained,
               + 2 * N_proj * T_audio         #   so no gradient flows into it); projector likewise
    MFU = step FLOPs / (mean step time * peak dense bf16 FLOP/s)

with N_lm the language model's matmul weights (every decoder weight and the LM head; the token embedding, a
lookup, excluded), T = batch * (text + audio tokens) the decoder's tokens per step, N_audio the audio tower's
weights less its position table, T_enc = batch * encoder positions (1500 for 30 s), T_audio = batch * audio tokens.
This is the usual parameter-only approximation (6*N*T for full fine-tuning; ~4*N*T with a frozen base). Attention
score FLOPs (QK^T and AV: 4 * layers * seq^2 * hidden per sequence forward, x3 with their gradients in the decoder,
x1 in the frozen tower) are left out of `mfu` and reported with them in `mfu_with_attention`.
Peak dense bf16: H100 SXM / H200 989 TFLOP/s, H100 PCIe 756, H100 NVL 835, A100 312; `--peak-tflops` overrides.

Prints one JSON line. Exit codes: 0 measured; 2 no CUDA device (use --dry-run-cpu); 1 out of GPU memory (JSON with
the error; try --gradient-checkpointing or a smaller --batch-size).
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
MEL_FRAMES_PER_S = 100  # Whisper features: 16 kHz, hop 160


class _Audio:
    """Shapes that follow from a benchmark size's seconds of audio."""

    audio_seconds: int

    @property
    def mel_frames(self) -> int:
        return self.audio_seconds * MEL_FRAMES_PER_S


@dataclass(frozen=True)
class BenchSize(_Audio):
    """The model and batch shapes the benchmark runs."""

    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    vocab_size: int
    audio_d_model: int
    audio_layers: int
    audio_heads: int
    audio_ffn: int
    num_mel_bins: int
    audio_seconds: int
    batch_size: int
    text_tokens: int
    tie_word_embeddings: bool = False

    @property
    def encoder_positions(self) -> int:  # after the tower's stride-2 conv
        return (self.mel_frames - 1) // 2 + 1

    @property
    def audio_tokens(self) -> int:  # after the tower's stride-2 average pooling (Qwen2-Audio's formula)
        return (self.encoder_positions - 2) // 2 + 1


# Qwen2-7B text decoder + Whisper-large encoder (Qwen2-Audio-7B), at the paper's batch shape
SIZE_7B = BenchSize(hidden_size=3584, num_layers=28, num_heads=28, num_kv_heads=4, intermediate_size=18944,
                    vocab_size=152064, audio_d_model=1280, audio_layers=32, audio_heads=20, audio_ffn=5120,
                    num_mel_bins=128, audio_seconds=30, batch_size=4, text_tokens=512)
# the same design at toy size, for --dry-run-cpu (2 s of audio -> 50 audio tokens)
SIZE_TINY = BenchSize(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=128,
                      vocab_size=1024, audio_d_model=32, audio_layers=1, audio_heads=2, audio_ffn=64,
                      num_mel_bins=128, audio_seconds=2, batch_size=2, text_tokens=32)

@dataclass(frozen=True)
class MoeSize(_Audio):
    """Qwen3-Omni thinker shapes for the MoE benchmark (the audio and vision towers keep transformers' defaults,
    except in the tiny dry-run size)."""

    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    num_experts: int
    experts_per_token: int
    moe_intermediate_size: int
    vocab_size: int
    audio_seconds: int
    batch_size: int
    text_tokens: int
    tiny_towers: bool = False

    @property
    def audio_tokens(self) -> int:  # Qwen3-Omni's audio encoder: 13 tokens per 100 mel frames (n_window 50)
        rest = self.mel_frames % 100
        feat = (rest - 1) // 2 + 1
        return ((feat - 1) // 2 + 1 - 1) // 2 + 1 + (self.mel_frames // 100) * 13 if rest else \
            (self.mel_frames // 100) * 13


SIZE_30B_A3B = MoeSize(hidden_size=2048, num_layers=48, num_heads=32, num_kv_heads=4, head_dim=128, num_experts=128,
                       experts_per_token=8, moe_intermediate_size=768, vocab_size=152064, audio_seconds=30,
                       batch_size=1, text_tokens=1024)
SIZE_MOE_TINY = MoeSize(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=16, num_experts=4,
                        experts_per_token=2, moe_intermediate_size=32, vocab_size=1024, audio_seconds=2,
                        batch_size=2, text_tokens=32, tiny_towers=True)
MOE_TOKENS = {"audio": 1000, "audio_start": 1001, "audio_end": 1002, "image": 1003, "video": 1004,
              "vision_start": 1005, "vision_end": 1006}  # placeholder ids (random weights: any ids do)

PEAK_BF16 = (("H200", 989e12), ("H100 PCIE", 756e12), ("H100 NVL", 835e12), ("H100", 989e12), ("A100", 312e12))


def peak_flops(device_name: str) -> float | None:
    """Dense bf16 peak of a GPU by name (None when unknown)."""
    upper = device_name.upper()
    return next((value for key, value in PEAK_BF16 if key in upper), None)


def build_model(size: BenchSize, dtype, device: str):
    """Qwen2AudioForConditionalGeneration of `size` with random weights, directly on `device`."""
    import torch
    from transformers import Qwen2AudioConfig, Qwen2AudioForConditionalGeneration

    config = Qwen2AudioConfig(
        text_config=dict(model_type="qwen2", vocab_size=size.vocab_size, hidden_size=size.hidden_size,
                         intermediate_size=size.intermediate_size, num_hidden_layers=size.num_layers,
                         num_attention_heads=size.num_heads, num_key_value_heads=size.num_kv_heads,
                         max_position_embeddings=32768, rms_norm_eps=1e-6,
                         tie_word_embeddings=size.tie_word_embeddings,
                         rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0}),
        audio_config=dict(model_type="qwen2_audio_encoder", num_mel_bins=size.num_mel_bins,
                          encoder_layers=size.audio_layers, encoder_attention_heads=size.audio_heads,
                          encoder_ffn_dim=size.audio_ffn, d_model=size.audio_d_model,
                          max_source_positions=size.encoder_positions),
        audio_token_index=audio_token_id(size),
    )
    config.tie_word_embeddings = size.tie_word_embeddings
    with torch.device(device):
        model = Qwen2AudioForConditionalGeneration._from_config(config, dtype=dtype)
    return model.to(device)


def audio_token_id(size: BenchSize) -> int:
    return 151646 if size.vocab_size > 151646 else size.vocab_size - 1


def random_batch(size: BenchSize, generator, device: str, dtype) -> dict:
    """Random text ids around one clip's audio placeholder run (bos, audio tokens, eos); labels on the text."""
    import torch

    audio_id = audio_token_id(size)
    text_vocab = min(audio_id, size.vocab_size) - 2  # ordinary ids only
    b, n_audio, n_text = size.batch_size, size.audio_tokens, size.text_tokens
    prefix = min(16, n_text // 4)
    ids = torch.randint(0, text_vocab, (b, n_text + n_audio), generator=generator)
    ids[:, prefix:prefix + n_audio] = audio_id
    labels = ids.clone()
    labels[:, :prefix + n_audio] = -100  # the prompt (text prefix and audio) is never a target
    features = torch.randn(b, size.num_mel_bins, size.mel_frames, generator=generator)
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device), "labels": labels.to(device),
            "input_features": features.to(device, dtype),
            "feature_attention_mask": torch.ones(b, size.mel_frames, dtype=torch.long).to(device)}


def parameter_counts(model) -> dict[str, int]:
    """Parameters by role for the FLOP count (see the module docstring)."""
    counts = {"lm_matmul": 0, "embedding": 0, "audio": 0, "audio_positions": 0, "projector": 0, "lora": 0,
              "total": 0, "trainable": 0}
    seen = set()
    for name, param in model.named_parameters():
        if id(param) in seen:
            continue
        seen.add(id(param))
        n = param.numel()
        counts["total"] += n
        counts["trainable"] += n if param.requires_grad else 0
        if "lora_" in name:
            counts["lora"] += n
        elif "audio_tower" in name:
            counts["audio_positions" if "embed_positions" in name else "audio"] += n
        elif "multi_modal_projector" in name:
            counts["projector"] += n
        elif "embed_tokens" in name:
            counts["embedding"] += n
        else:  # decoder layers, final norm, lm_head
            counts["lm_matmul"] += n
    if model.config.get_text_config().tie_word_embeddings:  # the shared table is also the LM head's matmul
        counts["lm_matmul"] += counts["embedding"]
    return counts


def step_flops(size: BenchSize, counts: dict[str, int]) -> dict[str, float]:
    """Model FLOPs of one step: parameter-only (`params`) and with attention scores (`with_attention`)."""
    t = size.batch_size * (size.text_tokens + size.audio_tokens)
    t_enc = size.batch_size * size.encoder_positions
    t_audio = size.batch_size * size.audio_tokens
    params = (4 * counts["lm_matmul"] * t + 6 * counts["lora"] * t
              + 2 * counts["audio"] * t_enc + 2 * counts["projector"] * t_audio)
    seq = size.text_tokens + size.audio_tokens
    attn_lm = 3 * 4 * size.num_layers * size.batch_size * seq ** 2 * size.hidden_size
    attn_audio = 4 * size.audio_layers * size.batch_size * size.encoder_positions ** 2 * size.audio_d_model
    return {"params": float(params), "with_attention": float(params + attn_lm + attn_audio), "tokens": t}


def build_moe_model(size: MoeSize, dtype, device: str):
    """Qwen3OmniMoeThinkerForConditionalGeneration of `size` with random weights, directly on `device`."""
    import torch
    from transformers import Qwen3OmniMoeThinkerConfig, Qwen3OmniMoeThinkerForConditionalGeneration

    half = size.head_dim // 2
    section = [half - 2 * (half * 5 // 16), half * 5 // 16, half * 5 // 16]  # [24, 20, 20] for head_dim 128
    text = dict(vocab_size=size.vocab_size, hidden_size=size.hidden_size, num_hidden_layers=size.num_layers,
                num_attention_heads=size.num_heads, num_key_value_heads=size.num_kv_heads, head_dim=size.head_dim,
                num_experts=size.num_experts, num_experts_per_tok=size.experts_per_token,
                moe_intermediate_size=size.moe_intermediate_size, decoder_sparse_step=1, tie_word_embeddings=False,
                max_position_embeddings=32768,
                rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": section,
                                 "interleaved": True, "mrope_interleaved": True})
    towers = {}
    if size.tiny_towers:
        towers = dict(audio_config=dict(num_mel_bins=128, encoder_layers=1, encoder_attention_heads=2,
                                        encoder_ffn_dim=64, d_model=32, output_dim=size.hidden_size,
                                        downsample_hidden_size=32),
                      vision_config=dict(depth=1, hidden_size=16, intermediate_size=32, num_heads=2,
                                         out_hidden_size=size.hidden_size, deepstack_visual_indexes=[0],
                                         num_position_embeddings=64))
    else:
        towers = dict(audio_config=dict(output_dim=size.hidden_size),
                      vision_config=dict(out_hidden_size=size.hidden_size))
    config = Qwen3OmniMoeThinkerConfig(
        text_config=text, **towers, audio_token_id=MOE_TOKENS["audio"],
        audio_start_token_id=MOE_TOKENS["audio_start"], audio_end_token_id=MOE_TOKENS["audio_end"],
        image_token_id=MOE_TOKENS["image"], video_token_id=MOE_TOKENS["video"],
        vision_start_token_id=MOE_TOKENS["vision_start"], vision_end_token_id=MOE_TOKENS["vision_end"])
    with torch.device(device):
        model = Qwen3OmniMoeThinkerForConditionalGeneration._from_config(config, dtype=dtype)
    return model.to(device)


def moe_batch(size: MoeSize, generator, device: str, dtype) -> dict:
    """Random text around one clip (prefix, <audio_start>, one placeholder per audio token, <audio_end>, text), mel
    features of `audio_seconds`; labels on the text after the audio."""
    import torch

    b, n_audio, n_text = size.batch_size, size.audio_tokens, size.text_tokens
    prefix = min(16, n_text // 4)
    ids = torch.randint(0, 999, (b, n_text + n_audio + 2), generator=generator)
    ids[:, prefix] = MOE_TOKENS["audio_start"]
    ids[:, prefix + 1:prefix + 1 + n_audio] = MOE_TOKENS["audio"]
    ids[:, prefix + 1 + n_audio] = MOE_TOKENS["audio_end"]
    labels = ids.clone()
    labels[:, :prefix + 2 + n_audio] = -100
    features = torch.randn(b, 128, size.mel_frames, generator=generator)
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device),
            "labels": labels.to(device), "input_features": features.to(device, dtype),
            "feature_attention_mask": torch.ones(b, size.mel_frames, dtype=torch.long).to(device)}


def moe_parameter_counts(model, size: MoeSize) -> dict[str, int]:
    """Parameters by role, and the activated ones the MoE FLOP count uses."""
    counts = {"total": 0, "trainable": 0, "lora": 0, "lora_experts": 0, "experts": 0, "lm_other": 0,
              "embedding": 0, "audio": 0, "vision": 0}
    for name, param in model.named_parameters():
        n = param.numel()
        counts["total"] += n
        counts["trainable"] += n if param.requires_grad else 0
        if "lora_" in name:
            counts["lora_experts" if ".experts." in name else "lora"] += n
        elif "audio_tower" in name:
            counts["audio"] += n
        elif "visual" in name:
            counts["vision"] += n
        elif "embed_tokens" in name:
            counts["embedding"] += n
        elif ".experts." in name:
            counts["experts"] += n
        else:  # attention, router, norms, LM head
            counts["lm_other"] += n
    share = size.experts_per_token / size.num_experts
    counts["lm_active"] = counts["lm_other"] + int(counts["experts"] * share)
    counts["lora_active"] = counts["lora"] + int(counts["lora_experts"] * share)
    return counts


def moe_step_flops(size: MoeSize, counts: dict[str, int]) -> dict[str, float]:
    t = size.batch_size * (size.text_tokens + size.audio_tokens + 2)
    t_audio = size.batch_size * size.audio_tokens
    params = 4 * counts["lm_active"] * t + 6 * counts["lora_active"] * t + 2 * counts["audio"] * t_audio
    seq = size.text_tokens + size.audio_tokens + 2
    attn = 3 * 4 * size.num_layers * size.batch_size * seq ** 2 * size.num_heads * size.head_dim
    return {"params": float(params), "with_attention": float(params + attn), "tokens": t}


def run_moe(size: MoeSize, *, device: str, steps: int, warmup: int, rank: int, alpha: int, peak: float | None,
            gradient_checkpointing: bool, seed: int, device_name: str, attention_only: bool) -> dict:
    import torch

    from cogito_lib.models import lora_report
    from cogito_lib.train import LORA_TARGETS, prepare_lora

    dtype = torch.bfloat16
    torch.manual_seed(seed)
    started = time.perf_counter()
    model = build_moe_model(size, dtype, device)
    targets = LORA_TARGETS[:4] if attention_only else LORA_TARGETS
    model = prepare_lora(model, rank, alpha, 0.0, targets, gradient_checkpointing=gradient_checkpointing)
    for param in model.parameters():  # LoRA factors in bf16 too, as the base (no mixed-dtype matmuls)
        if param.requires_grad:
            param.data = param.data.to(dtype)
    model.train()
    build_s = time.perf_counter() - started
    report = lora_report(model)
    counts = moe_parameter_counts(model, size)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, weight_decay=0.0)
    times, losses = _timed_steps(model, optimizer, lambda g: moe_batch(size, g, device, dtype), device, steps,
                                 warmup, seed)
    flops = moe_step_flops(size, counts)
    mean = statistics.fmean(times)
    cuda = device.startswith("cuda")
    return {
        "device": device_name, "model": "Qwen3OmniMoeThinkerForConditionalGeneration (random weights)",
        "size": asdict(size), "audio_tokens": size.audio_tokens, "seq_len": size.text_tokens + size.audio_tokens + 2,
        "dtype": "bfloat16", "lora": {"rank": rank, "alpha": alpha, "targets": list(targets),
                                      "modules": report["modules"], "expert_parameters": report["expert_parameters"]},
        "gradient_checkpointing": gradient_checkpointing,
        "parameters": counts["total"], "trainable_parameters": counts["trainable"], "parameter_counts": counts,
        "steps": steps, "warmup": warmup, "build_s": round(build_s, 2),
        "step_time_s": round(mean, 5), "step_time_std_s": round(statistics.pstdev(times), 5),
        "step_time_min_s": round(min(times), 5),
        "tokens_per_step": flops["tokens"], "tokens_per_s": round(flops["tokens"] / mean, 1),
        "text_tokens_per_s": round(size.batch_size * size.text_tokens / mean, 1),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2 ** 30, 2) if cuda else None,
        "peak_memory_reserved_gib": round(torch.cuda.max_memory_reserved() / 2 ** 30, 2) if cuda else None,
        "step_flops": flops["params"], "step_flops_with_attention": flops["with_attention"],
        "achieved_tflops": round(flops["params"] / mean / 1e12, 3), "peak_tflops": peak / 1e12 if peak else None,
        "mfu": round(flops["params"] / (mean * peak), 4) if peak else None,
        "mfu_with_attention": round(flops["with_attention"] / (mean * peak), 4) if peak else None,
        "mfu_formula": "(4*N_active*T + 6*N_lora_active*T + 2*N_audio*T_audio) / (step_time * peak)",
        "loss_first": losses[0], "loss_last": losses[-1], "finite": all(math.isfinite(x) for x in losses),
    }


def estimate_paper_run(size: MoeSize, *, samples: int, tokens_per_sample: int, gpus: int, mfus: list[float],
                       peak: float, rank: int, alpha: int) -> dict:
    """Counts the real architecture's parameters (built on the meta device: no memory, no weights) and turns them
    into an *estimate* of one epoch over `samples` sequences on `gpus` GPUs at each assumed MFU, and of the memory
    per GPU under ZeRO-3. Nothing here is measured; `--from-result` replaces the assumed MFU by a benchmark's."""
    import torch

    from cogito_lib.train import LORA_TARGETS, prepare_lora

    with torch.device("meta"):
        model = build_moe_model(size, torch.bfloat16, "meta")
    model = prepare_lora(model, rank, alpha, 0.0, LORA_TARGETS)
    counts = moe_parameter_counts(model, size)
    flops_token = 4 * counts["lm_active"] + 6 * counts["lora_active"]  # per text token; audio tower on top
    total_tokens = samples * tokens_per_sample
    epoch_flops = flops_token * total_tokens
    hours = {f"{m:g}": round(epoch_flops / (gpus * peak * m) * gpus / 3600, 1) for m in mfus}
    wall = {f"{m:g}": round(epoch_flops / (gpus * peak * m) / 3600, 2) for m in mfus}
    gib = 2 ** 30
    seq = tokens_per_sample
    memory = {  # bytes per GPU, ZeRO-3 over `gpus`, micro-batch 1, gradient checkpointing
        "weights_bf16_shard": counts["total"] * 2 / gpus / gib,
        "lora_weights_grads_adam_fp32_master_shard": counts["trainable"] * (2 + 2 + 4 + 8) / gpus / gib,
        "one_gathered_moe_block": counts["experts"] / size.num_layers * 2 / gib,
        "checkpointed_layer_inputs": size.num_layers * seq * size.hidden_size * 2 / gib,
        "one_layer_recomputed_activations": seq * (size.experts_per_token * 3 * size.moe_intermediate_size
                                                   + 6 * size.hidden_size) * 2 / gib,
        "logits_bf16_and_fp32_loss": seq * size.vocab_size * (2 + 4) / gib,
    }
    memory = {k: round(v, 2) for k, v in memory.items()}
    return {"estimate": True, "model": "Qwen3-Omni-30B-A3B thinker (meta device: shapes only)",
            "parameters": counts["total"], "activated_language_model_parameters": counts["lm_active"],
            "lora_parameters": counts["trainable"], "lora_active": counts["lora_active"],
            "flops_per_token": flops_token, "samples": samples, "tokens_per_sample": tokens_per_sample,
            "epoch_flops": float(epoch_flops), "gpus": gpus, "peak_tflops_per_gpu": peak / 1e12,
            "assumed_mfu": mfus, "gpu_hours_by_mfu": hours, "wall_hours_by_mfu": wall,
            "memory_per_gpu_gib": memory, "memory_per_gpu_gib_sum": round(sum(memory.values()), 1)}


def _timed_steps(model, optimizer, make_batch, device: str, steps: int, warmup: int, seed: int):
    """`warmup` untimed then `steps` timed steps (forward with labels, backward, AdamW, zero_grad)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    cuda = device.startswith("cuda")

    def sync():
        if cuda:
            torch.cuda.synchronize()

    times, losses = [], []
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    for step in range(warmup + steps):
        batch = make_batch(generator)  # built (and copied) outside the timed region
        sync()
        t0 = time.perf_counter()
        out = model(**batch)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()
        if step >= warmup:
            times.append(time.perf_counter() - t0)
            losses.append(float(out.loss.detach()))
    return times, losses


def run(size: BenchSize, *, device: str, steps: int, warmup: int, rank: int, alpha: int, peak: float | None,
        gradient_checkpointing: bool, seed: int, device_name: str) -> dict:
    import torch

    from cogito_lib.models import add_lora

    dtype = torch.bfloat16
    torch.manual_seed(seed)
    started = time.perf_counter()
    model = build_model(size, dtype, device)
    for param in model.parameters():
        param.requires_grad_(False)
    model = add_lora(model, rank=rank, alpha=alpha, dropout=0.0, target_modules=LORA_TARGETS)
    for name, param in model.named_parameters():  # LoRA factors in bf16 too, as the base (no mixed-dtype matmuls)
        if param.requires_grad:
            param.data = param.data.to(dtype)
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model.train()
    build_s = time.perf_counter() - started
    counts = parameter_counts(model)
    assert all("lora_" in n and "language_model" in n for n, p in model.named_parameters() if p.requires_grad)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-5, weight_decay=0.0)
    cuda = device.startswith("cuda")
    times, losses = _timed_steps(model, optimizer, lambda g: random_batch(size, g, device, dtype), device, steps,
                                 warmup, seed)
    mean = statistics.fmean(times)
    flops = step_flops(size, counts)
    result = {
        "device": device_name, "model": "Qwen2AudioForConditionalGeneration (random weights)",
        "size": asdict(size), "audio_tokens": size.audio_tokens, "encoder_positions": size.encoder_positions,
        "seq_len": size.text_tokens + size.audio_tokens, "dtype": "bfloat16",
        "lora": {"rank": rank, "alpha": alpha, "targets": list(LORA_TARGETS)},
        "gradient_checkpointing": gradient_checkpointing,
        "parameters": counts["total"], "trainable_parameters": counts["trainable"], "parameter_counts": counts,
        "steps": steps, "warmup": warmup, "build_s": round(build_s, 2),
        "step_time_s": round(mean, 5), "step_time_std_s": round(statistics.pstdev(times), 5),
        "step_time_min_s": round(min(times), 5),
        "tokens_per_step": flops["tokens"], "tokens_per_s": round(flops["tokens"] / mean, 1),
        "text_tokens_per_s": round(size.batch_size * size.text_tokens / mean, 1),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2 ** 30, 2) if cuda else None,
        "peak_memory_reserved_gib": round(torch.cuda.max_memory_reserved() / 2 ** 30, 2) if cuda else None,
        "step_flops": flops["params"], "step_flops_with_attention": flops["with_attention"],
        "achieved_tflops": round(flops["params"] / mean / 1e12, 3),
        "peak_tflops": peak / 1e12 if peak else None,
        "mfu": round(flops["params"] / (mean * peak), 4) if peak else None,
        "mfu_with_attention": round(flops["with_attention"] / (mean * peak), 4) if peak else None,
        "mfu_formula": "(4*N_lm*T + 6*N_lora*T + 2*N_audio*T_enc + 2*N_proj*T_audio) / (step_time * peak)",
        "loss_first": losses[0], "loss_last": losses[-1],
        "finite": all(math.isfinite(x) for x in losses),
    }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 10; 2 with --dry-run-cpu)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (3; 1 on --dry-run-cpu)")
    parser.add_argument("--batch-size", type=int, default=None, help="sequences per step (default 4)")
    parser.add_argument("--text-tokens", type=int, default=None, help="text tokens per sequence (default 512)")
    parser.add_argument("--audio-seconds", type=int, default=None, help="audio per sequence (default 30 s)")
    parser.add_argument("--rank", type=int, default=16, help="LoRA rank")
    parser.add_argument("--alpha", type=int, default=32, help="LoRA alpha")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="recompute activations")
    parser.add_argument("--peak-tflops", type=float, default=None, help="peak dense bf16 TFLOP/s (default: by GPU)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dry-run-cpu", action="store_true",
                        help="the same code path with a tiny configuration on CPU (tests; MFU only with --peak-tflops)")
    parser.add_argument("--model", choices=("qwen2_audio_7b", "qwen3_omni_30b_a3b"), default="qwen2_audio_7b",
                        help="the model whose sizes are built (qwen3_omni_30b_a3b: the paper's base, an MoE)")
    parser.add_argument("--layers", type=int, default=None, help="decoder layers (default: the model's)")
    parser.add_argument("--attention-only", action="store_true", help="MoE: LoRA on q/k/v/o only, not the experts")
    parser.add_argument("--estimate", type=int, metavar="SAMPLES", default=None,
                        help="no steps: count Qwen3-Omni-30B-A3B on the meta device and estimate GPU-hours for "
                             "SAMPLES sequences (e.g. the paper's 545000) and ZeRO-3 memory per GPU")
    parser.add_argument("--tokens-per-sample", type=int, default=1400, help="--estimate: mean sequence length")
    parser.add_argument("--gpus", type=int, default=8, help="--estimate: GPUs")
    parser.add_argument("--mfu", default="0.1,0.2,0.3", help="--estimate: assumed MFUs (comma-separated)")
    parser.add_argument("--from-result", help="--estimate: a benchmark's JSON line, whose measured MFU is used")
    args = parser.parse_args(argv)
    moe = args.model == "qwen3_omni_30b_a3b"
    if args.estimate is not None:
        mfus = [float(m) for m in args.mfu.split(",") if m.strip()]
        if args.from_result:
            measured = json.loads(Path(args.from_result).read_text().strip().splitlines()[-1])
            mfus = [measured["mfu"]]
        peak = (args.peak_tflops or 989) * 1e12
        estimate = estimate_paper_run(SIZE_30B_A3B, samples=args.estimate, tokens_per_sample=args.tokens_per_sample,
                                      gpus=args.gpus, mfus=mfus, peak=peak, rank=args.rank, alpha=args.alpha)
        print(json.dumps(estimate))
        return 0

    try:
        import torch
    except ImportError as err:
        print(f"gpu_bench_lora: torch is not installed ({err})", file=sys.stderr)
        return 2
    if args.dry_run_cpu:
        size, device, device_name = (SIZE_MOE_TINY if moe else SIZE_TINY), "cpu", "cpu (dry run)"
        steps, warmup = (2 if args.steps is None else args.steps), (1 if args.warmup is None else args.warmup)
    else:
        if not torch.cuda.is_available():
            print("gpu_bench_lora: no CUDA device visible; this benchmark needs a GPU "
                  "(use --dry-run-cpu to check the code path on a CPU)", file=sys.stderr)
            return 2
        size, device, device_name = (SIZE_30B_A3B if moe else SIZE_7B), "cuda", torch.cuda.get_device_name(0)
        steps, warmup = (10 if args.steps is None else args.steps), (3 if args.warmup is None else args.warmup)
    overrides = {k: v for k, v in (("batch_size", args.batch_size), ("text_tokens", args.text_tokens),
                                   ("audio_seconds", args.audio_seconds), ("num_layers", args.layers)) if v is not None}
    if overrides:
        from dataclasses import replace

        size = replace(size, **overrides)
    if steps < 1 or warmup < 0:
        parser.error("--steps must be >= 1 and --warmup >= 0")
    peak = args.peak_tflops * 1e12 if args.peak_tflops else (None if args.dry_run_cpu else peak_flops(device_name))
    try:
        if moe:
            result = run_moe(size, device=device, steps=steps, warmup=warmup, rank=args.rank, alpha=args.alpha,
                             peak=peak, gradient_checkpointing=args.gradient_checkpointing, seed=args.seed,
                             device_name=device_name, attention_only=args.attention_only)
        else:
            result = run(size, device=device, steps=steps, warmup=warmup, rank=args.rank, alpha=args.alpha,
                         peak=peak, gradient_checkpointing=args.gradient_checkpointing, seed=args.seed,
                         device_name=device_name)
    except torch.cuda.OutOfMemoryError as err:
        print(json.dumps({"device": device_name, "error": "out of GPU memory", "detail": str(err).splitlines()[0],
                          "size": asdict(size), "gradient_checkpointing": args.gradient_checkpointing,
                          "hint": "try --gradient-checkpointing or a smaller --batch-size"}), flush=True)
        return 1
    if peak is None and not args.dry_run_cpu:
        result["note"] = f"unknown peak FLOP/s for {device_name!r}: pass --peak-tflops to get the MFU"
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
