"""Registry of the three audio language model families the kit supports (all shipped by transformers 5.24).

A family names the transformers classes, the special tokens its processor expects and the real checkpoints,
so that loading, tiny builds and prompt building never hard-code one family's quirks.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ModelFamily:
    """One model family: classes, tokens and checkpoints."""

    key: str  # qwen2_audio, qwen2_5_omni, qwen3_omni
    model_class: str  # transformers class of the (thinker) model we load
    config_class: str  # its config class
    processor_class: str  # its processor class
    model_type: str  # config.json model_type of a thinker-only / model folder
    full_model_class: str | None  # full omni model (thinker + talker) whose `.thinker` we keep, if any
    full_model_type: str | None  # config.json model_type of a full omni checkpoint
    checkpoints: tuple[str, ...]  # real hub ids
    audio_token: str  # the placeholder the processor expands to one token per audio frame
    audio_bos_token: str
    audio_eos_token: str
    vision_tokens: dict[str, str] = field(default_factory=dict)  # tokenizer attributes the omni processors need
    audio_placeholder: str = ""  # what the chat template writes for one audio clip
    num_mel_bins: int = 128  # mel bins of the real checkpoint
    notes: str = ""

    @property
    def special_tokens(self) -> dict[str, str]:
        """Tokenizer attribute name -> token string, for every multimodal special token of the family."""
        tokens = {
            "audio_token": self.audio_token,
            "audio_bos_token": self.audio_bos_token,
            "audio_eos_token": self.audio_eos_token,
        }
        tokens.update(self.vision_tokens)
        return tokens

    def load_class(self, which: str = "model") -> type:
        """Import the transformers class named by `which` (model, config, processor, full_model)."""
        name = {"model": self.model_class, "config": self.config_class, "processor": self.processor_class,
                "full_model": self.full_model_class}[which]
        if name is None:
            raise ValueError(f"family {self.key!r} has no {which} class")
        return getattr(importlib.import_module("transformers"), name)


FAMILIES: dict[str, ModelFamily] = {
    "qwen2_audio": ModelFamily(
        key="qwen2_audio",
        model_class="Qwen2AudioForConditionalGeneration",
        config_class="Qwen2AudioConfig",
        processor_class="Qwen2AudioProcessor",
        model_type="qwen2_audio",
        full_model_class=None,
        full_model_type=None,
        checkpoints=("Qwen/Qwen2-Audio-7B-Instruct", "Qwen/Qwen2-Audio-7B"),
        audio_token="<|AUDIO|>",
        audio_bos_token="<|audio_bos|>",
        audio_eos_token="<|audio_eos|>",
        audio_placeholder="Audio {n}: <|audio_bos|><|AUDIO|><|audio_eos|>\n",
        num_mel_bins=128,
        notes="Whisper-style encoder; the processor pads every clip to chunk_length seconds "
        "(max_source_positions * 2 mel frames); plain 1-D positions.",
    ),
    "qwen2_5_omni": ModelFamily(
        key="qwen2_5_omni",
        model_class="Qwen2_5OmniThinkerForConditionalGeneration",
        config_class="Qwen2_5OmniThinkerConfig",
        processor_class="Qwen2_5OmniProcessor",
        model_type="qwen2_5_omni_thinker",
        full_model_class="Qwen2_5OmniForConditionalGeneration",
        full_model_type="qwen2_5_omni",
        checkpoints=("Qwen/Qwen2.5-Omni-7B", "Qwen/Qwen2.5-Omni-3B"),
        audio_token="<|AUDIO|>",
        audio_bos_token="<|audio_bos|>",
        audio_eos_token="<|audio_eos|>",
        vision_tokens={
            "image_token": "<|IMAGE|>",
            "video_token": "<|VIDEO|>",
            "vision_bos_token": "<|vision_bos|>",
            "vision_eos_token": "<|vision_eos|>",
        },
        audio_placeholder="<|audio_bos|><|AUDIO|><|audio_eos|>",
        num_mel_bins=128,
        notes="Thinker of Qwen2.5-Omni; windowed audio encoder over real frames only (n_window); "
        "3-D multimodal RoPE (mrope_section) with audio positions at position_id_per_seconds.",
    ),
    "qwen3_omni": ModelFamily(
        key="qwen3_omni",
        model_class="Qwen3OmniMoeThinkerForConditionalGeneration",
        config_class="Qwen3OmniMoeThinkerConfig",
        processor_class="Qwen3OmniMoeProcessor",
        model_type="qwen3_omni_moe_thinker",
        full_model_class="Qwen3OmniMoeForConditionalGeneration",
        full_model_type="qwen3_omni_moe",
        checkpoints=("Qwen/Qwen3-Omni-30B-A3B-Thinking", "Qwen/Qwen3-Omni-30B-A3B-Instruct"),
        audio_token="<|audio_pad|>",
        audio_bos_token="<|audio_start|>",
        audio_eos_token="<|audio_end|>",
        vision_tokens={
            "image_token": "<|image_pad|>",
            "video_token": "<|video_pad|>",
            "vision_bos_token": "<|vision_start|>",
            "vision_eos_token": "<|vision_end|>",
        },
        audio_placeholder="<|audio_start|><|audio_pad|><|audio_end|>",
        num_mel_bins=128,
        notes="Thinker of Qwen3-Omni (MoE text model); conv2d audio encoder over 100-frame chunks "
        "(13 tokens per full chunk; the processor hard-codes n_window=50); interleaved mrope.",
    ),
}

# Tokens every family's tokenizer carries besides the multimodal ones.
CHAT_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
THINK_TOKENS = ("<think>", "</think>")


def get_family(key: str) -> ModelFamily:
    """The family registered under `key`; a clear error lists the valid keys."""
    try:
        return FAMILIES[key]
    except KeyError:
        raise ValueError(f"unknown model family {key!r}; choose one of {sorted(FAMILIES)}") from None


def family_for_model_type(model_type: str) -> ModelFamily | None:
    """The family whose thinker/model or full omni config has this `model_type` (None if none)."""
    for family in FAMILIES.values():
        if model_type in (family.model_type, family.full_model_type):
            return family
    return None


def family_for_checkpoint(name: str) -> ModelFamily | None:
    """Guess the family from a hub id such as `Qwen/Qwen3-Omni-30B-A3B-Thinking` (None if unknown)."""
    lowered = name.lower()
    if "qwen3-omni" in lowered or "qwen3_omni" in lowered:
        return FAMILIES["qwen3_omni"]
    if "qwen2.5-omni" in lowered or "qwen2_5_omni" in lowered:
        return FAMILIES["qwen2_5_omni"]
    if "qwen2-audio" in lowered or "qwen2_audio" in lowered:
        return FAMILIES["qwen2_audio"]
    return None
