"""Tiny offline builds of each model family, from config, with a locally trained tokenizer.

A tiny build is saved with `save_pretrained` (model, tokenizer, feature extractor, processor, chat template) so
every later stage loads it with `load_model(folder)` exactly as it would load a real checkpoint. The classes are
the real ones (Qwen2-Audio, Qwen2.5-Omni thinker, Qwen3-Omni thinker); only the sizes are small.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from .families import ModelFamily, get_family
from .tokenizer import build_tokenizer

SAMPLE_RATE = 16_000
TINY_MARKER = "cogito_tiny.json"  # written beside a tiny build: family, size, seed, parameter counts


@dataclass(frozen=True)
class TinySize:
    """Sizes of a tiny build (text decoder, audio encoder, tokenizer, feature extractor)."""

    hidden_size: int = 64  # text hidden size
    num_layers: int = 2  # text decoder layers
    num_heads: int = 4  # attention heads
    num_kv_heads: int = 2  # key/value heads (grouped-query attention)
    intermediate_size: int = 128  # text FFN size (per expert for qwen3_omni)
    tie_word_embeddings: bool = True  # share input embeddings and LM head
    max_position_embeddings: int = 2048  # longest sequence
    audio_d_model: int = 32  # audio encoder width
    audio_layers: int = 1  # audio encoder layers
    audio_heads: int = 2  # audio encoder heads
    audio_ffn: int = 64  # audio encoder FFN
    num_mel_bins: int = 80  # mel bins of the feature extractor and encoder
    chunk_length: int = 2  # seconds the feature extractor pads/cuts to (Qwen2-Audio always pads to this)
    audio_n_window: int = 100  # Qwen2.5-Omni encoder attention window (mel frames / 2)
    num_experts: int = 4  # qwen3_omni only: MoE experts per layer
    num_experts_per_tok: int = 2  # qwen3_omni only: routed experts per token
    vocab_size: int = 1024  # tokenizer vocabulary cap (specials included)
    min_frequency: int = 2  # BPE merge threshold
    rope_theta: float = 10_000.0  # RoPE base
    vision_hidden: int = 16  # the omni classes require a vision tower: a 1-layer stub of this width
    pretrained_audio: str = ""  # "whisper-tiny.en": load (qwen2_audio only) Whisper tiny.en's first encoder layers

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def mrope_section(self) -> list[int]:
        """Temporal/height/width split of head_dim/2 for multimodal RoPE (MINIATURE: [4, 6, 6] for 32)."""
        half = self.head_dim // 2
        t = max(1, round(half / 4))
        h = (half - t) // 2
        return [t, h, half - t - h]


SIZES: dict[str, TinySize] = {
    # unit tests: seconds per build, forward in milliseconds
    "tiny": TinySize(),
    # a from-scratch audio tower: Qwen2.5-Omni thinker, ~2.2M parameters with a ~700-token vocabulary
    "mini": TinySize(
        hidden_size=192, num_layers=4, num_heads=6, num_kv_heads=2, intermediate_size=512,
        audio_d_model=128, audio_layers=2, audio_heads=4, audio_ffn=512, num_mel_bins=80, chunk_length=10,
        audio_n_window=200, vocab_size=1024,
    ),
    # the miniature's default base: the same text decoder on a real front-end, the first 2 encoder layers of
    # Whisper tiny.en (Qwen2-Audio's tower is Whisper's encoder), clips padded to 4 s (100 audio tokens)
    "mini-whisper": TinySize(
        hidden_size=192, num_layers=4, num_heads=6, num_kv_heads=2, intermediate_size=512,
        audio_d_model=384, audio_layers=2, audio_heads=6, audio_ffn=1536, num_mel_bins=80, chunk_length=4,
        vocab_size=1024, pretrained_audio="whisper-tiny.en",
    ),
    # tests: the same design at toy size (1 Whisper layer, 3 s chunk)
    "tiny-whisper": TinySize(
        audio_d_model=384, audio_layers=1, audio_heads=6, audio_ffn=1536, num_mel_bins=80, chunk_length=3,
        pretrained_audio="whisper-tiny.en",
    ),
    # a larger variant for a GPU or a patient CPU
    "small": TinySize(
        hidden_size=384, num_layers=6, num_heads=6, num_kv_heads=2, intermediate_size=1024,
        audio_d_model=256, audio_layers=4, audio_heads=4, audio_ffn=1024, num_mel_bins=80, chunk_length=10,
        audio_n_window=200, vocab_size=2048,
    ),
}


def resolve_size(size: TinySize | dict | str) -> TinySize:
    """A `TinySize` from a preset name, a dict of overrides on the `tiny` preset, or a `TinySize`."""
    if isinstance(size, TinySize):
        return size
    if isinstance(size, str):
        if size not in SIZES:
            raise ValueError(f"unknown tiny size {size!r}; choose one of {sorted(SIZES)} or pass a dict")
        return SIZES[size]
    if isinstance(size, dict):
        base = SIZES[size.get("preset", "tiny")]
        fields = {f.name for f in dataclasses.fields(TinySize)}
        unknown = set(size) - fields - {"preset"}
        if unknown:
            raise ValueError(f"unknown TinySize fields {sorted(unknown)}; valid: {sorted(fields)}")
        return dataclasses.replace(base, **{k: v for k, v in size.items() if k != "preset"})
    raise TypeError(f"size must be a preset name, dict or TinySize, not {type(size).__name__}")


def _text_config(size: TinySize, tokenizer, model_type: str, **extra: Any) -> dict:
    config = dict(
        model_type=model_type,
        vocab_size=len(tokenizer),
        hidden_size=size.hidden_size,
        intermediate_size=size.intermediate_size,
        num_hidden_layers=size.num_layers,
        num_attention_heads=size.num_heads,
        num_key_value_heads=size.num_kv_heads,
        max_position_embeddings=size.max_position_embeddings,
        tie_word_embeddings=size.tie_word_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    config.update(extra)
    return config


def _audio_common(size: TinySize) -> dict:
    return dict(
        num_mel_bins=size.num_mel_bins,
        encoder_layers=size.audio_layers,
        encoder_attention_heads=size.audio_heads,
        encoder_ffn_dim=size.audio_ffn,
        d_model=size.audio_d_model,
    )


def model_config(family: ModelFamily | str, size: TinySize, tokenizer):
    """The family's model config for `size`, with special-token ids taken from `tokenizer`."""
    family = get_family(family) if isinstance(family, str) else family
    ids = {name: tokenizer.convert_tokens_to_ids(tok) for name, tok in family.special_tokens.items()}
    config_cls = family.load_class("config")
    frames = size.chunk_length * SAMPLE_RATE // 160  # mel frames of one padded chunk
    if family.key == "qwen2_audio":
        config = config_cls(
            text_config=_text_config(size, tokenizer, "qwen2", rope_parameters={
                "rope_type": "default", "rope_theta": size.rope_theta}),
            audio_config=dict(model_type="qwen2_audio_encoder", max_source_positions=frames // 2,
                              **_audio_common(size)),
            audio_token_index=ids["audio_token"],
        )
    elif family.key == "qwen2_5_omni":
        rope = {"rope_type": "default", "rope_theta": size.rope_theta, "mrope_section": size.mrope_section}
        config = config_cls(
            text_config=_text_config(size, tokenizer, "qwen2_5_omni_text", rope_parameters=rope),
            audio_config=dict(model_type="qwen2_5_omni_audio_encoder", max_source_positions=max(frames // 2, 1500),
                              n_window=size.audio_n_window, output_dim=size.hidden_size, **_audio_common(size)),
            vision_config=dict(model_type="qwen2_5_omni_vision_encoder", depth=1, hidden_size=size.vision_hidden,
                               intermediate_size=2 * size.vision_hidden, num_heads=2,
                               out_hidden_size=size.hidden_size, fullatt_block_indexes=[0]),
            audio_token_index=ids["audio_token"],
            image_token_index=ids["image_token"],
            video_token_index=ids["video_token"],
            audio_start_token_id=ids["audio_bos_token"],
            audio_end_token_id=ids["audio_eos_token"],
            vision_start_token_id=ids["vision_bos_token"],
            vision_end_token_id=ids["vision_eos_token"],
            user_token_id=_user_token_id(tokenizer),
            tie_word_embeddings=size.tie_word_embeddings,
        )
    elif family.key == "qwen3_omni":
        rope = {"rope_type": "default", "rope_theta": size.rope_theta, "mrope_section": size.mrope_section,
                "interleaved": True, "mrope_interleaved": True}
        config = config_cls(
            text_config=_text_config(
                size, tokenizer, "qwen3_omni_moe_text", rope_parameters=rope, head_dim=size.head_dim,
                moe_intermediate_size=size.intermediate_size, num_experts=size.num_experts,
                num_experts_per_tok=size.num_experts_per_tok, decoder_sparse_step=1,
            ),
            audio_config=dict(model_type="qwen3_omni_moe_audio_encoder", max_source_positions=1500,
                              n_window=50,  # Qwen3OmniMoeProcessor hard-codes 50 (13 tokens per 100 frames)
                              n_window_infer=400, output_dim=size.hidden_size,
                              downsample_hidden_size=size.audio_d_model, **_audio_common(size)),
            vision_config=dict(model_type="qwen3_omni_moe_vision_encoder", depth=1, hidden_size=size.vision_hidden,
                               intermediate_size=2 * size.vision_hidden, num_heads=2,
                               out_hidden_size=size.hidden_size, deepstack_visual_indexes=[0],
                               num_position_embeddings=64),
            audio_token_id=ids["audio_token"],
            image_token_id=ids["image_token"],
            video_token_id=ids["video_token"],
            audio_start_token_id=ids["audio_bos_token"],
            vision_start_token_id=ids["vision_bos_token"],
            vision_end_token_id=ids["vision_eos_token"],
            audio_end_token_id=ids["audio_eos_token"],
            user_token_id=_user_token_id(tokenizer),
            tie_word_embeddings=size.tie_word_embeddings,
        )
    else:  # pragma: no cover - the registry holds three families
        raise ValueError(family.key)
    config.pad_token_id = tokenizer.pad_token_id
    config.eos_token_id = tokenizer.eos_token_id
    return config


def _user_token_id(tokenizer) -> int:
    # used by the omni talker only; a whole "user" token when the BPE learned one, else its first piece
    token_id = tokenizer.convert_tokens_to_ids("user")
    if isinstance(token_id, int) and token_id >= 0 and token_id != tokenizer.unk_token_id:
        return token_id
    return tokenizer("user", add_special_tokens=False)["input_ids"][0]


def build_processor(family: ModelFamily | str, tokenizer, size: TinySize):
    """The family's processor around `tokenizer` and a short-chunk `WhisperFeatureExtractor`."""
    from transformers import WhisperFeatureExtractor

    family = get_family(family) if isinstance(family, str) else family
    feature_extractor = WhisperFeatureExtractor(
        feature_size=size.num_mel_bins, sampling_rate=SAMPLE_RATE, hop_length=160,
        chunk_length=size.chunk_length, n_fft=400, padding_value=0.0, return_attention_mask=True,
    )
    processor_cls = family.load_class("processor")
    if family.key == "qwen2_audio":
        return processor_cls(feature_extractor=feature_extractor, tokenizer=tokenizer,
                             chat_template=tokenizer.chat_template)
    from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    patch = 14 if family.key == "qwen2_5_omni" else 16
    return processor_cls(
        image_processor=Qwen2VLImageProcessor(patch_size=patch),
        video_processor=Qwen2VLVideoProcessor(patch_size=patch),
        feature_extractor=feature_extractor,
        tokenizer=tokenizer,
        chat_template=tokenizer.chat_template,
    )


def count_parameters(model) -> dict[str, int]:
    """Parameters in total and per part (language model, audio tower, other)."""
    parts = {"total": 0, "language_model": 0, "audio_tower": 0, "vision": 0, "other": 0}
    seen = set()
    for name, param in model.named_parameters():
        if id(param) in seen:
            continue
        seen.add(id(param))
        parts["total"] += param.numel()
        if "audio_tower" in name:
            parts["audio_tower"] += param.numel()
        elif "visual" in name:
            parts["vision"] += param.numel()
        elif "language_model" in name or "lm_head" in name:
            parts["language_model"] += param.numel()
        else:
            parts["other"] += param.numel()
    return parts


def build_tiny_model(family: str, out_dir: str | Path, corpus: Iterable[str], size: TinySize | dict | str = "tiny",
                     seed: int = 0) -> Path:
    """Build a randomly initialised model of `family` with a tokenizer trained on `corpus`; save it to `out_dir`.

    The folder then loads with `load_model(out_dir)` like any checkpoint. Returns `out_dir`.
    """
    import torch

    fam = get_family(family)
    tiny = resolve_size(size)
    out_dir = Path(out_dir)
    tokenizer = build_tokenizer(fam, corpus, vocab_size=tiny.vocab_size, min_frequency=tiny.min_frequency,
                                model_max_length=tiny.max_position_embeddings)
    config = model_config(fam, tiny, tokenizer)
    torch.manual_seed(seed)
    model = fam.load_class("model")(config)
    if tiny.pretrained_audio:
        _load_pretrained_audio(model, fam, tiny)
    model.eval()
    _set_generation_defaults(model, tokenizer)
    processor = build_processor(fam, tokenizer, tiny)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    marker = {"family": fam.key, "size": dataclasses.asdict(tiny), "seed": seed,
              "parameters": count_parameters(model), "vocab_size": len(tokenizer)}
    (out_dir / TINY_MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    return out_dir


def _load_pretrained_audio(model, family: ModelFamily, size: TinySize) -> None:
    if size.pretrained_audio != "whisper-tiny.en":
        raise ValueError(f"unknown pretrained_audio {size.pretrained_audio!r}: the only one is 'whisper-tiny.en'")
    from . import whisper_front as wf

    if family.key != "qwen2_audio":
        raise ValueError("the Whisper front-end fits the qwen2_audio family only (its audio tower is Whisper's encoder)")
    expected = (wf.D_MODEL, wf.NUM_HEADS, wf.FFN_DIM, wf.NUM_MEL_BINS)
    if (size.audio_d_model, size.audio_heads, size.audio_ffn, size.num_mel_bins) != expected:
        raise ValueError(f"the Whisper front-end needs audio d_model/heads/ffn/mel = {expected}")
    wf.load_into(model.model.audio_tower, size.audio_layers)


def _set_generation_defaults(model, tokenizer) -> None:
    """Stop at <|im_end|>, pad with <|endoftext|>, greedy unless asked."""
    gen = model.generation_config
    gen.eos_token_id = [tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.pad_token_id]
    gen.pad_token_id = tokenizer.pad_token_id
    gen.bos_token_id = None
    gen.do_sample = False
